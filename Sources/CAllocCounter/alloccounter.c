// libMuxAllocCounter.so: preloaded (LD_PRELOAD) into the processes muxlab
// starts, it counts their allocation calls into the shared region that
// MUXLAB_ALLOC_COUNTS names (layout: CShims/include/muxalloccounts.h), one slot
// per process, and forwards every call to glibc's own exported entry points
// (__libc_malloc, ...): no dlsym bootstrap, and glibc's internal relays
// (realloc(NULL, n), small-aligned memalign) call those directly, never back
// into this library, so nothing is counted twice.
//
// Hand-written because no listed package fits: ordo-one/malloc-interposer
// (/opt/swift-packages) counts only while its own process has called hook(),
// into per-thread blocks that getStatistics() reads inside that same process;
// it ships as a Swift dylib (the Swift runtime in every preloaded process) and
// prefixes every block with a 16-byte header. muxlab needs the counts of many
// processes (a server, its fork children, nginx's workers) in shared memory
// that the driver, another process, reads at window edges.
//
// Not linked into muxlab: it must only ever be preloaded into children.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "muxalloccounts.h"

// glibc's allocator under its internal names (exported by glibc, 2.36 here).
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

#define MUX_EXPORT __attribute__((visibility("default")))

// The mapped region (never unmapped: a slot's counts must outlive the process's last call).
static void *g_region;
// This process's slot; NULL: count nothing (no variable, no region, or no free slot).
static mux_alloc_slot *g_slot;
// This process's slot flags, inherited by fork children.
static uint32_t g_flags;

static inline __attribute__((always_inline)) void count_alloc(int kind, uint64_t bytes)
{
    mux_alloc_slot *s = __atomic_load_n(&g_slot, __ATOMIC_RELAXED);

    if (__builtin_expect(s != NULL, 1)) {
        __atomic_fetch_add(&s->calls[kind], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&s->bytes, bytes, __ATOMIC_RELAXED);
    }
}

MUX_EXPORT void *malloc(size_t size)
{
    count_alloc(MUX_ALLOC_MALLOC, size);
    return __libc_malloc(size);
}

MUX_EXPORT void free(void *ptr)
{
    mux_alloc_slot *s;

    if (ptr) {
        s = __atomic_load_n(&g_slot, __ATOMIC_RELAXED);
        if (__builtin_expect(s != NULL, 1))
            __atomic_fetch_add(&s->frees, 1, __ATOMIC_RELAXED);
    }
    __libc_free(ptr);
}

MUX_EXPORT void *calloc(size_t n, size_t size)
{
    size_t bytes;

    // An overflowing n * size allocates nothing (glibc fails it with ENOMEM): the call counts, no bytes.
    count_alloc(MUX_ALLOC_CALLOC, __builtin_mul_overflow(n, size, &bytes) ? 0 : bytes);
    return __libc_calloc(n, size);
}

MUX_EXPORT void *realloc(void *ptr, size_t size)
{
    count_alloc(MUX_ALLOC_REALLOC, size);
    return __libc_realloc(ptr, size);
}

// glibc's reallocarray relays to realloc; defined here so it counts once whichever way that relay binds.
MUX_EXPORT void *reallocarray(void *ptr, size_t n, size_t size)
{
    size_t bytes;

    if (__builtin_mul_overflow(n, size, &bytes)) {
        count_alloc(MUX_ALLOC_REALLOC, 0);
        errno = ENOMEM;
        return NULL;
    }
    count_alloc(MUX_ALLOC_REALLOC, bytes);
    return __libc_realloc(ptr, bytes);
}

MUX_EXPORT int posix_memalign(void **memptr, size_t alignment, size_t size)
{
    void *p;

    count_alloc(MUX_ALLOC_MEMALIGN, size);
    // glibc's own check: a power of two and a multiple of sizeof(void *).
    if (alignment == 0 || alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0)
        return EINVAL;
    p = __libc_memalign(alignment, size);
    if (!p)
        return ENOMEM;
    *memptr = p;
    return 0;
}

