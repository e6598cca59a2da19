/*
 * The C baseline for bench/ioctl.js: the same successful ioctl (FIONREAD on
 * a pipe holding one byte) in a tight loop. Prints the best per-call time of
 * several rounds in nanoseconds: CPU time of the process (user + system),
 * then wall-clock time.
 *
 * usage: ioctl-loop ITERATIONS ROUNDS
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static double now_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
  long iters = argc > 1 ? atol(argv[1]) : 1000000;
  int rounds = argc > 2 ? atoi(argv[2]) : 5;
  int p[2];
  if (pipe(p) != 0 || write(p[1], "x", 1) != 1) {
    perror("pipe");
    return 1;
  }
  double best_cpu = 1e30, best_wall = 1e30;
  volatile int n = 0;
  for (int r = 0; r < rounds; r++) {
    int v = 0;
    double c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID), w0 = now_ns(CLOCK_MONOTONIC);
    for (long i = 0; i < iters; i++) {
      if (ioctl(p[0], FIONREAD, &v) != 0 || v != 1) {
        perror("ioctl");
        return 1;
      }
    }
    double cpu = (now_ns(CLOCK_PROCESS_CPUTIME_ID) - c0) / (double)iters;
    double wall = (now_ns(CLOCK_MONOTONIC) - w0) / (double)iters;
    if (cpu < best_cpu) best_cpu = cpu;
    if (wall < best_wall) best_wall = wall;
    n += v;
  }
  printf("%.2f %.2f\n", best_cpu, best_wall);
  return 0;
}
