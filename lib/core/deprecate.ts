/**
 * Old call forms kept for one release (CHANGELOG.md): each warns once per
 * process, as Node's own deprecations do, with a code users can
 * `--no-deprecation` or filter on.
 */
const warned = new Set<string>();

/** @internal Emits `message` as a DeprecationWarning with `code`, once per process. */
export function deprecated(code: string, message: string): void {
  if (warned.has(code)) return;
  warned.add(code);
  process.emitWarning(message, { type: 'DeprecationWarning', code });
}
