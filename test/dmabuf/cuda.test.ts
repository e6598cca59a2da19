// Cuda.exportDmaBuf without a GPU: the loader's errors (no koffi, no
// libcuda), argument checks, and the FFI bindings against a stand-in
// libcuda (test/fixtures/fake-libcuda.c). Real export needs an NVIDIA GPU
// and is skipped with that reason.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { expectCode, repoRoot, TEST_PREFIX } from '../helpers';

let hasKoffi = true;
try {
  require.resolve('koffi');
} catch {
  hasKoffi = false;
}
const noKoffi = hasKoffi ? false : 'the optional dependency koffi is not installed';
const hasGpu = fs.existsSync('/dev/nvidia0') || fs.existsSync('/dev/nvidiactl');

/** Runs `code` in a child with lib/cuda loaded from dist/ (a fresh module state), P2PDMA_LIBCUDA set. */
function child(code: string, libcuda: string): { status: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ['-e', `const { Cuda } = require(${JSON.stringify(path.join(repoRoot, 'dist', 'dmabuf', 'cuda.js'))});\n${code}`], {
    encoding: 'utf8',
    env: { ...process.env, P2PDMA_LIBCUDA: libcuda, NODE_OPTIONS: '' },
  });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

t.test('without koffi the error names koffi and libcuda', { skip: hasKoffi && 'koffi is installed here' }, async (t) => {
  const { Cuda } = await import('../../lib/dmabuf/cuda');
  t.throws(() => Cuda.exportDmaBuf(0x10000n, 4096), { code: 'ERR_P2PDMA_NO_KOFFI', message: /koffi to load libcuda\.so\.1; install it with: npm install koffi/ });
  t.equal(Cuda.available(), false);
});

t.test('without libcuda the error names the library and what to install', { skip: noKoffi }, async (t) => {
  const r = child('try { Cuda.exportDmaBuf(0x10000n, 4096) } catch (e) { console.log(JSON.stringify([e.code, e.message])) }; console.log(Cuda.available())', '/nonexistent/libcuda.so.1');
  t.equal(r.status, 0, r.err);
  const [code, message] = JSON.parse(r.out.split('\n')[0]) as [string, string];
  t.equal(code, 'ERR_P2PDMA_NO_LIBCUDA');
  t.match(message, /^Cannot load \/nonexistent\/libcuda\.so\.1 \(the NVIDIA driver's CUDA library\): .*Install the NVIDIA driver/);
  t.equal(r.out.split('\n')[1], 'false', 'available() is false, no throw');
});

t.test('exportDmaBuf checks ptr and size before loading anything', async (t) => {
  const { Cuda } = await import('../../lib/dmabuf/cuda');
  const range = expectCode(RangeError, 'ERR_OUT_OF_RANGE');
  t.throws(() => Cuda.exportDmaBuf(-1, 4096), range);
  t.throws(() => Cuda.exportDmaBuf(2n ** 64n, 4096), range);
  t.throws(() => Cuda.exportDmaBuf(0x1000n, 0), range);
  t.throws(() => Cuda.exportDmaBuf(0x1000n, 1.5), range);
  t.throws(() => Cuda.exportDmaBuf('0x1000' as never, 4096), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

const cc = spawnSync('cc', ['--version'], { stdio: 'ignore' }).status === 0;
t.test('the bindings pass arguments and out parameters as the driver API wants (stand-in libcuda)', { skip: noKoffi || (!cc && 'no C compiler') }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${TEST_PREFIX}-cuda-`));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const so = path.join(dir, 'libcuda.so.1');
  const build = spawnSync('cc', ['-shared', '-fPIC', '-o', so, path.join(repoRoot, 'test', 'fixtures', 'fake-libcuda.c')], { encoding: 'utf8' });
  t.equal(build.status, 0, build.stderr);
  const r = child(
    [
      'const b = Cuda.exportDmaBuf(0x7f0000200000n, 2 ** 33);',
      "console.log(require('fs').readlinkSync('/proc/self/fd/' + b.fd));",
      'b.close();',
      'try { Cuda.exportDmaBuf(0n, 4096) } catch (e) { console.log(JSON.stringify([e.code, e.message, e.cuName, e.cuResult])) }',
    ].join('\n'),
    so,
  );
  t.equal(r.status, 0, r.err);
  const [link, err] = r.out.trim().split('\n');
  t.equal(link, '/memfd:fake-cuda-7f0000200000-200000000 (deleted)', 'the 64-bit pointer and size arrived whole; the fd came back');
  t.same(JSON.parse(err), ['ERR_P2PDMA_CUDA', 'cuMemGetHandleForAddressRange failed: CUDA_ERROR_NOT_SUPPORTED', 'CUDA_ERROR_NOT_SUPPORTED', 801]);
});

// Written for a GPU machine; not yet run on one (this project's machines have none).
t.test('device memory from cuMemAlloc exports as a dma-buf of its size', { skip: noKoffi || (!hasGpu && 'no NVIDIA GPU on this machine') }, async (t) => {
  const r = child(
    [
      "const k = require('koffi'); const lib = k.load('libcuda.so.1');",
      "const f = (d) => lib.func(d);",
      "const cuInit = f('int cuInit(unsigned int)');",
      "const cuDeviceGet = f('int cuDeviceGet(_Out_ int *dev, int ordinal)');",
      "const cuCtxCreate = f('int cuCtxCreate_v2(_Out_ void **ctx, unsigned int flags, int dev)');",
      "const cuMemAlloc = f('int cuMemAlloc_v2(_Out_ uint64_t *ptr, size_t size)');",
      "const cuMemFree = f('int cuMemFree_v2(uint64_t ptr)');",
      "const cuCtxDestroy = f('int cuCtxDestroy_v2(void *ctx)');",
      "const dev = [0], ctx = [null], ptr = [0n];",
      "if (cuInit(0) || cuDeviceGet(dev, 0) || cuCtxCreate(ctx, 0, dev[0]) || cuMemAlloc(ptr, 2 << 20)) throw new Error('CUDA setup failed');",
      'const b = Cuda.exportDmaBuf(BigInt(ptr[0]), 2 << 20);',
      'console.log(JSON.stringify([b.size, b.info().exporter]));',
      'b.close(); cuMemFree(ptr[0]); cuCtxDestroy(ctx[0]);',
    ].join('\n'),
    'libcuda.so.1',
  );
  t.equal(r.status, 0, r.err);
  const [size, exporter] = JSON.parse(r.out.trim()) as [number, string];
  t.equal(size, 2 << 20);
  t.type(exporter, 'string');
});
