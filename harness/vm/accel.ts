/**
 * KVM when it is proven to boot our kernel, TCG otherwise. Some hosts expose a
 * /dev/kvm that cannot run a stock guest (a paravirtual KVM whose guests die
 * in the kernel decompressor), so the device existing proves nothing: boot the
 * kernel once with KVM and remember the answer per kernel image.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export type Accel = 'tcg' | 'kvm';

export interface AccelChoice {
  accel: Accel;
  reason: string;
}

const PROBE_TIMEOUT_S = 30;

export function chooseAccel(kernel: string, cacheDir: string): AccelChoice {
  try {
    fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    return { accel: 'tcg', reason: '/dev/kvm is not usable' };
  }
  const st = fs.statSync(kernel);
  const cacheFile = path.join(cacheDir, 'kvm-probe.json');
  const key = `${fs.realpathSync(kernel)}:${st.size}:${st.mtimeMs}`;
  let cache: Record<string, AccelChoice> = {};
  try {
    cache = JSON.parse(fs.readFileSync(cacheFile, 'utf8'));
  } catch {
    // no cache yet
  }
  if (cache[key]) return cache[key];
  const choice = probeKvm(kernel);
  cache[key] = choice;
  fs.mkdirSync(cacheDir, { recursive: true });
  fs.writeFileSync(cacheFile, JSON.stringify(cache, null, 2));
  return choice;
}

/** Boot with init=/bin/true: reaching init (and panicking when it exits) proves KVM works. */
function probeKvm(kernel: string): AccelChoice {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2pdma-kvm-probe-'));
  try {
    const log = path.join(dir, 'console.log');
    spawnSync('qemu-system-x86_64', [
      '-M', 'q35', '-accel', 'kvm', '-cpu', 'host', '-m', '512M', '-nodefaults', '-no-reboot',
      '-display', 'none', '-serial', `file:${log}`, '-kernel', kernel,
      '-append', 'console=ttyS0 panic=-1 init=/bin/true',
    ], { stdio: 'ignore', timeout: PROBE_TIMEOUT_S * 1000, killSignal: 'SIGKILL' });
    const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
    if (/Run \/bin\/true as init process|Attempted to kill init|VFS: Unable to mount root/.test(text)) {
      return { accel: 'kvm', reason: 'a KVM probe boot reached the kernel' };
    }
    return { accel: 'tcg', reason: 'a KVM probe boot did not reach the kernel' };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
