// SPDX-License-Identifier: GPL-2.0
/*
 * Split the mapping under a live rxe MR on device memory, then use the MR:
 *
 *   p2p_mr_split [-d rxe0] TARGET PAGES
 *
 * TARGET: a file to map shared (a p2pmem/allocate file, /dev/ivshmem_p2pN),
 * or vfio:BDF for BAR 2 of a function bound to vfio-pci (the program opens
 * its group: nothing else may hold it). The mapping must be at least 16
 * pages.
 *
 * Issue 26's v2 defect 4: a partial mprotect() or madvise() splits the VMA,
 * and the pieces of a VM_SPECIAL mapping (VM_PFNMAP, VM_MIXEDMAP) never merge
 * back, so v2's MR, which maps its range through one VMA again after every
 * invalidation, is dead for good. v3's MR is on the exporter's dma-buf and
 * does not look at the VMA after registration. Steps, each reported:
 * register the whole range; an RDMA WRITE into it; mprotect(PROT_READ) of
 * pages 4-5 and back to read-write, madvise(MADV_DONTFORK) of pages 10-11;
 * the VMAs now over the range (/proc/self/maps); a WRITE of new data and a
 * READ of it back, each on a fresh QP pair; registering one piece, and the
 * whole range again.
 *
 * Output: one JSON line; an operation is "ok", a work completion status
 * ("IBV_WC_REM_ACCESS_ERR"), "timeout" (no completion in 20 s: RNR retries
 * forever, say), "mismatch" (completed, but the data is not where it
 * should be), or an errno name. Exit status 0 once the JSON is out, 2 on a
 * setup error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <linux/vfio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define RW (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)
#define PAGE 4096UL
#define TIMEOUT_S 20

static struct ibv_context *ctx;
static struct ibv_pd *pd;
static int gid_index;

static void die(const char *what)
{
	printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
	exit(2);
}

/* BAR 2 of @bdf, through its VFIO group in no-IOMMU mode or not. */
static void *map_vfio_bar(const char *bdf, size_t len)
{
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = 2 };
	char path[256], link[256];
	int container, group, device, noiommu;
	ssize_t n;
	void *p;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		die("iommu_group");
	link[n] = 0;
	snprintf(path, sizeof(path), "/dev/vfio/noiommu-%s", strrchr(link, '/') + 1);
	noiommu = access(path, F_OK) == 0;
	if (!noiommu)
		snprintf(path, sizeof(path), "/dev/vfio/%s", strrchr(link, '/') + 1);
	container = open("/dev/vfio/vfio", O_RDWR);
	group = open(path, O_RDWR);
	if (container < 0 || group < 0 ||
	    ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) ||
	    ioctl(container, VFIO_SET_IOMMU, noiommu ? VFIO_NOIOMMU_IOMMU : VFIO_TYPE1v2_IOMMU))
		die("VFIO group");
	device = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (device < 0 || ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &ri))
		die("VFIO device");
	if (ri.size < len) {
		errno = ENOSPC;
		die("BAR 2");
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, device, ri.offset);
	return p;
}

static void *map_target(const char *target, size_t len)
{
	void *p;
	int fd;

	if (!strncmp(target, "vfio:", 5))
		return map_vfio_bar(target + 5, len);
	fd = open(target, O_RDWR);
	if (fd < 0)
		die("open target");
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return p;
}

/* rxe's IPv4-mapped RoCE v2 GID (::ffff:a.b.c.d), else index 0. */
static void pick_gid(void)
{
	union ibv_gid gid;

	for (int i = 0; i < 16 && !ibv_query_gid(ctx, 1, i, &gid); i++) {
		if (gid.raw[10] == 0xff && gid.raw[11] == 0xff && !gid.global.subnet_prefix) {
			gid_index = i;
			return;
		}
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

	if (ibv_modify_qp(qp, &at, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
			  IBV_QP_ACCESS_FLAGS))
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
	if (ibv_modify_qp(qp, &at, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
			  IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
			  IBV_QP_MIN_RNR_TIMER))
		return -1;
	memset(&at, 0, sizeof(at));
	at.qp_state = IBV_QPS_RTS;
	at.timeout = 14;
	at.retry_cnt = 7;
	/* retried for ever, as the addon's loopback pairs: v2's revoked MR RNR NAKs */
	at.rnr_retry = 7;
	at.max_rd_atomic = 1;
	return ibv_modify_qp(qp, &at, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			     IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
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

/* One RDMA WRITE or READ of @len bytes between @local and @remote, on a fresh pair. */
static const char *rdma_op(enum ibv_wr_opcode op, struct ibv_mr *local, struct ibv_mr *remote,
			   size_t len)
{
	struct ibv_qp_init_attr ia = {
		.qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = 1, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1 },
	};
	struct ibv_sge sge = { .addr = (uintptr_t)local->addr, .length = len, .lkey = local->lkey };
	struct ibv_send_wr wr = {
		.sg_list = &sge, .num_sge = 1, .opcode = op, .send_flags = IBV_SEND_SIGNALED,
		.wr.rdma = { .remote_addr = (uintptr_t)remote->addr, .rkey = remote->rkey },
	}, *bad;
	static char status[64];
	struct pair p = { 0 };
	union ibv_gid gid;
	struct ibv_wc wc;
	time_t end = time(NULL) + TIMEOUT_S;
	int n = 0;

	p.cq = ibv_create_cq(ctx, 4, NULL, NULL, 0);
	if (!p.cq)
		die("ibv_create_cq");
	ia.send_cq = ia.recv_cq = p.cq;
	p.a = ibv_create_qp(pd, &ia);
	p.b = ibv_create_qp(pd, &ia);
	if (!p.a || !p.b || ibv_query_gid(ctx, 1, gid_index, &gid) ||
	    to_rts(p.a, p.b->qp_num, &gid) || to_rts(p.b, p.a->qp_num, &gid))
		die("QP pair");
	if (ibv_post_send(p.a, &wr, &bad))
		die("ibv_post_send");
	while ((n = ibv_poll_cq(p.cq, 1, &wc)) == 0 && time(NULL) < end)
		usleep(1000);
	if (n < 0)
		die("ibv_poll_cq");
	/* a timed-out WR is still posted: destroying the QP flushes it */
	pair_close(&p);
	if (n == 0)
		return "timeout";
	switch (wc.status) {
	case IBV_WC_SUCCESS:
		return "ok";
	/* the verbs names, as the addon reports them */
	case IBV_WC_REM_ACCESS_ERR:
		return "IBV_WC_REM_ACCESS_ERR";
	case IBV_WC_RNR_RETRY_EXC_ERR:
		return "IBV_WC_RNR_RETRY_EXC_ERR";
	case IBV_WC_RETRY_EXC_ERR:
		return "IBV_WC_RETRY_EXC_ERR";
	default:
		snprintf(status, sizeof(status), "status %d", wc.status);
		return status;
	}
}

/* VMAs of this process that overlap [p, p + len). */
static int vmas_over(void *p, size_t len)
{
	unsigned long lo, hi, start = (uintptr_t)p, end = start + len;
	char line[512];
	int n = 0;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		die("/proc/self/maps");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo < end && hi > start)
			n++;
	fclose(f);
	return n;
}

/* Registers [p, p + len) and deregisters it: "ok" or the errno name. */
static const char *reg_once(void *p, size_t len)
{
	struct ibv_mr *mr = ibv_reg_mr(pd, p, len, RW);

	if (!mr)
		return strerrorname_np(errno);
	ibv_dereg_mr(mr);
	return "ok";
}

static void fill(unsigned char *b, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245 + 12345;
		b[i] = seed >> 16;
	}
}

