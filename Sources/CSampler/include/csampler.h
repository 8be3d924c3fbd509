// The eBPF sampler: counters shared between the BPF programs
// (muxsampler.bpf.c) and user space, and the plain C API the Swift side calls.
//
// The BPF side includes vmlinux.h before this header, which already provides
// __u32/__u64; user space gets them from <linux/types.h>. Everything after the
// "user space only" guard is hidden from the BPF compiler.
#ifndef CSAMPLER_H
#define CSAMPLER_H

#if !defined(__BPF__) && !defined(__bpf__)
#include <linux/types.h>
#include <stddef.h>
#endif

#define MUX_MAX_SYSCALLS 512

// Cumulative totals since mux_sampler_open, summed over CPUs. Only __u64
// fields: user space sums the per-CPU copies field by field as an array.
struct mux_counters {
    // raw_syscalls: every syscall made by a target thread
    __u64 syscalls;
    __u64 syscall_ns;            // enter -> exit, summed
    __u64 syscall_errors;        // ret < 0
    __u64 syscall_eagain;        // ret == -EAGAIN

    // multiplexers: select/pselect6, poll/ppoll, epoll_wait/epoll_pwait/epoll_pwait2
    __u64 select_calls;
    __u64 poll_calls;
    __u64 epoll_wait_calls;
    __u64 mux_nfds_total;        // select nfds + poll nfds
    __u64 mux_events_total;      // positive returns of all three families
    __u64 epoll_maxevents_total;
    // fd-set bytes: select and poll only (epoll's event copy is epoll_bytes_out).
    // select: ceil(nfds/64)*8 per non-NULL fd_set (nfds capped at the fd table's
    // size, as the kernel does), in unless the call failed before copying
    // (EINVAL/EFAULT/ENOMEM), out only on success. poll: 8 per pollfd in, 2 per
    // pollfd out (do_sys_poll writes back revents alone, also after EINTR).
    __u64 fdset_bytes_in;        // user -> kernel
    __u64 fdset_bytes_out;       // kernel -> user
    __u64 epoll_ctl_add;
    __u64 epoll_ctl_mod;
    __u64 epoll_ctl_del;
    __u64 select_nfds;
    __u64 select_events;
    __u64 select_bytes_in;
    __u64 select_bytes_out;
    __u64 select_ns;
    __u64 poll_nfds;
    __u64 poll_events;
    __u64 poll_bytes_in;
    __u64 poll_bytes_out;
    __u64 poll_ns;
    __u64 epoll_events;
    __u64 epoll_bytes_out;       // struct epoll_event copies: 12 bytes per event returned
    __u64 epoll_wait_ns;
    __u64 mux_zero_returns;      // multiplexer calls that returned 0 (timeout)

    // copies between user and kernel
    __u64 read_calls;            // read, readv, pread64, preadv, recvfrom, recvmsg, recvmmsg
    __u64 read_bytes;            // kernel -> user (positive returns; recvmmsg not included)
    __u64 write_calls;           // write, writev, pwrite64, pwritev, sendto, sendmsg
    __u64 write_bytes;           // user -> kernel (positive returns)
    __u64 zerocopy_calls;        // splice, sendfile, tee, vmsplice
    __u64 zerocopy_bytes;
    __u64 skb_copy_bytes;        // skb:skb_copy_datagram_iovec len, cross-check for read_bytes
    __u64 recvmmsg_calls;
    // io_uring completions (io_uring:io_uring_complete) of a target's ring, by opcode:
    // receive/read family res > 0 (multishot receives: each CQE's res) and send/write family.
    __u64 uring_reads;
    __u64 uring_read_bytes;      // kernel -> user
    __u64 uring_writes;
    __u64 uring_write_bytes;     // user -> kernel

    // scheduler
    __u64 switches_voluntary;    // target thread blocked (not preempted, state != RUNNING)
    __u64 switches_involuntary;  // target thread preempted or yielded while runnable
    __u64 offcpu_ns;             // switch-out -> switch-in, all switches
    __u64 offcpu_involuntary_ns; // the part of offcpu_ns that followed an involuntary switch
    __u64 wakeups;
    __u64 migrations;

    // memory
    __u64 mallocs;               // malloc + calloc + realloc + posix_memalign + aligned_alloc
    __u64 malloc_bytes;          // bytes requested by those calls
    __u64 frees;
    __u64 malloc_calls;
    __u64 calloc_calls;
    __u64 realloc_calls;
    __u64 memalign_calls;        // posix_memalign + aligned_alloc
    __u64 page_faults;
    __u64 mmap_calls;
    __u64 munmap_calls;
    __u64 brk_calls;

