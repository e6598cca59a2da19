// Bundles each compiled guest test (dist/guest-tests/test/guest/*.test.js)
// with tap and the library into one file beside it, NAME.test.bundle.js,
// which scripts/guest-suite.sh runs when present.
//
// Why: in the DEBUG guest (TCG, KASAN, root over 9p) every file system call
// is slow, and loading tap alone resolves and reads ~270 modules (about 1,900
// stat and open calls): 10 s of a 14 s test file. One bundle is one file.
// The bundle sits in the same directory, so __dirname-relative paths (worker
// scripts, the unbundled lib for child processes, the package root) resolve
// as they do for the unbundled file.
import { build } from 'esbuild';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const dirs = ['dist/guest-tests/test/guest', 'dist/guest-tests/test/guest/pvrdma', 'dist/guest-tests/test/guest/nodes'];
const entryPoints = dirs.flatMap((dir) =>
  readdirSync(dir).filter((f) => f.endsWith('.test.js')).map((f) => join(dir, f)));

await Promise.all(entryPoints.map((entry) => build({
  entryPoints: [entry],
  outfile: entry.replace(/\.js$/, '.bundle.js'),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // Optional vendor library with its own native loader: resolved at run time.
  external: ['koffi'],
  logLevel: 'warning',
})));
console.log(`bundled ${entryPoints.length} guest test files`);
