// The liburing wrappers behind muxuring.h: one ring, one provided-buffer ring, counters.
#define _GNU_SOURCE
#include "muxuring.h"

#include <errno.h>
#include <liburing.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

_Static_assert((int)MUX_OP_ACCEPT == (int)IORING_OP_ACCEPT, "opcode numbers follow the kernel's enum");
_Static_assert((int)MUX_OP_SEND == (int)IORING_OP_SEND, "opcode numbers follow the kernel's enum");
_Static_assert((int)MUX_OP_RECV == (int)IORING_OP_RECV, "opcode numbers follow the kernel's enum");
_Static_assert((int)MUX_OP_SHUTDOWN == (int)IORING_OP_SHUTDOWN, "opcode numbers follow the kernel's enum");
_Static_assert(sizeof(mux_uring_cqe) == sizeof(struct io_uring_cqe), "plain 16-byte CQEs");

struct mux_uring {
    struct io_uring ring;
    uint32_t setup_flags;
    mux_uring_counters counters;
    // The provided-buffer ring (shared with the kernel) and the buffers it lends.
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    unsigned br_mask;
    unsigned buf_size;
    unsigned buf_count;
    char *bufs;
    // IORING_OP_TIMEOUT reads its timespec at submission; it lives here until then.
    struct __kernel_timespec ts;
};

mux_uring *mux_uring_create(unsigned entries, unsigned cq_entries, int *err) {
    mux_uring *r = calloc(1, sizeof *r);
    if (!r) { *err = -ENOMEM; return NULL; }
    // Best first; each older kernel refuses the newer flags with EINVAL.
    static const uint32_t tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int ret = -EINVAL;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = tries[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
        ret = io_uring_queue_init_params(entries, &r->ring, &p);
        if (ret == 0) { r->setup_flags = tries[i]; break; }
        if (ret != -EINVAL) break;
    }
    if (ret < 0) { free(r); *err = ret; return NULL; }
    *err = 0;
    return r;
}

void mux_uring_destroy(mux_uring *r) {
    if (!r) return;
    io_uring_queue_exit(&r->ring);
    if (r->br) munmap(r->br, r->br_bytes);
    if (r->bufs) munmap(r->bufs, (size_t)r->buf_size * r->buf_count);
    free(r);
}

uint32_t mux_uring_setup_flags(const mux_uring *r) { return r->setup_flags; }
uint32_t mux_uring_features(const mux_uring *r) { return r->ring.features; }
mux_uring_counters mux_uring_get_counters(const mux_uring *r) { return r->counters; }

int mux_uring_opcode_supported(mux_uring *r, int opcode) {
    struct io_uring_probe *probe = io_uring_get_probe_ring(&r->ring);
    if (!probe) return -ENOSYS;
    int ok = io_uring_opcode_supported(probe, opcode);
    io_uring_free_probe(probe);
    return ok ? 1 : 0;
}

int mux_uring_buffers_create(mux_uring *r, unsigned count, unsigned size, uint16_t bgid) {
    if (count == 0 || (count & (count - 1)) || count > 32768) return -EINVAL;
    size_t ring_bytes = count * sizeof(struct io_uring_buf);
    void *ring = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ring == MAP_FAILED) return -errno;
    // Buffers are touched lazily: pages fault in as the kernel first fills each one.
    char *bufs = mmap(NULL, (size_t)count * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (bufs == MAP_FAILED) { int e = -errno; munmap(ring, ring_bytes); return e; }
    struct io_uring_buf_ring *br = ring;
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = count;
    reg.bgid = bgid;
    int ret = io_uring_register_buf_ring(&r->ring, &reg, 0);
    if (ret < 0) { munmap(ring, ring_bytes); munmap(bufs, (size_t)count * size); return ret; }
    int mask = io_uring_buf_ring_mask(count);
    for (unsigned i = 0; i < count; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * size, size, (unsigned short)i, mask, (int)i);
    io_uring_buf_ring_advance(br, (int)count);
    r->br = br;
    r->br_bytes = ring_bytes;
    r->br_mask = (unsigned)mask;
    r->buf_size = size;
    r->buf_count = count;
    r->bufs = bufs;
    return 0;
}

void *mux_uring_buffer(const mux_uring *r, uint16_t bid) {
    return r->bufs + (size_t)bid * r->buf_size;
}

void mux_uring_buffer_recycle(mux_uring *r, uint16_t bid) {
    io_uring_buf_ring_add(r->br, r->bufs + (size_t)bid * r->buf_size, r->buf_size, bid, (int)r->br_mask, 0);
    io_uring_buf_ring_advance(r->br, 1);
}

// An SQE, submitting what is queued first when the SQ is full.
static struct io_uring_sqe *get_sqe(mux_uring *r) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (sqe) return sqe;
    int n = io_uring_submit(&r->ring);
    r->counters.flushes++;
    if (n > 0) r->counters.sqes += (uint64_t)n;
    return io_uring_get_sqe(&r->ring);
}

int mux_uring_accept(mux_uring *r, int fd, int multishot, uint64_t user_data) {
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe) return -EBUSY;
    // Accepted sockets stay blocking: io_uring polls them itself, and O_NONBLOCK would change nothing.
    if (multishot) io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    else io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int mux_uring_recv_select(mux_uring *r, int fd, uint16_t bgid, int multishot, uint64_t user_data) {
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe) return -EBUSY;
    if (multishot) io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    else io_uring_prep_recv(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bgid;
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int mux_uring_send(mux_uring *r, int fd, const void *buf, size_t len, uint64_t user_data) {
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe) return -EBUSY;
    // No MSG_NOSIGNAL: SIGPIPE follows the process's disposition, as write(2) does (--sigpipe, claim H1).
    io_uring_prep_send(sqe, fd, buf, len, 0);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int mux_uring_read(mux_uring *r, int fd, void *buf, unsigned len, uint64_t user_data) {
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_read(sqe, fd, buf, len, (__u64)-1);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int mux_uring_shutdown(mux_uring *r, int fd, int how, uint64_t user_data) {
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_shutdown(sqe, fd, how);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int mux_uring_cancel(mux_uring *r, uint64_t target, uint64_t user_data) {
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_cancel64(sqe, target, 0);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int mux_uring_timeout(mux_uring *r, uint64_t ns, uint64_t user_data) {
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe) return -EBUSY;
    r->ts.tv_sec = (long long)(ns / 1000000000ULL);
    r->ts.tv_nsec = (long long)(ns % 1000000000ULL);
    io_uring_prep_timeout(sqe, &r->ts, 0, 0);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int mux_uring_submit_and_wait(mux_uring *r) {
    int n = io_uring_submit_and_wait(&r->ring, 1);
    r->counters.waits++;
    if (n > 0) r->counters.sqes += (uint64_t)n;
    return n;
}

unsigned mux_uring_reap(mux_uring *r, mux_uring_cqe *out, unsigned max) {
    unsigned n = 0;
    unsigned head;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&r->ring, head, cqe) {
        if (n == max) break;
        out[n].user_data = cqe->user_data;
        out[n].res = cqe->res;
        out[n].flags = cqe->flags;
        n++;
    }
    io_uring_cq_advance(&r->ring, n);
    return n;
}

int mux_uring_stop_signalfd(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    int e = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (e) return -e;
    int fd = signalfd(-1, &set, SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}
