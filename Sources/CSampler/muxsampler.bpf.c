// Kernel side of the muxlab sampler. Everything is aggregated here, in per-CPU
// maps; user space only reads the maps when it takes a snapshot.
//
// Only raw tracepoints and uprobes: kprobes and fentry/fexit are not available
// on the machines this runs on, and raw tracepoints attach by name without
// tracefs being mounted.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "csampler.h"

#define MAX_TARGETS 16384
#define MAX_THREADS 65536

#define EAGAIN_ERR 11
#define ENOMEM_ERR 12
#define EFAULT_ERR 14
#define EINVAL_ERR 22
#define EEXIST_ERR 17
#define TASK_RUNNING_STATE 0
#define TASK_DEAD_STATE 0x80

// x86_64 syscall numbers this file looks at.
#define NR_read 0
#define NR_write 1
#define NR_poll 7
#define NR_mmap 9
#define NR_munmap 11
#define NR_brk 12
#define NR_pread64 17
#define NR_pwrite64 18
#define NR_readv 19
#define NR_writev 20
#define NR_select 23
#define NR_sendfile 40
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_futex 202
#define NR_epoll_wait 232
#define NR_epoll_ctl 233
#define NR_pselect6 270
#define NR_ppoll 271
#define NR_splice 275
#define NR_tee 276
#define NR_vmsplice 278
#define NR_epoll_pwait 281
#define NR_preadv 295
#define NR_pwritev 296
#define NR_recvmmsg 299
#define NR_epoll_pwait2 441
#define NR_futex_waitv 449

// futex(2) operations (include/uapi/linux/futex.h).
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_LOCK_PI 6
#define FUTEX_UNLOCK_PI 7
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_WAIT_REQUEUE_PI 11
#define FUTEX_LOCK_PI2 13
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CLOCK_REALTIME 256
#define FUTEX_CMD_MASK (~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME))

#define EPOLL_CTL_ADD 1
#define EPOLL_CTL_DEL 2
#define EPOLL_CTL_MOD 3

#define EPOLL_EVENT_SIZE 12 // struct epoll_event is packed on x86_64
#define POLLFD_SIZE 8
#define POLLFD_REVENTS_SIZE 2 // do_sys_poll copies back only each entry's revents

// io_uring opcodes (include/uapi/linux/io_uring.h: ABI numbers, defined here so that a
// vmlinux.h from an older kernel still builds).
#define UOP_READV 1
#define UOP_WRITEV 2
#define UOP_READ_FIXED 4
#define UOP_WRITE_FIXED 5
#define UOP_SENDMSG 9
#define UOP_RECVMSG 10
#define UOP_READ 22
#define UOP_WRITE 23
#define UOP_SEND 26
#define UOP_RECV 27
#define UOP_SPLICE 30
#define UOP_TEE 33
#define UOP_SEND_ZC 47
#define UOP_SENDMSG_ZC 48
#define UOP_READ_MULTISHOT 49
#define UOP_READV_FIXED 60
#define UOP_WRITEV_FIXED 61
#define CQE_F_BUFFER 1 // IORING_CQE_F_BUFFER: the CQE names a provided buffer it filled

// What sys_exit has to finish for the syscall that sys_enter saw.
enum call_kind {
    KIND_PLAIN = 0,
    KIND_SELECT,
    KIND_POLL,
    KIND_EPOLL_WAIT,
    KIND_FUTEX_LOCK,    // waits for a lock (FUTEX_WAIT)
    KIND_FUTEX_LOCK_PI, // waits for a lock (LOCK_PI, LOCK_PI2)
    KIND_FUTEX_COND,    // waits for work (WAIT_BITSET, WAIT_REQUEUE_PI, futex_waitv)
    KIND_READ,
    KIND_WRITE,
    KIND_ZEROCOPY,
};

struct sys_start {
    __u64 ts;
    __u32 id;
    __u32 kind;
    __u64 aux; // select: bitmap bytes each way; poll: nfds
};

struct offcpu_start {
    __u64 ts;
    __u64 involuntary;
};

struct lock_start {
    __u64 ts;
    __u64 lock; // address of the outermost contended lock; nested ones are ignored
};

