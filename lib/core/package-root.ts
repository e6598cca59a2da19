/**
 * The package root: the nearest directory above this file whose package.json
 * names p2pdma. This file sits two levels below it (lib/core/, dist/core/);
 * the guest tests, compiled into dist/guest-tests/, and the QEMU harness,
 * compiled into dist/harness/, deeper. The addon loader, the harness and the
 * guest tests all find the project through this.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const packageRoot = findPackageRoot(__dirname);

function findPackageRoot(from: string): string {
  for (let dir = path.resolve(from, '..'); ; dir = path.dirname(dir)) {
    try {
      if (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).name === 'p2pdma') return dir;
    } catch {
      // no package.json here: keep looking
    }
    if (dir === path.dirname(dir)) return path.resolve(from, '..', '..');
  }
}
