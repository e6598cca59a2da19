/**
 * The kernels this repo builds and caches (scripts/kernel/build.sh), by the
 * names `vm run`, `demo` and `bench` take. 7.3 carries the series' v3
 * (kernel-patches/v3/) and is the default; 6.12 carries v2 and stays as an
 * A/B lane (docs/harness.md, "Which kernel is the default").
 */

/** 6.12 stock and with kernel-patches/ (v2); the -7.3 ones are 7.3 stock and with kernel-patches/v3. */
export type KernelName = 'baseline' | 'patched' | 'baseline-7.3' | 'patched-7.3';
export const KERNEL_NAMES: readonly KernelName[] = ['baseline', 'patched', 'baseline-7.3', 'patched-7.3'];

/** What `vm run` and `demo` boot when no --kernel is given. */
export const DEFAULT_BASELINE: KernelName = 'baseline-7.3';
export const DEFAULT_PATCHED: KernelName = 'patched-7.3';

export function isKernelName(kernel: string): kernel is KernelName {
  return (KERNEL_NAMES as readonly string[]).includes(kernel);
}

/** scripts/kernel/build.sh's arguments for a named kernel. */
export function kernelBuildArgs(kernel: KernelName, debug: boolean): string[] {
  const [variant, source] = kernel.split('-');
  return [...(debug ? ['--debug'] : []), ...(source ? ['--source', source] : []), variant];
}

/** What the guest's tests are told the kernel is (P2PDMA_KERNEL). */
export function kernelLabel(kernel: string): KernelName | 'custom' {
  return isKernelName(kernel) ? kernel : 'custom';
}
