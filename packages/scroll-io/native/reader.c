// Native chunk reader of @goe/scroll-io (N-API, C).
//
// Why native: reading a Zarr chunk is open + read + decode + copy of a box into the output, and on
// Node every one of those steps has a cost that zarr-python (numpy + C blosc) does not pay:
//  - the registry's codecs allocate a fresh output per call, and first-touch page faults of fresh
//    memory ran at ~1.2 GB/s on the Linux VMs we measure on, slower than decoding;
//  - numpy asks for transparent huge pages for large arrays (64 MiB: 12 ms to allocate and touch
//    against 55 ms for a Node ArrayBuffer, measured on the same VM);
//  - a worker-thread decode needs a round trip and a copy back to the main thread.
// So this file does the whole chunk on libuv's thread pool: one positioned read into a per-thread
// buffer, decode with the system's C blosc (the very library Debian's zarr-python uses) or libzstd,
// and the copy of the wanted box straight into the output's memory, which is allocated here in huge
// pages and recycled once JavaScript drops it (as glibc recycles numpy's memory).
//
// The codec libraries are opened with dlopen at first use, so the addon builds with no -dev packages
// and a machine without libblosc or libzstd still reads every other codec (the JS path takes over).
#define _GNU_SOURCE // preadv2, RWF_NOWAIT
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_DIMS 16
#define HUGE_PAGE ((size_t)2 << 20)

enum { CODEC_RAW = 0, CODEC_BLOSC = 1, CODEC_ZSTD = 2 };
enum { ST_OK = 0, ST_MISSING = 1, ST_IO = -1, ST_CORRUPT = -2 };

// ---- codec libraries (c-blosc 1.x, libzstd), opened once -----------------------------------------

typedef int (*blosc_decompress_ctx_fn)(const void *src, void *dest, size_t destsize, int nthreads);
typedef void (*blosc_cbuffer_sizes_fn)(const void *cbuffer, size_t *nbytes, size_t *cbytes, size_t *blocksize);
typedef int (*blosc_decompress_fn)(const void *src, void *dest, size_t destsize);
typedef int (*blosc_set_nthreads_fn)(int nthreads);
typedef int (*blosc_getitem_fn)(const void *src, int start, int nitems, void *dest);
typedef void (*blosc_cbuffer_metainfo_fn)(const void *cbuffer, size_t *typesize, int *flags);
typedef void (*blosc_init_fn)(void);
typedef void *(*zstd_create_dctx_fn)(void);
typedef size_t (*zstd_free_dctx_fn)(void *dctx);
typedef size_t (*zstd_decompress_dctx_fn)(void *dctx, void *dst, size_t cap, const void *src, size_t n);
typedef unsigned (*zstd_is_error_fn)(size_t code);
typedef const char *(*zstd_error_name_fn)(size_t code);

static struct {
  blosc_decompress_ctx_fn decompress;
  blosc_cbuffer_sizes_fn sizes;
  blosc_decompress_fn global_decompress;
  blosc_set_nthreads_fn set_nthreads;
  // Decodes only the blocks that hold a range of items (its own context and buffers: thread-safe).
  blosc_getitem_fn getitem;
  blosc_cbuffer_metainfo_fn metainfo;
} blosc;
// The global blosc context keeps its worker threads between calls, where blosc_decompress_ctx starts
// and joins them on every call (0.66 against 0.37 ms for a 2 MiB lz4 chunk on two cores). It is
// used for reads of a single chunk, where blosc splits that chunk's blocks over the cores; calls into
// it are serialised by blosc's own lock, and by ours around the thread count.
static pthread_mutex_t blosc_global_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  zstd_create_dctx_fn create;
  zstd_free_dctx_fn free;
  zstd_decompress_dctx_fn decompress;
  zstd_is_error_fn is_error;
  zstd_error_name_fn name;
} zstd;
static pthread_once_t codecs_once = PTHREAD_ONCE_INIT;

static void load_codecs(void) {
  void *h = dlopen("libblosc.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h) {
    blosc.decompress = (blosc_decompress_ctx_fn)dlsym(h, "blosc_decompress_ctx");
    blosc.sizes = (blosc_cbuffer_sizes_fn)dlsym(h, "blosc_cbuffer_sizes");
    blosc.global_decompress = (blosc_decompress_fn)dlsym(h, "blosc_decompress");
    blosc.set_nthreads = (blosc_set_nthreads_fn)dlsym(h, "blosc_set_nthreads");
    blosc.getitem = (blosc_getitem_fn)dlsym(h, "blosc_getitem");
    blosc.metainfo = (blosc_cbuffer_metainfo_fn)dlsym(h, "blosc_cbuffer_metainfo");
    if (!blosc.metainfo) blosc.getitem = NULL;
    blosc_init_fn init = (blosc_init_fn)dlsym(h, "blosc_init");
    if (!blosc.decompress || !blosc.sizes) blosc.decompress = NULL;
    if (init && blosc.global_decompress && blosc.set_nthreads) init();
    else blosc.global_decompress = NULL;
  }
  h = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h) {
    zstd.create = (zstd_create_dctx_fn)dlsym(h, "ZSTD_createDCtx");
    zstd.free = (zstd_free_dctx_fn)dlsym(h, "ZSTD_freeDCtx");
    zstd.decompress = (zstd_decompress_dctx_fn)dlsym(h, "ZSTD_decompressDCtx");
    zstd.is_error = (zstd_is_error_fn)dlsym(h, "ZSTD_isError");
    zstd.name = (zstd_error_name_fn)dlsym(h, "ZSTD_getErrorName");
    if (!zstd.create || !zstd.free || !zstd.decompress || !zstd.is_error || !zstd.name) zstd.decompress = NULL;
  }
}

// ---- output memory: huge pages, recycled after JavaScript drops a buffer --------------------------

