// The harness against a real guest: exit statuses, output, timeouts, panics
// and kernel splats reach the host. Needs a built kernel, so it runs from
// scripts/test-all.sh with P2PDMA_TEST_KERNEL set to a bzImage, and is
// skipped (with that reason) elsewhere.
import t from 'tap';
import { PassThrough } from 'node:stream';
import { runVm, VmOptions } from '../../harness/vm/run';

const kernel = process.env.P2PDMA_TEST_KERNEL;
// Each case boots a guest (10-25 s under TCG): more than tap's default per file.
t.setTimeout(15 * 60 * 1000);
const opts = { skip: kernel ? false : 'set P2PDMA_TEST_KERNEL to a bzImage (scripts/test-all.sh does)' };

async function boot(command: string[], extra: Partial<VmOptions> = {}) {
  const output = new PassThrough();
  let text = '';
  output.on('data', (d) => (text += d));
  const log: string[] = [];
  const result = await runVm({ kernel: kernel!, command, output, log: (l) => log.push(l), accel: 'tcg', ...extra });
  return { result, text, log: log.join('\n') };
}

t.test('a passing command passes and its output streams back', opts, async (t) => {
  const { result, text } = await boot(['sh', '-c', 'echo hello from $(uname -r); test -d "$P2PDMA_REPO"']);
  t.equal(result.ok, true);
  t.equal(result.exitCode, 0);
  t.match(text, /hello from \d+\.\d+\.\d+/);
  t.same(result.splats, []);
});

t.test('the guest exit status is the host result', opts, async (t) => {
  const { result } = await boot(['sh', '-c', 'exit 7']);
  t.equal(result.ok, false);
  t.equal(result.exitCode, 7);
  t.match(result.reason, /exited with status 7/);
});

t.test('the project tree is writable in the guest but the host copy is untouched', opts, async (t) => {
  const { result } = await boot(['sh', '-c', 'touch .guest-write-probe && test -f .guest-write-probe']);
  t.equal(result.exitCode, 0);
  const fs = await import('node:fs');
  t.notOk(fs.existsSync('.guest-write-probe'), 'no write reached the host');
});

t.test('a hung guest is killed at the timeout and reported', opts, async (t) => {
  // Killed whether or not the guest got to run the command: short, and the same on a slow machine.
  const { result } = await boot(['sleep', '600'], { timeoutSec: 8 });
  t.equal(result.ok, false);
  t.equal(result.timedOut, true);
  t.match(result.reason, /did not finish within 8 s/);
});

t.test('a guest kernel panic fails the run with the panic message', opts, async (t) => {
  const { result } = await boot(['sh', '-c', 'echo c > /proc/sysrq-trigger']);
  t.equal(result.ok, false);
  t.equal(result.exitCode, null);
  t.match(result.reason, /panicked|no exit status/);
  t.ok(result.splats.length > 0, 'the oops is reported as a splat');
});

t.test('a kernel WARN during a passing command fails the run', opts, async (t) => {
  // A line written to /dev/kmsg lands in the kernel log like a real WARN,
  // without needing a buggy driver to produce one.
  const { result } = await boot(['sh', '-c', 'echo "WARNING: CPU: 0 PID: 1 at test/vm-boot (injected)" > /dev/kmsg']);
  t.equal(result.exitCode, 0);
  t.equal(result.ok, false);
  t.match(result.reason, /reported 1 problem/);
});
