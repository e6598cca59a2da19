// Every kind of view the API takes spans exactly its intrinsic byteLength in
// native code: each TypedArray kind this Node has (Float16Array on 24+, the
// BigInt kinds), DataView, at odd offsets, over ArrayBuffer, SharedArrayBuffer,
// resizable ArrayBuffers and growable SharedArrayBuffers (fixed-length and
// length-tracking views). Guard bytes around each view must never be read
// into or written from the device side. Regression for issue 22 defect 1:
// a Float16Array used to count 8 bytes an element, so Mapping.write() copied
// 4x the view and the promise form of ioctl() wrote stale bytes past it.
import t from 'tap';
import * as fs from 'node:fs';

import { ioctl, ioctlSync, memfd, mmap, pageSize, requests } from '../../lib';
import { leakGuard, pipeWith } from '../helpers';

const leaks = leakGuard();

type ViewCtor = { new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): ArrayBufferView; BYTES_PER_ELEMENT?: number; name: string };

const TYPED_NAMES = [
  'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Float16Array',
  'Int32Array', 'Uint32Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array',
];
const g = globalThis as unknown as Record<string, ViewCtor | undefined>;
const kinds: ViewCtor[] = [...TYPED_NAMES.map((n) => g[n]).filter((c): c is ViewCtor => c !== undefined), DataView as unknown as ViewCtor];

t.test('this Node line offers the view kinds the sweep names', async (t) => {
  const major = Number(process.versions.node.split('.')[0]);
  // Float16Array ships unflagged from Node 24 (V8 13.x): the kind N-API predates.
  if (major >= 24) t.ok(g.Float16Array, 'Float16Array exists');
  t.ok(kinds.length >= 12);
});

const GUARD = 64;

interface Backing {
  name: string;
  make(bytes: number): ArrayBufferLike;
  /** Views that follow the buffer's length. */
  tracking?: boolean;
}

const resizableAb = (n: number): ArrayBuffer => new (ArrayBuffer as unknown as new (n: number, o: object) => ArrayBuffer)(n, { maxByteLength: n * 2 });
const growableSab = (n: number): SharedArrayBuffer => new (SharedArrayBuffer as unknown as new (n: number, o: object) => SharedArrayBuffer)(n, { maxByteLength: n * 2 });

const backings: Backing[] = [
  { name: 'ArrayBuffer', make: (n) => new ArrayBuffer(n) },
  { name: 'SharedArrayBuffer', make: (n) => new SharedArrayBuffer(n) },
  { name: 'resizable ArrayBuffer', make: resizableAb },
  { name: 'growable SharedArrayBuffer', make: growableSab },
  { name: 'resizable ArrayBuffer, length-tracking view', make: resizableAb, tracking: true },
  { name: 'growable SharedArrayBuffer, length-tracking view', make: growableSab, tracking: true },
];

/** A view of `kind` of about 24 bytes at an element-aligned odd-ish offset, with GUARD bytes of 0x55 before and after it. */
function guarded(kind: ViewCtor, backing: Backing): { view: ArrayBufferView; bytes: Uint8Array; start: number; end: number } {
  const elem = kind.BYTES_PER_ELEMENT ?? 1;
  const start = GUARD + (kind === (DataView as unknown) ? 3 : elem);
  const count = Math.ceil(24 / elem) + (elem === 1 ? 1 : 0);
  const len = count * elem;
  const total = start + len + GUARD;
  const buf = backing.make(total);
  const bytes = new Uint8Array(buf);
  bytes.fill(0x55);
  let view: ArrayBufferView;
  if (backing.tracking) {
    // A length-tracking view reaches the buffer's end: shrink the buffer to
    // the view's end so the guard after it is out of bounds, then read the
    // guard through a second buffer-wide view made before shrinking.
    view = kind === (DataView as unknown) ? new DataView(buf, start) : new kind(buf, start);
    const rb = buf as unknown as { resize?: (n: number) => void; grow?: (n: number) => void };
    if (rb.resize) rb.resize(start + len);
    else return { view, bytes, start, end: total }; // growable: cannot shrink; the view spans to the end
  } else {
    view = kind === (DataView as unknown) ? new DataView(buf, start, len) : new kind(buf, start, count);
  }
  return { view, bytes, start, end: start + len };
}


