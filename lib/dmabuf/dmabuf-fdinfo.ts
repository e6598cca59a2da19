/**
 * The dma-buf lines of /proc/<pid>/fdinfo/<fd>. No native code: the
 * inspector and the CLI use it without loading the addon.
 */

/** What /proc/self/fdinfo says about a dma-buf. */
export interface DmaBufInfo {
  /** Bytes. */
  size: number;
  /** References to the dma-buf's file other than this fd (fdinfo's `count`). */
  count: number;
  /** The exporter (`exp_name`): `'system'`, `'udmabuf'`, `'drm'`, ... */
  exporter: string;
  /** The name set with DMA_BUF_SET_NAME, if any. */
  name: string | undefined;
  /** The dma-buf's inode number: the same for every fd and mapping of one buffer. */
  inode: number;
  /** The fd's open flags (octal in fdinfo), e.g. O_RDWR | O_CLOEXEC. */
  flags: number;
}

/**
 * Parses a dma-buf's fdinfo text. Tolerates both 6.x layouts: `size:` in
 * the dma-buf block or in the generic one, `ino:` present (6.2 and later)
 * or not (then `inode` must come from elsewhere, given as `fallbackInode`).
 * Returns undefined when the text is not a dma-buf's (no `exp_name:`).
 * @internal
 */
export function parseDmaBufFdinfo(text: string, fallbackInode = 0): DmaBufInfo | undefined {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const key = line.slice(0, i).trim();
    // The first occurrence wins: drivers may append their own blocks.
    if (!fields.has(key)) fields.set(key, line.slice(i + 1).replace(/^\s+/, ''));
  }
  const exporter = fields.get('exp_name');
  if (exporter === undefined) return undefined;
  const num = (k: string): number => {
    const v = fields.get(k);
    return v === undefined ? NaN : Number(v);
  };
  return {
    size: num('size'),
    count: num('count'),
    exporter,
    name: fields.get('name'),
    inode: fields.has('ino') ? num('ino') : fallbackInode,
    flags: parseInt(fields.get('flags') ?? '0', 8),
  };
}
