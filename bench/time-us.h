/* SPDX-License-Identifier: GPL-2.0 */
/* Timing helpers of the C benchmarks (mr-reg.c, p2p-paths.c). */
#ifndef P2PDMA_BENCH_TIME_US_H
#define P2PDMA_BENCH_TIME_US_H

#include <stdlib.h>
#include <time.h>

static inline double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The median of n samples (sorts them). */
static inline double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[n / 2];
}

#endif
