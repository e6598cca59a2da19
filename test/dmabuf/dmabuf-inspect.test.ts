// The dma-buf inspector on a made-up /proc (the host has no dma-bufs; the
// guest suite checks it against real processes): grouping by inode and
// exporter, sharers, mapped-only buffers, totals, unreadable processes.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { dmabufs, formatDmaBufReport } from '../../lib/dmabuf/dmabuf-inspect';
import { expectCode, repoRoot, TEST_PREFIX } from '../helpers';

interface FakeFd {
  fd: number;
  link: string;
  fdinfo?: string;
}

function fakeProc(procs: { pid: number; comm: string; fds: FakeFd[]; maps?: string[]; noFdDir?: boolean }[]): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `${TEST_PREFIX}-proc-`));
  for (const p of procs) {
    const dir = path.join(root, String(p.pid));
    fs.mkdirSync(path.join(dir, 'fdinfo'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'comm'), `${p.comm}\n`);
    fs.writeFileSync(path.join(dir, 'maps'), (p.maps ?? []).map((l) => `${l}\n`).join(''));
    if (p.noFdDir) continue;
    fs.mkdirSync(path.join(dir, 'fd'));
    for (const f of p.fds) {
      fs.symlinkSync(f.link, path.join(dir, 'fd', String(f.fd)));
      if (f.fdinfo !== undefined) fs.writeFileSync(path.join(dir, 'fdinfo', String(f.fd)), f.fdinfo);
    }
  }
  fs.mkdirSync(path.join(root, 'self'));
  return root;
}

const info = (ino: number, size: number, exp: string, name?: string) =>
  `pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t${ino}\nsize:\t${size}\ncount:\t1\nexp_name:\t${exp}\n${name ? `name:\t${name}\n` : ''}`;

const root = fakeProc([
  {
    pid: 100,
    comm: 'camera',
    fds: [
      { fd: 5, link: '/dmabuf:frames', fdinfo: info(900, 65536, 'system', 'frames') },
      { fd: 6, link: '/dmabuf:', fdinfo: info(901, 4096, 'udmabuf') },
      { fd: 7, link: '/memfd:x (deleted)' },
    ],
    maps: ['7f0000000000-7f0000010000 rw-s 00000000 00:0f 900                        /dmabuf:frames'],
  },
  {
    pid: 200,
    comm: 'encoder',
    fds: [{ fd: 3, link: '/dmabuf:frames', fdinfo: info(900, 65536, 'system', 'frames') }],
    // A buffer mapped after its fd was closed: only the mapping tells.
    maps: ['7f1000000000-7f1000002000 rw-s 00002000 00:0f 950                        /dmabuf:'],
  },
  { pid: 300, comm: 'other', fds: [{ fd: 1, link: '/dev/null' }] },
]);

t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));

t.test('buffers are grouped by inode with every sharer, their fds and mapped bytes', async (t) => {
  const r = dmabufs({ procRoot: root });
  t.same(r.buffers, [
    {
      inode: 900,
      size: 65536,
      exporter: 'system',
      name: 'frames',
      sharers: [
        { pid: 100, comm: 'camera', fds: [5], mappedBytes: 65536 },
        { pid: 200, comm: 'encoder', fds: [3], mappedBytes: 0 },
      ],
    },
    { inode: 901, size: 4096, exporter: 'udmabuf', name: undefined, sharers: [{ pid: 100, comm: 'camera', fds: [6], mappedBytes: 0 }] },
    { inode: 950, size: 16384, exporter: undefined, name: undefined, sharers: [{ pid: 200, comm: 'encoder', fds: [], mappedBytes: 8192 }] },
  ]);
});

t.test('totals count each buffer once, per exporter and overall', async (t) => {
  const r = dmabufs({ procRoot: root });
  t.same(r.exporters, [
    { exporter: 'system', buffers: 1, bytes: 65536 },
    { exporter: '?', buffers: 1, bytes: 16384 },
    { exporter: 'udmabuf', buffers: 1, bytes: 4096 },
  ]);
  t.same(r.total, { buffers: 3, bytes: 65536 + 4096 + 16384 });
  t.same(r.unreadable, []);
});

t.test('{ pid } restricts the walk to one process', async (t) => {
  const r = dmabufs({ procRoot: root, pid: 200 });
  t.same(r.buffers.map((b) => [b.inode, b.sharers.map((s) => s.pid)]), [[900, [200]], [950, [200]]]);
  t.throws(() => dmabufs({ procRoot: root, pid: 999 }), { code: 'ENOENT' }, 'a pid that does not exist');
  t.throws(() => dmabufs({ pid: 0 }), expectCode(RangeError, 'ERR_OUT_OF_RANGE'));
  t.throws(() => dmabufs({ pid: '1' as never }), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
  t.throws(() => dmabufs(null as never), expectCode(TypeError, 'ERR_INVALID_ARG_TYPE'));
});

t.test('the text table lists each buffer and the totals', async (t) => {
  const text = formatDmaBufReport(dmabufs({ procRoot: root }));
  t.match(text, /^EXPORTER\s+INODE\s+SIZE\s+NAME\s+HELD BY/);
  t.match(text, /system\s+900\s+64 KiB\s+frames\s+100:camera fd 5 map 64 KiB; 200:encoder fd 3/);
  t.match(text, /total: 3 buffers, 84 KiB \(86016 bytes\)/);
});

t.test('the real /proc of this host reads without error', async (t) => {
  const r = dmabufs();
  t.type(r.total.buffers, 'number');
  t.ok(r.buffers.every((b) => b.sharers.length > 0));
});

t.test('p2pdma dmabuf ls prints the table, --json the report', async (t) => {
  const cli = path.join(repoRoot, 'dist', 'cli.js');
  const text = spawnSync(process.execPath, [cli, 'dmabuf', 'ls', '--pid', String(process.pid)], { encoding: 'utf8' });
  t.equal(text.status, 0, text.stderr);
  t.match(text.stdout, /total: \d+ buffers?/);
  const json = spawnSync(process.execPath, [cli, 'dmabuf', 'ls', '--json', '--pid', String(process.pid)], { encoding: 'utf8' });
  t.equal(json.status, 0);
  t.same(Object.keys(JSON.parse(json.stdout)).sort(), ['buffers', 'exporters', 'total', 'unreadable']);
  const bad = spawnSync(process.execPath, [cli, 'dmabuf', 'rm'], { encoding: 'utf8' });
  t.equal(bad.status, 2);
  t.match(bad.stderr, /p2pdma dmabuf ls/);
});