int main(int argc, char **argv)
{
	const char *devname = "rxe0", *write1 = "-", *write2 = "-", *read2 = "-";
	struct ibv_mr *mr, *src_mr, *dst_mr;
	unsigned char *mem, *src, *dst;
	struct ibv_device **list;
	int opt, n, vmas;
	size_t len;

	while ((opt = getopt(argc, argv, "d:")) != -1) {
		if (opt != 'd')
			goto usage;
		devname = optarg;
	}
	if (argc - optind != 2)
		goto usage;
	len = strtoul(argv[optind + 1], NULL, 0) * PAGE;
	if (len < 16 * PAGE)
		goto usage;

	mem = map_target(argv[optind], len);
	if (mem == MAP_FAILED)
		die("mmap");
	memset(mem, 0, len);
	src = aligned_alloc(PAGE, len);
	dst = aligned_alloc(PAGE, len);
	if (!src || !dst)
		die("aligned_alloc");

	list = ibv_get_device_list(&n);
	for (int i = 0; list && i < n && !ctx; i++)
		if (!strcmp(ibv_get_device_name(list[i]), devname))
			ctx = ibv_open_device(list[i]);
	if (!ctx)
		die("ibv_open_device");
	pd = ibv_alloc_pd(ctx);
	src_mr = pd ? ibv_reg_mr(pd, src, len, RW) : NULL;
	dst_mr = pd ? ibv_reg_mr(pd, dst, len, RW) : NULL;
	if (!src_mr || !dst_mr)
		die("host MRs");
	pick_gid();

	mr = ibv_reg_mr(pd, mem, len, RW);
	if (!mr) {
		printf("{\"reg_mr\": \"%s\"}\n", strerrorname_np(errno));
		return 0;
	}
	fill(src, len, 1);
	write1 = rdma_op(IBV_WR_RDMA_WRITE, src_mr, mr, len);
	if (!strcmp(write1, "ok") && memcmp(mem, src, len))
		write1 = "mismatch";

	/* Split: pages 4-5 read-only and back, pages 10-11 not inherited by a fork. */
	if (mprotect(mem + 4 * PAGE, 2 * PAGE, PROT_READ) ||
	    mprotect(mem + 4 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE))
		die("mprotect");
	if (madvise(mem + 10 * PAGE, 2 * PAGE, MADV_DONTFORK))
		die("madvise");
	vmas = vmas_over(mem, len);

	fill(src, len, 2);
	write2 = rdma_op(IBV_WR_RDMA_WRITE, src_mr, mr, len);
	if (!strcmp(write2, "ok") && memcmp(mem, src, len))
		write2 = "mismatch";
	memset(dst, 0, len);
	read2 = rdma_op(IBV_WR_RDMA_READ, dst_mr, mr, len);
	if (!strcmp(read2, "ok") && memcmp(dst, mem, len))
		read2 = "mismatch";

	printf("{\"reg_mr\": \"ok\", \"write_before\": \"%s\", \"vmas_after\": %d, "
	       "\"write_after\": \"%s\", \"read_after\": \"%s\", "
	       "\"reg_piece\": \"%s\", \"reg_whole\": \"%s\", \"dereg_mr\": \"%s\"}\n",
	       write1, vmas, write2, read2, reg_once(mem, 4 * PAGE), reg_once(mem, len),
	       ibv_dereg_mr(mr) ? strerrorname_np(errno) : "ok");
	return 0;

usage:
	fprintf(stderr, "usage: p2p_mr_split [-d rxe0] FILE|vfio:BDF PAGES (16 or more)\n");
	return 2;
}
