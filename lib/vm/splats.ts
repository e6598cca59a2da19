/**
 * Kernel reports that fail a guest run even when the guest command passed:
 * KASAN, lockdep, kmemleak, BUG, WARN, oopses and panics.
 */

// Reports start a log line (after the printk timestamp, if any), which keeps
// informational lines such as "Speculative Return Stack Overflow: WARNING:
// ..." (AMD CPUs at boot) from counting.
const START = String.raw`(?:^|\]\s*)`;
const SPLAT_PATTERNS: readonly RegExp[] = [
  new RegExp(`${START}BUG: `),
  /\bkernel BUG at /,
  new RegExp(`${START}WARNING: `), // WARN_ON, lockdep ("WARNING: possible circular locking ...")
  /\bKASAN: /,
  /\bUBSAN: /,
  /\bOops: /,
  /\bgeneral protection fault\b/,
  /\bKernel panic - /,
  /\bINFO: task .* blocked for more than/,
  /\bINFO: possible (recursive|circular|irq lock)/,
  /\bunreferenced object 0x/, // kmemleak
];

export interface Splat {
  /** 1-based line number in the scanned text. */
  line: number;
  text: string;
}

/** Lines of a kernel log that report a kernel bug. */
export function findSplats(log: string): Splat[] {
  const found: Splat[] = [];
  log.split('\n').forEach((text, i) => {
    if (SPLAT_PATTERNS.some((re) => re.test(text))) found.push({ line: i + 1, text: text.trimEnd() });
  });
  return found;
}
