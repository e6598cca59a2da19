// SPDX-License-Identifier: GPL-2.0
/*
 * p2p-paths: the kernel series' ways of giving an RDMA device another
 * device's memory, measured side by side in one guest for the v3 cover
 * letter (issue 26): registration cost against size, RDMA WRITE bandwidth
 * into the memory against host memory, and what a revocation does to an MR.
 *
 *   vma   ibv_reg_mr() on a mapping of the memory: v3 asks the VMA for the
 *         dma-buf behind it (p2p_dma_buf()), v2 for its pages (p2p_map())
 *   fd    ibv_reg_dmabuf_mr() on the exporter's dma-buf fd (v3's rxe)
 *
 * Memories: an NVMe CMB (--cmb DIR/p2pmem/allocate), a BAR through vfio-pci
 * (--vfio BDF: its VMA and, with VFIO_DEVICE_FEATURE_DMA_BUF, its dma-buf),
 * a BAR through v2's ivshmem_p2p (--ivshmem /dev/ivshmem_p2pN), and host
 * memory (the anchor). Each row: "p2p-paths METRIC PATH MEMORY VALUE UNIT";
 * what a kernel refuses is a row with the errno instead of a value.
 *
 *   gcc -O2 -Wall -o build/guest-c/p2p-paths bench/p2p-paths.c -libverbs
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "time-us.h"

/* Linux 6.19's uapi; the host's headers (Debian 12) predate it. */
#ifndef VFIO_DEVICE_FEATURE_DMA_BUF
#define VFIO_DEVICE_FEATURE_DMA_BUF 11
struct vfio_region_dma_range {
	__u64 offset;
	__u64 length;
};
struct vfio_device_feature_dma_buf {
	__u32 region_index;
	__u32 open_flags;
	__u32 flags;
	__u32 nr_ranges;
	struct vfio_region_dma_range dma_ranges[];
};
#endif
/* v2's ivshmem_p2p (kernel-patches/0008): zap every mapping of the BAR. */
#define IVSHMEM_P2P_IOCTL_REVOKE _IO(0xb9, 1)

/*
 * rdma-core's rxe provider (44, Debian 12) has no reg_dmabuf_mr, so
 * ibv_reg_dmabuf_mr() is EOPNOTSUPP before the kernel is asked; register as
 * that provider op would (as the addon does, native/rdma/rdma.cc): the
 * command into a calloc()ed struct verbs_mr (infiniband/driver.h, not
 * installed), which rxe's dereg_mr frees.
 */
struct verbs_mr {
	struct ibv_mr mr;
	int mr_type;
	int access;
};
int ibv_cmd_reg_dmabuf_mr(struct ibv_pd *pd, uint64_t offset, size_t length, uint64_t iova,
			  int fd, int access, struct verbs_mr *vmr, void *driver);

#define RW (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)
#define MSG (64 << 10)
#define DEPTH 16

static struct ibv_context *ctx;
static struct ibv_pd *pd;
static int gid_index, iterations = 7, rounds = 3;
static size_t bw_bytes = 16 << 20;


static void row(const char *metric, const char *path, const char *memory, double value, const char *unit)
{
	printf("p2p-paths %s %s %s %.1f %s\n", metric, path, memory, value, unit);
}

static void refused(const char *metric, const char *path, const char *memory, int err)
{
	printf("p2p-paths %s %s %s refused %s\n", metric, path, memory, strerrorname_np(err) ?: "?");
}

/* One registration of a target: a mapping (vma) or a dma-buf fd (fd). */
struct target {
	const char *path, *memory;
	void *addr;	/* vma */
	int fd;		/* fd, else -1 */
	size_t size;
};

static struct ibv_mr *reg(const struct target *t, size_t len)
{
	struct verbs_mr *vmr;
	struct ibv_mr *mr;
	int err;

	if (t->fd < 0)
		return ibv_reg_mr(pd, t->addr, len, RW);
	mr = ibv_reg_dmabuf_mr(pd, 0, len, 0, t->fd, RW);
	if (mr || errno != EOPNOTSUPP)
		return mr;
	vmr = calloc(1, sizeof(*vmr));
	if (!vmr)
		return NULL;
	err = ibv_cmd_reg_dmabuf_mr(pd, 0, len, 0, t->fd, RW, vmr, NULL);
	if (err) {
		free(vmr);
		errno = err;
		return NULL;
	}
	return &vmr->mr;
}

/* Median microseconds of one registration and deregistration. */
static void reg_cost(const struct target *t)
{
	static const size_t sizes[] = { 64 << 10, 1 << 20, 16 << 20 };
	char metric[32];
	double v[64];
	unsigned int s;
	int i;

	for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]) && sizes[s] <= t->size; s++) {
		snprintf(metric, sizeof(metric), "reg-%zuKiB", sizes[s] >> 10);
		for (i = 0; i < iterations; i++) {
			double t0 = now_us();
			struct ibv_mr *mr = reg(t, sizes[s]);

			if (!mr) {
				refused(metric, t->path, t->memory, errno);
				return;
			}
			ibv_dereg_mr(mr);
			v[i] = now_us() - t0;
		}
		row(metric, t->path, t->memory, median(v, iterations), "us");
	}
}

