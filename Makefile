# p2pdma: build the addon, the guest kernels and run the suites.
# `make demo` is the flagship P2P flow in the guest; `make test` is what CI runs.

CLI       := node dist/cli.js
KERNEL    ?= baseline-7.3
TOPOLOGY  ?= switch
VMFLAGS   ?=

.PHONY: all setup build kernel kernels vm-test vm-shell test test-v2 test-pvrdma test-nodes host-test guest-test demo bench clean

all: build

setup:
	scripts/setup.sh

# node-gyp rebuilds build/ from scratch, so the guest's C programs come after it.
build: setup
	npm run build --silent
	npm run prebuildify --silent
	$(MAKE) -s -C test/guest/c OUT=$(CURDIR)/build/guest-c

# The guest kernels make test boots: stock 7.3, and 7.3 with kernel-patches/v3
# and the DEBUG options.
kernel kernels: setup
	scripts/kernel/build.sh --source 7.3 baseline
	scripts/kernel/build.sh --debug --source 7.3 patched

host-test: build
	npm test

# The guest suite on one kernel/topology: make vm-test KERNEL=patched-7.3 VMFLAGS=--debug
vm-test: build
	$(CLI) vm run --kernel $(KERNEL) --topology $(TOPOLOGY) $(VMFLAGS) -- scripts/guest-suite.sh

vm-shell: build
	$(CLI) vm shell --kernel $(KERNEL) --topology $(TOPOLOGY) $(VMFLAGS)

# Everything, ending in one "N passed, N failed" line.
test:
	scripts/test-all.sh

# Opt-in: the same lanes on 6.12, stock and with kernel-patches/ (v2): v2's own
# tests (its exporters, kselftests, revoke race). Two more kernel builds cold.
test-v2:
	P2PDMA_TEST_SERIES=v2 scripts/test-all.sh

# Opt-in: the RDMA tests on QEMU's pvrdma in a nested guest (slow: TCG inside TCG).
test-pvrdma: build
	scripts/test-pvrdma.sh

# Opt-in: the two-node tests (RDMA between two guests on one wire), on KERNEL:
#   make test-nodes KERNEL=patched-7.3 VMFLAGS=--debug
test-nodes: build
	KERNEL=$(KERNEL) VMFLAGS='$(VMFLAGS)' scripts/test-nodes.sh

# The flow on the patched kernel (DEMO_KERNEL), then on the baseline kernel,
# whose RDMA step shows the refusal the series removes: `p2pdma demo` prints
# each run's table and exits non-zero if a step failed (p2pdma demo --help).
DEMO_KERNEL ?= patched-7.3
demo: build
	$(CLI) demo --kernel $(DEMO_KERNEL) --topology $(TOPOLOGY) $(VMFLAGS)
	@echo "== the same on the stock kernel (Linux 7.3 without the series)"
	$(CLI) demo --kernel baseline-7.3 --topology $(TOPOLOGY)

# The benchmark suites in the guest, A/B across kernels (p2pdma bench --help):
#   make bench BENCHFLAGS='--kernels baseline,patched --rounds 5'
# It refuses a busy machine (load, other QEMU or compilers); --allow-busy marks the results.
BENCHFLAGS ?=
bench: build
	$(CLI) bench $(BENCHFLAGS)

clean:
	rm -rf build dist prebuilds .tap

# dma-buf CPU access, JS vs C on the same buffer, in the guest (docs/benchmarks.md).
.PHONY: bench-dmabuf
bench-dmabuf: build
	$(CLI) vm run --kernel $(KERNEL) --topology $(TOPOLOGY) $(VMFLAGS) -- node bench/dmabuf.js