for (const backing of backings) {
  t.test(`views over a ${backing.name}`, async (t) => {
    using file = memfd('p2pdma-test-views');
    fs.ftruncateSync(file.fd, pageSize);
    using map = mmap(file, pageSize);
    const mapped = new Uint8Array(map.buffer);
    const { r, w } = pipeWith(5);
    try {
      for (const kind of kinds) {
        const { view, bytes, start, end } = guarded(kind, backing);
        const n = view.byteLength;
        const tracking = backing.tracking === true;
        t.equal(n, end - start, `${kind.name}: byteLength is what the test laid out`);
        for (let i = 0; i < n; i++) bytes[start + i] = (i * 7 + 1) & 0xff;

        // Mapping.write copies exactly the view.
        mapped.fill(0xee);
        map.write(view, 0);
        t.same(Buffer.from(mapped.subarray(0, n)), Buffer.from(bytes.subarray(start, end)), `${kind.name}: write() copied the view's bytes`);
        t.ok(mapped.subarray(n, n + 2 * GUARD).every((b) => b === 0xee), `${kind.name}: write() copied nothing past the view`);

        // The promise form of ioctl copies the view in and back: bytes
        // past it that JS changes while the call is in flight stay changed.
        if (!tracking || bytes.length > end) {
          const p = ioctl(r, requests.FIONREAD, view);
          const after = bytes.subarray(end, Math.min(bytes.length, end + GUARD));
          after.fill(0x77);
          bytes.subarray(start - GUARD, start).fill(0x66);
          await p;
          t.equal(new DataView(bytes.buffer, start, 4).getInt32(0, true), 5, `${kind.name}: FIONREAD wrote into the view`);
          t.ok(after.every((b) => b === 0x77), `${kind.name}: ioctl() wrote nothing past the view`);
          t.ok(bytes.subarray(start - GUARD, start).every((b) => b === 0x66), `${kind.name}: ioctl() wrote nothing before the view`);
        } else {
          await ioctl(r, requests.FIONREAD, view);
          t.equal(new DataView(bytes.buffer, start, 4).getInt32(0, true), 5, `${kind.name}: FIONREAD wrote into the view`);
        }
      }
    } finally {
      r.close();
      w.close();
    }
  });
}

t.test('a view that shrinks while ioctl() is in flight gets nothing back', async (t) => {
  const ab = resizableAb(64);
  const v = new Uint8Array(ab);
  const { r, w } = pipeWith(5);
  try {
    const p = ioctl(r, requests.FIONREAD, v);
    (ab as unknown as { resize(n: number): void }).resize(8);
    await p;
    t.equal(v.byteLength, 8);
    t.same([...v], [0, 0, 0, 0, 0, 0, 0, 0], 'the shrunk view was left alone (no copy-back of 64 bytes into 8)');
  } finally {
    r.close();
    w.close();
  }
});

t.test('a detached or out-of-bounds DataView reads as empty: a coded error, not a TypeError', async (t) => {
  const ab = new ArrayBuffer(8);
  const dv = new DataView(ab);
  structuredClone(ab, { transfer: [ab] });
  t.throws(() => ioctlSync(0, requests.FIONREAD, dv), { code: 'ERR_OUT_OF_RANGE' });
  const rab = resizableAb(16);
  const oob = new DataView(rab, 8, 8);
  (rab as unknown as { resize(n: number): void }).resize(4);
  t.throws(() => ioctlSync(0, requests.FIONREAD, oob), { code: 'ERR_OUT_OF_RANGE' });
  using file = memfd('p2pdma-test-views-dv');
  fs.ftruncateSync(file.fd, pageSize);
  using map = mmap(file, pageSize);
  map.write(dv, 0);
  t.pass('Mapping.write() of a detached DataView copies nothing');
});

leaks.check(t);
