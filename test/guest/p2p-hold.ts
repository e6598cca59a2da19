/**
 * test/guest/c/p2p_mr_hold.c for the kernel series' guest tests: register
 * an rxe MR on a mapping (as another user, under a memlock limit), or hold
 * one while the test unplugs the memory behind it.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as readline from 'node:readline';
import { guestProgram } from './guest-c';

/** The program: prebuilt by `make -C test/guest/c`, else built into /tmp now. */
export function holdProgram(): string | undefined {
  return guestProgram('p2p_mr_hold');
}

/** What p2p_mr_hold prints after ibv_reg_mr(). */
export interface Reg {
  reg_mr: string;
  errno: number;
  uid: number;
  vmpin_before_kb: number;
  vmpin_after_kb: number;
}

/** Register once and let go: the JSON line. */
export function registerOnce(bin: string, args: string[]): Reg {
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 120_000 });
  const line = r.stdout.trim().split('\n')[0] ?? '';
  try {
    return JSON.parse(line) as Reg;
  } catch {
    throw new Error(`p2p_mr_hold ${args.join(' ')}: exit ${r.status} signal ${r.signal}: ${r.stdout}${r.stderr}`);
  }
}

/** An MR held by a running p2p_mr_hold -w, released by release(). */
export class HeldMr {
  readonly reg: Promise<Reg>;
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterableIterator<string>;

  constructor(bin: string, target: string, bytes: number) {
    this.child = spawn(bin, ['-w', target, String(bytes)]);
    this.lines = readline.createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
    this.reg = this.next().then((line) => line as unknown as Reg);
  }

  private async next(): Promise<Record<string, unknown>> {
    const { value, done } = await this.lines.next();
    if (done) throw new Error('p2p_mr_hold exited early');
    return JSON.parse(value) as Record<string, unknown>;
  }

  /** Deregister the MR: what ibv_dereg_mr() said, and the exit status. */
  async release(): Promise<{ dereg_mr: string; status: number | null }> {
    const exited = new Promise<number | null>((resolve) => this.child.once('exit', (code) => resolve(code)));
    this.child.stdin.end('go\n');
    const line = await this.next();
    return { dereg_mr: String(line.dereg_mr), status: await exited };
  }
}
