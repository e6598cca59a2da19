#!/usr/bin/env bash
# Build rdma-core's libibverbs and its providers with
# userspace-patches/rdma-core/ applied (rxe's reg_dmabuf_mr op, the user
# space half of kernel-patches/v3 0003), cached outside the clone.
#
#   scripts/rdma-core/build.sh [--print-path]
#
# A program uses it with LD_LIBRARY_PATH=DIR/lib (DIR: what --print-path
# prints); nothing is installed on the system. The source is Debian's
# rdma-core 56.1-1 (trixie): bookworm's 44.0 orig tarball is not served by
# the Debian mirror this project reaches, 56.1's is. Its libibverbs and
# providers replace the installed 44.0 ones together: 56.1's providers ask
# for the same private ABI (IBVERBS_PRIVATE_34) as 44.0's libibverbs exports,
# so one would load into the other, but the ABI changed under that name
# (ibv_cmd_reg_dmabuf_mr() gained an argument in 54.0). Programs built
# against 44.0 (pyverbs, perftest) run on 56.1's libibverbs: its public ABI
# is versioned and only grows.
#
# The libibverbs is built to be copied anywhere (the guest tests copy DIR/lib
# where uid 65534 can read it; the cache under /root is not): it reads the
# system's /etc/libibverbs.d like the installed one, and finds each provider
# it names (lib<name>-rdmav34.so) on the library search path, not in a
# directory compiled in. So every provider is built, not just rxe: a name
# without its library would cost a warning on every run.
#
# The result lands in $P2PDMA_CACHE/rdma-core/rxe-dmabuf-<key>/ (and the
# symlink rxe-dmabuf), where key hashes the source, the patches and the
# recipe: a second run is a cache hit (docs/harness.md has the costs).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${P2PDMA_CACHE:-$HOME/.cache/p2pdma}
jobs=${P2PDMA_JOBS:-$(($(nproc) + 1))}
# Bump when a change here changes what gets built (part of the cache key).
recipe=1
# Debian trixie's rdma-core, with the SHA-256 sums of its files as trixie's
# signed Sources index lists them (checked 2026-12-08 with a private apt
# state; the mirror does not serve 56.1-1's .dsc).
version=56.1 debian_rev=1
orig=rdma-core_$version.orig.tar.gz
orig_sha256=63ce7f2baa7242c2dbc76375dac957c420187dd27f8c5e148efc07971ee522a8
debian=rdma-core_$version-$debian_rev.debian.tar.xz
debian_sha256=4e27344a0ecfd591bd1081486a2006d2edb52782d209cd744da7faf3b8f0ded4
pool=${P2PDMA_DEBIAN_MIRROR:-http://deb.debian.org/debian}/pool/main/r/rdma-core
patch_dir=$repo/userspace-patches/rdma-core

print_path=0
case ${1:-} in
--print-path) print_path=1 ;;
'') ;;
*) echo "usage: $0 [--print-path]" >&2; exit 2 ;;
esac

start=$SECONDS
say() { printf '[rdma-core %3ds] %s\n' $((SECONDS - start)) "$*" >&2; }
die() { say "error: $*"; exit 1; }

patches=("$patch_dir"/*.patch)
[ -e "${patches[0]}" ] || die "no patches in $patch_dir"
key=$( {
	echo "recipe $recipe, rdma-core $version-$debian_rev $orig_sha256 $debian_sha256"
	for p in "${patches[@]}"; do echo "== ${p##*/}"; cat "$p"; done
} | sha256sum | cut -c1-16)
out=$cache/rdma-core/rxe-dmabuf-$key

done_path() {
	[ $print_path = 1 ] && echo "$out"
	return 0
}
if [ -f "$out/build-info" ]; then
	say "cached: $out"
	done_path
	exit 0
fi

# make test and a developer may build at once: the second waits, then
# finds the first one's result.
mkdir -p "$cache/rdma-core" "$cache/src-debs/rdma-core"
exec 9> "$cache/rdma-core/build.lock"
flock 9
if [ -f "$out/build-info" ]; then
	say "cached: $out (built while waiting)"
	done_path
	exit 0
fi

