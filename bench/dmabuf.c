/*
 * The C side of bench/dmabuf.js: the same dma-buf (inherited as fd 3),
 * mapped here, timed with memset/memcpy and DMA_BUF_IOCTL_SYNC START+END
 * pairs. Prints one JSON line of best-of-rounds figures.
 *
 *   dmabuf-bench SIZE SYNC_ITERATIONS ROUNDS   (fd 3: the dma-buf)
 */
#include <linux/dma-buf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s SIZE SYNC_ITERATIONS ROUNDS (dma-buf on fd 3)\n", argv[0]);
    return 2;
  }
  size_t size = strtoull(argv[1], NULL, 0);
  long iters = strtol(argv[2], NULL, 0);
  int rounds = atoi(argv[3]);
  uint8_t *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, 3, 0);
  if (map == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  uint8_t *src = malloc(size), *dst = malloc(size);
  memset(src, 0x5a, size);
  memset(dst, 0, size);
  double fill = 1e9, in = 1e9, out = 1e9, sync = 1e9;
  for (int r = 0; r < rounds; r++) {
    double t0 = now();
    memset(map, r & 0xff, size);
    double t1 = now();
    memcpy(map, src, size);
    double t2 = now();
    memcpy(dst, map, size);
    double t3 = now();
    if (t1 - t0 < fill) fill = t1 - t0;
    if (t2 - t1 < in) in = t2 - t1;
    if (t3 - t2 < out) out = t3 - t2;
    struct dma_buf_sync start = {DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW}, end = {DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW};
    double s0 = now();
    for (long i = 0; i < iters; i++) {
      if (ioctl(3, DMA_BUF_IOCTL_SYNC, &start) || ioctl(3, DMA_BUF_IOCTL_SYNC, &end)) {
        perror("DMA_BUF_IOCTL_SYNC");
        return 1;
      }
    }
    double s = (now() - s0) / iters;
    if (s < sync) sync = s;
  }
  if (dst[size - 1] != 0x5a) return 1; /* keep the copies */
  printf("{\"fillGBs\":%.4f,\"copyInGBs\":%.4f,\"copyOutGBs\":%.4f,\"syncPairNs\":%.1f}\n", size / fill / 1e9, size / in / 1e9,
         size / out / 1e9, sync * 1e9);
  return 0;
}
