/**
 * The kernel log by sequence number (/dev/kmsg): what the kernel said since
 * a mark, unaffected by the ring wrapping or by other files' lines, which
 * dmesg line counts are not.
 */
import * as fs from 'node:fs';

interface Record {
  seq: number;
  text: string;
}

function records(): Record[] {
  const out: Record[] = [];
  const fd = fs.openSync('/dev/kmsg', fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const buf = Buffer.alloc(8192);
  try {
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') break;
        if (code === 'EPIPE') continue; // overwritten while we read: the next one follows
        throw e;
      }
      const line = buf.toString('utf8', 0, n);
      const semi = line.indexOf(';');
      out.push({ seq: Number(line.split(',')[1]), text: line.slice(semi + 1).split('\n')[0] });
    }
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

/** The sequence number of the last record now. */
export function kmsgMark(): number {
  const all = records();
  return all.length > 0 ? all[all.length - 1].seq : -1;
}

/** The messages logged after `mark`. */
export function kmsgSince(mark: number): string[] {
  return records().filter((r) => r.seq > mark).map((r) => r.text);
}
