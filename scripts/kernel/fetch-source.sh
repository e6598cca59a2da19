#!/usr/bin/env bash
# Print the path of Debian's linux-source-VERSION tarball, fetching it first
# if needed. 6.12 is bookworm's package (scripts/setup.sh installs it); any
# other version comes from trixie-backports (7.3) through a private apt state
# under the cache, so the machine's sources, pins and installed packages stay
# as they are. The tarball is kept in $P2PDMA_CACHE/src-debs/.
#
#   scripts/kernel/fetch-source.sh VERSION      -> /path/linux-source-VERSION.tar.xz
#   scripts/kernel/fetch-source.sh --version VERSION  -> the package's Debian version
set -euo pipefail

print=path
[ "${1:-}" = --version ] && { print=version; shift; }
version=${1:?usage: $0 [--version] VERSION}
[[ $version =~ ^[0-9]+\.[0-9]+$ ]] || { echo "$0: bad version '$version'" >&2; exit 2; }
pkg=linux-source-$version

if [ -r "/usr/src/$pkg.tar.xz" ] && dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
	[ $print = path ] && echo "/usr/src/$pkg.tar.xz" || dpkg-query -W -f='${Version}\n' "$pkg"
	exit 0
fi

cache=${P2PDMA_CACHE:-$HOME/.cache/p2pdma}
dir=$cache/src-debs/$pkg
# make test builds two kernels of one source at once: the second waits for
# the first one's download instead of finding it half done.
mkdir -p "$cache/src-debs"
exec 9> "$cache/src-debs/$pkg.lock"
flock 9
if [ ! -r "$dir/tarball/usr/src/$pkg.tar.xz" ]; then
	state=$cache/src-debs/apt
	mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$dir"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-backports main" > "$state/sources.list"
	apt_opts=(-q -o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache" -o APT::Sandbox::User=root)
	echo "[source] fetching $pkg from trixie-backports" >&2
	apt-get "${apt_opts[@]}" update >&2
	(cd "$dir" && rm -f ./*.deb && apt-get "${apt_opts[@]}" download "$pkg" >&2)
	rm -rf "$dir/tarball"
	dpkg-deb -x "$dir"/"$pkg"_*.deb "$dir/tarball"
	dpkg-deb -f "$dir"/"$pkg"_*.deb Version > "$dir/version"
	rm -f "$dir"/*.deb
fi
[ $print = path ] && echo "$dir/tarball/usr/src/$pkg.tar.xz" || cat "$dir/version"
