/**
 * test/guest/c/p2p_mr_split.c for issue 26's v2 defect 4: an rxe MR on
 * device memory, used before and after a partial mprotect() and madvise()
 * split the mapping under it (the pieces of a VM_SPECIAL mapping never
 * merge back).
 */
import { spawnSync } from 'node:child_process';
import type { Test } from 'tap';
import { guestProgram } from './guest-c';
import { kernelSeries } from './helpers';

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

/**
 * Runs the program on `target` and checks what the series does: v3's MR
 * works on over the pieces, v2's is dead (as run on 6.12 + kernel-patches/);
 * on both a new registration across the pieces is EFAULT. `what` names the
 * memory in the messages.
 */
export function checkSplit(t: Test, target: string, what: string): void {
  const bin = splitProgram();
  if (!t.ok(bin, 'built from test/guest/c/p2p_mr_split.c')) return;
  const r = runSplit(bin!, target);
  t.equal(r.reg_mr, 'ok', 'ibv_reg_mr of the mapping');
  t.equal(r.write_before, 'ok', `a WRITE lands in the ${what}`);
  t.equal(r.vmas_after, 5, 'mprotect of pages 4-5 there and back and madvise of pages 10-11 left five VMAs');
  if (kernelSeries === 'v3') {
    t.equal(r.write_after, 'ok', `a WRITE over all the pieces lands in the ${what}`);
    t.equal(r.read_after, 'ok', 'a READ over all the pieces reads it back');
  } else {
    // The defect, as 6.12 + kernel-patches/ shows it.
    t.equal(r.write_after, 'IBV_WC_REM_ACCESS_ERR', 'v2: the MR is dead, a WRITE is a remote access error');
    t.equal(r.read_after, 'IBV_WC_REM_ACCESS_ERR', 'v2: and so is a READ');
  }
  t.equal(r.reg_piece, 'ok', 'one piece registers');
  // What stays of the defect in v3: the range must lie in one VMA (vma_p2p_dma_buf()).
  t.equal(r.reg_whole, 'EFAULT', 'a new registration across the pieces is EFAULT');
  t.equal(r.dereg_mr, 'ok', 'ibv_dereg_mr');
}
