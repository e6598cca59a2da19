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
# The second level's limit in seconds (the first level gets 300 s more), also
# each file's (TAP_TIMEOUT): a file takes minutes there.
TIMEOUT=${TIMEOUT:-3600}
start=$SECONDS
node dist/cli.js vm run --rdma pvrdma --kernel "$KERNEL" --timeout "$TIMEOUT" --rwdir "$out" \
	--env P2PDMA_TAP_OUT="$out/pvrdma.tap" --env TAP_TIMEOUT="$TIMEOUT" -- scripts/guest-suite.sh test/guest/pvrdma/*.test.ts test/guest/rdma.test.ts
rc=$?
echo "# pvrdma lane: $((SECONDS - start)) s"
# What the second level reported file by file (all there is after a timeout).
for f in "$out"/pvrdma.files/*; do
	[ -e "$f" ] || continue
	case $f in
	*.running)
		echo "# still running at the end: $(basename "$f" .running) ($(head -n 1 "$f" | sed 's/^# //')); its last subtests:"
		grep -E '^    (# Subtest|ok|not ok)' "$f" | tail -n 4 | sed 's/^ */#   /' ;;
	*.tap) echo "# $(tail -n 1 "$f" | sed 's/^# //')" ;;
	*) echo "# $(cat "$f")" ;;
	esac
done
node scripts/tap-summary.mjs "pvrdma=$out/pvrdma.tap" --exit-status "pvrdma=$rc"
