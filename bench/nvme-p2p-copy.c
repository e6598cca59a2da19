// SPDX-License-Identifier: GPL-2.0
/*
 * nvme-p2p-copy: the C side of bench/nvme-p2p-copy.js, in the manner of
 * p2pmem-test: copy TOTAL bytes from one NVMe namespace to another through a
 * p2pmem buffer (an NVMe CMB), CHUNK bytes at a time with N copies in
 * flight (N threads, each with its own CHUNK slot of the buffer):
 *   p2p:    O_DIRECT pread from SRC into the CMB slot, pwrite from it to DST
 *   bounce: O_DIRECT pread into host memory, memcpy into the CMB slot, pwrite
 *   uring:  p2p from one thread on an io_uring (raw syscalls, no liburing):
 *           each slot's read linked to its write (IOSQE_IO_LINK), N pairs in
 *           flight; the least CPU C can spend per copy here, so the addon is
 *           compared with the best
 * Prints one JSON line: bytes, seconds, process CPU seconds (getrusage) and
 * guest CPU seconds (/proc/stat busy time, all CPUs). Not a test.
 *
 *   gcc -O2 -Wall -pthread -o build/guest-c/nvme-p2p-copy bench/nvme-p2p-copy.c
 *   nvme-p2p-copy p2p|bounce|uring SRC SRC_OFF DST DST_OFF P2PMEM_ALLOCATE INFLIGHT CHUNK TOTAL
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
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

/* An io_uring's rings, mapped (the kernel's layout; liburing does the same). */
struct ring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};

static int ring_init(struct ring *r, unsigned entries)
{
	struct io_uring_params p = { 0 };
	size_t sq_len, cq_len;
	char *sq, *cq;

	r->fd = syscall(__NR_io_uring_setup, entries, &p);
	if (r->fd < 0)
		return errno;
	sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP)
		sq_len = cq_len = sq_len > cq_len ? sq_len : cq_len;
	sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
	cq = p.features & IORING_FEAT_SINGLE_MMAP ? sq :
		mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
	r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED)
		return errno;
	r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
	r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	r->sq_array = (unsigned *)(sq + p.sq_off.array);
	r->cq_head = (unsigned *)(cq + p.cq_off.head);
	r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
	r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	return 0;
}

/* Queues one read or write; the kernel sees it at the next io_uring_enter. */
static void ring_queue(struct ring *r, int op, int fd, void *buf, size_t len, long long off,
		       unsigned flags, unsigned long long data)
{
	unsigned tail = *r->sq_tail; /* only this thread writes the tail */
	unsigned idx = tail & *r->sq_mask;
	struct io_uring_sqe *sqe = &r->sqes[idx];

	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = op;
	sqe->fd = fd;
	sqe->addr = (unsigned long)buf;
	sqe->len = len;
	sqe->off = off;
	sqe->flags = flags;
	sqe->user_data = data;
	r->sq_array[idx] = idx;
	__atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
}

/*
 * Lane i's next copy: read into its slot, then (linked) write from it.
 * user_data = lane << 1 | is_write. The read posts no CQE when it succeeds
 * (IOSQE_CQE_SKIP_SUCCESS, 5.17): one CQE per copy, the write's, or the
 * read's when it fails or comes up short (the kernel then skips the
 * cancelled write's), as Nvme.copyTo() does.
 */
static void queue_copy(struct ring *r, struct job *j, int lane, size_t off)
{
	char *slot = j->cmb + (size_t)lane * j->chunk;

	ring_queue(r, IORING_OP_READ, j->src, slot, j->chunk, j->src_off + off,
		   IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS, (unsigned long long)lane << 1);
	ring_queue(r, IORING_OP_WRITE, j->dst, slot, j->chunk, j->dst_off + off, 0, (unsigned long long)lane << 1 | 1);
}

static int run_uring(struct job *j)
{
	size_t next[256];
	struct ring r;
	int lane, pending = 0, to_submit = 0, err;

	err = ring_init(&r, 2 * j->inflight);
	if (err)
		return err;
	for (lane = 0; lane < j->inflight; lane++) {
		next[lane] = (size_t)lane * j->chunk;
		if (next[lane] < j->total) {
			queue_copy(&r, j, lane, next[lane]);
			to_submit += 2;
			pending++;
		}
	}
	while (pending) {
		unsigned head, tail;
		int n = syscall(__NR_io_uring_enter, r.fd, to_submit, 1, IORING_ENTER_GETEVENTS, NULL, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			break;
		}
		to_submit -= n;
		head = *r.cq_head;
		tail = __atomic_load_n(r.cq_tail, __ATOMIC_ACQUIRE);
		for (; head != tail; head++) {
			struct io_uring_cqe *cqe = &r.cqes[head & *r.cq_mask];

			pending--;
			lane = cqe->user_data >> 1;
			if (cqe->res != (int)j->chunk) {
				/* A failed read ends its copy (its write is cancelled, no CQE). */
				if (!err)
					err = cqe->res < 0 ? -cqe->res : EIO;
				continue;
			}
			if (!(cqe->user_data & 1) || err)
				continue;
			next[lane] += (size_t)j->inflight * j->chunk;
			if (next[lane] < j->total) {
				queue_copy(&r, j, lane, next[lane]);
				to_submit += 2;
				pending++;
			}
		}
		__atomic_store_n(r.cq_head, head, __ATOMIC_RELEASE);
	}
	close(r.fd);
	return err;
}

int main(int argc, char **argv)
{
	struct job j = { 0 };
	pthread_t th[256];
	struct lane lanes[256];
	double t0, c0, g0, t, c, g;
	int i, fd, err = 0;

	if (argc != 10) {
		fprintf(stderr, "usage: %s p2p|bounce|uring SRC SRC_OFF DST DST_OFF P2PMEM_ALLOCATE INFLIGHT CHUNK TOTAL\n", argv[0]);
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
	if (strcmp(argv[1], "uring") == 0) {
		err = run_uring(&j);
	} else {
		for (i = 0; i < j.inflight; i++) {
			lanes[i] = (struct lane){ .job = &j, .index = i };
			pthread_create(&th[i], NULL, run_lane, &lanes[i]);
		}
		for (i = 0; i < j.inflight; i++) {
			pthread_join(th[i], NULL);
			if (lanes[i].err)
				err = lanes[i].err;
		}
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
