/**
 * Node B's side of "a peer that disappears" (nodes/rdma.test.ts), as its own
 * process so the test can SIGKILL it: accepts one rdma_cm connection on
 * argv[2] (port), registers 1 MiB for remote writes and reads, prints
 * {"addr","rkey","length"} as one JSON line, then waits to be killed.
 */
import { Rdma } from '../../../lib';

async function main(): Promise<void> {
  const listener = Rdma.listen({ address: process.env.P2PDMA_NODE_ADDR!, port: Number(process.argv[2]) });
  process.stdout.write(`${JSON.stringify({ listening: listener.port })}\n`);
  const conn = await listener.accept();
  const mr = await conn.pd.allocMemory(1 << 20, ['local-write', 'remote-write', 'remote-read']);
  process.stdout.write(`${JSON.stringify({ addr: mr.addr.toString(), rkey: mr.rkey, length: 1 << 20 })}\n`);
  setInterval(() => {}, 1 << 30);
}

main().catch((e: Error) => {
  process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
