// SPDX-License-Identifier: GPL-2.0
/*
 * mr-reg: time ibv_reg_mr() + ibv_dereg_mr() against the region size, for
 * host memory (pinned with GUP) and for device memory mapped from a file
 * (an NVMe CMB's p2pmem/allocate or /dev/ivshmem_p2pN, registered through
 * p2p_map on the patched kernel). Not a test: prints a table.
 *
 *   gcc -O2 -Wall -o build/guest-c/mr-reg bench/mr-reg.c -libverbs
 *   mr-reg [-d rxe0] [-i iterations] [-m max_bytes] [DEVICE_FILE]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "time-us.h"


/* Median microseconds of one reg + dereg, or -errno. */
static double time_reg(struct ibv_pd *pd, void *addr, size_t len, int iters)
{
	int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
		     IBV_ACCESS_REMOTE_READ;
	double t[64], t0;
	struct ibv_mr *mr;
	int i;

	if (iters > 64)
		iters = 64;
	for (i = 0; i < iters; i++) {
		t0 = now_us();
		mr = ibv_reg_mr(pd, addr, len, access);
		if (!mr)
			return -errno;
		if (ibv_dereg_mr(mr))
			return -errno;
		t[i] = now_us() - t0;
	}
	qsort(t, iters, sizeof(t[0]), cmp_double);
	return t[iters / 2];
}

static void cell(double us)
{
	if (us < 0)
		printf(" %14s", strerrorname_np((int)-us) ?: "error");
	else
		printf(" %14.1f", us);
}

int main(int argc, char **argv)
{
	const char *devname = "rxe0", *file = NULL;
	size_t max = 64 << 20, dev_len = 0, len;
	struct ibv_device **list;
	struct ibv_context *ctx = NULL;
	struct ibv_pd *pd;
	void *host, *dev = NULL;
	int iters = 9, c, i, fd;

	while ((c = getopt(argc, argv, "d:i:m:")) != -1) {
		switch (c) {
		case 'd': devname = optarg; break;
		case 'i': iters = atoi(optarg); break;
		case 'm': max = strtoull(optarg, NULL, 0); break;
		default:
			fprintf(stderr, "usage: mr-reg [-d dev] [-i iters] [-m max] [file]\n");
			return 1;
		}
	}
	if (optind < argc)
		file = argv[optind];

	list = ibv_get_device_list(NULL);
	for (i = 0; list && list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), devname))
			ctx = ibv_open_device(list[i]);
	pd = ctx ? ibv_alloc_pd(ctx) : NULL;
	if (!pd) {
		fprintf(stderr, "mr-reg: cannot open %s\n", devname);
		return 1;
	}

	host = mmap(NULL, max, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (host == MAP_FAILED) {
		perror("mmap host");
		return 1;
	}
	if (file) {
		fd = open(file, O_RDWR);
		/* The largest power of two up to max that maps. */
		for (dev_len = max; fd >= 0 && dev_len >= 4096; dev_len /= 2) {
			dev = mmap(NULL, dev_len, PROT_READ | PROT_WRITE,
				   MAP_SHARED, fd, 0);
			if (dev != MAP_FAILED)
				break;
		}
		if (fd < 0 || dev == MAP_FAILED) {
			perror(file);
			return 1;
		}
	}

	printf("# ibv_reg_mr+ibv_dereg_mr on %s, median of %d, microseconds\n",
	       devname, iters);
	printf("%10s %14s %14s\n", "bytes", "host (GUP)",
	       file ? "device (p2p)" : "");
	for (len = 4096; len <= max; len *= 4) {
		printf("%10zu", len);
		cell(time_reg(pd, host, len, iters));
		if (file && len <= dev_len)
			cell(time_reg(pd, dev, len, iters));
		else if (file)
			printf(" %14s", "-");
		printf("\n");
	}
	return 0;
}
