#!/usr/bin/env bash
# Every program and header the build, the harness and the guest use, with
# the Debian package that provides it. scripts/setup.sh installs the packages
# (PACKAGES below is its list) and runs this to prove nothing is missing, so
# a fresh machine fails here, by name, instead of 20 minutes into a kernel
# build (as it once did: rsync is only a Recommends of linux-source-6.12).
#
#   scripts/check-tools.sh            check, exit 1 naming what is missing
#   scripts/check-tools.sh --packages print the package list
set -uo pipefail

# command-or-/path:package. Paths are headers or files, the rest commands.
NEEDS=(
	# kernel build (scripts/kernel/build.sh)
	make:make gcc:gcc ld:binutils flex:flex bison:bison bc:bc perl:perl
	tar:tar xz:xz-utils git:git rsync:rsync sha256sum:coreutils
	/usr/include/libelf.h:libelf-dev /usr/include/openssl/ssl.h:libssl-dev
	/usr/src/linux-source-6.12.tar.xz:linux-source-6.12 ccache:ccache
	# the addon and the guest's C programs
	python3:python3 g++:g++ /usr/include/infiniband/verbs.h:libibverbs-dev
	/usr/include/rdma/rdma_cma.h:librdmacm-dev /usr/lib/x86_64-linux-gnu/librdmacm.so.1:librdmacm1
	# struct layouts native/core/uapi.cc checks lib/core/uapi.ts against
	/usr/include/libdrm/drm.h:libdrm-dev
	# the harness (harness/vm/)
	qemu-system-x86_64:qemu-system-x86
	# the guest runs the host's programs (scripts/vm/init, test/guest/, bench/)
	bash:bash mount:mount mountpoint:util-linux setsid:util-linux dmesg:util-linux
	poweroff:systemd-sysv hostname:hostname ip:iproute2 rdma:iproute2
	ibv_devices:ibverbs-utils ib_write_bw:perftest nvme:nvme-cli lspci:pciutils
	/usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so:ibverbs-providers
	/usr/sbin/rdma-ndd:rdma-core
	# test/guest/rdma-pyverbs.test.ts: rdma-core's Python bindings beside the addon
	/usr/lib/python3/dist-packages/pyverbs/__init__.py:python3-pyverbs
	# rdma-core with rxe's reg_dmabuf_mr (scripts/rdma-core/build.sh)
	cmake:cmake ninja:ninja-build pkg-config:pkgconf curl:curl patch:patch
	/usr/lib/x86_64-linux-gnu/pkgconfig/libnl-3.0.pc:libnl-3-dev
	/usr/lib/x86_64-linux-gnu/pkgconfig/libnl-route-3.0.pc:libnl-route-3-dev
)

if [ "${1:-}" = --packages ]; then
	printf '%s\n' "${NEEDS[@]}" | cut -d: -f2 | sort -u
	exit 0
fi

missing=()
for need in "${NEEDS[@]}"; do
	what=${need%%:*} pkg=${need#*:}
	if [[ $what == /* ]]; then
		[ -e "$what" ] || missing+=("$what ($pkg)")
	else
		command -v "$what" >/dev/null || missing+=("$what ($pkg)")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "[check-tools] missing: ${missing[*]}" >&2
	exit 1
fi
echo "[check-tools] all ${#NEEDS[@]} programs and files present"
