// SPDX-License-Identifier: GPL-2.0
/*
 * nvme-p2p-copy: the C side of bench/nvme-p2p-copy.js, in the manner of
 * p2pmem-test: copy TOTAL bytes from one NVMe namespace to another through a
 * p2pmem buffer (an NVMe CMB), CHUNK bytes at a time with N copies in
 * flight (N threads, each with its own CHUNK slot of the buffer):
 *   p2p:    O_DIRECT pread from SRC into the CMB slot, pwrite from it to DST
 *   bounce: O_DIRECT pread into host memory, memcpy into the CMB slot, pwrite
 * Prints one JSON line: bytes, seconds, process CPU seconds (getrusage) and
 * guest CPU seconds (/proc/stat busy time, all CPUs). Not a test.
 *
 *   gcc -O2 -Wall -pthread -o build/guest-c/nvme-p2p-copy bench/nvme-p2p-copy.c
 *   nvme-p2p-copy MODE SRC SRC_OFF DST DST_OFF P2PMEM_ALLOCATE INFLIGHT CHUNK TOTAL
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

struct job {
	int src, dst, bounce;
	char *cmb;
	size_t chunk, total;
	long long src_off, dst_off;
	int inflight;
};

struct lane {
	struct job *job;
	int index;
	int err;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Busy seconds of all CPUs: user + nice + system + irq + softirq + steal. */
static double guest_cpu(void)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");

	if (!f)
		return 0;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		   &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
		v[0] = v[1] = v[2] = v[5] = v[6] = v[7] = 0;
	fclose(f);
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / sysconf(_SC_CLK_TCK);
}

static double process_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static int full(ssize_t (*io)(int, void *, size_t, off_t), int fd, char *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = io(fd, buf + done, len - done, off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		done += n;
	}
	return 0;
}

static ssize_t pwrite_(int fd, void *buf, size_t len, off_t off)
{
	return pwrite(fd, buf, len, off);
}

static void *run_lane(void *arg)
{
	struct lane *l = arg;
	struct job *j = l->job;
	char *slot = j->cmb + (size_t)l->index * j->chunk;
	char *host = NULL;
	size_t off;

	if (j->bounce && posix_memalign((void **)&host, 4096, j->chunk)) {
		l->err = ENOMEM;
		return NULL;
	}
	for (off = (size_t)l->index * j->chunk; off < j->total; off += (size_t)j->inflight * j->chunk) {
		l->err = full(pread, j->src, j->bounce ? host : slot, j->chunk, j->src_off + off);
		if (l->err)
			break;
		if (j->bounce)
			memcpy(slot, host, j->chunk);
		l->err = full(pwrite_, j->dst, slot, j->chunk, j->dst_off + off);
		if (l->err)
			break;
	}
	free(host);
	return NULL;
}

int main(int argc, char **argv)
{
	struct job j = { 0 };
	pthread_t th[256];
	struct lane lanes[256];
	double t0, c0, g0, t, c, g;
	int i, fd, err = 0;

	if (argc != 10) {
		fprintf(stderr, "usage: %s p2p|bounce SRC SRC_OFF DST DST_OFF P2PMEM_ALLOCATE INFLIGHT CHUNK TOTAL\n", argv[0]);
		return 2;
	}
	j.bounce = strcmp(argv[1], "bounce") == 0;
	j.src = open(argv[2], O_RDONLY | O_DIRECT);
	j.src_off = atoll(argv[3]);
	j.dst = open(argv[4], O_WRONLY | O_DIRECT);
	j.dst_off = atoll(argv[5]);
	j.inflight = atoi(argv[7]);
	j.chunk = strtoull(argv[8], NULL, 0);
	j.total = strtoull(argv[9], NULL, 0);
	if (j.src < 0 || j.dst < 0 || j.inflight < 1 || j.inflight > 256 || !j.chunk || j.total % j.chunk) {
		fprintf(stderr, "bad arguments or open failed: %s\n", strerror(errno));
		return 2;
	}
	fd = open(argv[6], O_RDWR);
	if (fd < 0) {
		perror("open p2pmem");
		return 1;
	}
	j.cmb = mmap(NULL, j.chunk * j.inflight, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (j.cmb == MAP_FAILED) {
		perror("mmap p2pmem");
		return 1;
	}
	t0 = now();
	c0 = process_cpu();
	g0 = guest_cpu();
	for (i = 0; i < j.inflight; i++) {
		lanes[i] = (struct lane){ .job = &j, .index = i };
		pthread_create(&th[i], NULL, run_lane, &lanes[i]);
	}
	for (i = 0; i < j.inflight; i++) {
		pthread_join(th[i], NULL);
		if (lanes[i].err)
			err = lanes[i].err;
	}
	t = now() - t0;
	c = process_cpu() - c0;
	g = guest_cpu() - g0;
	if (err) {
		printf("{\"error\":\"%s\"}\n", strerror(err));
		return 1;
	}
	printf("{\"bytes\":%zu,\"seconds\":%.6f,\"processCpu\":%.4f,\"guestCpu\":%.4f}\n", j.total, t, c, g);
	munmap(j.cmb, j.chunk * j.inflight);
	close(fd);
	return 0;
}
