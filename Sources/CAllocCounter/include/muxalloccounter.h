// libMuxAllocCounter.so has no API of its own: it defines the standard
// allocation functions (malloc, free, calloc, realloc, reallocarray,
// posix_memalign, aligned_alloc, memalign, valloc, pvalloc) and is used by
// starting a process with LD_PRELOAD=<path>/libMuxAllocCounter.so and
// MUXLAB_ALLOC_COUNTS=<region file>. The region's layout, shared with the
// reader in Sources/Probe/AllocationCounters.swift, is CShims' muxalloccounts.h.
#ifndef MUXALLOCCOUNTER_H
#define MUXALLOCCOUNTER_H
#endif
