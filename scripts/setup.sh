#!/usr/bin/env bash
# Install what the harness needs on a fresh Debian 12 machine (as root), then
# the npm dependencies, then prove every tool is there. Cheap when everything
# is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# One list: scripts/check-tools.sh names every program and file the build,
# the harness and the guest use, with its package, and checks them after.
mapfile -t packages < <(scripts/check-tools.sh --packages)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "[setup] apt-get install ${missing[*]}"
	if [ "$(id -u)" != 0 ]; then
		echo "[setup] need root for apt-get: run 'sudo $0' once" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
	echo "[setup] npm ci"
	npm ci --no-audit --no-fund
fi
scripts/check-tools.sh
echo "[setup] ok"