    // futex and kernel locks. Waits for a lock vs waits for work, by op, as glibc 2.36
    // (Debian 12) and Swift use them (seen with strace -f on pthread programs):
    //   lock: FUTEX_WAIT (glibc's lll_lock_wait: a contended pthread_mutex, internal
    //         locks), FUTEX_LOCK_PI/LOCK_PI2 (PI mutexes, Synchronization.Mutex).
    //   cond: FUTEX_WAIT_BITSET (pthread_cond_wait, sem_wait, pthread_join: glibc waits
    //         on those with BITSET_MATCH_ANY), FUTEX_WAIT_REQUEUE_PI, futex_waitv.
    // Not told apart: pthread_rwlock and pthread_mutex_timedlock also wait with
    // FUTEX_WAIT_BITSET, so their waits read as cond waits.
    __u64 futex_wait_calls;      // WAIT, WAIT_BITSET, LOCK_PI, LOCK_PI2, WAIT_REQUEUE_PI, futex_waitv
    __u64 futex_wait_ns;
    __u64 futex_wait_plain;      // FUTEX_WAIT
    __u64 futex_wait_bitset;     // FUTEX_WAIT_BITSET
    __u64 futex_lock_pi;         // FUTEX_LOCK_PI + FUTEX_LOCK_PI2 (Synchronization.Mutex)
    __u64 futex_lock_pi_ns;
    __u64 futex_wait_requeue_pi;
    __u64 futex_waitv;
    __u64 futex_wake_calls;      // WAKE, WAKE_BITSET, UNLOCK_PI
    __u64 futex_unlock_pi;
    __u64 futex_other_calls;     // requeue, wake_op and anything else
    __u64 futex_lock_waits;      // FUTEX_WAIT + LOCK_PI + LOCK_PI2: waits for a lock
    __u64 futex_lock_wait_ns;
    __u64 futex_cond_waits;      // WAIT_BITSET + WAIT_REQUEUE_PI + futex_waitv: waits for work
    __u64 futex_cond_wait_ns;
    __u64 lock_contentions;      // lock:contention_begin
    __u64 lock_contention_ns;    // outermost begin -> end

    // target set
    __u64 forks_followed;        // new processes added to the target set by fork
    __u64 exits_seen;            // target processes whose last thread exited

    // silent undercounts, made loud
    __u64 targets_full;          // processes not followed: the targets map was full (fork or add_target)
    __u64 thread_state_full;     // syscalls, switches or lock waits of a target thread left untimed:
                                 // its per-thread state map was full
};

// Per syscall id, in a per-CPU array of MUX_MAX_SYSCALLS entries.
struct mux_syscall_val {
    __u64 count;
    __u64 total_ns;
    __u64 errors;
    __u64 eagain;
};

#if !defined(__BPF__) && !defined(__bpf__)

#ifdef __cplusplus
extern "C" {
#endif

struct mux_syscall_stat {
    __u32 id;
    __u64 count, total_ns, errors, eagain;
};

// Not thread-safe: open, add_target and close from one thread at a time
// (libbpf's log callback is process-wide). read may run on any one thread.
typedef struct mux_sampler mux_sampler;

// want_uprobes. A uprobe hit costs microseconds on these VMs (a trap), so
// where the breakpoints go matters:
//   MUX_UPROBES_OFF         no allocation counting.
//   MUX_UPROBES_ALL (1, or any value but 2): attached for pid -1, so every
//       process that maps libc takes the trap on malloc/free and the BPF side
//       filters by tgid. Covers processes forked after open.
//   MUX_UPROBES_PER_TARGET  attached for each pid passed to open/add_target
//       only; other processes pay nothing, but processes that targets fork
//       later are not counted (their syscalls and switches still are).
enum {
    MUX_UPROBES_OFF = 0,
    MUX_UPROBES_ALL = 1,
    MUX_UPROBES_PER_TARGET = 2,
};

struct mux_sampler_opts {
    int root_pid;           // first target process; <= 0: none yet (use mux_sampler_add_target)
    const char *libc_path;  // NULL: no allocation uprobes
    int want_uprobes;       // MUX_UPROBES_*; 0: none even with a libc path
};

// Opens, loads and attaches every probe it can. Returns 0 or -errno. A probe
// that cannot attach is recorded in the status list and the sampler carries
// on; only a load failure or the core syscall tracepoints failing to attach
// is fatal, and then err holds a message.
int mux_sampler_open(const struct mux_sampler_opts *opts, mux_sampler **out, char *err, size_t errlen);

// Adds a process (tgid) to the target set, e.g. children that already exist.
// With MUX_UPROBES_PER_TARGET it also attaches the allocation uprobes to it
// (once per tgid; a failure there goes to the status list, not the result).
int mux_sampler_add_target(mux_sampler *s, int tgid);

// Probes that failed to attach: count, then name ("uprobe:malloc") and reason.
int mux_sampler_status_count(mux_sampler *s);
const char *mux_sampler_status_probe(mux_sampler *s, int i);
const char *mux_sampler_status_reason(mux_sampler *s, int i);

// Sums the per-CPU counters into *out (cumulative since open). 0 or -errno.
int mux_sampler_read(mux_sampler *s, struct mux_counters *out);

// Fills out[] with the syscall ids that have count > 0, at most cap of them.
// Returns the number written or -errno.
int mux_sampler_read_syscalls(mux_sampler *s, struct mux_syscall_stat *out, int cap);

void mux_sampler_close(mux_sampler *s);

#ifdef __cplusplus
}
#endif

#endif // user space only

#endif // CSAMPLER_H
