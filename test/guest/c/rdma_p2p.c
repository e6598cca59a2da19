// SPDX-License-Identifier: GPL-2.0
/*
 * rdma_p2p: register an RDMA memory region on a mapping of device memory
 * and move data into and out of it over rxe, in loopback.
 *
 *   rdma_p2p [options] TARGET
 *
 * TARGET is what gets mapped (MAP_SHARED, offset 0) and registered:
 *   /sys/bus/pci/devices/<bdf>/p2pmem/allocate   an NVMe CMB (P2PDMA pages)
 *   /dev/ivshmem_p2pN                            the ivshmem BAR (no struct page)
 *   anon                                         anonymous host memory
 *
 * Steps: ibv_reg_mr() on the mapping; RDMA WRITE from a host buffer into it
 * over an RC QP connected to a second QP of the same process, checked
 * through the mapping; RDMA READ of a pattern written through the mapping
 * back into host memory. Options add an NVMe O_DIRECT round trip of the
 * mapping and a revocation (ivshmem REVOKE ioctl or munmap) after which
 * an RDMA WRITE must fail with a remote access error.
 *
 * Prints one line of JSON and exits with:
 *   0 all steps passed       4 an RDMA operation failed
 *   1 usage or setup error   5 data mismatch
 *   2 open/mmap failed       6 NVMe I/O failed or mismatched
 *   3 ibv_reg_mr failed      7 the RDMA WRITE after revocation did not fail
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <infiniband/verbs.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* include/uapi/misc/ivshmem_p2p.h of the patched kernel */
struct ivshmem_p2p_info {
	uint64_t size;
	uint64_t bus_addr;
	uint32_t active_maps;
	uint32_t revokes;
};
#define IVSHMEM_P2P_IOCTL_INFO		_IOR(0xB9, 0x00, struct ivshmem_p2p_info)
#define IVSHMEM_P2P_IOCTL_REVOKE	_IO(0xB9, 0x01)

enum {
	EX_OK, EX_SETUP, EX_MAP, EX_REG, EX_RDMA, EX_DATA, EX_NVME, EX_REVOKE,
};

static char json[8192];
static size_t json_len;

static void jadd(const char *fmt, ...)
{
	va_list ap;

	if (json_len >= sizeof(json))
		return;
	va_start(ap, fmt);
	json_len += vsnprintf(json + json_len, sizeof(json) - json_len, fmt, ap);
	va_end(ap);
}

static const char *errname(int err)
{
	const char *name = strerrorname_np(err);

	return name ? name : "unknown";
}

