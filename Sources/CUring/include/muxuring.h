// liburing for Swift: most of liburing's API is static inline (SQE preparation,
// CQ peeking, buffer rings), which Swift cannot call. These wrappers hide one
// ring behind an opaque handle. Every name is prefixed mux_uring_.
#ifndef MUXURING_H
#define MUXURING_H

#include <stdint.h>
#include <stddef.h>

typedef struct mux_uring mux_uring;

// One completion, copied out of the CQ ring (the layout of a plain io_uring_cqe).
typedef struct {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
} mux_uring_cqe;

// What the ring did, counted on the C side where the calls are made.
typedef struct {
    uint64_t waits;     // io_uring_enter calls that waited for completions
    uint64_t flushes;   // io_uring_enter calls that only submitted (the SQ was full)
    uint64_t sqes;      // SQEs the kernel took
} mux_uring_counters;

static const uint32_t MUX_CQE_F_BUFFER = 1U << 0;
static const uint32_t MUX_CQE_F_MORE = 1U << 1;
static const uint32_t MUX_CQE_BUFFER_SHIFT = 16;

// Setup flags the ring was created with (reported in the ready line).
static const uint32_t MUX_SETUP_SINGLE_ISSUER = 1U << 12;
static const uint32_t MUX_SETUP_DEFER_TASKRUN = 1U << 13;
static const uint32_t MUX_SETUP_COOP_TASKRUN = 1U << 8;

// A ring with `entries` SQEs and `cq_entries` CQEs. Tries SINGLE_ISSUER|DEFER_TASKRUN
// (6.1+), then COOP_TASKRUN (5.19+), then no flags. NULL with *err = -errno on failure.
mux_uring *mux_uring_create(unsigned entries, unsigned cq_entries, int *err);
void mux_uring_destroy(mux_uring *r);
uint32_t mux_uring_setup_flags(const mux_uring *r);
uint32_t mux_uring_features(const mux_uring *r);
mux_uring_counters mux_uring_get_counters(const mux_uring *r);
// 1 when the kernel knows the opcode (IORING_REGISTER_PROBE), 0 when not, -errno when it cannot tell.
int mux_uring_opcode_supported(mux_uring *r, int opcode);
enum { MUX_OP_ACCEPT = 13, MUX_OP_SEND = 26, MUX_OP_RECV = 27, MUX_OP_SHUTDOWN = 34 };

// A provided-buffer ring (5.19+): `count` (a power of two) buffers of `size` bytes in
// group `bgid`, all handed to the kernel. 0 or -errno.
int mux_uring_buffers_create(mux_uring *r, unsigned count, unsigned size, uint16_t bgid);
void *mux_uring_buffer(const mux_uring *r, uint16_t bid);
// Hands buffer `bid` back to the kernel (at the ring's tail).
void mux_uring_buffer_recycle(mux_uring *r, uint16_t bid);

// SQE preparation. Each gets an SQE (submitting first when the SQ is full) and
// returns 0, or -EBUSY when no SQE could be had even then.
int mux_uring_accept(mux_uring *r, int fd, int multishot, uint64_t user_data);
int mux_uring_recv_select(mux_uring *r, int fd, uint16_t bgid, int multishot, uint64_t user_data);
int mux_uring_send(mux_uring *r, int fd, const void *buf, size_t len, uint64_t user_data);
int mux_uring_read(mux_uring *r, int fd, void *buf, unsigned len, uint64_t user_data);
int mux_uring_shutdown(mux_uring *r, int fd, int how, uint64_t user_data);
int mux_uring_cancel(mux_uring *r, uint64_t target, uint64_t user_data);

// A completion `ns` from now (IORING_OP_TIMEOUT, count 0): a clock that needs no extra wait call.
int mux_uring_timeout(mux_uring *r, uint64_t ns, uint64_t user_data);

// Submits what is queued and waits for at least one completion: exactly one io_uring_enter.
// >= 0 or -errno (-EINTR when a signal interrupted the wait).
int mux_uring_submit_and_wait(mux_uring *r);
// Copies up to `max` ready completions into `out` and marks them seen.
unsigned mux_uring_reap(mux_uring *r, mux_uring_cqe *out, unsigned max);

// Blocks SIGTERM, SIGINT and SIGUSR1 in the calling thread and returns a signalfd
// that reports them (read MUX_SIGINFO_SIZE bytes; the signal number is the first
// uint32). -errno on failure.
int mux_uring_stop_signalfd(void);
static const unsigned MUX_SIGINFO_SIZE = 128;

#endif
