/**
 * The order of `p2pdma bench`'s runs: every kernel once per round, rounds
 * one after another (A B A B ...), so drift of the machine over the run
 * (thermal, other load, page cache) falls on every kernel alike instead of
 * on whichever ran last.
 */
export interface Run {
  round: number;
  kernel: string;
}

export function schedule(kernels: readonly string[], rounds: number): Run[] {
  if (kernels.length === 0) throw new RangeError('no kernels to run');
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`rounds must be a positive integer, got ${rounds}`);
  const runs: Run[] = [];
  for (let round = 0; round < rounds; round++) for (const kernel of kernels) runs.push({ round, kernel });
  return runs;
}
