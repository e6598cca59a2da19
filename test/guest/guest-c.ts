/**
 * The guest tests' C programs (test/guest/c/): prebuilt by
 * `make -C test/guest/c OUT=build/guest-c`, else built into /tmp on use.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../../lib/core/package-root';

/** The path of test/guest/c/`name`.c built, or undefined if it does not build. */
export function guestProgram(name: string): string | undefined {
  const source = path.join(packageRoot, `test/guest/c/${name}.c`);
  const prebuilt = path.join(packageRoot, `build/guest-c/${name}`);
  try {
    if (fs.statSync(prebuilt).mtimeMs >= fs.statSync(source).mtimeMs) return prebuilt;
  } catch {
    // not built: build it below
  }
  const out = fs.mkdtempSync('/tmp/guest-c-');
  const r = spawnSync('make', ['-s', '-C', path.dirname(source), `OUT=${out}`, `${out}/${name}`], { encoding: 'utf8' });
  return r.status === 0 ? path.join(out, name) : undefined;
}
