/*
 * The control channel of a two-node bench script (p2pdma bench --nodes 2):
 * JSON lines over TCP on the fabric, node b listening, node a connecting
 * (b may boot later: a retries). What the measured transport must not be
 * trusted with travels here: "the server listens", "the MR is at ...",
 * "stop the clock". The test suite's twin is test/guest/nodes/peer.ts.
 */
'use strict';
const net = require('node:net');

const role = process.env.P2PDMA_NODE_ROLE;
const NODE_ADDR = process.env.P2PDMA_NODE_ADDR ?? '';
const PEER_ADDR = process.env.P2PDMA_PEER_ADDR ?? '';

class Control {
  constructor(socket) {
    this.socket = socket;
    this.lines = [];
    this.waiters = [];
    this.ended = undefined;
    let partial = '';
    socket.setEncoding('utf8');
    socket.setNoDelay(true);
    socket.on('data', (chunk) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop();
      for (const l of lines) {
        const w = this.waiters.shift();
        if (w) w(l);
        else this.lines.push(l);
      }
    });
    const end = (e) => {
      this.ended ??= e ?? new Error('the peer closed the control channel');
      for (const w of this.waiters.splice(0)) w(this.ended);
    };
    socket.on('error', end);
    socket.on('close', () => end());
  }

  /** The channel on `port`: b listens, a connects. */
  static async open(port, timeoutMs = 180_000) {
    if (role === 'b') {
      const server = net.createServer();
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, NODE_ADDR, resolve);
      });
      let timer;
      try {
        const socket = await Promise.race([
          new Promise((resolve) => server.once('connection', resolve)),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`node a did not connect to ${NODE_ADDR}:${port}`)), timeoutMs);
          }),
        ]);
        return new Control(socket);
      } finally {
        clearTimeout(timer);
        server.close();
      }
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise((resolve, reject) => {
          const s = net.connect(port, PEER_ADDR, () => resolve(s));
          s.once('error', reject);
        });
        return new Control(socket);
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`cannot reach node b at ${PEER_ADDR}:${port}: ${e.message}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  send(msg) {
    this.socket.write(`${JSON.stringify(msg, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
  }

  async expect(type) {
    let line = this.lines.shift();
    if (line === undefined) line = this.ended ?? (await new Promise((r) => this.waiters.push(r)));
    if (line instanceof Error) throw line;
    const m = JSON.parse(line);
    if (m.type !== type) throw new Error(`expected a '${type}' message from the peer, got ${line}`);
    return m;
  }

  close() {
    this.socket.end();
  }
}

module.exports = { Control, role, NODE_ADDR, PEER_ADDR };
