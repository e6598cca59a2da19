/**
 * The host's end of the guest's control port. A guest test writes one QMP
 * command per line (JSON) to its virtio-serial port `org.p2pdma.host`; this
 * relay runs it on QEMU's monitor and writes the answer back as one line.
 *
 * Only what tests need passes (device_add, device_del, query-pci): the guest
 * must not be able to stop or reconfigure the machine that judges it.
 * device_del answers only once QEMU reports the device gone (DEVICE_DELETED,
 * after the guest's pciehp powered the slot off), so a test waits on the
 * answer instead of polling sysfs.
 */
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export const ALLOWED_COMMANDS: ReadonlySet<string> = new Set(['device_add', 'device_del', 'query-pci']);

/** How long device_del may take: pciehp waits 5 s for a cancel, then powers off. */
const DEVICE_DELETED_TIMEOUT_MS = 60_000;

interface QmpMessage {
  id?: number;
  return?: unknown;
  error?: { class: string; desc: string };
  event?: string;
  data?: Record<string, unknown>;
  QMP?: unknown;
}

/** Connects to a unix socket that QEMU creates shortly after it starts. */
async function connectWhenReady(path: string, signal: AbortSignal): Promise<net.Socket> {
  for (;;) {
    signal.throwIfAborted();
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(path);
        s.once('connect', () => {
          s.off('error', reject);
          // After connecting, a peer that dies (QEMU killed) surfaces as
          // ECONNRESET: 'close' follows, and an unhandled 'error' would
          // crash the harness instead.
          s.on('error', () => {});
          resolve(s);
        });
        s.once('error', reject);
      });
    } catch {
      await sleep(50, undefined, { signal });
    }
  }
}

/** Splits a socket's data into lines and calls `onLine` for each. */
function onLines(socket: net.Socket, onLine: (line: string) => void): void {
  let pending = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line) onLine(line);
    }
  });
}

/**
 * A QMP client: commands by id, events emitted as 'event', and every line as
 * 'raw' (JSON.parse rounds QEMU's u64 fields, which some readers need whole).
 */
export class Qmp extends EventEmitter {
  #socket: net.Socket;
  #nextId = 1;
  #waiting = new Map<number, (m: QmpMessage) => void>();

  private constructor(socket: net.Socket) {
    super();
    this.#socket = socket;
    onLines(socket, (line) => {
      this.emit('raw', line);
      let m: QmpMessage;
      try {
        m = JSON.parse(line);
      } catch {
        return;
      }
      if (m.event) this.emit('event', m);
      else if (m.id !== undefined) {
        this.#waiting.get(m.id)?.(m);
        this.#waiting.delete(m.id);
      }
    });
    socket.on('close', () => {
      for (const done of this.#waiting.values()) done({ error: { class: 'GenericError', desc: 'QMP connection closed' } });
      this.#waiting.clear();
    });
  }

  static async connect(path: string, signal: AbortSignal): Promise<Qmp> {
    const qmp = new Qmp(await connectWhenReady(path, signal));
    const answer = await qmp.execute('qmp_capabilities');
    if (answer.error) throw new Error(`QMP: ${answer.error.desc}`);
    return qmp;
  }

  execute(command: string, args?: unknown): Promise<QmpMessage> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.#socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** Runs one guest request; the answer is what goes back to the guest. */
async function serve(qmp: Qmp, request: unknown): Promise<object> {
  const r = request as { execute?: unknown; arguments?: Record<string, unknown> };
  if (typeof r?.execute !== 'string' || !ALLOWED_COMMANDS.has(r.execute)) {
    return { error: { class: 'GenericError', desc: `not allowed from the guest: ${String(r?.execute)} (allowed: ${[...ALLOWED_COMMANDS].join(', ')})` } };
  }
  if (r.execute !== 'device_del') {
    const m = await qmp.execute(r.execute, r.arguments);
    return m.error ? { error: m.error } : { return: m.return };
  }
  const id = r.arguments?.id;
  let onEvent: (m: QmpMessage) => void = () => {};
  const deleted = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), DEVICE_DELETED_TIMEOUT_MS);
    onEvent = (m) => {
      if (m.event === 'DEVICE_DELETED' && m.data?.device === id) {
        clearTimeout(timer);
        resolve(true);
      }
    };
    qmp.on('event', onEvent);
  });
  try {
    const m = await qmp.execute('device_del', r.arguments);
    if (m.error) return { error: m.error };
    if (!(await deleted)) {
      return { error: { class: 'GenericError', desc: `device_del ${String(id)}: no DEVICE_DELETED within ${DEVICE_DELETED_TIMEOUT_MS / 1000} s (did the guest's pciehp take the slot?)` } };
    }
    return { return: {} };
  } finally {
    qmp.off('event', onEvent);
  }
}

/**
 * Relays the guest's requests until `signal` aborts (the run ended). Errors
 * go to `log`; they never fail the run by themselves: a guest test that
 * needed the relay fails on its own.
 */
export async function relayGuestRequests(
  qmpPath: string,
  portPath: string,
  signal: AbortSignal,
  log: (line: string) => void,
): Promise<void> {
  let qmp: Qmp | undefined;
  let port: net.Socket | undefined;
  try {
    qmp = await Qmp.connect(qmpPath, signal);
    port = await connectWhenReady(portPath, signal);
    const guestPort = port;
    let queue = Promise.resolve();
    onLines(guestPort, (line) => {
      queue = queue.then(async () => {
        let answer: object;
        try {
          answer = await serve(qmp!, JSON.parse(line));
        } catch (e) {
          answer = { error: { class: 'GenericError', desc: `bad request: ${(e as Error).message}` } };
        }
        guestPort.write(`${JSON.stringify(answer)}\n`);
      });
    });
    await new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      signal.addEventListener('abort', () => resolve(), { once: true });
      guestPort.once('close', () => resolve());
    });
  } catch (e) {
    if (!signal.aborted) log(`host control relay: ${(e as Error).message}`);
  } finally {
    port?.destroy();
    qmp?.close();
  }
}
