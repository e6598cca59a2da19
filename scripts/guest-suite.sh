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
#   scripts/guest-suite.sh [test/guest/NAME.test.ts[@TOPOLOGY]...]
# FILE@TOPOLOGY runs FILE against that topology's NVMe pair, in a guest
# booted with several (vm run --topology switch,none); without it, the
# guest's first topology.
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
# Every exec costs ~0.5 s in the DEBUG guest (TCG, KASAN, binaries over 9p),
# so per file this runs node and one mv, and bash builtins for the rest.
run_one() { # index item
	local file=${2%@*} topo=${P2PDMA_TOPOLOGY:-switch} suffix=
	[ "$file" = "$2" ] || { topo=${2##*@}; suffix=-$topo; }
	# The bundle (scripts/bundle-guest-tests.mjs) when the build made one:
	# one file to load instead of ~300 modules over 9p.
	local js=$compiled/${file%.ts}.bundle.js
	[ -f "$js" ] || js=$compiled/${file%.ts}.js
	local out=$work/$1.tap
	if [ -n "$partial" ]; then
		local name=${file##*/}
		out=$partial/$1-${name%.test.ts}$suffix.running
	fi
	echo "$out" > "$work/$1.out"
	if [ ! -f "$js" ]; then
		echo "Bail out! $js missing: run 'npm run build' on the host" > "$out"
		echo 1 > "$work/$1.rc"
		return
	fi
	local began=$SECONDS rc
	printf '# started %(%T)T UTC\n' -1 > "$out"
	# tap's own per-file timeout (30 s) is too short under TCG with KASAN.
	# P2PDMA_TOPOLOGY: the NVMe pair this run of the file tests (items
	# FILE@TOPOLOGY), in a guest that has several (vm run --topology a,b).
	P2PDMA_TOPOLOGY=$topo TAP_TIMEOUT=${TAP_TIMEOUT:-600} "$node" "$js" >> "$out" 2>&1
	rc=$?
	echo $rc > "$work/$1.rc"
	echo "# $2: exit $rc, $((SECONDS - began)) s" >> "$out"
	if [ -n "$partial" ]; then
		mv "$out" "${out%.running}.tap"
		echo "${out%.running}.tap" > "$work/$1.out"
	fi
}

# Files that change the machine under the others (hot unplug, the series'
# unplug tests, REVOKE of every ivshmem mapping, p2p-memlock's memset of the
# whole ivshmem BAR and its MRs, which rdma-p2p's data checks and mapping
# counts would see, the ACS redirect bits p2p-map-type-change turns on above
# ivshmem), or that need it quiet (the pool-capacity checks of
# p2pmem and of the series' kselftests: another file holding CMB memory
# makes a 48 MiB allocation fail or a before/after count differ; rxe's RNR
# counter in the revoke race; nvme-uring sets kernel.io_uring_disabled,
# which every other file's rings and io_uring checks see; rdma-port-events
# takes eth0, rxe0's netdev, down and up; rdma-thirdparty binds ivshmem to
# vfio-pci and hands the CMB to perftest), run one at a time, after the rest.
is_exclusive() { case ${1%@*} in */hotplug.test.ts | */nvme-uring.test.ts | */rdma-port-events.test.ts | */p2p-map-type-change.test.ts | */p2pmem.test.ts | */vma-p2p.test.ts | */p2p-unplug.test.ts | */p2p-revoke-race.test.ts | */p2p-memlock.test.ts | */p2p-dma-buf-kselftest.test.ts | */rdma-thirdparty.test.ts) return 0 ;; esac; return 1; }
# Unplugs through pciehp trip 6.12's own lockdep report (harness/vm/splats.ts),
# after which lockdep is off for the rest of the boot: those files go last.
is_last() { case ${1%@*} in */hotplug.test.ts | */p2p-unplug.test.ts) return 0 ;; esac; return 1; }
# Files that touch none of what the exclusive ones change or count: RAM
# dma-bufs (heaps, udmabuf, vgem) only, no CMB, no ivshmem, no rxe. They run
# beside the exclusive files, one at a time, on the vCPU those leave idle.
is_quiet() { case ${1%@*} in */dma-heap.test.ts | */drm.test.ts | */udmabuf.test.ts | */dmabuf-inspect.test.ts) return 0 ;; esac; return 1; }
# The longest file starts first, so that no vCPU idles at the end of the
# shared phase while it finishes alone (the guest sweep: 60-100 s on DEBUG).
is_long() { case ${1%@*} in */sweep.test.ts) return 0 ;; esac; return 1; }

# Runs the given argument indexes, two at a time (the guest has two vCPUs),
# each starting as soon as a slot frees.
pool() {
	local running=0 i
	for i in "$@"; do
		if [ $running -ge 2 ]; then
			wait -n
			running=$((running - 1))
		fi
		run_one "$i" "${items[$i]}" &
		running=$((running + 1))
	done
	wait
}
# Runs the given argument indexes one after another.
serial() {
	local i
	for i in "$@"; do run_one "$i" "${items[$i]}"; done
}

start=$SECONDS
# Under TCG inside TCG (the pvrdma lane) node's own start-up is the unknown.
if [ "${P2PDMA_RDMA:-}" = pvrdma ]; then
	t0=$(date +%s%N)
	"$node" -e 0
	echo "# node -e 0: $((($(date +%s%N) - t0) / 1000000)) ms" | tee ${partial:+"$partial/node-startup.txt"}
fi
items=("" "$@") # 1-based, the index names each file's results
long=() shared=() quiet=() exclusive=() last=()
for ((i = 1; i <= $#; i++)); do
	item=${items[$i]}
	if is_last "$item"; then last+=("$i")
	elif is_exclusive "$item"; then exclusive+=("$i")
	elif is_quiet "$item"; then quiet+=("$i")
	elif is_long "$item"; then long+=("$i")
	else shared+=("$i")
	fi
done
if [ ${#exclusive[@]} -eq 0 ]; then
	pool "${long[@]}" "${shared[@]}" "${quiet[@]}"
else
	pool "${long[@]}" "${shared[@]}"
	serial "${exclusive[@]}" &
	serial "${quiet[@]}"
	wait
fi
serial "${last[@]}"

{
	echo "TAP version 14"
	i=0
	failed=0
	for item in "$@"; do
		i=$((i + 1))
		echo "# Subtest: $item"
		# Indented with builtins: no sed per file.
		while IFS= read -r line || [ -n "$line" ]; do
			printf '    %s\n' "$line"
		done < "$(< "$work/$i.out")"
		rc=$(< "$work/$i.rc")
		if [ "$rc" = 0 ]; then
			echo "ok $i - $item"
		else
			echo "not ok $i - $item # exit $rc"
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
