#!/usr/bin/env bash
# Build a guest kernel from Debian's linux-source-6.12 (or, with --source 7.3,
# linux-source-7.3 from trixie-backports: scripts/kernel/fetch-source.sh),
# cached outside the clone.
#
#   scripts/kernel/build.sh [--debug] [--print-path] [--patches DIR] [--first N] [--source VERSION] baseline|patched
#   scripts/kernel/build.sh [--debug] [--print-path] --series DIR
#
# baseline: pristine source; patched: the series in DIR (default
# kernel-patches/, a quilt-style 'series' file naming git format-patch files)
# applied, plus patched.config; --first N applies only the first N patches
# (scripts/kernel/bisect-build.sh builds each prefix of the series that way,
# in one object dir of its own, and config symbols a later patch adds are
# not required to stick). --series DIR is a kernel developer's own series
# (`p2pdma kernel build --series DIR`): the patches DIR's 'series' file
# names (or, without one, DIR/*.patch in name order) on the same source,
# with DIR/config as its config fragment instead of patched.config, cached
# as series-<basename of DIR>-<key>. The config is allnoconfig + base.config (a
# minimal headless q35 guest) + p2pdma.config (+ patched.config, + debug.config
# for --debug; + VERSION.config for another --source, whose '# gone:' lines
# name symbols that version no longer has). Each source has its own series:
# kernel-patches/ (v2) on 6.12, kernel-patches/v3/ on 7.3, whose DIR/config
# fragment replaces patched.config (`--source 7.3 patched` is cached as
# patched-7.3-<key>); --patches DIR names another. P2PDMA_CCACHE=1 sends compiles through ccache (setup installs
# it): a cold build then costs about a third more, a rebuild of a tree ccache
# has seen about a minute (docs/harness.md), so it is opt-in.
# The result lands in $P2PDMA_CACHE/kernel/<variant>-<key>/ where key hashes the
# source version, the patches, the config fragments and the recipe, so a
# second run is a cache hit. Only progress lines go to stdout; the full make
# output is kept in build.log beside the image.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=scripts/kernel/series.sh
. "$here/series.sh"
cache=${P2PDMA_CACHE:-$HOME/.cache/p2pdma}
jobs=${P2PDMA_JOBS:-$(($(nproc) + 1))}
# Bump when a change here changes what gets built (part of the cache key).
recipe=2

usage="usage: $0 [--debug] [--print-path] [--patches DIR] [--first N] [--source VERSION] baseline|patched|--series DIR"
debug=0 print_path=0 variant= patch_dir= first= source=6.12
while [ $# -gt 0 ]; do
	case $1 in
	--debug) debug=1 ;;
	--print-path) print_path=1 ;;
	--patches) patch_dir=$(cd "${2:?$usage}" && pwd); shift ;;
	--series) patch_dir=$(cd "${2:?$usage}" && pwd); variant=series; shift ;;
	--first) first=${2:?$usage}; shift
		[[ $first =~ ^[1-9][0-9]*$ ]] || { echo "--first takes a patch count >= 1" >&2; exit 2; } ;;
	--source) source=${2:?$usage}; shift ;;
	baseline|patched) variant=$1 ;;
	*) echo "$usage" >&2; exit 2 ;;
	esac
	shift
done
[ -n "$variant" ] || { echo "$usage" >&2; exit 2; }
name=$variant
[ "$variant" = series ] && name=series-$(basename "$patch_dir")
[ "$source" = 6.12 ] || name=$variant-$source
[ $debug = 1 ] && name=$name-debug
# The series of each source (kernel-patches/v3 is the 7.3 port, issue 26).
if [ -z "$patch_dir" ]; then
	case $source in
	6.12) patch_dir=$repo/kernel-patches ;;
	7.3) patch_dir=$repo/kernel-patches/v3 ;;
	*) [ "$variant" = baseline ] || { echo "--source $source: no series for it; build the baseline or name one with --patches" >&2; exit 2; } ;;
	esac
fi
if [ -n "$first" ]; then
	[ "$variant" = patched ] || { echo "--first needs the patched variant" >&2; exit 2; }
	# One object dir for every prefix: each build only recompiles what the
	# next patch touches.
	build_name=$name-bisect
	name=$name-first$first
fi

start=$SECONDS
say() { printf '[kernel %s %3ds] %s\n' "$name" $((SECONDS - start)) "$*" >&2; }
die() { say "error: $*"; exit 1; }

pkg=linux-source-$source
tarball=$("$here/fetch-source.sh" "$source") || die "no $pkg: run 'make setup' (6.12) or check the network (other versions)"
src_version=$("$here/fetch-source.sh" --version "$source")

