#!/bin/bash
# NVMe -> CMB -> NVMe copy, addon P2P vs C P2P vs bounce through host memory,
# in the test guest (see bench/nvme-p2p-copy.js):
#   node dist/cli.js vm run --kernel baseline -- bench/nvme-p2p-copy.sh
# nvme-p2p-copy is built on the host by `make -C test/guest/c`.
set -eu
cd "$(dirname "$0")/.."
# One pool thread per copy in flight, and one for each read/write pair's
# other half: the addon's cap (Nvme.maxInFlight) is raised to match.
export UV_THREADPOOL_SIZE=${UV_THREADPOOL_SIZE:-16}
exec node bench/nvme-p2p-copy.js
