#!/usr/bin/env bash
# The opt-in pvrdma lane (`make test-pvrdma`): the RDMA tests of the addon on
# QEMU 7.2's pvrdma device, in a second-level guest whose pvrdma is backed by
# the first-level guest's rxe0 (docs/harness.md, "The pvrdma lane"). TCG
# inside TCG is slow, so `make test` does not run it. Ends with the same
# "N passed, N failed, N skipped" line.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$PWD/.test-results/pvrdma
rm -rf "$out"
mkdir -p "$out"
KERNEL=${KERNEL:-patched}
start=$SECONDS
node dist/cli.js vm run --rdma pvrdma --kernel "$KERNEL" --rwdir "$out" \
	--env P2PDMA_TAP_OUT="$out/pvrdma.tap" -- scripts/guest-suite.sh test/guest/pvrdma/*.test.ts test/guest/rdma.test.ts
rc=$?
echo "# pvrdma lane: $((SECONDS - start)) s"
node scripts/tap-summary.mjs "pvrdma=$out/pvrdma.tap" --exit-status "pvrdma=$rc"
