/**
 * Which processes hold which dma-bufs, from /proc alone (Android's
 * dmabuf_dump, for a plain Linux box): every fd on a dma-buf
 * (/proc/<pid>/fd, fdinfo for size, exporter and name) and every mapping of
 * one (/proc/<pid>/maps, found even after the fd was closed), grouped by
 * buffer (its inode) and by exporter. Not /sys/kernel/dmabuf/buffers:
 * upstream removed those statistics. No native code.
 *
 * Other users' processes need root (or CAP_SYS_PTRACE) to read; those are
 * listed in `unreadable`, not guessed at.
 */
import * as fs from 'node:fs';

import { parseDmaBufFdinfo } from './dmabuf-fdinfo';
import { invalidArgType, outOfRange, validateObject } from '../core/errors';

/** One process's hold on one dma-buf. */
export interface DmaBufSharer {
  pid: number;
  /** The process's name (/proc/<pid>/comm). */
  comm: string;
  /** Its fds on the buffer. */
  fds: number[];
  /** Bytes of the buffer it has mapped (0 if none). */
  mappedBytes: number;
}

/** One dma-buf, seen from every process that holds it. */
export interface InspectedDmaBuf {
  inode: number;
  /** Bytes. For a buffer only mapped (no process has an fd), the largest mapped extent. */
  size: number;
  /** `'system'`, `'udmabuf'`, `'drm'`...; undefined when only mappings were seen. */
  exporter: string | undefined;
  /** DMA_BUF_SET_NAME's name, if any. */
  name: string | undefined;
  sharers: DmaBufSharer[];
}

export interface ExporterTotal {
  exporter: string;
  buffers: number;
  bytes: number;
}

export interface DmaBufReport {
  /** By exporter, then inode. */
  buffers: InspectedDmaBuf[];
  /** Per exporter (undefined exporters as '?'), largest first. */
  exporters: ExporterTotal[];
  /** Every buffer once, however many processes share it. */
  total: { buffers: number; bytes: number };
  /** Pids whose fds or maps could not be read (permissions), sorted. */
  unreadable: number[];
}

export interface DmaBufsOptions {
  /** Only this process. Default: every process. */
  pid?: number;
  /** The proc mount to read. Default '/proc'. */
  procRoot?: string;
}

interface Builder {
  inode: number;
  size: number;
  exporter: string | undefined;
  name: string | undefined;
  sharers: Map<number, DmaBufSharer>;
}

// 'anon_inode:dmabuf' before 5.x named dentries; '/dmabuf:<name>' since.
const isDmaBufLink = (l: string) => l.startsWith('/dmabuf:') || l === 'anon_inode:dmabuf';

function readText(p: string): string | undefined {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
}

