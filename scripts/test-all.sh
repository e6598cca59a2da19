#!/usr/bin/env bash
# The whole test suite, as CI runs it (`make test`): install what is missing,
# build the addon, run the host suite, build (or reuse) both guest kernels,
# run the guest suite on the baseline kernel and on the patched DEBUG kernel
# (KASAN, lockdep, kmemleak: any splat fails), check the P2P map type of every
# topology, and end with one "N passed, N failed, N skipped" line.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$PWD/.test-results
rm -rf "$out"
mkdir -p "$out"
start=$SECONDS
step() { printf '\n=== [%4ds] %s\n' $((SECONDS - start)) "$*"; }
suites=()

# A guest run that failed without a failing test (panic, splat, timeout)
# still has to count: record it as a failed pseudo-suite.
vm_suite() {
	local label=$1 kernel_args=$2 topology=$3
	shift 3
	step "guest suite: $label"
	# shellcheck disable=SC2086
	node dist/cli.js vm run $kernel_args --topology "$topology" --rwdir "$out" \
		--env P2PDMA_TAP_OUT="$out/$label.tap" -- scripts/guest-suite.sh "$@"
	local rc=$?
	suites+=("$label=$out/$label.tap")
	if [ $rc != 0 ]; then
		printf 'not ok 1 - guest run %s failed (exit %d), see the log above\n' "$label" $rc > "$out/$label-vm.tap"
		suites+=("$label-vm=$out/$label-vm.tap")
	fi
}

step "setup"
scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

step "build addon"
if ! { npm run build --silent && npm run prebuildify --silent &&
	make -s -C test/guest/c OUT="$PWD/build/guest-c"; }; then
	echo "build failed"; echo "0 passed, 1 failed"; exit 1
fi

step "kernels"
kernels_ok=1
baseline=$(scripts/kernel/build.sh --print-path baseline) || kernels_ok=0
scripts/kernel/build.sh --debug patched || kernels_ok=0

# The host suite includes the harness's own boot tests (test/vm-boot.test.ts).
step "host suite"
P2PDMA_TEST_KERNEL=${baseline:+$baseline/bzImage} node_modules/.bin/tap --reporter=base --no-color --output-file "$out/host.tap"
suites+=("host=$out/host.tap")

if [ $kernels_ok = 1 ]; then
	vm_suite baseline "--kernel baseline" switch
	vm_suite patched-debug "--kernel patched --debug" switch
	vm_suite topology-host-bridge "--kernel patched --debug" host-bridge test/guest/topology.test.ts test/guest/vma-p2p.test.ts
	vm_suite topology-none "--kernel patched --debug" none test/guest/topology.test.ts test/guest/vma-p2p.test.ts
else
	printf 'not ok 1 - kernel build failed\n' > "$out/kernels.tap"
	suites+=("kernels=$out/kernels.tap")
fi

step "summary ($((SECONDS - start)) s)"
node scripts/tap-summary.mjs "${suites[@]}"
