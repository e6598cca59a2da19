// The API reference (TypeDoc over lib/index.ts, typedoc.json) builds without
// a warning: a broken doc comment, a link to nothing or an exported type that
// refers to one left out fails here, so CI (make test) catches it. `--emit
// none` checks without writing docs/api (npm run docs writes it).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');

t.test('typedoc: the API reference builds with no warnings', async (t) => {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typedoc', 'bin', 'typedoc'), '--emit', 'none'], { cwd: ROOT, encoding: 'utf8', timeout: 90_000 });
  const out = `${r.stdout}${r.stderr}`;
  t.equal(r.status, 0, `typedoc exits 0\n${out}`);
  t.notMatch(out, /\[warning\]|\[error\]/, 'no warnings or errors');
});