/* Print the JSON line, with "ok" and, on failure, the stage and errno. */
static void finish(int status, const char *stage, int err)
{
	printf("{\"ok\":%s", status == EX_OK ? "true" : "false");
	if (stage)
		printf(",\"stage\":\"%s\"", stage);
	if (err)
		printf(",\"errno\":\"%s\",\"error\":\"%s\"", errname(err),
		       strerror(err));
	printf(",\"exit\":%d%s}\n", status, json);
	fflush(stdout);
	exit(status);
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void fill(uint8_t *buf, size_t len, uint32_t seed)
{
	size_t i;

	for (i = 0; i < len; i++) {
		seed = seed * 1103515245 + 12345;
		buf[i] = seed >> 16;
	}
}

/* Through a device mapping: word-sized copies, no vector instructions. */
static void copy_to_map(volatile uint8_t *dst, const uint8_t *src, size_t len)
{
	size_t i;

	for (i = 0; i + 8 <= len; i += 8)
		*(volatile uint64_t *)(dst + i) = *(const uint64_t *)(src + i);
	for (; i < len; i++)
		dst[i] = src[i];
}

static void copy_from_map(uint8_t *dst, const volatile uint8_t *src, size_t len)
{
	size_t i;

	for (i = 0; i + 8 <= len; i += 8)
		*(uint64_t *)(dst + i) = *(const volatile uint64_t *)(src + i);
	for (; i < len; i++)
		dst[i] = src[i];
}

static long first_diff(const uint8_t *a, const uint8_t *b, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (a[i] != b[i])
			return i;
	return -1;
}

struct loopback {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_qp *qp[2];
	int gid_index;
	union ibv_gid gid;
};

/* The RoCEv2 GID of the port's IPv4 address (::ffff:a.b.c.d). */
static int find_gid(struct loopback *lb, int port, const char *ipv4)
{
	struct in_addr want;
	struct ibv_gid_entry entry;
	struct ibv_port_attr pattr;
	int i;

	if (inet_pton(AF_INET, ipv4, &want) != 1)
		return -1;
	if (ibv_query_port(lb->ctx, port, &pattr))
		return -1;
	for (i = 0; i < pattr.gid_tbl_len; i++) {
		if (ibv_query_gid_ex(lb->ctx, port, i, &entry, 0))
			continue;
		if (entry.gid_type != IBV_GID_TYPE_ROCE_V2)
			continue;
		if (memcmp(&entry.gid.raw[12], &want, 4) == 0 &&
		    entry.gid.raw[10] == 0xff && entry.gid.raw[11] == 0xff) {
			lb->gid = entry.gid;
			return i;
		}
	}
	return -1;
}

static int qp_connect(struct loopback *lb, struct ibv_qp *qp, uint32_t dest)
{
	struct ibv_qp_attr a;

	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_INIT;
	a.port_num = 1;
	a.qp_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX |
			  IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
		return -1;

	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = IBV_MTU_1024;
	a.dest_qp_num = dest;
	a.rq_psn = 0;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = 12;
	a.ah_attr.is_global = 1;
	a.ah_attr.grh.dgid = lb->gid;
	a.ah_attr.grh.sgid_index = lb->gid_index;
	a.ah_attr.grh.hop_limit = 1;
	a.ah_attr.port_num = 1;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
			  IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
			  IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		return -1;

	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.sq_psn = 0;
	a.max_rd_atomic = 1;
	return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT |
			     IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
			     IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
}

static int loopback_open(struct loopback *lb, const char *devname,
			 const char *ipv4)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_qp_init_attr init;
	int i;

	if (!list)
		return -1;
	for (i = 0; list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), devname))
			lb->ctx = ibv_open_device(list[i]);
	ibv_free_device_list(list);
	if (!lb->ctx)
		return -1;
	lb->pd = ibv_alloc_pd(lb->ctx);
	lb->cq = lb->pd ? ibv_create_cq(lb->ctx, 16, NULL, NULL, 0) : NULL;
	if (!lb->cq)
		return -1;
	lb->gid_index = find_gid(lb, 1, ipv4);
	if (lb->gid_index < 0) {
		errno = ENOENT;
		return -1;
	}

	memset(&init, 0, sizeof(init));
	init.send_cq = lb->cq;
	init.recv_cq = lb->cq;
	init.qp_type = IBV_QPT_RC;
	init.cap.max_send_wr = 8;
	init.cap.max_recv_wr = 8;
	init.cap.max_send_sge = 1;
	init.cap.max_recv_sge = 1;
	for (i = 0; i < 2; i++) {
		lb->qp[i] = ibv_create_qp(lb->pd, &init);
		if (!lb->qp[i])
			return -1;
	}
	if (qp_connect(lb, lb->qp[0], lb->qp[1]->qp_num) ||
	    qp_connect(lb, lb->qp[1], lb->qp[0]->qp_num))
		return -1;
	return 0;
}

/*
 * Post one RDMA WRITE or READ on qp[0] (the responder, qp[1], accesses the
 * remote MR) and wait for its completion. Returns the completion status,
 * or -1 on a posting error or timeout.
 */