typedef struct Block {
  uint8_t *base;
  size_t len; // mapping length, a multiple of HUGE_PAGE
  struct Block *next;
} Block;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static Block *pool_free = NULL;
static size_t pool_bytes = 0;
static size_t pool_limit = (size_t)128 << 20;
static uint64_t pool_reused = 0, pool_mapped = 0;
// Bytes of mappings held by JavaScript buffers now (handed out, not yet finalized).
static size_t live_bytes = 0;

static uint8_t *map_huge(size_t len) {
  size_t total = len + HUGE_PAGE;
  uint8_t *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  uintptr_t a = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
  size_t head = a - (uintptr_t)p;
  if (head) munmap(p, head);
  size_t tail = total - head - len;
  if (tail) munmap((void *)(a + len), tail);
  // Aligned to 2 MiB so that every page can be a huge one (THP "madvise" mode, Debian's default).
  madvise((void *)a, len, MADV_HUGEPAGE);
  return (uint8_t *)a;
}

// Over the limit, the longest-held blocks go first: the newest ones are the likeliest to fit the
// next read (the same region shape, read again).
static void trim_pool_locked(void) {
  while (pool_bytes > pool_limit && pool_free) {
    Block **pp = &pool_free;
    while ((*pp)->next) pp = &(*pp)->next;
    Block *b = *pp;
    *pp = NULL;
    pool_bytes -= b->len;
    munmap(b->base, b->len);
    free(b);
  }
}

// No napi_adjust_external_memory here: V8 already counts every ArrayBuffer's length, external ones
// included, toward its collection triggers (see nudge_young_collection), so reporting the blocks
// again would double the collections.
static void release_block(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  Block *b = (Block *)hint;
  pthread_mutex_lock(&pool_lock);
  live_bytes -= b->len;
  if (b->len <= pool_limit) {
    b->next = pool_free;
    pool_free = b;
    pool_bytes += b->len;
    trim_pool_locked();
  } else {
    munmap(b->base, b->len);
    free(b);
  }
  pthread_mutex_unlock(&pool_lock);
}

/** A recycled block whose length is in [len, 2 len], else a new mapping; *dirty says which. */
static Block *take_block(size_t len, int *dirty) {
  pthread_mutex_lock(&pool_lock);
  Block **best = NULL;
  for (Block **pp = &pool_free; *pp; pp = &(*pp)->next) {
    size_t l = (*pp)->len;
    if (l >= len && l <= 2 * len && (!best || l < (*best)->len)) best = pp;
  }
  if (best) {
    Block *b = *best;
    *best = b->next;
    pool_bytes -= b->len;
    pool_reused++;
    pthread_mutex_unlock(&pool_lock);
    *dirty = 1;
    return b;
  }
  pthread_mutex_unlock(&pool_lock);
  Block *b = (Block *)malloc(sizeof(Block));
  if (!b) return NULL;
  b->base = map_huge(len);
  if (!b->base) {
    free(b);
    return NULL;
  }
  b->len = len;
  pool_mapped++;
  *dirty = 0;
  return b;
}

