/**
 * The guest's end of the host control port (see host-control.ts): a guest
 * test asks the host for a QMP command, e.g. to hot-unplug a PCIe device
 * with device_del and plug it back with device_add.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HOST_CONTROL_PORT } from './qemu-args';

/** A QMP error answer, thrown as an Error with the QMP class as `code`. */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly code: string,
    desc: string,
  ) {
    super(`${command}: ${desc}`);
    this.name = 'QmpError';
  }
}

/** The port's device node: no udev in the guest, so find it by name in sysfs. */
export function hostControlDevice(): string {
  const dir = '/sys/class/virtio-ports';
  for (const port of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    // Consoles (hvc) are ports without a name.
    const nameFile = path.join(dir, port, 'name');
    if (fs.existsSync(nameFile) && fs.readFileSync(nameFile, 'utf8').trim() === HOST_CONTROL_PORT) return `/dev/${port}`;
  }
  throw new Error(`no virtio port named ${HOST_CONTROL_PORT}: not in a p2pdma guest?`);
}

let queue: Promise<unknown> = Promise.resolve();

/**
 * Runs `command` on the host's QEMU monitor and resolves with its `return`
 * value. Requests go one at a time, in order.
 */
export function hostQmp(command: string, args?: Record<string, unknown>): Promise<unknown> {
  const run = queue.then(() => request(command, args));
  queue = run.catch(() => undefined);
  return run;
}

async function request(command: string, args?: Record<string, unknown>): Promise<unknown> {
  const file = await fs.promises.open(hostControlDevice(), 'r+');
  try {
    await file.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
    let text = '';
    const chunk = Buffer.alloc(4096);
    while (!text.includes('\n')) {
      const { bytesRead } = await file.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) throw new Error(`${command}: the host closed the control port`);
      text += chunk.toString('utf8', 0, bytesRead);
    }
    const answer = JSON.parse(text.slice(0, text.indexOf('\n'))) as { return?: unknown; error?: { class: string; desc: string } };
    if (answer.error) throw new QmpError(command, answer.error.class, answer.error.desc);
    return answer.return;
  } finally {
    await file.close();
  }
}
