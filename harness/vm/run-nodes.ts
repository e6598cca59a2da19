/**
 * `vm run --nodes 2`: one command in two test guests on one network
 * (harness/vm/nodes.ts), each a full runVm() guest with its own NVMe pair,
 * rxe0 on the shared wire and its own kernel reports. The run fails if
 * either node fails; a node that fails, or still runs long after the other
 * ended, stops both, and every node's logs are kept.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { nodePlans, NodeRole } from './nodes';
import { runVm, VmOptions, VmResult } from './run';

export interface NodesOptions extends VmOptions {
  /** Environment of one node only, over `env` (vm run --node-env). */
  nodeEnv?: Partial<Record<NodeRole, Record<string, string>>>;
  /**
   * How long a node may still run once the other ended (default 300 s): the
   * two coordinate, so one left alone is waiting for a peer that is gone.
   */
  peerGraceSec?: number;
}

export interface NodesResult {
  ok: boolean;
  /** 0, or the first failed node's guest exit status (null when it reported none). */
  exitCode: number | null;
  /** Per node, in role order (a, b). */
  nodes: (VmResult & { role: NodeRole })[];
  /** The run's directory: node-a/ and node-b/ (removed on success unless keep). */
  resultsDir: string;
  seconds: number;
}

/** Each line written to it goes to `out` prefixed with `[role] `. */
function prefixed(out: NodeJS.WritableStream, prefix: string): Writable {
  let partial = '';
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop()!;
      if (lines.length) out.write(lines.map((l) => `${prefix}${l}\n`).join(''));
      done();
    },
    final(done) {
      if (partial) out.write(`${prefix}${partial}\n`);
      done();
    },
  });
}

export async function runNodes(o: NodesOptions): Promise<NodesResult> {
  const log = o.log ?? ((l: string) => process.stderr.write(`[vm] ${l}\n`));
  if (o.shell) throw new TypeError('vm shell does not support --nodes');
  if (o.rdma === 'pvrdma') throw new TypeError('--nodes does not support --rdma pvrdma');
  const started = Date.now();
  const runDir = fs.mkdtempSync(path.join(process.env.P2PDMA_VM_TMP ?? os.tmpdir(), 'p2pdma-nodes-'));
  const out = o.output ?? process.stdout;
  const graceSec = o.peerGraceSec ?? 300;
  const stop = new AbortController();
  let grace: NodeJS.Timeout | undefined;

  const runs = nodePlans(runDir).map(async (plan) => {
    const output = prefixed(out, `[${plan.role}] `);
    const result = await runVm({
      ...o,
      // Both guests share 2 host cores under TCG: one vCPU each unless asked.
      cpus: o.cpus ?? 1,
      env: { ...o.env, ...plan.env, ...o.nodeEnv?.[plan.role] },
      fabric: plan.fabric,
      resultsDir: plan.resultsDir,
      signal: stop.signal,
      // Removed below, together, once both passed.
      keep: true,
      output,
      log: (l) => log(`${plan.role}: ${l}`),
    });
    output.end();
    if (!result.ok) stop.abort(`node ${plan.role} failed (${result.reason})`);
    else if (!grace) {
      grace = setTimeout(() => stop.abort(`node ${plan.role} ended ${graceSec} s before`), graceSec * 1000);
    }
    return { ...result, role: plan.role };
  });
  const nodes = await Promise.all(runs);
  clearTimeout(grace);

  const ok = nodes.every((n) => n.ok);
  const seconds = (Date.now() - started) / 1000;
  if (ok) {
    log(`both nodes passed in ${seconds.toFixed(1)} s`);
    if (!o.keep) fs.rmSync(runDir, { recursive: true, force: true });
  } else {
    log(`FAILED: ${nodes.filter((n) => !n.ok).map((n) => `node ${n.role}: ${n.reason}`).join('; ')}`);
    log(`kept ${runDir} (node-a/, node-b/: console.log, dmesg, kmemleak, qemu.stderr)`);
  }
  const failed = nodes.find((n) => !n.ok);
  return { ok, exitCode: failed ? failed.exitCode : 0, nodes, resultsDir: runDir, seconds };
}
