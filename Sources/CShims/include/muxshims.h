// C that Swift cannot import directly: epoll, accept4, fd_set macros,
// CPU_SET, prctl, libnuma and a fork/exec that is safe to call from Swift.
// Every name is prefixed mux_ so nothing collides with Glibc.
#ifndef MUXSHIMS_H
#define MUXSHIMS_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/select.h>
#include <sys/epoll.h>
#include <poll.h>

static const int MUX_FD_SETSIZE = FD_SETSIZE;
static const uint32_t MUX_EPOLLIN = EPOLLIN;
static const uint32_t MUX_EPOLLOUT = EPOLLOUT;
static const uint32_t MUX_EPOLLERR = EPOLLERR;
static const uint32_t MUX_EPOLLHUP = EPOLLHUP;
static const uint32_t MUX_EPOLLRDHUP = EPOLLRDHUP;
static const uint32_t MUX_EPOLLET = EPOLLET;
static const uint32_t MUX_EPOLLEXCLUSIVE = EPOLLEXCLUSIVE;
static const int MUX_EPOLL_CTL_ADD = EPOLL_CTL_ADD;
static const int MUX_EPOLL_CTL_MOD = EPOLL_CTL_MOD;
static const int MUX_EPOLL_CTL_DEL = EPOLL_CTL_DEL;

// epoll_event is packed on x86_64; keep its layout on the C side.
typedef struct epoll_event mux_epoll_event;
int mux_epoll_create(void);
int mux_epoll_ctl(int epfd, int op, int fd, uint32_t events);
int mux_epoll_wait(int epfd, mux_epoll_event *events, int maxevents, int timeout_ms);
// epoll_pwait2: a nanosecond timeout (-1: forever), for the open-loop schedule.
int mux_epoll_wait_ns(int epfd, mux_epoll_event *events, int maxevents, long long timeout_ns);
mux_epoll_event *mux_epoll_events_alloc(int n);
void mux_epoll_events_free(mux_epoll_event *events);
static inline int mux_epoll_event_fd(const mux_epoll_event *events, int i) { return events[i].data.fd; }
static inline uint32_t mux_epoll_event_flags(const mux_epoll_event *events, int i) { return events[i].events; }

// fd_set macros as functions.
static inline void mux_fd_zero(fd_set *set) { FD_ZERO(set); }
static inline void mux_fd_set(int fd, fd_set *set) { FD_SET(fd, set); }
static inline void mux_fd_clr(int fd, fd_set *set) { FD_CLR(fd, set); }
static inline int mux_fd_isset(int fd, const fd_set *set) { return FD_ISSET(fd, set); }

int mux_accept4_nonblock(int fd);
int mux_gettid(void);
int mux_pipe_cloexec(int fds[2]);

// Affinity: cpus[] in, count out. Return 0 or -errno.
int mux_set_affinity(int pid, const int *cpus, int n);
int mux_get_affinity(int pid, int *cpus, int cap);
int mux_current_cpu(void);

// Die with the parent: PR_SET_PDEATHSIG.
int mux_set_pdeathsig(int sig);

// Move the calling thread into the network namespace open at fd: setns(fd, CLONE_NEWNET).
// A network namespace is per thread. 0 or -errno.
int mux_setns_net(int fd);

// NUMA through libnuma. -1 when libnuma reports NUMA unavailable.
int mux_numa_available(void);
int mux_numa_max_node(void);
int mux_numa_bind_memory(int node);   // numa_set_membind(node); 0 or -errno
int mux_numa_preferred_node(void);    // node of the current memory policy, -1 when none binds

// fork + exec for the driver's children. The child: own process group when
// new_pgroup, PR_SET_PDEATHSIG(SIGKILL) tied to parent_pid, signals reset,
// stdin/stdout/stderr from the given fds (-1: /dev/null), other fds closed.
// Returns the pid, or -errno. exec failure exits the child with 127.
int mux_spawn(const char *path, char *const argv[], char *const envp[],
              int stdin_fd, int stdout_fd, int stderr_fd, int new_pgroup);

