/*
 * What handing a chunk read to another thread costs, in C, without Node: each zstd chunk file given
 * is read and decoded (libzstd, into 2 MiB huge-page outputs used in turn, as the reader's pool does)
 *   inline:  on the calling thread, as zarr-python does;
 *   worker:  on a worker thread woken by a condition variable, the caller waiting in epoll on an
 *            eventfd, as Node's event loop waits for a libuv job;
 *   pinned:  the same, with the worker first pinned to the caller's current CPU (so that neither
 *            wake-up needs to wake an idle CPU).
 * The three alternate pass by pass; each pass sums every output between reads as the bench does.
 *
 *   gcc -O2 -o /tmp/handoff bench/handoff.c -l:libzstd.so.1 -lpthread
 *   /tmp/handoff $(find /tmp/goe-scroll-io-bench/zstd -type f -name "[0-9]*" | sort | head -16)
 *
 * (the store is the one `npx nx run scroll-io:bench` writes). Prints the best and mean pass per way.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct ZSTD_DCtx_s ZSTD_DCtx;
ZSTD_DCtx *ZSTD_createDCtx(void);
size_t ZSTD_decompressDCtx(ZSTD_DCtx *, void *, size_t, const void *, size_t);
unsigned ZSTD_isError(size_t);

#define OUT_BYTES (2u << 20)
#define IN_BYTES (4u << 20)
#define OUTPUTS 17
#define PASSES 150
#define WARMUP 5

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* 2 MiB-aligned, transparent huge pages, touched once. */
static uint8_t *huge(size_t n) {
  uint8_t *p = mmap(NULL, n + OUT_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) exit(2);
  uint8_t *a = (uint8_t *)(((uintptr_t)p + OUT_BYTES - 1) & ~(uintptr_t)(OUT_BYTES - 1));
  madvise(a, n, MADV_HUGEPAGE);
  memset(a, 1, n);
  return a;
}

static uint8_t *in, *out;
static const char *path;
static ZSTD_DCtx *dctx;

static void read_chunk(void) {
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || (size_t)st.st_size > IN_BYTES) {
    fprintf(stderr, "cannot read %s\n", path);
    exit(2);
  }
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t r = pread(fd, in + got, st.st_size - got, got);
    if (r <= 0) exit(2);
    got += r;
  }
  close(fd);
  size_t n = ZSTD_decompressDCtx(dctx, out, OUT_BYTES, in, got);
  if (ZSTD_isError(n)) {
    fprintf(stderr, "%s is not a zstd chunk of at most 2 MiB\n", path);
    exit(2);
  }
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int pending;
static int done_fd;

static void *worker(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&mu);
    while (!pending) pthread_cond_wait(&cv, &mu);
    pending = 0;
    pthread_mutex_unlock(&mu);
    read_chunk();
    uint64_t one = 1;
    if (write(done_fd, &one, 8) != 8) exit(2);
  }
  return NULL;
}

static volatile uint64_t sink;

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: handoff CHUNK_FILE...\n");
    return 2;
  }
  in = huge(IN_BYTES);
  uint8_t *outputs[OUTPUTS];
  for (int i = 0; i < OUTPUTS; i++) outputs[i] = huge(OUT_BYTES);
  dctx = ZSTD_createDCtx();
  done_fd = eventfd(0, 0);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN};
  epoll_ctl(ep, EPOLL_CTL_ADD, done_fd, &ev);
  pthread_t th;
  pthread_create(&th, NULL, worker, NULL);
  cpu_set_t any;
  CPU_ZERO(&any);
  for (int c = 0; c < CPU_SETSIZE; c++) CPU_SET(c, &any);

  const char *names[3] = {"inline", "worker", "pinned"};
  double best[3] = {1e30, 1e30, 1e30}, sum[3] = {0, 0, 0};
  int next = 0;
  for (int pass = 0; pass < PASSES; pass++) {
    for (int k = 0; k < 3; k++) {
      int way = (k + pass) % 3;
      double total = 0;
      for (int i = 1; i < argc; i++) {
        path = argv[i];
        out = outputs[next++ % OUTPUTS];
        double t0 = now_ms();
        if (way == 0) {
          read_chunk();
        } else {
          cpu_set_t where;
          CPU_ZERO(&where);
          CPU_SET(sched_getcpu(), &where);
          pthread_setaffinity_np(th, sizeof(cpu_set_t), way == 2 ? &where : &any);
          pthread_mutex_lock(&mu);
          pending = 1;
          pthread_cond_signal(&cv);
          pthread_mutex_unlock(&mu);
          struct epoll_event e;
          while (epoll_wait(ep, &e, 1, -1) != 1) {
          }
          uint64_t x;
          if (read(done_fd, &x, 8) != 8) return 2;
        }
        total += now_ms() - t0;
        uint64_t s = 0;
        const uint32_t *w = (const uint32_t *)out;
        for (size_t j = 0; j < OUT_BYTES / 4; j++) s += w[j] & 0x00ff00ffu;
        sink += s;
      }
      if (pass >= WARMUP) {
        sum[way] += total;
        if (total < best[way]) best[way] = total;
      }
    }
  }
  for (int w = 0; w < 3; w++)
    printf("%-7s best %.2f ms, mean %.2f ms per pass of %d chunks\n", names[w], best[w], sum[w] / (PASSES - WARMUP), argc - 1);
  return 0;
}
