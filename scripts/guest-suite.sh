#!/bin/bash
# The guest half of the test suite, run inside the guest by `make vm-test` and
# scripts/test-all.sh.
#
# The tests are tap tests (test/guest/*.test.ts), compiled on the host into
# dist/guest-tests/ by `npm run build`. Each file runs as its own node
# process, two at a time, and its TAP is wrapped as a subtest of the run, the
# shape the tap CLI writes. The tap CLI itself is not used here: under TCG its
# start-up (loader hooks, TypeScript, plugins) cost 90 s for one empty file
# (docs/harness.md); node running the compiled file costs a few seconds.
#
#   scripts/guest-suite.sh [test/guest/NAME.test.ts...]
# With P2PDMA_TAP_OUT set, the whole TAP stream is also written there (a
# --rwdir on the host, read by scripts/tap-summary.mjs).
set -u
cd "$(dirname "$0")/.."
compiled=dist/guest-tests
[ -d "$compiled" ] || { echo "Bail out! $compiled missing: run 'npm run build' on the host"; exit 1; }
[ $# -gt 0 ] || set -- test/guest/*.test.ts

work=$(mktemp -d)
run_one() { # index source-file
	local js=$compiled/${2%.ts}.js
	if [ ! -f "$js" ]; then
		echo "Bail out! $js missing: run 'npm run build' on the host" > "$work/$1.tap"
		echo 1 > "$work/$1.rc"
		return
	fi
	# tap's own per-file timeout (30 s) is too short under TCG with KASAN.
	TAP_TIMEOUT=${TAP_TIMEOUT:-600} node "$js" > "$work/$1.tap" 2>&1
	echo $? > "$work/$1.rc"
}

start=$SECONDS
i=0
for file in "$@"; do
	i=$((i + 1))
	run_one $i "$file" &
	# Two at a time: the guest has two vCPUs.
	[ $((i % 2)) = 0 ] && wait
done
wait

{
	echo "TAP version 14"
	i=0
	failed=0
	for file in "$@"; do
		i=$((i + 1))
		echo "# Subtest: $file"
		sed 's/^/    /' "$work/$i.tap"
		if [ "$(cat "$work/$i.rc")" = 0 ]; then
			echo "ok $i - $file"
		else
			echo "not ok $i - $file # exit $(cat "$work/$i.rc")"
			failed=$((failed + 1))
		fi
	done
	echo "1..$i"
	echo "# guest suite: $i files, $failed failed, $((SECONDS - start)) s"
} > "$work/all.tap"

cat "$work/all.tap"
[ -n "${P2PDMA_TAP_OUT:-}" ] && cp "$work/all.tap" "$P2PDMA_TAP_OUT"
rm -rf "$work"
[ $failed = 0 ]
