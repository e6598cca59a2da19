#!/usr/bin/env bash
# Bisectability of the kernel series: build every prefix of it (patch 1, 1-2,
# ..., 1-N) as a full bzImage plus the kselftests present at that point, with
# the patched config, in one object dir so that each step only recompiles what
# the next patch touches. Ends with one line per patch and exits non-zero if
# any prefix fails to build.
#
#   scripts/kernel/bisect-build.sh [--debug] [--patches DIR]
#
# The first step is a full kernel build (about 12 minutes on 2 cores), the
# following ones are incremental; results are cached like any kernel
# (scripts/kernel/build.sh --first N).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=scripts/kernel/series.sh
. "$here/series.sh"
opts=() patch_dir=$repo/kernel-patches
while [ $# -gt 0 ]; do
	case $1 in
	--debug) opts+=(--debug) ;;
	--patches) patch_dir=$(cd "${2:?--patches DIR}" && pwd); opts+=(--patches "$patch_dir"); shift ;;
	*) echo "usage: $0 [--debug] [--patches DIR]" >&2; exit 2 ;;
	esac
	shift
done

mapfile -t series < <(series_patches "$patch_dir")
results=() failed=0
for n in $(seq 1 ${#series[@]}); do
	start=$SECONDS
	if "$here/build.sh" "${opts[@]}" --first "$n" patched >&2; then
		results+=("ok   $n ${series[$n - 1]} ($((SECONDS - start)) s)")
	else
		results+=("FAIL $n ${series[$n - 1]} ($((SECONDS - start)) s)")
		failed=$((failed + 1))
	fi
done
printf '%s\n' "${results[@]}"
echo "# bisect build: ${#series[@]} prefixes, $failed failed"
[ $failed = 0 ]