// Processes (tgid) being sampled: seeded by user space, grown by fork.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_TARGETS);
    __type(key, __u32);
    __type(value, __u8);
} targets SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct mux_counters);
} counters SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, MUX_MAX_SYSCALLS);
    __type(key, __u32);
    __type(value, struct mux_syscall_val);
} syscall_stats SEC(".maps");

// Per-thread state lives in plain hash maps, deleted when the thread exits
// (sched_process_exit): an LRU would evict a live thread's entry without a
// word, while a full hash map refuses the insert and thread_state_full counts it.
// Entries are updated in place where possible.

// Per thread (tid): the syscall in flight.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_THREADS);
    __type(key, __u32);
    __type(value, struct sys_start);
} sys_starts SEC(".maps");

// Per thread (tid): when it was switched out.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_THREADS);
    __type(key, __u32);
    __type(value, struct offcpu_start);
} offcpu_starts SEC(".maps");

// Per thread (tid): the kernel lock it is contending on.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_THREADS);
    __type(key, __u32);
    __type(value, struct lock_start);
} lock_starts SEC(".maps");

// Per thread (tid): glibc is about to relay this allocation to malloc itself
// (realloc(NULL, n); posix_memalign/aligned_alloc with alignment <= 16 call
// __libc_malloc, the very address the malloc uprobe sits on): that malloc hit
// is the same allocation and is not counted again.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MAX_THREADS);
    __type(key, __u32);
    __type(value, __u8);
} alloc_relays SEC(".maps");

// A per-CPU value can still see two updates at once on one CPU (uprobe
// programs are preemptible, tracepoints fire in interrupts), so add
// atomically; uncontended, that cost nothing measurable here.
#define ADD(p, field, v) __sync_fetch_and_add(&(p)->field, (v))

static __always_inline bool is_target(__u32 tgid)
{
    return bpf_map_lookup_elem(&targets, &tgid) != NULL;
}

static __always_inline struct mux_counters *get_counters(void)
{
    __u32 zero = 0;

    return bpf_map_lookup_elem(&counters, &zero);
}

// Stores per-thread state; a full map is counted, never silent.
static __always_inline void put_thread_state(void *map, __u32 *tid, void *value, struct mux_counters *c)
{
    if (bpf_map_update_elem(map, tid, value, BPF_ANY) != 0 && c)
        ADD(c, thread_state_full, 1);
}

static __always_inline struct mux_counters *target_counters(void)
{
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;

    if (!is_target(tgid))
        return NULL;
    return get_counters();
}

// select/pselect6: one bitmap of ceil(nfds/64) longs per non-NULL fd_set, with nfds
// capped at the fd table's size first, as core_sys_select does.
static __always_inline __u64 select_set_bytes(long nfds, __u64 in, __u64 out, __u64 ex)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    unsigned int max_fds = BPF_CORE_READ(task, files, fdt, max_fds);
    __u64 words, sets = 0;

    if (max_fds && nfds > max_fds)
        nfds = max_fds;
    if (nfds <= 0 || nfds > (1 << 24))
        return 0;
    words = ((__u64)nfds + 63) / 64;
    sets = (in != 0) + (out != 0) + (ex != 0);
    return words * 8 * sets;
}

// Lock vs work by op: the mapping and what it cannot tell apart are in csampler.h.
static __always_inline void enter_futex(struct mux_counters *c, struct sys_start *st, int op)
{
    switch (op & FUTEX_CMD_MASK) {
    case FUTEX_WAIT:
        ADD(c, futex_wait_calls, 1);
        ADD(c, futex_wait_plain, 1);
        ADD(c, futex_lock_waits, 1);
        st->kind = KIND_FUTEX_LOCK;
        break;
    case FUTEX_WAIT_BITSET:
        ADD(c, futex_wait_calls, 1);
        ADD(c, futex_wait_bitset, 1);
        ADD(c, futex_cond_waits, 1);
        st->kind = KIND_FUTEX_COND;
        break;
    case FUTEX_WAIT_REQUEUE_PI:
        ADD(c, futex_wait_calls, 1);
        ADD(c, futex_wait_requeue_pi, 1);
        ADD(c, futex_cond_waits, 1);
        st->kind = KIND_FUTEX_COND;
        break;
    case FUTEX_LOCK_PI:
    case FUTEX_LOCK_PI2:
        ADD(c, futex_wait_calls, 1);
        ADD(c, futex_lock_pi, 1);
        ADD(c, futex_lock_waits, 1);
        st->kind = KIND_FUTEX_LOCK_PI;
        break;
    case FUTEX_WAKE:
    case FUTEX_WAKE_BITSET:
        ADD(c, futex_wake_calls, 1);
        break;
    case FUTEX_UNLOCK_PI:
        ADD(c, futex_wake_calls, 1);
        ADD(c, futex_unlock_pi, 1);
        break;
    default:
        ADD(c, futex_other_calls, 1);
        break;
    }
}

