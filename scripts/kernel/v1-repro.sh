#!/usr/bin/env bash
# Build v1 of the kernel series, as committed before v2 replaced it, plus
# kernel-patches/v1-repro/ (v2's window tests, ported to v1's interface),
# as the DEBUG kernel "patched-debug" of another key:
#
#   scripts/kernel/v1-repro.sh [build.sh options]
#
# (--print-path prints where), then boot it by path: `p2pdma vm run
# --kernel DIR/bzImage ...` (docs/harness.md, "v1's defects"). Needs this
# repository's git history; not part of `make test`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# The last commit whose kernel-patches/ held v1.
v1_commit=3d004fe^

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# shellcheck source=scripts/kernel/series.sh
. "$here/series.sh"
mkdir "$dir/v1"
git -C "$repo" show "$v1_commit:kernel-patches/series" > "$dir/v1/series"
for p in $(series_patches "$dir/v1"); do
	git -C "$repo" show "$v1_commit:kernel-patches/$p" > "$dir/$p"
	echo "$p" >> "$dir/series"
done
for p in "$repo"/kernel-patches/v1-repro/*.patch; do
	cp "$p" "$dir/"
	basename "$p" >> "$dir/series"
done
# build.sh points the patched-debug link at what it built last: keep it on v2.
link=${P2PDMA_CACHE:-$HOME/.cache/p2pdma}/kernel/patched-debug
was=$(readlink "$link" || true)
status=0
"$here/build.sh" --debug --patches "$dir" "$@" patched || status=$?
[ -n "$was" ] && ln -sfn "$was" "$link"
exit $status
