#!/usr/bin/env bash
# The two-node lane (`make test-nodes`): test/guest/nodes/*.test.ts in two
# guests on one wire (vm run --nodes 2; docs/harness.md, "Two nodes"), each
# file running on both nodes, which keep in step over a control channel.
# Ends with the same "N passed, N failed, N skipped" line as make test.
#   KERNEL=patched-7.3 VMFLAGS=--debug scripts/test-nodes.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=$PWD/.test-results/nodes
rm -rf "$out"
mkdir -p "$out"
KERNEL=${KERNEL:-baseline-7.3}
start=$SECONDS
# Each node writes its own TAP into the shared results directory.
# shellcheck disable=SC2086
node dist/cli.js vm run --nodes 2 --kernel "$KERNEL" ${VMFLAGS:-} --timeout "${TIMEOUT:-900}" --rwdir "$out" \
	--node-env a:P2PDMA_TAP_OUT="$out/a.tap" --node-env b:P2PDMA_TAP_OUT="$out/b.tap" \
	-- scripts/guest-suite.sh test/guest/nodes/*.test.ts
rc=$?
echo "# two-node lane ($KERNEL ${VMFLAGS:-}): $((SECONDS - start)) s"
# vm run's status covers both nodes: a failure no test shows (a splat, a
# hang, a panic on either node) counts once, under node a.
node scripts/tap-summary.mjs "nodes-a=$out/a.tap" "nodes-b=$out/b.tap" --exit-status "nodes-a=$rc"