// Counts every syscall of a target thread by id, the multiplexer arguments
// (nfds, maxevents), epoll_ctl ops, futex ops by lock/work,
// mmap/munmap/brk, and remembers the start time for sys_exit.
SEC("raw_tp/sys_enter")
int BPF_PROG(mux_sys_enter, struct pt_regs *regs, long id)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
    struct sys_start st = {}, *sp;
    struct mux_syscall_val *sv;
    struct mux_counters *c;
    __u32 key;
    __u64 bytes;
    long n;

    if (!is_target(tgid))
        return 0;
    c = get_counters();
    if (!c)
        return 0;

    st.ts = bpf_ktime_get_ns();
    st.id = (__u32)id;
    ADD(c, syscalls, 1);
    if (id >= 0 && id < MUX_MAX_SYSCALLS) {
        key = (__u32)id;
        sv = bpf_map_lookup_elem(&syscall_stats, &key);
        if (sv)
            ADD(sv, count, 1);
    }

    switch (id) {
    case NR_select:
    case NR_pselect6:
        n = (int)BPF_CORE_READ(regs, di);
        bytes = select_set_bytes(n, BPF_CORE_READ(regs, si), BPF_CORE_READ(regs, dx),
                                 BPF_CORE_READ(regs, r10));
        if (n < 0)
            n = 0;
        ADD(c, select_calls, 1);
        ADD(c, select_nfds, n);
        ADD(c, mux_nfds_total, n);
        st.kind = KIND_SELECT;
        st.aux = bytes;
        break;
    case NR_poll:
    case NR_ppoll:
        n = (unsigned int)BPF_CORE_READ(regs, si);
        if (n > (1 << 24))
            n = 0;
        ADD(c, poll_calls, 1);
        ADD(c, poll_nfds, n);
        ADD(c, mux_nfds_total, n);
        st.kind = KIND_POLL;
        st.aux = n;
        break;
    case NR_epoll_wait:
    case NR_epoll_pwait:
    case NR_epoll_pwait2:
        n = (int)BPF_CORE_READ(regs, dx);
        if (n < 0)
            n = 0;
        ADD(c, epoll_wait_calls, 1);
        ADD(c, epoll_maxevents_total, n);
        st.kind = KIND_EPOLL_WAIT;
        break;
    case NR_epoll_ctl:
        switch ((int)BPF_CORE_READ(regs, si)) {
        case EPOLL_CTL_ADD:
            ADD(c, epoll_ctl_add, 1);
            break;
        case EPOLL_CTL_DEL:
            ADD(c, epoll_ctl_del, 1);
            break;
        case EPOLL_CTL_MOD:
            ADD(c, epoll_ctl_mod, 1);
            break;
        }
        break;
    case NR_futex:
        enter_futex(c, &st, (int)BPF_CORE_READ(regs, si));
        break;
    case NR_futex_waitv:
        ADD(c, futex_wait_calls, 1);
        ADD(c, futex_waitv, 1);
        ADD(c, futex_cond_waits, 1);
        st.kind = KIND_FUTEX_COND;
        break;
    case NR_read:
    case NR_readv:
    case NR_pread64:
    case NR_preadv:
    case NR_recvfrom:
    case NR_recvmsg:
        ADD(c, read_calls, 1);
        st.kind = KIND_READ;
        break;
    case NR_recvmmsg:
        ADD(c, read_calls, 1);
        ADD(c, recvmmsg_calls, 1);
        break;
    case NR_write:
    case NR_writev:
    case NR_pwrite64:
    case NR_pwritev:
    case NR_sendto:
    case NR_sendmsg:
        ADD(c, write_calls, 1);
        st.kind = KIND_WRITE;
        break;
    case NR_splice:
    case NR_sendfile:
    case NR_tee:
    case NR_vmsplice:
        ADD(c, zerocopy_calls, 1);
        st.kind = KIND_ZEROCOPY;
        break;
    case NR_mmap:
        ADD(c, mmap_calls, 1);
        break;
    case NR_munmap:
        ADD(c, munmap_calls, 1);
        break;
    case NR_brk:
        ADD(c, brk_calls, 1);
        break;
    }

    sp = bpf_map_lookup_elem(&sys_starts, &tid);
    if (sp)
        *sp = st;
    else
        put_thread_state(&sys_starts, &tid, &st, c);
    return 0;
}

