// The README's examples (examples/*.ts) cannot rot: all of them type-check
// against lib/ as a user's code sees 'p2pdma', and each runs where its
// devices are (a `// needs:` line): here what this host has, in the test
// guest all of them (README: `p2pdma vm run -- node_modules/.bin/tap
// test/harness/examples.test.ts`). A missing device skips with the reason.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import ts from 'typescript';
import { capabilities } from '../../lib';
import { repoRoot } from '../helpers';

const DIR = path.join(repoRoot, 'examples');
const examples = fs.readdirSync(DIR).filter((f) => f.endsWith('.ts')).sort();

/** Why this machine cannot run an example needing `need`, or undefined when it can. */
function missing(need: string): string | undefined {
  const caps = capabilities();
  const [what, arg] = need.split(':');
  switch (what) {
    case 'udmabuf':
    case 'dmaHeaps':
    case 'rdma':
      return caps[what].available ? undefined : caps[what].reason;
    case 'drm':
      return caps.drm.nodes.some((n) => n.driver === arg && n.accessible) ? undefined : `no accessible ${arg} DRM node${caps.drm.available ? '' : `: ${caps.drm.reason}`}`;
    case 'p2pmem': {
      const n = caps.p2pmem.providers.filter((p) => p.published && p.allocate).length;
      return n >= Number(arg) ? undefined : `${arg} published p2pmem providers needed, ${n} found`;
    }
    case 'nvme-scratch':
      // Writes a namespace: only in the test guest, whose NVMe disks are scratch images.
      return process.env.P2PDMA_TOPOLOGY ? undefined : 'overwrites an NVMe namespace: runs only in the test guest';
    default:
      throw new Error(`unknown need '${need}'`);
  }
}

t.test('every example type-checks (tsc -p examples)', async (t) => {
  t.ok(examples.length >= 5, `examples: ${examples.join(', ')}`);
  const r = spawnSync(process.execPath, [path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', DIR], { encoding: 'utf8', timeout: 120_000 });
  t.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});

// The examples run as a user's ES module would: 'p2pdma' is this checkout (its dist/).
const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2pdma-examples-'));
fs.mkdirSync(path.join(runDir, 'node_modules'));
fs.symlinkSync(repoRoot, path.join(runDir, 'node_modules', 'p2pdma'));
t.teardown(() => fs.rmSync(runDir, { recursive: true, force: true }));

for (const file of examples) {
  const source = fs.readFileSync(path.join(DIR, file), 'utf8');
  const needs = /^\/\/ needs: (.+)$/m.exec(source)?.[1].split(/\s+/) ?? [];
  const why = needs.map(missing).find((m) => m !== undefined);
  t.test(`examples/${file} runs`, { skip: why ? `needs ${needs.join(' ')}: ${why}` : false }, async (t) => {
    const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } }).outputText;
    const out = path.join(runDir, file.replace(/\.ts$/, '.mjs'));
    fs.writeFileSync(out, js);
    const r = spawnSync(process.execPath, [out], { cwd: runDir, encoding: 'utf8', timeout: 60_000 });
    t.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    t.notMatch(r.stderr, /Warning/, 'no warnings (a handle left to the GC warns)');
  });
}

t.test('the README shows each example as it is in examples/', async (t) => {
  const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  for (const file of examples) {
    const body = fs.readFileSync(path.join(DIR, file), 'utf8').split('\n').filter((l) => !l.startsWith('// needs:')).join('\n').trimEnd();
    t.ok(readme.includes(`\`\`\`ts\n${body}\n\`\`\``), `README.md has examples/${file} verbatim (without its needs line)`);
  }
});