fetch() { # file sha256
	local f=$cache/src-debs/rdma-core/$1
	if [ -f "$f" ] && echo "$2  $f" | sha256sum -c --quiet 2>/dev/null; then return; fi
	say "fetching $1"
	curl -fsS --retry 3 -o "$f.part" "$pool/$1" || die "cannot fetch $pool/$1"
	echo "$2  $f.part" | sha256sum -c --quiet 2>/dev/null || { rm -f "$f.part"; die "$1: SHA-256 mismatch"; }
	mv "$f.part" "$f"
}
fetch "$orig" "$orig_sha256"
fetch "$debian" "$debian_sha256"

build=$cache/build/rdma-core-$key
rm -rf "$build" "$out.tmp"
mkdir -p "$build" "$out.tmp/lib"
trap 'rm -rf "$build" "$out.tmp"' EXIT
# Beside the result, not in it: a failed build's log stays.
log=$out.log
: > "$log"
say "unpacking rdma-core $version-$debian_rev"
tar -C "$build" -xzf "$cache/src-debs/rdma-core/$orig"
src=$build/rdma-core-$version
tar -C "$src" -xJf "$cache/src-debs/rdma-core/$debian"
# Debian's patches first (the package as trixie ships it), then ours.
apply() { patch -d "$src" -p1 -s --no-backup-if-mismatch -i "$1" >> "$log" 2>&1 || die "patch does not apply: $1 (see $log)"; }
while read -r p; do
	case $p in ''|'#'*) continue ;; esac
	apply "$src/debian/patches/$p"
done < "$src/debian/patches/series"
for p in "${patches[@]}"; do
	say "applying ${p##*/}"
	apply "$p"
done

say "configuring (log: $log)"
# CONFIG_DIR: the system's /etc/libibverbs.d. VERBS_PROVIDER_DIR empty:
# providers from the library search path, i.e. beside this libibverbs.
# No RPATH: nothing may point back into the build directory.
cmake -S "$src" -B "$build/obj" -G Ninja -DCMAKE_BUILD_TYPE=Release \
	-DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_SYSCONFDIR=/etc -DVERBS_PROVIDER_DIR= \
	-DCMAKE_SKIP_RPATH=ON -DNO_MAN_PAGES=1 -DNO_PYVERBS=1 -DENABLE_STATIC=0 \
	>> "$log" 2>&1 || die "cmake failed, see $log"

# The providers the system's config names, each with its ninja target
# (providers with a public library of their own are named without the
# -rdmav34 suffix).
targets=(ibverbs)
all_targets=$(ninja -C "$build/obj" -t targets all)
for f in /etc/libibverbs.d/*.driver; do
	name=$(sed -n 's/^driver[[:space:]]\+\([^[:space:]]*\).*/\1/p' "$f")
	[ -n "$name" ] || continue
	if grep -q "^$name-rdmav34: phony" <<< "$all_targets"; then targets+=("$name-rdmav34")
	elif grep -q "^$name: phony" <<< "$all_targets"; then targets+=("$name")
	else die "$f names '$name', which rdma-core $version does not build"
	fi
done
say "building libibverbs and ${#targets[@]} providers with -j$jobs"
ninja -C "$build/obj" -j"$jobs" "${targets[@]}" >> "$log" 2>&1 || { tail -n 30 "$log" >&2; die "build failed, see $log"; }

# The libraries and their symlinks (cmake makes a provider's symlink at
# configure time: only those whose target was built are copied).
for f in "$build/obj/lib"/lib*.so*; do
	[ -e "$f" ] && cp -a "$f" "$out.tmp/lib/"
done
for f in /etc/libibverbs.d/*.driver; do
	name=$(sed -n 's/^driver[[:space:]]\+\([^[:space:]]*\).*/\1/p' "$f")
	[ -e "$out.tmp/lib/lib$name-rdmav34.so" ] || die "lib$name-rdmav34.so was not built"
done
{
	echo "rdma-core=$version-$debian_rev"
	echo "patches=${patches[*]##*/}"
	echo "key=$key"
	echo "built=$(date -u +%FT%TZ)"
	echo "seconds=$((SECONDS - start))"
} > "$out.tmp/build-info"
mv "$log" "$out.tmp/build.log"
chmod -R a+rX "$out.tmp"
rm -rf "$out"
mv "$out.tmp" "$out"
rm -rf "$build"
trap - EXIT
ln -sfn "$(basename "$out")" "$cache/rdma-core/rxe-dmabuf"
say "done: $out"
done_path