patches=()
if [ "$variant" != baseline ]; then
	mapfile -t patches < <(series_patches "$patch_dir")
	patches=("${patches[@]/#/$patch_dir/}")
	if [ -n "$first" ]; then
		[ "$first" -le ${#patches[@]} ] || die "--first $first: the series has ${#patches[@]} patches"
		patches=("${patches[@]:0:$first}")
	fi
fi
fragments=("$here/base.config" "$here/p2pdma.config")
# patched.config is the 6.12 series' (v2); another source's series brings its own.
[ "$variant" = patched ] && [ "$source" = 6.12 ] && fragments+=("$here/patched.config")
[ "$variant" = series ] || { [ "$variant" = patched ] && [ "$source" != 6.12 ]; } &&
	[ -f "$patch_dir/config" ] && fragments+=("$patch_dir/config")
[ $debug = 1 ] && fragments+=("$here/debug.config")
[ "$source" = 6.12 ] || fragments+=("$here/$source.config")
# Symbols of the fragments that this source no longer has.
gone=()
[ "$source" = 6.12 ] || mapfile -t gone < <(sed -n 's/^# gone: \(CONFIG_[A-Z0-9_]*\).*/\1/p' "$here/$source.config")

key=$( {
	echo "recipe $recipe, $src_version"
	for f in "${fragments[@]}"; do echo "== ${f##*/}"; cat "$f"; done
	for p in ${patches[@]+"${patches[@]}"}; do echo "== ${p##*/}"; cat "$p"; done
} | sha256sum | cut -c1-16)
out=$cache/kernel/$name-$key

if [ -f "$out/bzImage" ]; then
	[ $print_path = 1 ] && echo "$out"
	say "cached: $out"
	exit 0
fi

# One git repo of the pristine tarball; one worktree and one object dir per
# variant, so switching patches only rebuilds what the patches touch.
gitsrc=$cache/src/linux
[ "$source" = 6.12 ] || gitsrc=$cache/src/linux-$source
# Builds of one source may run at once (make test builds the baseline beside
# the patched DEBUG kernel): one at a time unpacks the tarball, adds a
# worktree and checks out its source; the compiles then run side by side.
mkdir -p "$cache/src"
exec {src_lock}> "$gitsrc.lock"
flock "$src_lock"
if ! git -C "$gitsrc" rev-parse -q --verify pristine >/dev/null 2>&1; then
	say "unpacking $tarball ($src_version)"
	rm -rf "$gitsrc" "$cache/src/$pkg"
	mkdir -p "$cache/src"
	tar -C "$cache/src" -xf "$tarball"
	mv "$cache/src/$pkg" "$gitsrc"
	say "recording pristine source in git"
	g() { git -C "$gitsrc" -c user.name=p2pdma -c user.email=p2pdma@localhost "$@"; }
	g init -q
	# An automatic gc after the first commit would repack the whole tree in
	# the background, competing with the compile for the CPU.
	g config gc.auto 0
	# Stored, not deflated: the repo only serves this machine's worktrees,
	# and zlib took 12 of the add's 20 s of user CPU (6.12's 80k files).
	g config core.looseCompression 0
	g add -f -A .
	g commit -qm "$pkg $src_version (Debian tarball)"
	# Debian's .gitignore ignores every top-level path; new files must show.
	head -n -6 "$gitsrc/.gitignore" > "$gitsrc/.gitignore.new"
	mv "$gitsrc/.gitignore.new" "$gitsrc/.gitignore"
	g commit -qam "gitignore: drop Debian's top-level ignore-all"
	g tag pristine
fi

# src/ and obj/ side by side, so every variant's compiler command lines and
# line markers name the same relative paths (../src/mm/...): ccache then
# shares objects between variants whose sources and flags agree.
tree=$cache/build/${build_name:-$name}/src
obj=$cache/build/${build_name:-$name}/obj
# The baseline is the pristine tree itself: a worktree of it would be a
# second checkout of 80k files (about 14 s) for the same content. Caches
# from before keep the worktree their object dir was built from.
[ "$variant" = baseline ] && [ ! -d "$tree" ] && tree=$gitsrc
if [ ! -d "$tree" ]; then
	git -C "$gitsrc" worktree prune
	git -C "$gitsrc" worktree add -q --detach "$tree" pristine
fi
# Apply the series to a scratch index and commit the result, then move the
# worktree to that commit: git rewrites only files whose content differs, so
# make rebuilds only what this series changes against the last one built.
say "source: pristine + ${#patches[@]} patches"
index=$(mktemp)
trap 'rm -f "$index"' EXIT
GIT_INDEX_FILE=$index git -C "$gitsrc" read-tree pristine
for p in ${patches[@]+"${patches[@]}"}; do
	GIT_INDEX_FILE=$index git -C "$gitsrc" apply --cached "$p" 2>&1 >&2 ||
		die "patch does not apply: $p"
done
source_tree=$(GIT_INDEX_FILE=$index git -C "$gitsrc" write-tree)
source_commit=$(git -C "$gitsrc" -c user.name=p2pdma -c user.email=p2pdma@localhost \
	commit-tree "$source_tree" -p pristine -m "$name: pristine + ${#patches[@]} patches")
git -C "$tree" checkout -q -f --detach "$source_commit"
git -C "$tree" clean -q -fdx
flock -u "$src_lock"

mkdir -p "$obj" "$out.tmp"
log=$out.tmp/build.log
: > "$log"
say "config: allnoconfig + ${fragments[*]##*/}"
rm -f "$obj/.config"
# merge_config.sh runs make in the current directory; -n: allnoconfig base.
(cd "$tree" && scripts/kconfig/merge_config.sh -n -O "$obj" "${fragments[@]}") >> "$log" 2>&1 ||
	die "configuration failed, see $log"

# merge_config only warns when Kconfig drops a symbol; make that an error.
missing=0
for f in "${fragments[@]}"; do
	while IFS= read -r line; do
		case $line in
		CONFIG_*=n) sym=${line%%=*}
			grep -qx "$sym=[ym].*" "$obj/.config" && { say "config: $sym is set, wanted off"; missing=1; } ;;
		CONFIG_*=*) grep -qxF "$line" "$obj/.config" && continue
			sym=${line%%=*}
			if [[ " ${gone[*]} " == *" $sym "* ]]; then
				say "config: $sym is gone in $source (${source}.config says why)"
				continue
			fi
			# A prefix of the series may not define the symbol yet.
			[ -n "$first" ] && ! grep -rqE --include='Kconfig*' "^(menu)?config ${sym#CONFIG_}[[:space:]]*$" "$tree" && continue
			say "config: $line did not stick"; missing=1 ;;
		esac
	done < "$f"