/* Two RC QPs on one port, connected to each other (rxe loops back). */
struct pair {
	struct ibv_cq *cq;
	struct ibv_qp *a, *b;
};

static int to_rts(struct ibv_qp *qp, uint32_t remote, union ibv_gid *gid)
{
	struct ibv_qp_attr at = {
		.qp_state = IBV_QPS_INIT, .port_num = 1, .qp_access_flags = RW,
	};

	if (ibv_modify_qp(qp, &at, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
		return -1;
	memset(&at, 0, sizeof(at));
	at.qp_state = IBV_QPS_RTR;
	at.path_mtu = IBV_MTU_1024;
	at.dest_qp_num = remote;
	at.max_dest_rd_atomic = 1;
	at.min_rnr_timer = 1;
	at.ah_attr.is_global = 1;
	at.ah_attr.grh.dgid = *gid;
	at.ah_attr.grh.sgid_index = gid_index;
	at.ah_attr.grh.hop_limit = 1;
	at.ah_attr.port_num = 1;
	if (ibv_modify_qp(qp, &at, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			  IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		return -1;
	memset(&at, 0, sizeof(at));
	at.qp_state = IBV_QPS_RTS;
	at.timeout = 14;
	at.retry_cnt = 7;
	at.rnr_retry = 7;
	at.max_rd_atomic = 1;
	return ibv_modify_qp(qp, &at, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			     IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
}

static int pair_open(struct pair *p)
{
	struct ibv_qp_init_attr ia = {
		.qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = DEPTH, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1 },
	};
	union ibv_gid gid;

	p->cq = ibv_create_cq(ctx, 2 * DEPTH, NULL, NULL, 0);
	if (!p->cq)
		return -1;
	ia.send_cq = ia.recv_cq = p->cq;
	p->a = ibv_create_qp(pd, &ia);
	p->b = ibv_create_qp(pd, &ia);
	if (!p->a || !p->b || ibv_query_gid(ctx, 1, gid_index, &gid))
		return -1;
	return to_rts(p->a, p->b->qp_num, &gid) || to_rts(p->b, p->a->qp_num, &gid) ? -1 : 0;
}

static void pair_close(struct pair *p)
{
	if (p->a)
		ibv_destroy_qp(p->a);
	if (p->b)
		ibv_destroy_qp(p->b);
	if (p->cq)
		ibv_destroy_cq(p->cq);
}

/* Posts `count` WRITEs of MSG bytes from src into dst (round robin over its
 * first len bytes), DEPTH in flight; returns 0, or the first bad status. */
static int writes(struct pair *p, struct ibv_mr *src, struct ibv_mr *dst, size_t len, int count)
{
	int posted = 0, done = 0;
	struct ibv_wc wc[DEPTH];

	while (done < count) {
		while (posted < count && posted - done < DEPTH) {
			struct ibv_sge sge = {
				.addr = (uintptr_t)src->addr, .length = MSG, .lkey = src->lkey,
			};
			struct ibv_send_wr wr = {
				.wr_id = posted, .sg_list = &sge, .num_sge = 1,
				.opcode = IBV_WR_RDMA_WRITE, .send_flags = IBV_SEND_SIGNALED,
				.wr.rdma = {
					.remote_addr = (uintptr_t)dst->addr + (size_t)posted * MSG % len,
					.rkey = dst->rkey,
				},
			}, *bad;

			/* An MR on a dma-buf fd is addressed from its iova, 0. */
			if (dst->addr == NULL)
				wr.wr.rdma.remote_addr = (size_t)posted * MSG % len;
			if (ibv_post_send(p->a, &wr, &bad))
				return -errno;
			posted++;
		}
		int n = ibv_poll_cq(p->cq, DEPTH, wc);

		for (int i = 0; i < n; i++)
			if (wc[i].status != IBV_WC_SUCCESS)
				return wc[i].status;
		done += n;
	}
	return 0;
}

/* MB/s of RDMA WRITE into the target, median of `rounds`. */
static void write_bw(const struct target *t, struct ibv_mr *src)
{
	size_t len = t->size < bw_bytes ? t->size : bw_bytes;
	int count = bw_bytes / MSG, r, status = 0;
	struct pair p = { 0 };
	struct ibv_mr *dst = reg(t, len);
	double v[16];

	if (!dst) {
		refused("write-64KiB", t->path, t->memory, errno);
		return;
	}
	if (pair_open(&p)) {
		fprintf(stderr, "p2p-paths: QP pair: %s\n", strerror(errno));
		exit(1);
	}
	for (r = 0; r < rounds && !status; r++) {
		double t0 = now_us();

		status = writes(&p, src, dst, len, count);
		v[r] = count * (double)MSG / (now_us() - t0);
	}
	if (status)
		printf("p2p-paths write-64KiB %s %s failed %s\n", t->path, t->memory,
		       status < 0 ? strerror(-status) : ibv_wc_status_str(status));
	else
		row("write-64KiB", t->path, t->memory, median(v, rounds), "MB/s");
	pair_close(&p);
	ibv_dereg_mr(dst);
}

/*
 * A revocation under a registered MR: the time from the exporter's revoke
 * call to the first WRITE that fails (v3: the exporter revokes the dma-buf,
 * rxe unmaps and cannot map again) or, where the design maps again (v2: the
 * MR follows the mapping), to the first WRITE that lands after it.
 */
static void revoke_under_mr(const struct target *t, struct ibv_mr *src, void (*trigger)(bool off), const char *how)
{
	double call[16], after[16];
	int r, status = 0;

	for (r = 0; r < rounds; r++) {
		struct pair p = { 0 };
		struct ibv_mr *dst = reg(t, 1 << 20);
		double t0;

		if (!dst) {
			refused("revoke", t->path, t->memory, errno);
			return;
		}
		if (pair_open(&p) || writes(&p, src, dst, 1 << 20, 1)) {
			fprintf(stderr, "p2p-paths: revoke %s %s: no WRITE before the revocation\n", t->path, t->memory);
			exit(1);
		}
		t0 = now_us();
		trigger(true);
		call[r] = now_us() - t0;
		status = writes(&p, src, dst, 1 << 20, 1);
		after[r] = now_us() - t0;
		trigger(false);
		pair_close(&p);
		ibv_dereg_mr(dst);
	}
	row("revoke-call", t->path, t->memory, median(call, rounds), "us");
	printf("p2p-paths revoke-to-%s %s %s %.1f us (%s; %s)\n", status ? "error" : "next-write",
	       t->path, t->memory, median(after, rounds), how, status ? ibv_wc_status_str(status) : "landed");
}

/* vfio-pci's BAR: memory decode off revokes its dma-bufs (v3). */
static int vfio_device = -1;
static off_t vfio_config;

static void vfio_memory_off(bool off)
{
	unsigned short cmd;

	if (pread(vfio_device, &cmd, 2, vfio_config + PCI_COMMAND) != 2)
		return;
	cmd = off ? cmd & ~PCI_COMMAND_MEMORY : cmd | PCI_COMMAND_MEMORY;
	if (pwrite(vfio_device, &cmd, 2, vfio_config + PCI_COMMAND) != 2)
		perror("p2p-paths: PCI_COMMAND");
}

static int ivshmem_fd = -1;

static void ivshmem_revoke(bool off)
{
	if (off && ioctl(ivshmem_fd, IVSHMEM_P2P_IOCTL_REVOKE))
		perror("p2p-paths: IVSHMEM_P2P_IOCTL_REVOKE");
}

static void measure(const struct target *t, struct ibv_mr *src)
{
	reg_cost(t);
	write_bw(t, src);
}

/* The BAR of a function bound to vfio-pci: its mapping and its dma-buf. */
static void vfio_targets(const char *bdf, int bar, struct ibv_mr *src)
{
	char path[256], link[256];
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = bar };
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	ssize_t n;
	int container, group;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0) {
		fprintf(stderr, "p2p-paths: %s: no IOMMU group (bind it to vfio-pci)\n", bdf);
		exit(1);
	}
	link[n] = 0;
	snprintf(path, sizeof(path), "/dev/vfio/noiommu-%s", strrchr(link, '/') + 1);
	bool noiommu = access(path, F_OK) == 0;

	if (!noiommu)
		snprintf(path, sizeof(path), "/dev/vfio/%s", strrchr(link, '/') + 1);
	container = open("/dev/vfio/vfio", O_RDWR);
	group = open(path, O_RDWR);
	if (container < 0 || group < 0 || ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) ||
	    ioctl(container, VFIO_SET_IOMMU, noiommu ? VFIO_NOIOMMU_IOMMU : VFIO_TYPE1v2_IOMMU)) {
		perror("p2p-paths: VFIO group");
		exit(1);
	}
	vfio_device = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (vfio_device < 0 || ioctl(vfio_device, VFIO_DEVICE_GET_REGION_INFO, &ri) ||
	    ioctl(vfio_device, VFIO_DEVICE_GET_REGION_INFO, &cfg)) {
		perror("p2p-paths: VFIO device");
		exit(1);
	}
	vfio_config = cfg.offset;

	struct target vma = { "vma", "vfio-bar", NULL, -1, ri.size };

	vma.addr = mmap(NULL, ri.size, PROT_READ | PROT_WRITE, MAP_SHARED, vfio_device, ri.offset);
	if (vma.addr == MAP_FAILED) {
		perror("p2p-paths: mmap of the BAR");
		exit(1);
	}
	measure(&vma, src);

	struct {
		struct vfio_device_feature f;
		struct vfio_device_feature_dma_buf d;
		struct vfio_region_dma_range r;
	} __attribute__((packed)) req = {
		.f = { .argsz = sizeof(req), .flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF },
		.d = { .region_index = bar, .open_flags = O_RDWR | O_CLOEXEC, .nr_ranges = 1 },
		.r = { .offset = 0, .length = ri.size },
	};
	struct target fd = { "fd", "vfio-bar", NULL, -1, ri.size };

	fd.fd = ioctl(vfio_device, VFIO_DEVICE_FEATURE, &req);
	if (fd.fd < 0)
		refused("export", "fd", "vfio-bar", errno);
	else
		measure(&fd, src);
	revoke_under_mr(&vma, src, vfio_memory_off, "memory decode off");
	if (fd.fd >= 0)
		revoke_under_mr(&fd, src, vfio_memory_off, "memory decode off");
}

static void pick_gid(void)
{
	union ibv_gid gid;

	/* rxe's IPv4-mapped RoCE v2 GID (::ffff:a.b.c.d), else index 0. */
	for (int i = 0; i < 16; i++) {
		if (ibv_query_gid(ctx, 1, i, &gid))
			break;
		if (gid.raw[10] == 0xff && gid.raw[11] == 0xff && !gid.global.subnet_prefix) {
			gid_index = i;
			return;
		}
	}
}

int main(int argc, char **argv)
{
	const char *device = "rxe0", *cmb = NULL, *bdf = NULL, *ivshmem = NULL;
	struct ibv_device **list;
	int opt, bar = 2;

	while ((opt = getopt(argc, argv, "d:c:v:b:s:i:r:")) != -1) {
		switch (opt) {
		case 'd': device = optarg; break;
		case 'c': cmb = optarg; break;
		case 'v': bdf = optarg; break;
		case 'b': bar = atoi(optarg); break;
		case 's': ivshmem = optarg; break;
		case 'i': iterations = atoi(optarg); break;
		case 'r': rounds = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: %s [-d rxe0] [-c CMB/p2pmem/allocate] [-v BDF [-b BAR]] [-s /dev/ivshmem_p2pN] [-i iterations] [-r rounds]\n", argv[0]);
			return 2;
		}
	}
	if (iterations < 1 || iterations > 64 || rounds < 1 || rounds > 16) {
		fprintf(stderr, "p2p-paths: -i 1..64, -r 1..16\n");
		return 2;
	}
	list = ibv_get_device_list(NULL);
	for (int i = 0; list && list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), device))
			ctx = ibv_open_device(list[i]);
	if (!ctx || !(pd = ibv_alloc_pd(ctx))) {
		fprintf(stderr, "p2p-paths: no RDMA device %s\n", device);
		return 1;
	}
	pick_gid();

	/* The source of every WRITE, and the anchor's target: host memory. */
	struct target host = { "vma", "host", aligned_alloc(4096, 16 << 20), -1, 16 << 20 };
	void *srcbuf = aligned_alloc(4096, MSG);
	struct ibv_mr *src = ibv_reg_mr(pd, srcbuf, MSG, RW);

	if (!host.addr || !src) {
		perror("p2p-paths: host memory");
		return 1;
	}
	memset(host.addr, 0, host.size);
	memset(srcbuf, 0x5a, MSG);
	measure(&host, src);

	if (cmb) {
		int fd = open(cmb, O_RDWR);
		struct target t = { "vma", "cmb", NULL, -1, 16 << 20 };

		t.addr = fd < 0 ? MAP_FAILED : mmap(NULL, t.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (t.addr == MAP_FAILED) {
			perror(cmb);
			return 1;
		}
		measure(&t, src);
		munmap(t.addr, t.size);
		close(fd);
	}
	if (bdf)
		vfio_targets(bdf, bar, src);
	if (ivshmem) {
		struct target t = { "vma", "ivshmem-p2p", NULL, -1, 16 << 20 };

		ivshmem_fd = open(ivshmem, O_RDWR);
		t.addr = ivshmem_fd < 0 ? MAP_FAILED :
			 mmap(NULL, t.size, PROT_READ | PROT_WRITE, MAP_SHARED, ivshmem_fd, 0);
		if (t.addr == MAP_FAILED) {
			perror(ivshmem);
			return 1;
		}
		measure(&t, src);
		revoke_under_mr(&t, src, ivshmem_revoke, "IVSHMEM_P2P_IOCTL_REVOKE");
	}
	return 0;
}