// Adds syscall time, errors and EAGAIN per id, events and fd-set bytes of the
// multiplexers, futex wait time and the bytes moved by read/write/splice
// calls, for the syscall that sys_enter recorded on this thread.
SEC("raw_tp/sys_exit")
int BPF_PROG(mux_sys_exit, struct pt_regs *regs, long ret)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct mux_syscall_val *sv = NULL;
    struct mux_counters *c;
    struct sys_start *st;
    __u64 delta, events, bytes;
    bool copied_in;
    __u32 key;

    st = bpf_map_lookup_elem(&sys_starts, &tid);
    if (!st || !st->ts)
        return 0;
    delta = bpf_ktime_get_ns() - st->ts;
    st->ts = 0;
    c = get_counters();
    if (!c)
        return 0;

    key = st->id;
    if (key < MUX_MAX_SYSCALLS)
        sv = bpf_map_lookup_elem(&syscall_stats, &key);
    ADD(c, syscall_ns, delta);
    if (sv)
        ADD(sv, total_ns, delta);
    if (ret < 0) {
        ADD(c, syscall_errors, 1);
        if (sv)
            ADD(sv, errors, 1);
        if (ret == -EAGAIN_ERR) {
            ADD(c, syscall_eagain, 1);
            if (sv)
                ADD(sv, eagain, 1);
        }
    }

    events = ret > 0 ? (__u64)ret : 0;
    // select and poll copy their sets in unless they fail first (bad nfds, a bad pointer, no memory).
    copied_in = ret >= 0 || (ret != -EINVAL_ERR && ret != -EFAULT_ERR && ret != -ENOMEM_ERR);
    switch (st->kind) {
    case KIND_SELECT:
        ADD(c, select_ns, delta);
        if (copied_in) {
            ADD(c, select_bytes_in, st->aux);
            ADD(c, fdset_bytes_in, st->aux);
        }
        if (ret < 0)
            break;
        ADD(c, select_events, events);
        ADD(c, mux_events_total, events);
        ADD(c, select_bytes_out, st->aux);
        ADD(c, fdset_bytes_out, st->aux);
        if (ret == 0)
            ADD(c, mux_zero_returns, 1);
        break;
    case KIND_POLL:
        ADD(c, poll_ns, delta);
        // revents go back after the wait whatever it returned, EINTR included.
        if (copied_in) {
            bytes = st->aux * POLLFD_SIZE;
            ADD(c, poll_bytes_in, bytes);
            ADD(c, fdset_bytes_in, bytes);
            bytes = st->aux * POLLFD_REVENTS_SIZE;
            ADD(c, poll_bytes_out, bytes);
            ADD(c, fdset_bytes_out, bytes);
        }
        if (ret < 0)
            break;
        ADD(c, poll_events, events);
        ADD(c, mux_events_total, events);
        if (ret == 0)
            ADD(c, mux_zero_returns, 1);
        break;
    case KIND_EPOLL_WAIT:
        ADD(c, epoll_wait_ns, delta);
        if (ret < 0)
            break;
        ADD(c, epoll_events, events);
        ADD(c, mux_events_total, events);
        ADD(c, epoll_bytes_out, events * EPOLL_EVENT_SIZE);
        if (ret == 0)
            ADD(c, mux_zero_returns, 1);
        break;
    case KIND_FUTEX_LOCK:
        ADD(c, futex_wait_ns, delta);
        ADD(c, futex_lock_wait_ns, delta);
        break;
    case KIND_FUTEX_LOCK_PI:
        ADD(c, futex_wait_ns, delta);
        ADD(c, futex_lock_pi_ns, delta);
        ADD(c, futex_lock_wait_ns, delta);
        break;
    case KIND_FUTEX_COND:
        ADD(c, futex_wait_ns, delta);
        ADD(c, futex_cond_wait_ns, delta);
        break;
    case KIND_READ:
        ADD(c, read_bytes, events);
        break;
    case KIND_WRITE:
        ADD(c, write_bytes, events);
        break;
    case KIND_ZEROCOPY:
        ADD(c, zerocopy_bytes, events);
        break;
    }
    return 0;
}

