#!/usr/bin/env node
/**
 * p2pdma command line.
 *
 *   p2pdma dmabuf ls [--json] [--pid PID]     dma-bufs held by processes
 *   p2pdma info [--json]                      what this machine and kernel can do
 *
 * From a checkout of the repository, also the QEMU harness's `vm run`,
 * `vm shell`, `kernel build`, `bench` and `demo` (harness/cli.ts): the npm package leaves
 * the harness out.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { fail, int } from './core/cli-args';

/** What harness/cli.ts exports. */
interface HarnessCli {
  COMMANDS: string;
  VM_OPTIONS: string;
  vm(sub: string, argv: string[], usage: string): Promise<number>;
  kernel(argv: string[], usage: string): number;
  BENCH_USAGE: string;
  bench(argv: string[]): Promise<number>;
  DEMO_USAGE: string;
  demo(argv: string[]): Promise<number>;
}

/**
 * The harness's commands, or undefined in the npm package. Compiled, they
 * sit in dist/harness/ (npm run build compiles harness/ there with the one
 * library file it imports); the tests run this file as TypeScript, beside
 * harness/.
 */
function loadHarness(): HarnessCli | undefined {
  const file = path.extname(__filename) === '.ts'
    ? path.join(__dirname, '..', 'harness', 'cli.ts')
    : path.join(__dirname, 'harness', 'harness', 'cli.js');
  return fs.existsSync(file) ? (require(file) as HarnessCli) : undefined;
}

const harness = loadHarness();

const NO_HARNESS = "'vm', 'kernel', 'bench' and 'demo' (the QEMU harness) run from a checkout of the p2pdma repository, not from the npm package";

const USAGE = `usage:
${harness?.COMMANDS ?? ''}  p2pdma dmabuf ls [--json] [--pid PID]
  p2pdma info [--json]
  p2pdma COMMAND --help

${harness?.VM_OPTIONS ?? `${NO_HARNESS}\n`}`;

// The inspector needs no native addon: loaded only for this command.
async function dmabuf(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: 'boolean', default: false }, pid: { type: 'string' } },
  });
  if (positionals[0] !== 'ls' || positionals.length !== 1) fail(USAGE);
  const { dmabufs, formatDmaBufReport } = await import('./dmabuf/dmabuf-inspect');
  const report = dmabufs({ pid: int('pid', values.pid) });
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatDmaBufReport(report));
  return 0;
}

/** Each command's usage for --help: the lines of USAGE that start with it, and the vm options for vm. */
function usageOf(group: string): string {
  const lines = USAGE.split('\n').filter((l) => l.startsWith(`  p2pdma ${group} `) || l === `  p2pdma ${group}`);
  if (lines.length === 0) return USAGE;
  if (group === 'bench' && harness) return harness.BENCH_USAGE;
  if (group === 'demo' && harness) return harness.DEMO_USAGE;
  const vmOptions = group === 'vm' ? `\n${USAGE.slice(USAGE.indexOf('vm options:'))}` : '';
  return `usage:\n${lines.join('\n')}\n${vmOptions}`;
}

async function info(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean', default: false } } });
  if (positionals.length !== 0) fail(usageOf('info'));
  const { machineInfo, formatMachineInfo } = await import('./core/info');
  const report = machineInfo();
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatMachineInfo(report));
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [group, sub, ...rest] = argv;
  if ((group === 'vm' || group === 'kernel' || group === 'bench' || group === 'demo') && harness === undefined) return fail(NO_HARNESS);
  // --help anywhere before a '--' (after it, the words belong to the guest command).
  const ours = argv.includes('--') ? argv.slice(0, argv.indexOf('--')) : argv;
  if (ours.includes('--help') || ours.includes('-h') || group === 'help') {
    process.stdout.write(group === undefined || group.startsWith('-') || group === 'help' ? USAGE : usageOf(group));
    return 0;
  }
  if (group === 'info') return info([sub, ...rest].filter((a) => a !== undefined));
  if (group === 'vm' && (sub === 'run' || sub === 'shell')) return harness!.vm(sub, rest, USAGE);
  if (group === 'bench') return harness!.bench([sub, ...rest].filter((a) => a !== undefined));
  if (group === 'demo') return harness!.demo([sub, ...rest].filter((a) => a !== undefined));
  if (group === 'kernel') return harness!.kernel([sub, ...rest].filter((a) => a !== undefined), USAGE);
  if (group === 'dmabuf') return dmabuf([sub, ...rest].filter((a) => a !== undefined));
  return fail(USAGE);
}

main(process.argv.slice(2)).then(
  (status) => process.exit(status),
  (err: Error) => fail(err.message, 1),
);
