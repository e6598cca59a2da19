// The inspector against real processes: a child holding known dma-bufs
// (a named system-heap buffer, a udmabuf, one only mapped after its fd was
// closed) is listed with the right sizes, exporters and names.
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';

import { DmaHeap } from '../../lib';
import { dmabufs, formatDmaBufReport } from '../../lib/dmabuf/dmabuf-inspect';
import { dmabufLeakGuard } from './dmabuf-leaks';
import { guest } from './helpers';

const leaks = dmabufLeakGuard();

const lib = path.resolve(__dirname, '../../lib/index');

const CHILD = `
const p = require(${JSON.stringify(lib)});
const heap = p.DmaHeap.open('system');
const a = heap.allocSync(3 * 4096); a.setName('child-frames');
const u = p.Udmabuf.createSync({ size: 5 * 4096 });
const b = heap.allocSync(2 * 4096);
const m = b.map(); b.close();
process.stdout.write(JSON.stringify({ a: a.info().inode, u: u.info().inode, b: m.address.toString() }) + '\\n');
process.stdin.on('data', () => process.exit(0));
`;

t.test('a child holding known dma-bufs is listed with sizes, exporters and names', guest, async (t) => {
  const child = spawn(process.execPath, ['-e', CHILD], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => child.kill());
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]);
    });
    child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
  });
  const ids = JSON.parse(line) as { a: number; u: number };
  const r = dmabufs({ pid: child.pid! });
  const a = r.buffers.find((b) => b.inode === ids.a);
  const u = r.buffers.find((b) => b.inode === ids.u);
  t.same(a && { size: a.size, exporter: a.exporter, name: a.name, pids: a.sharers.map((s) => s.pid) }, { size: 3 * 4096, exporter: 'system', name: 'child-frames', pids: [child.pid] });
  t.same(u && { size: u.size, exporter: u.exporter }, { size: 5 * 4096, exporter: 'udmabuf' });
  const mappedOnly = r.buffers.filter((b) => b.sharers.every((s) => s.fds.length === 0));
  t.equal(mappedOnly.length, 1, 'the buffer whose fd was closed is found through its mapping');
  t.same(mappedOnly[0] && { size: mappedOnly[0].size, mapped: mappedOnly[0].sharers[0].mappedBytes }, { size: 2 * 4096, mapped: 2 * 4096 });
  t.same(r.total, { buffers: 3, bytes: 10 * 4096 });
  t.match(formatDmaBufReport(r), /system\s+\d+\s+12 KiB\s+child-frames/);
  child.stdin!.write('x');
  await once(child, 'close');
});

t.test('a buffer shared with a child shows both processes as sharers', guest, async (t) => {
  using heap = DmaHeap.open();
  using buf = heap.allocSync(4096);
  const inode = buf.info().inode;
  // The child gets our dma-buf as its fd 3.
  const child = spawn(process.execPath, ['-e', 'process.stdout.write("up\\n"); process.stdin.on("data", () => process.exit(0))'], { stdio: ['pipe', 'pipe', 'inherit', buf.fd] });
  t.teardown(() => child.kill());
  await new Promise((resolve) => child.stdout!.once('data', resolve));
  const all = dmabufs();
  const ours = all.buffers.find((b) => b.inode === inode);
  const byPid = new Map((ours?.sharers ?? []).map((s) => [s.pid, s.fds]));
  t.same([...byPid.keys()].sort((a, b) => a - b), [process.pid, child.pid!].sort((a, b) => a - b), 'both processes share it');
  t.ok(byPid.get(process.pid)?.includes(buf.fd), `our fd ${buf.fd}`);
  t.same(byPid.get(child.pid!), [3], "the child's fd 3");
  child.stdin!.write('x');
  await once(child, 'close');
});

leaks.check();
