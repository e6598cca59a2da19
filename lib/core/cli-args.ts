/** What every command of the p2pdma command line does with bad arguments (lib/cli.ts, harness/cli.ts). */

export function fail(message: string, status = 2): never {
  process.stderr.write(`p2pdma: ${message}\n`);
  process.exit(status);
}

/** A positive integer option, or undefined when not given. */
export function int(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) fail(`--${name} wants a positive integer, got '${value}'`);
  return n;
}