#define CHECK(call)                                                                 \
  do {                                                                              \
    if ((call) != napi_ok) {                                                        \
      napi_throw_error(env, NULL, "goe native reader: N-API call failed: " #call); \
      return NULL;                                                                  \
    }                                                                               \
  } while (0)

static int64_t get_i64(napi_env env, napi_value v, int *ok) {
  int64_t x = 0;
  if (napi_get_value_int64(env, v, &x) != napi_ok) *ok = 0;
  return x;
}

/**
 * The first argument as a byte count (argv receives up to *argc arguments, *argc the number given); false (with a RangeError
 * thrown naming `fn`) when it is not a non-negative integer.
 */
static bool byte_count_arg(napi_env env, napi_callback_info info, napi_value *argv, size_t *argc, const char *fn, int64_t *n) {
  if (napi_get_cb_info(env, info, argc, argv, NULL, NULL) != napi_ok) *argc = 0;
  int ok = 1;
  *n = *argc > 0 ? get_i64(env, argv[0], &ok) : -1;
  if (!ok || *n < 0) {
    char m[120];
    snprintf(m, sizeof m, "%s: bytes must be a non-negative integer", fn);
    napi_throw_range_error(env, NULL, m);
    return false;
  }
  return true;
}

/**
 * Lets V8 reclaim dropped outputs with a young-generation collection (a scavenge) instead of a full one.
 *
 * V8 checks whether to scavenge only when it allocates an ArrayBuffer's memory itself: once young
 * ArrayBuffers hold twice the semi-space size (32 MiB on 64-bit Node 20), it scavenges first, which
 * frees dead young buffers, ours included (`Heap::AllocateExternalBackingStore`). Memory handed to V8
 * from outside never passes that check, so a stream of dropped 2 MiB outputs was reclaimed only by
 * full mark-compacts, one per ~16 reads, of 1.4-4.6 ms plus up to 7 ms of marking steps each
 * (`node --trace-gc`, a loop of single-chunk reads). Allocating one byte through V8 after each output
 * runs that check: the same loop then saw only scavenges, of 0.2-0.4 ms, and no mark-compact.
 */
static void nudge_young_collection(napi_env env) {
  void *p;
  napi_value one;
  napi_create_arraybuffer(env, 1, &p, &one);
}

/** allocOutput(bytes, zero) -> ArrayBuffer of `bytes` in huge pages (recycled memory is zeroed only when `zero`). */
static napi_value alloc_output(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int64_t n;
  if (!byte_count_arg(env, info, argv, &argc, "allocOutput", &n)) return NULL;
  bool zero = true;
  if (argc > 1) napi_get_value_bool(env, argv[1], &zero);
  napi_value ab;
  size_t len = ((size_t)n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
  if (n == 0) len = HUGE_PAGE;
  int dirty = 0;
  Block *b = take_block(len, &dirty);
  if (!b) {
    void *p;
    CHECK(napi_create_arraybuffer(env, (size_t)n, &p, &ab));
    return ab;
  }
  if (dirty && zero) memset(b->base, 0, (size_t)n);
  pthread_mutex_lock(&pool_lock);
  live_bytes += b->len;
  pthread_mutex_unlock(&pool_lock);
  if (napi_create_external_arraybuffer(env, b->base, (size_t)n, release_block, b, &ab) != napi_ok) {
    // Runtimes that forbid external buffers: plain memory.
    pthread_mutex_lock(&pool_lock);
    live_bytes -= b->len;
    pthread_mutex_unlock(&pool_lock);
    munmap(b->base, b->len);
    free(b);
    void *p;
    CHECK(napi_create_arraybuffer(env, (size_t)n, &p, &ab));
    return ab;
  }
  nudge_young_collection(env);
  return ab;
}

// Bytes of every thread's file and decode buffers (below) mapped now, for poolStats().
static size_t thread_buffer_bytes = 0;

/** poolStats() -> { bytes, blocks, reused, mapped, limit, live, threadBuffers } */
static napi_value pool_stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value o, v;
  CHECK(napi_create_object(env, &o));
  pthread_mutex_lock(&pool_lock);
  size_t blocks = 0;
  for (Block *b = pool_free; b; b = b->next) blocks++;
  double vals[7] = {(double)pool_bytes, (double)blocks, (double)pool_reused, (double)pool_mapped, (double)pool_limit, (double)live_bytes,
                    (double)__atomic_load_n(&thread_buffer_bytes, __ATOMIC_RELAXED)};
  pthread_mutex_unlock(&pool_lock);
  const char *names[7] = {"bytes", "blocks", "reused", "mapped", "limit", "live", "threadBuffers"};
  for (int i = 0; i < 7; i++) {
    CHECK(napi_create_double(env, vals[i], &v));
    CHECK(napi_set_named_property(env, o, names[i], v));
  }
  return o;
}

/** setPoolLimit(bytes): most bytes of dropped outputs kept for reuse. */
static napi_value set_pool_limit(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int64_t n;
  if (!byte_count_arg(env, info, argv, &argc, "setPoolLimit", &n)) return NULL;
  pthread_mutex_lock(&pool_lock);
  pool_limit = (size_t)n;
  trim_pool_locked();
  pthread_mutex_unlock(&pool_lock);
  return NULL;
}

// ---- one chunk: read, decode, copy the box ------------------------------------------------------

typedef struct Job Job;
struct Job {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref out_ref, keep_ref;
  char *path;
  int codec, nthreads, itemsize, ndim, direct, alone;
  size_t chunk_bytes;
  int64_t chunk_shape[MAX_DIMS], out_shape[MAX_DIMS], src_start[MAX_DIMS], dst_start[MAX_DIMS], extent[MAX_DIMS];
  uint8_t *out, *keep;
  size_t out_len, keep_len;
  int status;
  size_t file_bytes;
  char msg[320];
  // JOB_FREE until a thread takes the job: a pool thread in execute() or the loop thread in loop_try().
  int taken;
  // On its env's list of jobs the loop thread may take while it has nothing else to do.
  int listed;
  Job *next;
  struct LoopState *loop_state;
};

// Per-thread buffers of libuv's pool threads: reused for every chunk, so only their first use faults.
static __thread uint8_t *tl_file = NULL;
static __thread size_t tl_file_cap = 0;
static __thread uint8_t *tl_dec = NULL;
static __thread size_t tl_dec_cap = 0;
static __thread void *tl_zstd = NULL;

// In huge pages too: reading a chunk file into a reused buffer of 4 KiB pages ran at 0.77 ms per
// 2 MiB chunk against 0.15 ms into huge pages on the VMs we measure on (tools: a pread loop in C).
static uint8_t *grow(uint8_t **buf, size_t *cap, size_t n) {
  if (*cap >= n && *buf) return *buf;
  if (*buf) {
    munmap(*buf, *cap);
    __atomic_fetch_sub(&thread_buffer_bytes, *cap, __ATOMIC_RELAXED);
  }
  size_t len = (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
  if (len == 0) len = HUGE_PAGE;
  *buf = map_huge(len);
  *cap = *buf ? len : 0;
  __atomic_fetch_add(&thread_buffer_bytes, *cap, __ATOMIC_RELAXED);
  return *buf;
}

/**
 * Frees the calling thread's buffers. Pool threads keep theirs for the life of the process; the
 * thread of an env that ran jobs itself (a worker thread may end long before the process) frees them
 * when that env is torn down.
 */
static void release_thread_buffers(void) {
  if (tl_file) munmap(tl_file, tl_file_cap);
  if (tl_dec) munmap(tl_dec, tl_dec_cap);
  __atomic_fetch_sub(&thread_buffer_bytes, tl_file_cap + tl_dec_cap, __ATOMIC_RELAXED);
  if (tl_zstd) zstd.free(tl_zstd);
  tl_file = tl_dec = NULL;
  tl_file_cap = tl_dec_cap = 0;
  tl_zstd = NULL;
}

static void c_strides(const int64_t *shape, int n, int64_t *st) {
  int64_t s = 1;
  for (int i = n - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i];
  }
}

/** Copies the box from src (C order, shape ss) into dst (C order, shape ds); strides in elements. */
/**
 * Copies the box from src (C order, shape sshape) into dst (C order, shape dshape); starts in elements.
 * `skip` bytes of src are not in memory: src points at the chunk's byte `skip` (a partial read).
 */
static void copy_box(const uint8_t *src, int64_t skip, const int64_t *sshape, const int64_t *sstart, uint8_t *dst, const int64_t *dshape,
                     const int64_t *dstart, const int64_t *box, int n, int item) {
  int64_t ss[MAX_DIMS], ds[MAX_DIMS];
  c_strides(sshape, n, ss);
  c_strides(dshape, n, ds);
  int64_t s0 = 0, d0 = 0;
  for (int i = 0; i < n; i++) {
    if (box[i] <= 0) return;
    s0 += sstart[i] * ss[i];
    d0 += dstart[i] * ds[i];
  }
  // Merge trailing dimensions spanned whole in both arrays into one contiguous run.
  int m = n;
  int64_t run = box[n - 1];
  while (m > 1 && box[m - 1] == sshape[m - 1] && box[m - 1] == dshape[m - 1] && ss[m - 2] == run && ds[m - 2] == run) {
    m--;
    run *= box[m - 1];
  }
  size_t rb = (size_t)run * item;
  const uint8_t *s = src + (s0 * item - skip);
  uint8_t *d = dst + d0 * item;
  if (m == 1) {
    memcpy(d, s, rb);
    return;
  }
  int64_t idx[MAX_DIMS] = {0};
  for (;;) {
    memcpy(d, s, rb);
    int k = m - 2;
    for (; k >= 0; k--) {
      idx[k]++;
      s += ss[k] * item;
      d += ds[k] * item;
      if (idx[k] < box[k]) break;
      s -= ss[k] * box[k] * item;
      d -= ds[k] * box[k] * item;
      idx[k] = 0;
    }
    if (k < 0) return;
  }
}

static void fail(Job *j, int status, const char *fmt, const char *a, long long x, long long y) {
  j->status = status;
  snprintf(j->msg, sizeof j->msg, fmt, a, x, y);
}

/** Decodes `n` bytes of `src` into `dst` (chunk_bytes long); 0 or a failure recorded in j. */
static int decode(Job *j, const uint8_t *src, size_t n, uint8_t *dst) {
  if (j->codec == CODEC_BLOSC) {
    if (n < 16) {
      fail(j, ST_CORRUPT, "blosc chunk of %s%lld bytes is shorter than its 16-byte header%lld", "", (long long)n, 0);
      return -1;
    }
    size_t nbytes = 0, cbytes = 0, blocksize = 0;
    blosc.sizes(src, &nbytes, &cbytes, &blocksize);
    if (cbytes > n) {
      fail(j, ST_CORRUPT, "blosc chunk truncated%s: header says %lld bytes, file has %lld", "", (long long)cbytes, (long long)n);
      return -1;
    }
    if (nbytes != j->chunk_bytes) {
      fail(j, ST_CORRUPT, "blosc chunk decodes to %s%lld bytes, expected %lld", "", (long long)nbytes, (long long)j->chunk_bytes);
      return -1;
    }
    int got;
    if (j->nthreads > 1 && blosc.global_decompress) {
      pthread_mutex_lock(&blosc_global_lock);
      blosc.set_nthreads(j->nthreads);
      got = blosc.global_decompress(src, dst, j->chunk_bytes);
      pthread_mutex_unlock(&blosc_global_lock);
    } else {
      got = blosc.decompress(src, dst, j->chunk_bytes, 1);
    }
    if (got < 0 || (size_t)got != j->chunk_bytes) {
      fail(j, ST_CORRUPT, "blosc could not decode the chunk%s (code %lld, %lld bytes)", "", (long long)got, (long long)n);
      return -1;
    }
    return 0;
  }
  if (j->codec == CODEC_ZSTD) {
    if (!tl_zstd) tl_zstd = zstd.create();
    if (!tl_zstd) {
      fail(j, ST_IO, "%szstd: out of memory%lld%lld", "", 0, 0);
      return -1;
    }
    size_t got = zstd.decompress(tl_zstd, dst, j->chunk_bytes, src, n);
    if (zstd.is_error(got)) {
      fail(j, ST_CORRUPT, "zstd: %s (%lld bytes)%lld", zstd.name(got), (long long)n, 0);
      return -1;
    }
    if (got != j->chunk_bytes) {
      fail(j, ST_CORRUPT, "zstd chunk decoded to %s%lld bytes, expected %lld", "", (long long)got, (long long)j->chunk_bytes);
      return -1;
    }
    return 0;
  }
  // raw
  if (n != j->chunk_bytes) {
    fail(j, ST_CORRUPT, "raw chunk has %s%lld bytes, expected %lld", "", (long long)n, (long long)j->chunk_bytes);
    return -1;
  }
  if (dst != src) memcpy(dst, src, n);
  return 0;
}

/** Bytes [*from, *from + *len) of the chunk that hold the box, from its first to its last voxel. */
static void box_byte_range(const Job *j, size_t *from, size_t *len) {
  int64_t cs[MAX_DIMS], lo = 0, hi = 0;
  c_strides(j->chunk_shape, j->ndim, cs);
  for (int i = 0; i < j->ndim; i++) {
    lo += j->src_start[i] * cs[i];
    hi += (j->src_start[i] + j->extent[i] - 1) * cs[i];
  }
  *from = (size_t)lo * j->itemsize;
  *len = (size_t)(hi + 1 - lo) * j->itemsize;
}

static uint64_t box_block_decodes = 0; // chunks read by decode_box_blocks so far (for tests and stats)

/**
 * Decodes into `dst` only the blosc blocks that hold the box (`blosc_getitem`), for a box that is part
 * of the chunk: a box of 64 z-planes in a 128³ chunk needs at most half of its blocks, 32 planes a
 * quarter. Sets *skip to the chunk byte that dst[0] holds. 0, 1 when the whole chunk is to be decoded
 * (no getitem, or the box spans it), or -1 with a failure recorded in j.
 */
static int decode_box_blocks(Job *j, const uint8_t *src, size_t n, uint8_t *dst, int64_t *skip) {
  if (!blosc.getitem || n < 16) return 1;
  size_t from, len;
  box_byte_range(j, &from, &len);
  size_t nbytes = 0, cbytes = 0, blocksize = 0, typesize = 0;
  int flags = 0;
  blosc.sizes(src, &nbytes, &cbytes, &blocksize);
  blosc.metainfo(src, &typesize, &flags);
  // Only worth it, and only attempted, when the blocks left out are at least one whole block.
  if (nbytes != j->chunk_bytes || cbytes > n || typesize == 0 || blocksize == 0 || len + blocksize > nbytes || nbytes > INT32_MAX) return 1;
  size_t start = from / typesize;
  size_t stop = (from + len + typesize - 1) / typesize;
  int got = blosc.getitem(src, (int)start, (int)(stop - start), dst);
  if (got < 0 || (size_t)got != (stop - start) * typesize) {
    fail(j, ST_CORRUPT, "blosc could not decode the chunk%s (code %lld, %lld bytes)", "", (long long)got, (long long)n);
    return -1;
  }
  *skip = (int64_t)(start * typesize);
  __atomic_fetch_add(&box_block_decodes, 1, __ATOMIC_RELAXED);
  return 0;
}

static int64_t direct_offset(Job *j) {
  int64_t ds[MAX_DIMS], off = 0;
  c_strides(j->out_shape, j->ndim, ds);
  for (int i = 0; i < j->ndim; i++) off += j->dst_start[i] * ds[i];
  return off * j->itemsize;
}

/**
 * Reads `len` bytes of the file from byte `from` into buf, as far as it can: preadv2 with `flags`
 * (0 waits for the disk as pread does; RWF_NOWAIT stops where the page cache ends). Returns the
 * bytes read; fewer than `len` at the end of the file, on an error (errno kept) or, with RWF_NOWAIT,
 * where data is not cached.
 */
static size_t read_at(int fd, uint8_t *buf, size_t len, size_t from, int flags) {
  size_t got = 0;
  while (got < len) {
    struct iovec v = {buf + got, len - got};
    ssize_t r = preadv2(fd, &v, 1, (off_t)(from + got), flags);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  return got;
}

static void finish_job(Job *j, uint8_t *fbuf, size_t size);

static void run_job(Job *j) {
  int fd = open(j->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) j->status = ST_MISSING;
    else fail(j, ST_IO, "cannot open: %s%lld%lld", strerror(errno), 0, 0);
    return;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    fail(j, ST_IO, "cannot stat: %s%lld%lld", strerror(errno), 0, 0);
    close(fd);
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    fail(j, ST_IO, "cannot read: %s%lld%lld", S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file", 0, 0);
    return;
  }
  size_t size = (size_t)st.st_size;
  j->file_bytes = size;
  // A raw chunk whose box is only part of it: read just the byte range from the box's first to its
  // last voxel (for a 64³ box in a 128³ chunk at most half the file), after checking the file's size.
  if (j->codec == CODEC_RAW && !j->keep && !j->direct && j->out) {
    if (size != j->chunk_bytes) {
      close(fd);
      fail(j, ST_CORRUPT, "raw chunk has %s%lld bytes, expected %lld", "", (long long)size, (long long)j->chunk_bytes);
      return;
    }
    size_t from, len;
    box_byte_range(j, &from, &len);
    uint8_t *buf = grow(&tl_file, &tl_file_cap, len);
    errno = 0;
    size_t got = buf ? read_at(fd, buf, len, from, 0) : 0;
    int err = errno;
    close(fd);
    if (!buf || got != len) {
      fail(j, ST_IO, "cannot read: %s%lld%lld", !buf ? "out of memory" : err ? strerror(err) : "short read", 0, 0);
      return;
    }
    copy_box(buf, (int64_t)from, j->chunk_shape, j->src_start, j->out, j->out_shape, j->dst_start, j->extent, j->ndim, j->itemsize);
    j->status = ST_OK;
    return;
  }
  uint8_t *dest_direct = j->direct ? j->out + direct_offset(j) : NULL;
  // Raw chunks decoded straight into the output (or the cache's buffer) are read there directly.
  uint8_t *fbuf;
  if (j->codec == CODEC_RAW && size == j->chunk_bytes && (j->keep || dest_direct)) fbuf = j->keep ? j->keep : dest_direct;
  else fbuf = grow(&tl_file, &tl_file_cap, size);
  if (!fbuf) {
    fail(j, ST_IO, "%sout of memory for %lld bytes%lld", "", (long long)size, 0);
    close(fd);
    return;
  }
  errno = 0;
  size_t got = read_at(fd, fbuf, size, 0, 0);
  int err = errno;
  close(fd);
  if (got != size && err) {
    fail(j, ST_IO, "cannot read: %s%lld%lld", strerror(err), 0, 0);
    return;
  }
  if (got != size) {
    fail(j, ST_IO, "file shrank while being read%s (%lld of %lld bytes)", "", (long long)got, (long long)size);
    return;
  }
  finish_job(j, fbuf, size);
}

/** Decodes the chunk file's `size` bytes in `fbuf` and copies the box where the job wants it. */
static void finish_job(Job *j, uint8_t *fbuf, size_t size) {
  uint8_t *dest_direct = j->direct ? j->out + direct_offset(j) : NULL;
  uint8_t *dec = j->keep ? j->keep : dest_direct ? dest_direct : NULL;
  if (!dec) {
    if (j->codec == CODEC_RAW) dec = fbuf;
    else dec = grow(&tl_dec, &tl_dec_cap, j->chunk_bytes);
  }
  if (!dec) {
    fail(j, ST_IO, "%sout of memory for %lld bytes%lld", "", (long long)j->chunk_bytes, 0);
    return;
  }
  if (j->codec == CODEC_BLOSC && !j->keep && !dest_direct && j->out) {
    // A box from part of a blosc chunk: decode only the blocks that hold it.
    int64_t skip = 0;
    int r = decode_box_blocks(j, fbuf, size, dec, &skip);
    if (r < 0) return;
    if (r == 0) {
      copy_box(dec, skip, j->chunk_shape, j->src_start, j->out, j->out_shape, j->dst_start, j->extent, j->ndim, j->itemsize);
      j->status = ST_OK;
      return;
    }
  }
  if (decode(j, fbuf, size, dec) != 0) return;
  if (dest_direct) {
    if (dec != dest_direct) memcpy(dest_direct, dec, j->chunk_bytes);
  } else if (j->out) {
    copy_box(dec, 0, j->chunk_shape, j->src_start, j->out, j->out_shape, j->dst_start, j->extent, j->ndim, j->itemsize);
  }
  j->status = ST_OK;
}

// Job.taken: free; the loop thread trying to read the file without waiting (loop_try); taken.
enum { JOB_FREE = 0, JOB_TRYING = 1, JOB_TAKEN = 2 };

/**
 * Claims the job for a pool thread; false when the loop thread has it. While the loop is trying it,
 * which takes one non-blocking read of the file, waits to see whether the loop keeps it.
 */
static int take(Job *j) {
  for (;;) {
    int s = JOB_FREE;
    if (__atomic_compare_exchange_n(&j->taken, &s, JOB_TAKEN, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return 1;
    if (s == JOB_TAKEN) return 0;
    sched_yield();
  }
}

static void execute(napi_env env, void *data) {
  (void)env;
  Job *j = (Job *)data;
  if (take(j)) run_job(j);
}

// ---- the loop thread helps while it would otherwise sleep ----------------------------------------
//
// A read of one chunk hands the job to a pool thread and the loop thread then sleeps in epoll until
// the job is done: two thread wake-ups, each of which costs ~15-45 us on the KVM guests we measure on
// when the woken CPU is idle (bench/handoff.c: a 16-chunk pass took 25.3 ms through a worker against
// 24.2 ms inline). zarr-python pays neither, since it decodes on the calling thread. So when the loop
// is about to sleep (nothing pending, no immediates, no timer due: uv_backend_timeout() != 0) and a
// single-chunk job is still queued, the loop thread takes it and runs it itself. The pool thread that
// wakes for it finds it taken and returns; the job completes through the usual path. The loop never
// takes a job while JavaScript has work queued, never one whose file is not all in the page cache
// (loop_try), and only chunks of at most LOOP_JOB_MAX_BYTES (a few ms of decoding), so a loop that
// takes one answers its next event at most that much later. JavaScript marks a job `alone` only for
// arrays on local file systems, where opening a file does not wait on a network.
#define LOOP_JOB_MAX_BYTES ((size_t)4 << 20)

typedef struct LoopState {
  uv_loop_t *loop;
  uv_prepare_t prepare;
  Job *head, *tail;
  napi_async_cleanup_hook_handle hook;
} LoopState;

static uint64_t loop_jobs = 0; // jobs the loop thread ran (for tests and stats)

static void unlist(LoopState *ls, Job *j) {
  Job *prev = NULL;
  for (Job *k = ls->head; k; prev = k, k = k->next) {
    if (k != j) continue;
    if (prev) prev->next = k->next;
    else ls->head = k->next;
    if (ls->tail == k) ls->tail = prev;
    break;
  }
  j->listed = 0;
  j->next = NULL;
  if (!ls->head) uv_prepare_stop(&ls->prepare);
}

static int loop_try(Job *j);

static void on_prepare(uv_prepare_t *h) {
  LoopState *ls = (LoopState *)h->data;
  if (uv_backend_timeout(ls->loop) == 0) return;
  while (ls->head) {
    Job *j = ls->head;
    unlist(ls, j);
    if (loop_try(j)) {
      __atomic_fetch_add(&loop_jobs, 1, __ATOMIC_RELAXED);
      return;
    }
  }
}

/**
 * The loop thread's attempt at a listed job. It reads the chunk file into this thread's buffer
 * without waiting for a disk (preadv2 with RWF_NOWAIT), and takes and finishes the job only if all of
 * the file was in the page cache: the loop must never sleep on I/O. An absent file is taken too (read
 * as the fill value). Anything else (data on the disk, a file system without RWF_NOWAIT, an error) is
 * left to the pool thread, which reports errors as usual.
 * @returns 1 when the loop ran the job
 */
static int loop_try(Job *j) {
  // Claimed first, tentatively, so that the pool thread woken for the job does not start it meanwhile.
  int s = JOB_FREE;
  if (!__atomic_compare_exchange_n(&j->taken, &s, JOB_TRYING, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return 0;
  int fd = open(j->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      __atomic_store_n(&j->taken, JOB_TAKEN, __ATOMIC_RELEASE);
      j->status = ST_MISSING;
      return 1;
    }
    __atomic_store_n(&j->taken, JOB_FREE, __ATOMIC_RELEASE);
    return 0;
  }
  struct stat st;
  size_t size = 0, got = 0;
  uint8_t *buf = NULL;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    size = (size_t)st.st_size;
    buf = grow(&tl_file, &tl_file_cap, size);
    if (buf) got = read_at(fd, buf, size, 0, RWF_NOWAIT);
  }
  close(fd);
  if (!buf || got != size) {
    __atomic_store_n(&j->taken, JOB_FREE, __ATOMIC_RELEASE); // the pool thread reads it, waiting as it may
    return 0;
  }
  __atomic_store_n(&j->taken, JOB_TAKEN, __ATOMIC_RELEASE);
  j->file_bytes = size;
  finish_job(j, buf, size);
  return 1;
}

static void free_handle_owner(uv_handle_t *h) { free(h->data); }

static void on_loop_state_closed(uv_handle_t *h) {
  LoopState *ls = (LoopState *)h->data;
  napi_remove_async_cleanup_hook(ls->hook);
  free(ls);
}

static void close_loop_state(napi_async_cleanup_hook_handle hook, void *arg) {
  (void)hook;
  LoopState *ls = (LoopState *)arg;
  // Jobs still listed stay with the pool; none may point at this state once it is freed.
  while (ls->head) {
    Job *j = ls->head;
    unlist(ls, j);
    j->loop_state = NULL;
  }
  uv_prepare_stop(&ls->prepare);
  uv_close((uv_handle_t *)&ls->prepare, on_loop_state_closed);
  // Cleanup hooks run on the env's own thread: the buffers its jobs used are this thread's.
  release_thread_buffers();
}

/** This env's loop state, made on first use; NULL when it cannot be (the job then stays on the pool). */
static LoopState *loop_state(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) == napi_ok && data) return (LoopState *)data;
  LoopState *ls = (LoopState *)calloc(1, sizeof(LoopState));
  if (!ls) return NULL;
  if (napi_get_uv_event_loop(env, &ls->loop) != napi_ok || uv_prepare_init(ls->loop, &ls->prepare) != 0) {
    free(ls);
    return NULL;
  }
  ls->prepare.data = ls;
  uv_unref((uv_handle_t *)&ls->prepare);
  if (napi_add_async_cleanup_hook(env, close_loop_state, ls, &ls->hook) != napi_ok) {
    uv_close((uv_handle_t *)&ls->prepare, free_handle_owner);
    return NULL;
  }
  napi_set_instance_data(env, ls, NULL, NULL);
  return ls;
}

static void complete(napi_env env, napi_status status, void *data) {
  Job *j = (Job *)data;
  if (j->listed && j->loop_state) unlist(j->loop_state, j);
  napi_value result;
  if (status != napi_ok) fail(j, ST_IO, "%sthe read was cancelled%lld%lld", "", 0, 0);
  if (j->status >= 0) {
    napi_create_int32(env, j->status, &result);
    napi_resolve_deferred(env, j->deferred, result);
  } else {
    napi_value msg, err, flag, bytes;
    napi_create_string_utf8(env, j->msg, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_get_boolean(env, j->status == ST_CORRUPT, &flag);
    napi_set_named_property(env, err, "corrupt", flag);
    napi_create_double(env, (double)j->file_bytes, &bytes);
    napi_set_named_property(env, err, "fileBytes", bytes);
    napi_reject_deferred(env, j->deferred, err);
  }
  if (j->out_ref) napi_delete_reference(env, j->out_ref);
  if (j->keep_ref) napi_delete_reference(env, j->keep_ref);
  napi_delete_async_work(env, j->work);
  free(j->path);
  free(j);
}

static int get_dims(napi_env env, napi_value arr, int64_t *dst, int n) {
  uint32_t len = 0;
  if (napi_get_array_length(env, arr, &len) != napi_ok || (int)len != n) return 0;
  for (int i = 0; i < n; i++) {
    napi_value v;
    int ok = 1;
    if (napi_get_element(env, arr, (uint32_t)i, &v) != napi_ok) return 0;
    dst[i] = get_i64(env, v, &ok);
    if (!ok) return 0;
  }
  return 1;
}

static int get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len, napi_ref *ref) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_null || t == napi_undefined) return 1;
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  if (!is_ta) return 0;
  napi_typedarray_type tt;
  size_t length, off;
  void *p;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &tt, &length, &p, &ab, &off) != napi_ok) return 0;
  size_t bpe = tt == napi_int8_array || tt == napi_uint8_array || tt == napi_uint8_clamped_array ? 1
               : tt == napi_int16_array || tt == napi_uint16_array                                 ? 2
               : tt == napi_float64_array || tt == napi_bigint64_array || tt == napi_biguint64_array ? 8
                                                                                                     : 4;
  *data = (uint8_t *)p;
  *len = length * bpe;
  return napi_create_reference(env, v, 1, ref) == napi_ok;
}

