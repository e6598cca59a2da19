// SPDX-License-Identifier: GPL-2.0
/*
 * Register an rxe memory region on a mapping, optionally as another user
 * under a memlock limit, and optionally hold it until told to let go:
 *
 *   p2p_mr_hold [-d rxe0] [-u UID] [-l MEMLOCK_BYTES] [-w] TARGET BYTES
 *
 * TARGET: a p2pmem/allocate file (an NVMe CMB), /dev/ivshmem_p2pN, or
 * "anon". The target is opened, mapped and the verbs device opened as the
 * caller (root); then the memlock limit is set and the user switched, so
 * that only ibv_reg_mr() runs unprivileged, as it would for an application
 * handed the mapping. With -w the program prints its JSON line, waits for
 * a line on stdin (the test unplugs the memory meanwhile), then
 * deregisters and prints a second line.
 *
 * Output: one JSON object per line, {"reg_mr": "ok"|"<errno name>", ...}.
 * Exit status: 0 once the JSON is out, 2 on a setup error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <infiniband/verbs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

static void die(const char *what)
{
	printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
	exit(2);
}

/* VmPin of this process, in kB: pages pinned and charged to it. */
static long vm_pin_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPin: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	const char *devname = "rxe0", *target;
	struct ibv_device **list;
	struct ibv_context *ctx = NULL;
	long uid = -1, memlock = -1, pin_before, pin_after;
	int opt, wait = 0, n, i, err = 0;
	struct ibv_mr *mr;
	struct ibv_pd *pd;
	size_t size;
	void *mem;

	while ((opt = getopt(argc, argv, "d:u:l:w")) != -1) {
		switch (opt) {
		case 'd': devname = optarg; break;
		case 'u': uid = strtol(optarg, NULL, 0); break;
		case 'l': memlock = strtol(optarg, NULL, 0); break;
		case 'w': wait = 1; break;
		default: goto usage;
		}
	}
	if (argc - optind != 2)
		goto usage;
	target = argv[optind];
	size = strtoul(argv[optind + 1], NULL, 0);

	if (!strcmp(target, "anon")) {
		mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	} else {
		int fd = open(target, O_RDWR);

		if (fd < 0)
			die("open target");
		mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
	}
	if (mem == MAP_FAILED)
		die("mmap");
	memset(mem, 0x5a, size);

	list = ibv_get_device_list(&n);
	for (i = 0; list && i < n && !ctx; i++)
		if (!strcmp(ibv_get_device_name(list[i]), devname))
			ctx = ibv_open_device(list[i]);
	if (!ctx)
		die("ibv_open_device");
	pd = ibv_alloc_pd(ctx);
	if (!pd)
		die("ibv_alloc_pd");

	if (memlock >= 0) {
		struct rlimit rl = { memlock, memlock };

		if (setrlimit(RLIMIT_MEMLOCK, &rl))
			die("setrlimit");
	}
	if (uid >= 0 && (setgroups(0, NULL) || setgid(uid) || setuid(uid)))
		die("setuid");

	pin_before = vm_pin_kb();
	mr = ibv_reg_mr(pd, mem, size, IBV_ACCESS_LOCAL_WRITE |
			IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
	if (!mr)
		err = errno;
	pin_after = vm_pin_kb();
	printf("{\"reg_mr\": \"%s\", \"errno\": %d, \"uid\": %d, "
	       "\"vmpin_before_kb\": %ld, \"vmpin_after_kb\": %ld}\n",
	       mr ? "ok" : strerrorname_np(err), err, (int)getuid(),
	       pin_before, pin_after);
	fflush(stdout);

	if (wait) {
		char line[64];

		if (!fgets(line, sizeof(line), stdin))
			line[0] = 0;
		errno = mr ? ibv_dereg_mr(mr) : 0;
		printf("{\"dereg_mr\": \"%s\"}\n",
		       errno ? strerrorname_np(errno) : "ok");
		fflush(stdout);
	} else if (mr) {
		ibv_dereg_mr(mr);
	}
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
	ibv_free_device_list(list);
	return 0;

usage:
	fprintf(stderr, "usage: p2p_mr_hold [-d rxe0] [-u uid] [-l memlock] "
		"[-w] TARGET BYTES\n");
	return 2;
}