// Follows fork: a child of a target process becomes a target (threads share
// the tgid, so only new processes are added and counted in forks_followed;
// a child the full targets map refuses is counted in targets_full).
SEC("raw_tp/sched_process_fork")
int BPF_PROG(mux_fork, struct task_struct *parent, struct task_struct *child)
{
    __u32 ptgid = BPF_CORE_READ(parent, tgid);
    __u32 ctgid = BPF_CORE_READ(child, tgid);
    struct mux_counters *c;
    __u8 one = 1;
    long err;

    if (ptgid == ctgid || !is_target(ptgid))
        return 0;
    err = bpf_map_update_elem(&targets, &ctgid, &one, BPF_NOEXIST);
    if (err == -EEXIST_ERR)
        return 0;
    c = get_counters();
    if (!c)
        return 0;
    if (err)
        ADD(c, targets_full, 1);
    else
        ADD(c, forks_followed, 1);
    return 0;
}

// Counts target processes that exited, drops their per-thread state and,
// when the last thread goes, the tgid itself (pids get reused).
SEC("raw_tp/sched_process_exit")
int BPF_PROG(mux_exit, struct task_struct *task, bool group_dead)
{
    __u32 tgid = BPF_CORE_READ(task, tgid);
    __u32 tid = BPF_CORE_READ(task, pid);
    struct mux_counters *c;

    if (!is_target(tgid))
        return 0;
    bpf_map_delete_elem(&sys_starts, &tid);
    bpf_map_delete_elem(&offcpu_starts, &tid);
    bpf_map_delete_elem(&lock_starts, &tid);
    bpf_map_delete_elem(&alloc_relays, &tid);
    if (!group_dead)
        return 0;
    bpf_map_delete_elem(&targets, &tgid);
    c = get_counters();
    if (c)
        ADD(c, exits_seen, 1);
    return 0;
}

// Counts voluntary and involuntary switches out of target threads (the kernel's
// own rule: voluntary = not preempted and no longer TASK_RUNNING) and the
// off-CPU time from switch-out to the next switch-in.
SEC("raw_tp/sched_switch")
int BPF_PROG(mux_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
             unsigned int prev_state)
{
    __u32 prev_tgid = BPF_CORE_READ(prev, tgid);
    __u32 next_pid = BPF_CORE_READ(next, pid);
    struct offcpu_start *os, start;
    struct mux_counters *c = NULL;
    __u64 now = bpf_ktime_get_ns();
    __u32 prev_pid;

    if (is_target(prev_tgid)) {
        c = get_counters();
        if (c) {
            prev_pid = BPF_CORE_READ(prev, pid);
            start.ts = now;
            start.involuntary = preempt || prev_state == TASK_RUNNING_STATE;
            if (start.involuntary)
                ADD(c, switches_involuntary, 1);
            else
                ADD(c, switches_voluntary, 1);
            // A dying thread never comes back: keep no state for it.
            if (!(prev_state & TASK_DEAD_STATE)) {
                os = bpf_map_lookup_elem(&offcpu_starts, &prev_pid);
                if (os)
                    *os = start;
                else
                    put_thread_state(&offcpu_starts, &prev_pid, &start, c);
            }
        }
    }

    os = bpf_map_lookup_elem(&offcpu_starts, &next_pid);
    if (!os || !os->ts)
        return 0;
    if (!c)
        c = get_counters();
    if (c && now > os->ts) {
        ADD(c, offcpu_ns, now - os->ts);
        if (os->involuntary)
            ADD(c, offcpu_involuntary_ns, now - os->ts);
    }
    os->ts = 0;
    return 0;
}

// Counts wake-ups of target threads.
SEC("raw_tp/sched_wakeup")
int BPF_PROG(mux_sched_wakeup, struct task_struct *p)
{
    __u32 tgid = BPF_CORE_READ(p, tgid);
    struct mux_counters *c;

    if (!is_target(tgid))
        return 0;
    c = get_counters();
    if (c)
        ADD(c, wakeups, 1);
    return 0;
}

