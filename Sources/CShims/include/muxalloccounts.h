// The allocation-count region: a file (in /dev/shm) the driver creates and
// every process started with libMuxAllocCounter.so preloaded maps and counts
// into, one slot per process. Written by Sources/CAllocCounter/alloccounter.c,
// read by Sources/Probe/AllocationCounters.swift: this header is the one
// definition of the layout both sides use.
#ifndef MUXALLOCCOUNTS_H
#define MUXALLOCCOUNTS_H

#include <stdint.h>

// The variable that names the region's path in a child's environment.
#define MUX_ALLOC_ENV "MUXLAB_ALLOC_COUNTS"
// "muxalc01" read as a little-endian word: a file of another shape is never counted into.
#define MUX_ALLOC_MAGIC 0x3130636c6178756dULL
#define MUX_ALLOC_VERSION 1u

// The four allocation kinds, as the libc uprobes count them (KernelCounters).
enum {
    MUX_ALLOC_MALLOC = 0,    // malloc
    MUX_ALLOC_CALLOC = 1,    // calloc
    MUX_ALLOC_REALLOC = 2,   // realloc, reallocarray (also realloc(NULL, n): one call, one count)
    MUX_ALLOC_MEMALIGN = 3,  // posix_memalign, aligned_alloc, memalign, valloc, pvalloc
    MUX_ALLOC_KINDS = 4
};

// Slot flags.
enum {
    MUX_ALLOC_SLOT_FORKED = 1u,          // claimed by a fork child (pthread_atfork), not at exec
    MUX_ALLOC_SLOT_NOT_INTERPOSED = 2u,  // another malloc wins symbol lookup here: this slot sees nothing
};

// 64 bytes, so each process's counters sit on their own cache line.
typedef struct {
    uint64_t magic;
    uint32_t version;
    uint32_t slot_count;         // slots that follow the header
    uint32_t claimed;            // slots handed out, atomically; counts past slot_count when full
    uint32_t dropped_processes;  // processes that found no free slot and count nothing
    uint32_t slot_bytes;         // sizeof(mux_alloc_slot), checked by the library
    uint32_t reserved[9];
} mux_alloc_header;

typedef struct {
    int32_t pid;                      // 0 until the claiming process writes it
    uint32_t flags;                   // MUX_ALLOC_SLOT_*
    uint64_t calls[MUX_ALLOC_KINDS];  // allocation calls by kind
    uint64_t frees;                   // free() of a non-NULL pointer
    uint64_t bytes;                   // bytes requested by every allocation call
} mux_alloc_slot;

_Static_assert(sizeof(mux_alloc_header) == 64, "mux_alloc_header is one cache line");
_Static_assert(sizeof(mux_alloc_slot) == 56, "mux_alloc_slot layout");

// Slots are 64 bytes apart (the slot padded to a cache line).
#define MUX_ALLOC_SLOT_STRIDE 64u

static inline uint64_t mux_alloc_region_bytes(uint32_t slots) {
    return (uint64_t)sizeof(mux_alloc_header) + (uint64_t)slots * MUX_ALLOC_SLOT_STRIDE;
}

static inline mux_alloc_slot *mux_alloc_slot_at(void *region, uint32_t i) {
    return (mux_alloc_slot *)((char *)region + sizeof(mux_alloc_header) + (uint64_t)i * MUX_ALLOC_SLOT_STRIDE);
}

// The driver's side: fill in the header of a zeroed region (magic last, so a
// process that maps it early sees either nothing or a whole header).
static inline void mux_alloc_region_init(void *region, uint32_t slots) {
    mux_alloc_header *h = (mux_alloc_header *)region;
    h->version = MUX_ALLOC_VERSION;
    h->slot_count = slots;
    h->slot_bytes = (uint32_t)sizeof(mux_alloc_slot);
    __atomic_store_n(&h->magic, MUX_ALLOC_MAGIC, __ATOMIC_RELEASE);
}

// Relaxed loads for the reader: the counters change under it.
static inline uint32_t mux_alloc_claimed(const void *region) {
    return __atomic_load_n(&((const mux_alloc_header *)region)->claimed, __ATOMIC_RELAXED);
}
static inline uint32_t mux_alloc_dropped(const void *region) {
    return __atomic_load_n(&((const mux_alloc_header *)region)->dropped_processes, __ATOMIC_RELAXED);
}
static inline uint64_t mux_alloc_load(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline int32_t mux_alloc_slot_pid(void *region, uint32_t i) {
    return __atomic_load_n(&mux_alloc_slot_at(region, i)->pid, __ATOMIC_ACQUIRE);
}
static inline uint32_t mux_alloc_slot_flags(void *region, uint32_t i) {
    return __atomic_load_n(&mux_alloc_slot_at(region, i)->flags, __ATOMIC_RELAXED);
}
static inline uint64_t mux_alloc_slot_calls(void *region, uint32_t i, int kind) {
    return mux_alloc_load(&mux_alloc_slot_at(region, i)->calls[kind]);
}
static inline uint64_t mux_alloc_slot_frees(void *region, uint32_t i) {
    return mux_alloc_load(&mux_alloc_slot_at(region, i)->frees);
}
static inline uint64_t mux_alloc_slot_bytes(void *region, uint32_t i) {
    return mux_alloc_load(&mux_alloc_slot_at(region, i)->bytes);
}

#endif