// glibc 2.36's aligned_alloc is memalign under another name.
MUX_EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
    count_alloc(MUX_ALLOC_MEMALIGN, size);
    return __libc_memalign(alignment, size);
}

MUX_EXPORT void *memalign(size_t alignment, size_t size)
{
    count_alloc(MUX_ALLOC_MEMALIGN, size);
    return __libc_memalign(alignment, size);
}

MUX_EXPORT void *valloc(size_t size)
{
    count_alloc(MUX_ALLOC_MEMALIGN, size);
    return __libc_valloc(size);
}

MUX_EXPORT void *pvalloc(size_t size)
{
    count_alloc(MUX_ALLOC_MEMALIGN, size);
    return __libc_pvalloc(size);
}

// malloc_usable_size is not defined: blocks are glibc's own, unchanged, so glibc's answers stand.

// This library's own malloc, to tell whether it is the one the process's calls reach.
extern void *mux_alloc_own_malloc(size_t size) __attribute__((alias("malloc"), visibility("hidden")));

// False when the executable or an earlier preload defines malloc (a linked-in tcmalloc, a preloaded
// jemalloc): calls never reach this library, and the slot says so instead of reading as zero.
static int reaches_this_library(void)
{
    void *winner = dlsym(RTLD_DEFAULT, "malloc");

    return winner == NULL || winner == (void *)mux_alloc_own_malloc;
}

// Takes the next slot for this process; a full region counts the process as dropped instead.
static void claim_slot(uint32_t flags)
{
    mux_alloc_header *h = g_region;
    uint32_t i = __atomic_fetch_add(&h->claimed, 1, __ATOMIC_RELAXED);
    mux_alloc_slot *s;

    g_flags = flags;
    if (i >= h->slot_count) {
        __atomic_fetch_add(&h->dropped_processes, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&g_slot, NULL, __ATOMIC_RELAXED);
        return;
    }
    s = mux_alloc_slot_at(g_region, i);
    __atomic_store_n(&s->flags, flags, __ATOMIC_RELAXED);
    __atomic_store_n(&s->pid, (int32_t)getpid(), __ATOMIC_RELEASE);
    __atomic_store_n(&g_slot, s, __ATOMIC_RELAXED);
}

// In a fork child: a slot of its own, from zero (the parent's counts stay in the parent's slot).
static void forked_child(void)
{
    claim_slot((g_flags & MUX_ALLOC_SLOT_NOT_INTERPOSED) | MUX_ALLOC_SLOT_FORKED);
}

// Maps the region named by MUXLAB_ALLOC_COUNTS and claims a slot; any problem: forward, count nothing.
__attribute__((constructor)) static void start_counting(void)
{
    const char *path = getenv(MUX_ALLOC_ENV);
    const mux_alloc_header *h;
    struct stat st;
    void *region;
    int fd;

    if (!path || !path[0])
        return;
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(mux_alloc_header)) {
        close(fd);
        return;
    }
    region = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (region == MAP_FAILED)
        return;
    h = region;
    if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != MUX_ALLOC_MAGIC || h->version != MUX_ALLOC_VERSION ||
        h->slot_bytes != sizeof(mux_alloc_slot) || mux_alloc_region_bytes(h->slot_count) > (uint64_t)st.st_size) {
        munmap(region, (size_t)st.st_size);
        return;
    }
    g_region = region;
    if (pthread_atfork(NULL, NULL, forked_child) != 0) {
        // Without the handler a fork child would count into its parent's slot: count nothing.
        __atomic_fetch_add(&((mux_alloc_header *)region)->dropped_processes, 1, __ATOMIC_RELAXED);
        return;
    }
    claim_slot(reaches_this_library() ? 0 : MUX_ALLOC_SLOT_NOT_INTERPOSED);
}