// Counts CPU migrations of target threads.
SEC("raw_tp/sched_migrate_task")
int BPF_PROG(mux_sched_migrate, struct task_struct *p, int dest_cpu)
{
    __u32 tgid = BPF_CORE_READ(p, tgid);
    struct mux_counters *c;

    if (!is_target(tgid))
        return 0;
    c = get_counters();
    if (c)
        ADD(c, migrations, 1);
    return 0;
}

// Counts user-mode page faults taken by target threads.
SEC("raw_tp/page_fault_user")
int BPF_PROG(mux_page_fault, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
    struct mux_counters *c = target_counters();

    if (c)
        ADD(c, page_faults, 1);
    return 0;
}

// Sums the bytes the network stack copies from socket buffers to target
// threads (a cross-check for read_bytes on sockets).
SEC("raw_tp/skb_copy_datagram_iovec")
int BPF_PROG(mux_skb_copy, const struct sk_buff *skb, int len)
{
    struct mux_counters *c;

    if (len <= 0)
        return 0;
    c = target_counters();
    if (c)
        ADD(c, skb_copy_bytes, len);
    return 0;
}

// Counts kernel lock contentions of target threads (outermost lock only: a
// mutex slow path reports begin twice, nested spinlocks are ignored).
SEC("raw_tp/contention_begin")
int BPF_PROG(mux_contention_begin, void *lock, unsigned int flags)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct lock_start *ls, start;
    struct mux_counters *c;

    c = target_counters();
    if (!c)
        return 0;
    ls = bpf_map_lookup_elem(&lock_starts, &tid);
    if (ls && ls->lock)
        return 0;
    start.ts = bpf_ktime_get_ns();
    start.lock = (__u64)lock;
    if (ls) {
        *ls = start;
    } else if (bpf_map_update_elem(&lock_starts, &tid, &start, BPF_ANY) != 0) {
        ADD(c, thread_state_full, 1);
        return 0;
    }
    ADD(c, lock_contentions, 1);
    return 0;
}

// Adds the time a target thread spent contending for the lock it began on.
SEC("raw_tp/contention_end")
int BPF_PROG(mux_contention_end, void *lock, int ret)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct mux_counters *c;
    struct lock_start *ls;
    __u64 now;

    ls = bpf_map_lookup_elem(&lock_starts, &tid);
    if (!ls || ls->lock != (__u64)lock)
        return 0;
    now = bpf_ktime_get_ns();
    c = get_counters();
    if (c && now > ls->ts)
        ADD(c, lock_contention_ns, now - ls->ts);
    ls->lock = 0;
    ls->ts = 0;
    return 0;
}

// The process that owns a ring: a SINGLE_ISSUER ring's submitter task, else the task
// posting the CQE. Checked here on 6.18: the proactor's ring (DEFER_TASKRUN) posts every
// CQE from its own thread; task work and io-wq workers run in the owner's process too.
static __always_inline __u32 ring_owner(struct io_ring_ctx *ctx)
{
    struct task_struct *owner = NULL;

    if (bpf_core_field_exists(ctx->submitter_task))
        owner = BPF_CORE_READ(ctx, submitter_task);
    if (owner)
        return BPF_CORE_READ(owner, tgid);
    return bpf_get_current_pid_tgid() >> 32;
}

// Counts the bytes io_uring moved for target rings, from each completion's res: receive and
// read opcodes into uring_read_bytes, send and write opcodes into uring_write_bytes,
// zero-copy sends and splice/tee into zerocopy_bytes.
SEC("raw_tp/io_uring_complete")
int BPF_PROG(mux_uring_complete, struct io_ring_ctx *ring, void *req, struct io_uring_cqe *cqe)
{
    struct mux_counters *c;
    __u8 op;
    int res;

    if (!ring || !cqe || !is_target(ring_owner(ring)))
        return 0;
    res = BPF_CORE_READ(cqe, res);
    if (res <= 0)
        return 0;
    c = get_counters();
    if (!c)
        return 0;
    if (!req) {
        // A multishot request's further CQEs come without the request (io_req_post_cqe);
        // of those only receives fill provided buffers (multishot recv/recvmsg/read).
        if (BPF_CORE_READ(cqe, flags) & CQE_F_BUFFER) {
            ADD(c, uring_reads, 1);
            ADD(c, uring_read_bytes, res);
        }
        return 0;
    }
    op = BPF_CORE_READ((struct io_kiocb *)req, opcode);
    switch (op) {
    case UOP_READV:
    case UOP_READ_FIXED:
    case UOP_RECVMSG:
    case UOP_READ:
    case UOP_RECV:
    case UOP_READ_MULTISHOT:
    case UOP_READV_FIXED:
        ADD(c, uring_reads, 1);
        ADD(c, uring_read_bytes, res);
        break;
    case UOP_WRITEV:
    case UOP_WRITE_FIXED:
    case UOP_SENDMSG:
    case UOP_WRITE:
    case UOP_SEND:
    case UOP_WRITEV_FIXED:
        ADD(c, uring_writes, 1);
        ADD(c, uring_write_bytes, res);
        break;
    case UOP_SEND_ZC:
    case UOP_SENDMSG_ZC:
    case UOP_SPLICE:
    case UOP_TEE:
        ADD(c, zerocopy_bytes, res);
        break;
    }
    return 0;
}