static int rdma_op(struct loopback *lb, enum ibv_wr_opcode op,
		   struct ibv_mr *local, void *laddr, struct ibv_mr *remote,
		   void *raddr, size_t len, double *us)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)laddr, .length = len, .lkey = local->lkey,
	};
	struct ibv_send_wr wr = {
		.wr_id = 1, .sg_list = &sge, .num_sge = 1, .opcode = op,
		.send_flags = IBV_SEND_SIGNALED,
	}, *bad;
	struct ibv_wc wc;
	double t0 = now_us(), deadline = t0 + 60e6;
	int n;

	wr.wr.rdma.remote_addr = (uintptr_t)raddr;
	wr.wr.rdma.rkey = remote->rkey;
	if (ibv_post_send(lb->qp[0], &wr, &bad))
		return -1;
	do {
		n = ibv_poll_cq(lb->cq, 1, &wc);
		if (n < 0)
			return -1;
		if (!n && now_us() > deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
	} while (!n);
	if (us)
		*us = now_us() - t0;
	return wc.status;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: rdma_p2p [-d rxe0] [-a 10.0.2.15] [-s bytes] [-n /dev/nvmeXn1]\n"
		"                [-o nvme-offset] [--revoke] [--munmap] TARGET\n"
		"TARGET: a p2pmem/allocate file, /dev/ivshmem_p2pN, or anon\n");
	exit(EX_SETUP);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "device", required_argument, NULL, 'd' },
		{ "addr", required_argument, NULL, 'a' },
		{ "size", required_argument, NULL, 's' },
		{ "nvme", required_argument, NULL, 'n' },
		{ "nvme-offset", required_argument, NULL, 'o' },
		{ "revoke", no_argument, NULL, 'R' },
		{ "munmap", no_argument, NULL, 'U' },
		{ }
	};
	const char *devname = "rxe0", *ipv4 = "10.0.2.15", *nvme = NULL;
	const char *target, *kind;
	size_t size = 1 << 20;
	off_t nvme_off = 8 << 20;
	int revoke = 0, unmap = 0, fd = -1, c, st, access;
	struct ivshmem_p2p_info info;
	struct loopback lb = { 0 };
	struct ibv_mr *mr, *src_mr, *dst_mr;
	uint8_t *map, *src, *dst, *chk;
	double t0, reg_us, us;
	uint32_t seed;
	long diff;

	while ((c = getopt_long(argc, argv, "d:a:s:n:o:", opts, NULL)) != -1) {
		switch (c) {
		case 'd': devname = optarg; break;
		case 'a': ipv4 = optarg; break;
		case 's': size = strtoull(optarg, NULL, 0); break;
		case 'n': nvme = optarg; break;
		case 'o': nvme_off = strtoll(optarg, NULL, 0); break;
		case 'R': revoke = 1; break;
		case 'U': unmap = 1; break;
		default: usage();
		}
	}
	if (optind != argc - 1 || !size || size % 4096)
		usage();
	target = argv[optind];
	kind = !strcmp(target, "anon") ? "anon" :
	       strstr(target, "p2pmem/allocate") ? "p2pmem" :
	       strstr(target, "ivshmem_p2p") ? "ivshmem" : "file";
	jadd(",\"target\":\"%s\",\"kind\":\"%s\",\"size\":%zu", target, kind,
	     size);

	if (posix_memalign((void **)&src, 4096, size) ||
	    posix_memalign((void **)&dst, 4096, size) ||
	    posix_memalign((void **)&chk, 4096, size))
		finish(EX_SETUP, "alloc", ENOMEM);

	if (!strcmp(kind, "anon")) {
		map = mmap(NULL, size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	} else {
		fd = open(target, O_RDWR);
		if (fd < 0)
			finish(EX_MAP, "open", errno);
		map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
			   0);
	}
	if (map == MAP_FAILED)
		finish(EX_MAP, "mmap", errno);
	/* Not zero: the RDMA WRITE must visibly change it. */
	memset(chk, 0x5a, size);
	copy_to_map(map, chk, size);

	if (loopback_open(&lb, devname, ipv4))
		finish(EX_SETUP, "rdma_setup", errno ? errno : ENODEV);
	jadd(",\"device\":\"%s\",\"gid_index\":%d", devname, lb.gid_index);

	access = IBV_ACCESS_LOCAL_WRITE;
	src_mr = ibv_reg_mr(lb.pd, src, size, access);
	dst_mr = ibv_reg_mr(lb.pd, dst, size, access);
	if (!src_mr || !dst_mr)
		finish(EX_SETUP, "reg_mr_host", errno);

	access |= IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
	t0 = now_us();
	mr = ibv_reg_mr(lb.pd, map, size, access);
	reg_us = now_us() - t0;
	if (!mr)
		finish(EX_REG, "reg_mr", errno);
	jadd(",\"reg_mr\":\"ok\",\"reg_us\":%.0f", reg_us);
	if (!strcmp(kind, "ivshmem") && !ioctl(fd, IVSHMEM_P2P_IOCTL_INFO, &info))
		jadd(",\"active_maps\":%u", info.active_maps);

	/* RDMA WRITE host -> device memory, checked through the mapping. */
	fill(src, size, 1);
	st = rdma_op(&lb, IBV_WR_RDMA_WRITE, src_mr, src, mr, map, size, &us);
	if (st)
		finish(EX_RDMA, "rdma_write", st < 0 ? errno : 0);
	copy_from_map(chk, map, size);
	diff = first_diff(chk, src, size);
	jadd(",\"write\":\"ok\",\"write_us\":%.0f,\"write_verified\":%s", us,
	     diff < 0 ? "true" : "false");
	if (diff >= 0) {
		jadd(",\"mismatch_at\":%ld", diff);
		finish(EX_DATA, "write_verify", 0);
	}

	/* RDMA READ device memory -> host of a pattern the CPU put there. */
	seed = 2;
	fill(chk, size, seed);
	copy_to_map(map, chk, size);
	memset(dst, 0, size);
	st = rdma_op(&lb, IBV_WR_RDMA_READ, dst_mr, dst, mr, map, size, &us);
	if (st)
		finish(EX_RDMA, "rdma_read", st < 0 ? errno : 0);
	diff = first_diff(dst, chk, size);
	jadd(",\"read\":\"ok\",\"read_us\":%.0f,\"read_verified\":%s", us,
	     diff < 0 ? "true" : "false");
	if (diff >= 0) {
		jadd(",\"mismatch_at\":%ld", diff);
		finish(EX_DATA, "read_verify", 0);
	}

	/* The mapping to the namespace with O_DIRECT, and back into host memory. */
	if (nvme) {
		int nfd = open(nvme, O_RDWR | O_DIRECT);
		ssize_t n;

		if (nfd < 0)
			finish(EX_NVME, "nvme_open", errno);
		seed = 3;
		fill(src, size, seed);
		st = rdma_op(&lb, IBV_WR_RDMA_WRITE, src_mr, src, mr, map,
			     size, NULL);
		if (st)
			finish(EX_RDMA, "rdma_write_nvme", st < 0 ? errno : 0);
		n = pwrite(nfd, map, size, nvme_off);
		if (n != (ssize_t)size)
			finish(EX_NVME, "nvme_write", n < 0 ? errno : EIO);
		memset(dst, 0, size);
		n = pread(nfd, dst, size, nvme_off);
		if (n != (ssize_t)size)
			finish(EX_NVME, "nvme_read", n < 0 ? errno : EIO);
		close(nfd);
		diff = first_diff(dst, src, size);
		jadd(",\"nvme\":\"ok\",\"nvme_verified\":%s",
		     diff < 0 ? "true" : "false");
		if (diff >= 0)
			finish(EX_NVME, "nvme_verify", 0);
	}

	/* Take the memory away: the MR must stop working, cleanly. */
	if (revoke || unmap) {
		if (revoke) {
			if (ioctl(fd, IVSHMEM_P2P_IOCTL_REVOKE))
				finish(EX_REVOKE, "revoke_ioctl", errno);
			if (!ioctl(fd, IVSHMEM_P2P_IOCTL_INFO, &info))
				jadd(",\"active_maps_after_revoke\":%u",
				     info.active_maps);
		} else if (munmap(map, size)) {
			finish(EX_REVOKE, "munmap", errno);
		}
		fill(src, size, 4);
		st = rdma_op(&lb, IBV_WR_RDMA_WRITE, src_mr, src, mr, map,
			     size, NULL);
		if (st < 0)
			finish(EX_REVOKE, "rdma_write_after_revoke", errno);
		jadd(",\"after_revoke\":\"%s\"", ibv_wc_status_str(st));
		if (st != IBV_WC_REM_ACCESS_ERR)
			finish(EX_REVOKE, "after_revoke", 0);
		if (revoke) {
			/* CPU access faults the BAR back in; no RDMA got there. */
			copy_from_map(chk, map, size);
			fill(dst, size, seed);
			diff = first_diff(chk, dst, size);
			jadd(",\"untouched_after_revoke\":%s",
			     diff < 0 ? "true" : "false");
			if (diff >= 0)
				finish(EX_REVOKE, "untouched_after_revoke", 0);
		}
	}

	if (ibv_dereg_mr(mr))
		finish(EX_RDMA, "dereg_mr", errno);
	if (!strcmp(kind, "ivshmem") && !ioctl(fd, IVSHMEM_P2P_IOCTL_INFO, &info))
		jadd(",\"active_maps_after_dereg\":%u", info.active_maps);
	finish(EX_OK, NULL, 0);
	return 0;
}
