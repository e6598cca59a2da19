#!/usr/bin/env bash
# Run CI (.ci/run) cold, the way a new machine would: in a chroot made from a
# bare Debian 12 image (debootstrap minbase: no git, no rsync, no QEMU, no
# kernel tools) holding a clean clone of this repository and an empty cache.
# Only what every machine of ours comes with is added: make, g++ and python3
# (Debian packages), the node/npm install, Node's headers (npm's nodedir) and
# the CA and npm settings the registries need.
# This is how docs/harness.md's cold CI time is measured; not part of make test.
#
#   scripts/bare-run.sh DIR [COMMIT]     (as root; DIR must not exist)
#
# The chroot stays in DIR (its cache too) for inspection; umount its
# proc/sys/dev mounts (listed at the end) before deleting it.
set -euo pipefail

dir=${1:?usage: $0 DIR [COMMIT]}
commit=${2:-HEAD}
repo=$(cd "$(dirname "$0")/.." && pwd)
[ ! -e "$dir" ] || { echo "$dir exists" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (debootstrap, chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null

say() { printf '[bare-run %s] %s\n' "$(date -u +%T)" "$*"; }
say "debootstrap bookworm (minbase) into $dir"
debootstrap --variant=minbase --include=make,g++,python3 bookworm "$dir" http://deb.debian.org/debian >"$dir.debootstrap.log" 2>&1
cp /etc/apt/sources.list.d/debian.sources "$dir/etc/apt/sources.list.d/" 2>/dev/null &&
	rm -f "$dir/etc/apt/sources.list"

say "copying in what every machine has: node, npm, Node's headers, CA and npm settings"
cp /usr/bin/node "$dir/usr/bin/node"
mkdir -p "$dir/usr/lib/node_modules" "$dir/usr/include"
cp -a "$(dirname "$(readlink -f "$(command -v npm)")")/.." "$dir/usr/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$dir/usr/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$dir/usr/bin/npx"
[ -d /usr/include/node ] && cp -a /usr/include/node "$dir/usr/include/"
mkdir -p "$dir/etc/ssl/certs" "$dir/root"
cp /etc/resolv.conf "$dir/etc/"
cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/"
[ -f /root/.npmrc ] && cp /root/.npmrc "$dir/root/"

say "clean clone of $commit"
git clone -q "$repo" "$dir/repo"
git -C "$dir/repo" checkout -q --detach "$commit"

for m in proc sys dev dev/pts; do mount --bind "/$m" "$dir/$m"; done
say "cold .ci/run"
start=$SECONDS
set +e
chroot "$dir" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt TERM=dumb \
	bash -c 'cd /repo && bash .ci/run' 2>&1 | tee "$dir.ci.log"
rc=${PIPESTATUS[0]}
set -e
say "cold .ci/run: exit $rc after $((SECONDS - start)) s (log: $dir.ci.log)"
say "mounts to remove before deleting $dir: $dir/{dev/pts,dev,sys,proc}"
exit "$rc"