enum alloc_kind { ALLOC_MALLOC, ALLOC_CALLOC, ALLOC_REALLOC, ALLOC_MEMALIGN };

static __always_inline int count_alloc(enum alloc_kind kind, __u64 bytes)
{
    struct mux_counters *c = target_counters();

    if (!c)
        return 0;
    ADD(c, mallocs, 1);
    ADD(c, malloc_bytes, bytes);
    switch (kind) {
    case ALLOC_MALLOC:
        ADD(c, malloc_calls, 1);
        break;
    case ALLOC_CALLOC:
        ADD(c, calloc_calls, 1);
        break;
    case ALLOC_REALLOC:
        ADD(c, realloc_calls, 1);
        break;
    case ALLOC_MEMALIGN:
        ADD(c, memalign_calls, 1);
        break;
    }
    return 0;
}

// glibc's MALLOC_ALIGNMENT on 64-bit: smaller alignments are plain mallocs.
#define GLIBC_MALLOC_ALIGNMENT 16

// The next malloc hit on this thread is glibc relaying the allocation just counted.
static __always_inline void expect_relay(void)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u8 one = 1;

    if (is_target(bpf_get_current_pid_tgid() >> 32))
        bpf_map_update_elem(&alloc_relays, &tid, &one, BPF_ANY);
}

// Counts malloc calls of target processes and the bytes requested
// (not glibc's own relay from realloc(NULL) or a small-aligned memalign).
SEC("uprobe")
int BPF_KPROBE(mux_malloc, size_t size)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();

    if (bpf_map_lookup_elem(&alloc_relays, &tid)) {
        bpf_map_delete_elem(&alloc_relays, &tid);
        return 0;
    }
    return count_alloc(ALLOC_MALLOC, size);
}

// Counts calloc calls of target processes and the bytes requested (n * size).
SEC("uprobe")
int BPF_KPROBE(mux_calloc, size_t n, size_t size)
{
    return count_alloc(ALLOC_CALLOC, (__u64)n * size);
}

// Counts realloc calls of target processes and the new size requested.
SEC("uprobe")
int BPF_KPROBE(mux_realloc, void *ptr, size_t size)
{
    if (!ptr)
        expect_relay();
    return count_alloc(ALLOC_REALLOC, size);
}

// Counts posix_memalign calls of target processes and the bytes requested.
SEC("uprobe")
int BPF_KPROBE(mux_posix_memalign, void **memptr, size_t align, size_t size)
{
    if (align <= GLIBC_MALLOC_ALIGNMENT)
        expect_relay();
    return count_alloc(ALLOC_MEMALIGN, size);
}

// Counts aligned_alloc calls of target processes and the bytes requested.
SEC("uprobe")
int BPF_KPROBE(mux_aligned_alloc, size_t align, size_t size)
{
    if (align <= GLIBC_MALLOC_ALIGNMENT)
        expect_relay();
    return count_alloc(ALLOC_MEMALIGN, size);
}

// Counts free calls of target processes with a non-NULL pointer.
SEC("uprobe")
int BPF_KPROBE(mux_free, void *ptr)
{
    struct mux_counters *c;

    if (!ptr)
        return 0;
    c = target_counters();
    if (c)
        ADD(c, frees, 1);
    return 0;
}

// bpf_probe_read_kernel (behind BPF_CORE_READ) is a GPL-only helper.
char LICENSE[] SEC("license") = "Dual BSD/GPL";
