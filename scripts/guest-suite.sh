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
# With P2PDMA_NODE set, that node binary runs the files.
# With P2PDMA_TAP_OUT set, the whole TAP stream is also written there (a
# --rwdir on the host, read by scripts/tap-summary.mjs), and each file's TAP
# as soon as that file ends, in P2PDMA_TAP_OUT's name with .files/ for .tap:
# a run that times out (the nested pvrdma lane) still shows what finished and
# which file was running.
set -u
cd "$(dirname "$0")/.."
compiled=dist/guest-tests
[ -d "$compiled" ] || { echo "Bail out! $compiled missing: run 'npm run build' on the host"; exit 1; }
[ $# -gt 0 ] || set -- test/guest/*.test.ts

# P2PDMA_NODE: a node binary of another release line (scripts/node-line.sh).
node=${P2PDMA_NODE:-node}
echo "# guest suite on node $("$node" --version), kernel $(uname -r)"
work=$(mktemp -d)
partial=
if [ -n "${P2PDMA_TAP_OUT:-}" ]; then
	partial=${P2PDMA_TAP_OUT%.tap}.files
	rm -rf "$partial" && mkdir -p "$partial"
fi
# Each file's TAP, while it runs: $partial/INDEX-NAME.running (the start
# time, then the TAP so far); when it ends: $partial/INDEX-NAME.tap.
partial_name() { # index source-file
	echo "$partial/$1-$(basename "$2" .test.ts)"
}
publish() { # index source-file rc seconds
	[ -n "$partial" ] || return 0
	local name
	name=$(partial_name "$1" "$2")
	{ cat "$work/$1.tap"; echo "# $2: exit $3, $4 s"; } > "$name.tap"
	rm -f "$name.running"
}
run_one() { # index source-file
	local js=$compiled/${2%.ts}.js
	if [ ! -f "$js" ]; then
		echo "Bail out! $js missing: run 'npm run build' on the host" > "$work/$1.tap"
		echo 1 > "$work/$1.rc"
		return
	fi
	local began=$SECONDS rc live=/dev/null
	if [ -n "$partial" ]; then
		live=$(partial_name "$1" "$2").running
		echo "# started $(date -u +%T) UTC" > "$live"
	fi
	# tap's own per-file timeout (30 s) is too short under TCG with KASAN.
	TAP_TIMEOUT=${TAP_TIMEOUT:-600} "$node" "$js" 2>&1 | tee -a "$live" > "$work/$1.tap"
	rc=${PIPESTATUS[0]}
	echo $rc > "$work/$1.rc"
	publish "$1" "$2" $rc $((SECONDS - began))
}

# Files that change the machine under the others (hot unplug, the series'
# unplug tests, REVOKE of every ivshmem mapping, p2p-memlock's memset of the
# whole ivshmem BAR and its MRs, which rdma-p2p's data checks and mapping
# counts would see), or that need it quiet (the pool-capacity checks of
# p2pmem and of the series' kselftests: another file holding CMB memory
# makes a 48 MiB allocation fail or a before/after count differ), run
# alone, after the rest.
is_exclusive() { case $1 in */hotplug.test.ts | */p2pmem.test.ts | */vma-p2p.test.ts | */p2p-unplug.test.ts | */p2p-revoke-race.test.ts | */p2p-memlock.test.ts) return 0 ;; esac; return 1; }
# Unplugs through pciehp trip 6.12's own lockdep report (lib/vm/splats.ts),
# after which lockdep is off for the rest of the boot: those files go last.
is_last() { case $1 in */hotplug.test.ts | */p2p-unplug.test.ts) return 0 ;; esac; return 1; }

start=$SECONDS
# Under TCG inside TCG (the pvrdma lane) node's own start-up is the unknown.
if [ "${P2PDMA_RDMA:-}" = pvrdma ]; then
	t0=$(date +%s%N)
	"$node" -e 0
	echo "# node -e 0: $((($(date +%s%N) - t0) / 1000000)) ms" | tee ${partial:+"$partial/node-startup.txt"}
fi
i=0 running=0
for file in "$@"; do
	i=$((i + 1))
	is_exclusive "$file" && continue
	run_one $i "$file" &
	# Two at a time: the guest has two vCPUs.
	running=$((running + 1))
	[ $((running % 2)) = 0 ] && wait
done
wait
for last in no yes; do
	i=0
	for file in "$@"; do
		i=$((i + 1))
		is_exclusive "$file" || continue
		if is_last "$file"; then [ $last = yes ]; else [ $last = no ]; fi && run_one $i "$file"
	done
done

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