/**
 * readChunk(path, codec, nthreads, chunkBytes, itemsize, chunkShape, out, outShape, srcStart, dstStart,
 *           extent, keep, direct, alone) -> Promise<0 ok | 1 missing>; rejects with Error { corrupt, fileBytes }.
 */
static napi_value read_chunk(napi_env env, napi_callback_info info) {
  pthread_once(&codecs_once, load_codecs);
  size_t argc = 14;
  napi_value a[14];
  CHECK(napi_get_cb_info(env, info, &argc, a, NULL, NULL));
  if (argc != 14) {
    napi_throw_type_error(env, NULL, "readChunk: expected 14 arguments");
    return NULL;
  }
  Job *j = (Job *)calloc(1, sizeof(Job));
  if (!j) {
    napi_throw_error(env, NULL, "readChunk: out of memory");
    return NULL;
  }
  const char *bad = NULL;
  size_t plen = 0;
  int ok = 1;
  if (napi_get_value_string_utf8(env, a[0], NULL, 0, &plen) != napi_ok) bad = "path";
  else {
    j->path = (char *)malloc(plen + 1);
    napi_get_value_string_utf8(env, a[0], j->path, plen + 1, &plen);
  }
  j->codec = (int)get_i64(env, a[1], &ok);
  j->nthreads = (int)get_i64(env, a[2], &ok);
  j->chunk_bytes = (size_t)get_i64(env, a[3], &ok);
  j->itemsize = (int)get_i64(env, a[4], &ok);
  uint32_t nd = 0;
  napi_get_array_length(env, a[5], &nd);
  j->ndim = (int)nd;
  bool direct = false;
  napi_get_value_bool(env, a[12], &direct);
  j->direct = direct;
  bool alone = false;
  napi_get_value_bool(env, a[13], &alone);
  j->alone = alone;
  if (!ok) bad = "codec/nthreads/chunkBytes/itemsize";
  else if (j->ndim < 1 || j->ndim > MAX_DIMS) bad = "chunkShape";
  else if (!get_dims(env, a[5], j->chunk_shape, j->ndim)) bad = "chunkShape";
  else if (!get_bytes(env, a[6], &j->out, &j->out_len, &j->out_ref)) bad = "out";
  else if (!get_bytes(env, a[11], &j->keep, &j->keep_len, &j->keep_ref)) bad = "keep";
  else if (j->out && (!get_dims(env, a[7], j->out_shape, j->ndim) || !get_dims(env, a[8], j->src_start, j->ndim) ||
                      !get_dims(env, a[9], j->dst_start, j->ndim) || !get_dims(env, a[10], j->extent, j->ndim)))
    bad = "outShape/srcStart/dstStart/extent";
  if (!bad) {
    // Every byte the job may touch must lie inside the buffers it was given.
    int64_t cb = j->itemsize, ob = j->itemsize;
    for (int i = 0; i < j->ndim; i++) {
      cb *= j->chunk_shape[i];
      ob *= j->out ? j->out_shape[i] : 1;
    }
    if (j->itemsize < 1 || j->itemsize > 8 || cb != (int64_t)j->chunk_bytes) bad = "chunkBytes";
    else if (j->codec == CODEC_BLOSC && (pthread_once(&codecs_once, load_codecs), !blosc.decompress)) bad = "codec (libblosc.so.1 not found)";
    else if (j->codec == CODEC_ZSTD && !zstd.decompress) bad = "codec (libzstd.so.1 not found)";
    else if (j->codec < 0 || j->codec > 2) bad = "codec";
    else if (j->keep && j->keep_len < j->chunk_bytes) bad = "keep";
    else if (j->out && (size_t)ob > j->out_len) bad = "out";
    else if (j->out) {
      for (int i = 0; i < j->ndim && !bad; i++) {
        if (j->extent[i] < 0 || j->src_start[i] < 0 || j->dst_start[i] < 0 || j->src_start[i] + j->extent[i] > j->chunk_shape[i] ||
            j->dst_start[i] + j->extent[i] > j->out_shape[i])
          bad = "extent";
      }
      if (!bad && j->direct) {
        int64_t end = direct_offset(j) + (int64_t)j->chunk_bytes;
        for (int i = 0; i < j->ndim; i++)
          if (j->extent[i] != j->chunk_shape[i]) bad = "direct";
        if (end > ob) bad = "direct";
      }
    } else if (j->direct) bad = "direct";
  }
  if (bad) {
    if (j->out_ref) napi_delete_reference(env, j->out_ref);
    if (j->keep_ref) napi_delete_reference(env, j->keep_ref);
    free(j->path);
    free(j);
    char m[160];
    snprintf(m, sizeof m, "readChunk: bad argument %s", bad);
    napi_throw_type_error(env, NULL, m);
    return NULL;
  }
  if (j->nthreads < 1) j->nthreads = 1;
  napi_value promise, name;
  CHECK(napi_create_promise(env, &j->deferred, &promise));
  CHECK(napi_create_string_utf8(env, "goe.readChunk", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_async_work(env, NULL, name, execute, complete, j, &j->work));
  CHECK(napi_queue_async_work(env, j->work));
  // The only chunk of its read, decoded on one thread (blosc's own threads decode a lone chunk's
  // blocks, and the loop thread waiting on them measured slower than a pool thread doing so).
  if (j->alone && j->codec != CODEC_BLOSC && j->chunk_bytes <= LOOP_JOB_MAX_BYTES) {
    LoopState *ls = loop_state(env);
    if (ls) {
      j->loop_state = ls;
      j->listed = 1;
      if (ls->tail) ls->tail->next = j;
      else ls->head = j;
      ls->tail = j;
      uv_prepare_start(&ls->prepare, on_prepare);
    }
  }
  return promise;
}

/** codecs() -> { blosc, zstd, bloscBlocks, boxBlockDecodes }: which codec libraries could be opened, whether blosc can decode a range of blocks, and how many chunks were read that way. */
static napi_value codecs(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_once(&codecs_once, load_codecs);
  napi_value o, v;
  CHECK(napi_create_object(env, &o));
  CHECK(napi_get_boolean(env, blosc.decompress != NULL, &v));
  CHECK(napi_set_named_property(env, o, "blosc", v));
  CHECK(napi_get_boolean(env, zstd.decompress != NULL, &v));
  CHECK(napi_set_named_property(env, o, "zstd", v));
  CHECK(napi_get_boolean(env, blosc.getitem != NULL, &v));
  CHECK(napi_set_named_property(env, o, "bloscBlocks", v));
  CHECK(napi_create_double(env, (double)__atomic_load_n(&box_block_decodes, __ATOMIC_RELAXED), &v));
  CHECK(napi_set_named_property(env, o, "boxBlockDecodes", v));
  CHECK(napi_create_double(env, (double)__atomic_load_n(&loop_jobs, __ATOMIC_RELAXED), &v));
  CHECK(napi_set_named_property(env, o, "loopJobs", v));
  return o;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"readChunk", NULL, read_chunk, NULL, NULL, NULL, napi_enumerable, NULL},
      {"allocOutput", NULL, alloc_output, NULL, NULL, NULL, napi_enumerable, NULL},
      {"poolStats", NULL, pool_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setPoolLimit", NULL, set_pool_limit, NULL, NULL, NULL, napi_enumerable, NULL},
      {"codecs", NULL, codecs, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