done
[ $missing = 0 ] || die "config fragment not honoured (dependencies?), see $obj/.config"

cc=gcc
if [ "${P2PDMA_CCACHE:-0}" = 1 ] && command -v ccache >/dev/null; then
	cc="ccache gcc"
	export CCACHE_DIR=${CCACHE_DIR:-$cache/ccache} CCACHE_BASEDIR=$cache/build/${build_name:-$name} CCACHE_NOHASHDIR=1
	# Kernel builds embed timestamps via macros ccache would refuse to cache;
	# the prefix map names the variant's absolute source path and only
	# changes __FILE__ to the same relative path in every variant.
	export CCACHE_SLOPPINESS=time_macros,include_file_mtime,include_file_ctime
	export CCACHE_IGNOREOPTIONS='-fmacro-prefix-map=* -ffile-prefix-map=*'
	mkdir -p "$CCACHE_DIR"
fi
say "building bzImage with -j$jobs, CC='$cc' (log: $log)"
make -C "$tree" O="$obj" -j"$jobs" CC="$cc" bzImage >> "$log" 2>&1 &
pid=$!
ticks=0
while kill -0 $pid 2>/dev/null; do
	sleep 5
	ticks=$((ticks + 1))
	[ $((ticks % 6)) = 0 ] && kill -0 $pid 2>/dev/null &&
		say "compiling: $(grep -c '^  CC ' "$log" || true) objects so far"
done
wait $pid || { tail -n 30 "$log" >&2; die "build failed, see $log"; }

say "installing uapi headers"
make -C "$tree" O="$obj" headers_install INSTALL_HDR_PATH="$out.tmp/headers" >> "$log" 2>&1 ||
	die "headers_install failed, see $log"
# The series' kselftests, built here against this tree's uapi so the guest
# suite can run them (the guest has the host's compiler but is slow at it).
shopt -s nullglob
for test_src in "$tree"/tools/testing/selftests/mm/vma_p2p*-tests.c; do
	mkdir -p "$out.tmp/selftests"
	test_bin=$out.tmp/selftests/$(basename "$test_src" .c)
	say "selftest: ${test_src#$tree/}"
	gcc -O2 -Wall -I"$tree" -I"$tree/tools/testing/selftests" -isystem "$out.tmp/headers/include" \
		-o "$test_bin" "$test_src" >> "$log" 2>&1 || die "building ${test_src#$tree/} failed, see $log"
done
# v3's (kernel-patches/v3 0009): an RDMA program, so it links libibverbs
# (libibverbs-dev, which setup installs).
for test_src in "$tree"/tools/testing/selftests/rdma/p2p_dma_buf_mr.c; do
	# A path without a wildcard is not a glob: nullglob keeps it when it is missing.
	[ -f "$test_src" ] || continue
	mkdir -p "$out.tmp/selftests"
	say "selftest: ${test_src#$tree/}"
	gcc -O2 -Wall -I"$tree/tools/testing/selftests" -isystem "$out.tmp/headers/include" \
		-o "$out.tmp/selftests/$(basename "$test_src" .c)" "$test_src" -libverbs >> "$log" 2>&1 ||
		die "building ${test_src#$tree/} failed, see $log"
done
shopt -u nullglob
cp "$obj/arch/x86/boot/bzImage" "$obj/.config" "$out.tmp/"
cp "$obj/System.map" "$out.tmp/"
{
	echo "variant=$name"
	echo "source=$pkg $src_version"
	echo "patches=${#patches[@]}"
	echo "key=$key"
	echo "built=$(date -u +%FT%TZ)"
	echo "seconds=$((SECONDS - start))"
} > "$out.tmp/build-info"
rm -rf "$out"
mv "$out.tmp" "$out"
ln -sfn "$(basename "$out")" "$cache/kernel/$name"
say "done: $out/bzImage"
[ $print_path = 1 ] && echo "$out"
exit 0
