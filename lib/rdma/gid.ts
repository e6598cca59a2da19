/** GIDs as text (`fe80:0000:...`, as the kernel prints them) and as the 16 bytes verbs take. */
import { invalidArgValue } from '../core/errors';

export function gidString(b: Buffer): string {
  return b.toString('hex').replace(/(.{4})(?!$)/g, '$1:');
}

export function gidBytes(s: unknown, caller: Function, name = 'remote.gid'): Buffer {
  if (typeof s !== 'string' || !/^([0-9a-fA-F]{4}:){7}[0-9a-fA-F]{4}$/.test(s)) throw invalidArgValue(name, s, "must be a GID like 'fe80:0000:0000:0000:5054:00ff:fe12:3456'", caller);
  return Buffer.from(s.replace(/:/g, ''), 'hex');
}