// Counters shared by every thread and forked process of one server (MAP_SHARED):
// MUX_CTR_SLOTS slots of MUX_CTR_FIELDS 64-bit counters, one slot per thread/process
// (or striped), 192 bytes each (whole cache lines) so writers do not share lines.
// Anonymous, or the file MUX_CTR_ENV names (made by the driver, MUX_CTR_BYTES long),
// so that the driver reads them itself at a window's edges.
enum {
    MUX_CTR_ACCEPTED, MUX_CTR_REFUSED, MUX_CTR_CLOSED, MUX_CTR_READS, MUX_CTR_READS_EAGAIN,
    MUX_CTR_WRITES, MUX_CTR_WRITES_EAGAIN, MUX_CTR_REQUESTS, MUX_CTR_ACCEPT_EMFILE,
    MUX_CTR_IDLE_CLOSED, MUX_CTR_WAITS, MUX_CTR_EVENTS, MUX_CTR_SCANNED, MUX_CTR_ACCEPT_EAGAIN,
    MUX_CTR_TASKS, MUX_CTR_THREADS, MUX_CTR_BYTES_OUT,
    MUX_CTR_FIELDS = 24
};
#define MUX_CTR_SLOTS 256
#define MUX_CTR_BYTES ((size_t)MUX_CTR_SLOTS * MUX_CTR_FIELDS * 8)
#define MUX_CTR_ENV "MUXLAB_SERVER_COUNTERS"
// NULL with errno set when the file cannot be opened or mmap fails.
uint64_t *mux_counters_create(void);
// Maps an existing counters file (the driver's side); NULL with errno set.
uint64_t *mux_counters_map(const char *path, int writable);
static inline size_t mux_counters_bytes(void) { return MUX_CTR_BYTES; }
static inline void mux_counter_add(uint64_t *c, int slot, int field, uint64_t n) {
    __atomic_fetch_add(&c[(unsigned)slot % MUX_CTR_SLOTS * MUX_CTR_FIELDS + field], n, __ATOMIC_RELAXED);
}
// A single owner publishing its running total (no read-modify-write).
static inline void mux_counter_store(uint64_t *c, int slot, int field, uint64_t v) {
    __atomic_store_n(&c[(unsigned)slot % MUX_CTR_SLOTS * MUX_CTR_FIELDS + field], v, __ATOMIC_RELAXED);
}
uint64_t mux_counter_sum(const uint64_t *c, int field);

// Signals for a supervising thread: block SIGTERM, SIGINT and SIGUSR1 in the caller
// (threads and forked children created afterwards inherit it), then sigwait for one.
int mux_block_stop_signals(void);
int mux_wait_stop_signal(void);   // the signal number, or -errno
// A thread with the default 8 MiB stack size replaced: stack_bytes (0: default).
// Returns 0 or an errno.
int mux_thread_start(void *(*body)(void *), void *arg, size_t stack_bytes);

#endif

// ---- wt-pools: hand-offs between threads (models 5-9) and zero-copy echo (K1) ----
#ifndef MUXSHIMS_POOLS_H
#define MUXSHIMS_POOLS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

// A bounded lock-free ring of 64-bit values, any number of producers and consumers
// (Vyukov's MPMC queue): no lock, so hand-offs through it never wait on a futex.
typedef struct mux_ring mux_ring;
mux_ring *mux_ring_create(uint32_t capacity);   // capacity rounded up to a power of two; NULL + errno
int mux_ring_push(mux_ring *r, uint64_t value);   // 1 pushed, 0 full
int mux_ring_pop(mux_ring *r, uint64_t *value);   // 1 popped, 0 empty

// A loop's inbox: a ring plus an eventfd the loop polls. Producers write the eventfd only
// when no wake-up is pending, so a busy loop is not woken once per message.
typedef struct mux_inbox mux_inbox;
mux_inbox *mux_inbox_create(uint32_t capacity);  // NULL + errno
int mux_inbox_fd(const mux_inbox *b);
int mux_inbox_post(mux_inbox *b, uint64_t value);  // 1 posted, 0 full
// The loop, when the eventfd is readable: read it and re-arm, then take until empty.
void mux_inbox_rearm(mux_inbox *b);
int mux_inbox_take(mux_inbox *b, uint64_t *value);  // 1 taken, 0 empty

// A ring with one sleeping consumer: it waits on a futex word (FUTEX_WAIT) only when the
// ring is empty, and producers call FUTEX_WAKE only when it sleeps (per-worker queues, K4).
typedef struct mux_parked_ring mux_parked_ring;
mux_parked_ring *mux_parked_ring_create(uint32_t capacity);  // NULL + errno
int mux_parked_ring_push(mux_parked_ring *q, uint64_t value);  // 1 pushed, 0 full
uint64_t mux_parked_ring_pop_wait(mux_parked_ring *q);  // blocks until a value comes

// splice(2) with SPLICE_F_NONBLOCK | SPLICE_F_MOVE; bytes moved, or -1 + errno.
ssize_t mux_splice_move(int fd_in, int fd_out, size_t len);
// pipe2(O_CLOEXEC | O_NONBLOCK).
int mux_pipe_nonblock(int fds[2]);

// A 64-bit gauge one thread stores and another reads (relaxed).
static inline void mux_gauge_store(uint64_t *g, uint64_t v) { __atomic_store_n(g, v, __ATOMIC_RELAXED); }
static inline uint64_t mux_gauge_load(const uint64_t *g) { return __atomic_load_n(g, __ATOMIC_RELAXED); }

// n malloc(size) + free pairs through the PLT, where an interposer or a uprobe sees each call
// (`muxlab calibrate --malloc-pairs`, the allocation-cost measurement).
void mux_malloc_free_pairs(uint64_t n, size_t size);
#endif
