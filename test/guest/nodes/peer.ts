/**
 * What a two-node test file (vm run --nodes 2, scripts/test-nodes.sh) needs:
 * its role, the addresses, and a control channel to the same file running
 * on the other node: JSON lines over TCP on the fabric, B listening and A
 * connecting (B may boot later: A retries). The control channel carries what
 * the RDMA under test must not be trusted with: ordering ("my MR is
 * registered", "check it now") and verdicts.
 */
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { guest } from '../helpers';

export type Role = 'a' | 'b';
export const role = process.env.P2PDMA_NODE_ROLE as Role | undefined;
export const NODE_ADDR = process.env.P2PDMA_NODE_ADDR ?? '';
export const PEER_ADDR = process.env.P2PDMA_PEER_ADDR ?? '';
/** Test options of a two-node test: skipped, with the reason, in one guest or on the host. */
export const twoNodes: { skip: string | false } = guest.skip
  ? guest
  : { skip: role === 'a' || role === 'b' ? false : 'runs only in a two-node run (vm run --nodes 2, make test-nodes)' };

/** A message between the nodes: any JSON; bigints travel as strings. */
export type Message = Record<string, unknown>;

export class Control {
  #socket: net.Socket;
  #lines: string[] = [];
  #waiters: ((line: string | Error) => void)[] = [];
  #ended: Error | undefined;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    let partial = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      for (const l of lines) this.#deliver(l);
    });
    const end = (e?: Error) => {
      this.#ended ??= e ?? new Error('the peer closed the control channel');
      for (const w of this.#waiters.splice(0)) w(this.#ended);
    };
    socket.on('error', end);
    socket.on('close', () => end());
  }

  #deliver(line: string): void {
    const w = this.#waiters.shift();
    if (w) w(line);
    else this.#lines.push(line);
  }

  /**
   * The channel of the test file listening/connecting on `port` (one port
   * per file: guest-suite.sh runs two files at once on each node).
   */
  static async open(port: number, timeoutMs = 120_000): Promise<Control> {
    if (role === 'b') {
      const server = net.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, NODE_ADDR, resolve);
      });
      // A pending timer would keep node alive after the tests: cancelled.
      const timer = new AbortController();
      try {
        const socket = await Promise.race([
          new Promise<net.Socket>((resolve) => server.once('connection', resolve)),
          sleep(timeoutMs, undefined, { signal: timer.signal }).then(() => {
            throw new Error(`node a did not connect to ${NODE_ADDR}:${port} within ${timeoutMs / 1000} s`);
          }),
        ]);
        return new Control(socket);
      } finally {
        timer.abort();
        server.close();
      }
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(port, PEER_ADDR, () => resolve(s));
          s.once('error', reject);
        });
        return new Control(socket);
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`cannot reach node b at ${PEER_ADDR}:${port}: ${(e as Error).message}`);
        await sleep(250);
      }
    }
  }

  send(msg: Message): void {
    this.#socket.write(`${JSON.stringify(msg, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
  }

  /** The next message from the peer (rejects when the channel ends). */
  async next(): Promise<Message> {
    const line = this.#lines.shift() ?? (this.#ended ? this.#ended : await new Promise<string | Error>((r) => this.#waiters.push(r)));
    if (line instanceof Error) throw line;
    return JSON.parse(line) as Message;
  }

  /** The next message, which must be of `type` (a protocol slip fails loudly). */
  async expect(type: string): Promise<Message> {
    const m = await this.next();
    if (m.type !== type) throw new Error(`expected a '${type}' message from the peer, got ${JSON.stringify(m)}`);
    return m;
  }

  /** Both nodes reach `name` before either goes on. */
  async sync(name: string): Promise<void> {
    this.send({ type: 'sync', name });
    const m = await this.expect('sync');
    if (m.name !== name) throw new Error(`out of step with the peer: here at '${name}', the peer at '${String(m.name)}'`);
  }

  close(): void {
    this.#socket.end();
  }
}
