/**
 * test/guest/c/p2p_mr_split.c for issue 26's v2 defect 4: an rxe MR on
 * device memory, used before and after a partial mprotect() and madvise()
 * split the mapping under it (the pieces of a VM_SPECIAL mapping never
 * merge back).
 */
import { spawnSync } from 'node:child_process';
import { guestProgram } from './guest-c';

/** The program, or undefined if it does not build. */
export function splitProgram(): string | undefined {
  return guestProgram('p2p_mr_split');
}

/** PAGES for the program: the splits touch pages 4-5 and 10-11. */
export const SPLIT_PAGES = 16;

/**
 * What p2p_mr_split prints. An operation is 'ok', a work completion status,
 * 'timeout', 'mismatch' (completed with the wrong data) or an errno name.
 */
export interface Split {
  reg_mr: string;
  write_before?: string;
  /** VMAs over the range after the splits: 5 when both split it. */
  vmas_after?: number;
  write_after?: string;
  read_after?: string;
  /** Registering pages 0-3, one piece. */
  reg_piece?: string;
  /** Registering all the pages again, across the pieces. */
  reg_whole?: string;
  dereg_mr?: string;
}

/** Runs it on `target` (a file to map, or vfio:BDF for BAR 2) and parses its line. */
export function runSplit(bin: string, target: string): Split {
  const r = spawnSync(bin, [target, String(SPLIT_PAGES)], { encoding: 'utf8', timeout: 120_000 });
  const line = r.stdout.trim().split('\n')[0] ?? '';
  try {
    const out = JSON.parse(line) as Split & { error?: string };
    if (out.error === undefined) return out;
  } catch {
    // not JSON: reported below
  }
  throw new Error(`p2p_mr_split ${target}: exit ${r.status} signal ${r.signal}: ${r.stdout}${r.stderr}`);
}