/** Lists the dma-bufs held by every process (or one), grouped by buffer. */
export function dmabufs(options: DmaBufsOptions = {}): DmaBufReport {
  validateObject(options, 'options', dmabufs);
  const { pid, procRoot = '/proc' } = options;
  if (pid !== undefined) {
    if (typeof pid !== 'number') throw invalidArgType('options.pid', 'of type number', pid, dmabufs);
    if (!Number.isInteger(pid) || pid <= 0) throw outOfRange('options.pid', 'an integer > 0', pid, dmabufs);
  }
  if (typeof procRoot !== 'string') throw invalidArgType('options.procRoot', 'of type string', procRoot, dmabufs);
  const pids = pid !== undefined ? [pid] : fs.readdirSync(procRoot).filter((n) => /^\d+$/.test(n)).map(Number);
  const byInode = new Map<number, Builder>();
  const unreadable: number[] = [];

  const sharer = (b: Builder, p: number, comm: string): DmaBufSharer => {
    let s = b.sharers.get(p);
    if (s === undefined) b.sharers.set(p, (s = { pid: p, comm, fds: [], mappedBytes: 0 }));
    return s;
  };
  const buffer = (inode: number): Builder => {
    let b = byInode.get(inode);
    if (b === undefined) byInode.set(inode, (b = { inode, size: 0, exporter: undefined, name: undefined, sharers: new Map() }));
    return b;
  };

  for (const p of pids) {
    const dir = `${procRoot}/${p}`;
    const comm = (readText(`${dir}/comm`) ?? '').trim();
    let fds: string[];
    try {
      fds = fs.readdirSync(`${dir}/fd`);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') unreadable.push(p);
      else if (pid !== undefined && code === 'ENOENT') throw e;
      continue; // gone meanwhile, or a kernel thread
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = fs.readlinkSync(`${dir}/fd/${fd}`);
      } catch {
        continue;
      }
      if (!isDmaBufLink(link)) continue;
      let ino = 0;
      try {
        ino = fs.statSync(`${dir}/fd/${fd}`).ino;
      } catch {
        // closed meanwhile: fdinfo (below) fails too
      }
      const info = parseDmaBufFdinfo(readText(`${dir}/fdinfo/${fd}`) ?? '', ino);
      if (info === undefined) continue;
      const b = buffer(info.inode);
      b.size = info.size;
      b.exporter = info.exporter;
      b.name = info.name;
      sharer(b, p, comm).fds.push(Number(fd));
    }
    const maps = readText(`${dir}/maps`);
    if (maps === undefined) continue;
    for (const line of maps.split('\n')) {
      // start-end perms offset dev inode path
      const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ (\d+)\s+(.*)$/.exec(line);
      if (m === null || !isDmaBufLink(m[5])) continue;
      const bytes = Number(BigInt(`0x${m[2]}`) - BigInt(`0x${m[1]}`));
      const end = Number(BigInt(`0x${m[3]}`)) + bytes;
      const b = buffer(Number(m[4]));
      if (b.exporter === undefined && b.size < end) b.size = end;
      if (b.name === undefined && m[5].startsWith('/dmabuf:') && m[5].length > 8) b.name = m[5].slice(8);
      sharer(b, p, comm).mappedBytes += bytes;
    }
  }

  const buffers: InspectedDmaBuf[] = [...byInode.values()]
    .map((b) => ({ inode: b.inode, size: b.size, exporter: b.exporter, name: b.name, sharers: [...b.sharers.values()].sort((x, y) => x.pid - y.pid) }))
    // Known exporters by name, then buffers only seen mapped; then by inode.
    .sort((x, y) => Number(x.exporter === undefined) - Number(y.exporter === undefined) || (x.exporter ?? '').localeCompare(y.exporter ?? '') || x.inode - y.inode);
  const totals = new Map<string, ExporterTotal>();
  for (const b of buffers) {
    const key = b.exporter ?? '?';
    const tot = totals.get(key) ?? { exporter: key, buffers: 0, bytes: 0 };
    tot.buffers++;
    tot.bytes += b.size;
    totals.set(key, tot);
  }
  return {
    buffers,
    exporters: [...totals.values()].sort((x, y) => y.bytes - x.bytes || x.exporter.localeCompare(y.exporter)),
    total: { buffers: buffers.length, bytes: buffers.reduce((n, b) => n + b.size, 0) },
    unreadable: unreadable.sort((x, y) => x - y),
  };
}

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

/** The report as the text table `p2pdma dmabuf ls` prints. */
export function formatDmaBufReport(r: DmaBufReport): string {
  const rows = [['EXPORTER', 'INODE', 'SIZE', 'NAME', 'HELD BY (pid:comm fds, mapped)']];
  for (const b of r.buffers) {
    const held = b.sharers
      .map((s) => `${s.pid}:${s.comm}${s.fds.length ? ` fd ${s.fds.join(',')}` : ''}${s.mappedBytes ? ` map ${human(s.mappedBytes)}` : ''}`)
      .join('; ');
    rows.push([b.exporter ?? '?', String(b.inode), human(b.size), b.name ?? '-', held]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const lines = rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd());
  lines.push('');
  for (const e of r.exporters) lines.push(`${e.exporter}: ${e.buffers} buffer${e.buffers === 1 ? '' : 's'}, ${human(e.bytes)}`);
  lines.push(`total: ${r.total.buffers} buffer${r.total.buffers === 1 ? '' : 's'}, ${human(r.total.bytes)} (${r.total.bytes} bytes)`);
  if (r.unreadable.length > 0) lines.push(`not readable (run as root): pids ${r.unreadable.join(', ')}`);
  return `${lines.join('\n')}\n`;
}
