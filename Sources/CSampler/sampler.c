// libbpf loader for muxsampler.bpf.c: opens and loads the skeleton, attaches
// each probe on its own (a probe that fails is recorded, not fatal, except the
// two syscall tracepoints everything else hangs on) and sums the per-CPU maps
// when asked. Nothing runs between snapshots.
#define _GNU_SOURCE
#include "csampler.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "muxsampler.skel.h"

_Static_assert(sizeof(struct mux_counters) % sizeof(__u64) == 0, "mux_counters must be all __u64");
_Static_assert(sizeof(struct mux_syscall_val) == 4 * sizeof(__u64), "mux_syscall_val layout");

struct mux_status {
    char *probe;
    char *reason;
};

struct mux_sampler {
    struct muxsampler_bpf *skel;
    struct mux_status *status;
    int nstatus;
    int ncpus;
    void *percpu_buf; // one per-CPU value of the larger of the two per-CPU maps
    int uprobe_mode;  // MUX_UPROBES_*, after checking the libc path
    char *libc_path;
    // MUX_UPROBES_PER_TARGET: links of the uprobes attached per tgid.
    struct bpf_link **pid_links;
    int npid_links;
    int *uprobed_tgids;
    int nuprobed;
    int uprobe_cap_noted;
    __u64 targets_refused; // add_target calls the full targets map refused (added into targets_full)
};

// libbpf reports details (verifier log, missing symbol) through its print
// callback. While mux_sampler_open runs, keep the first warning of the current
// step so it can go into the error text or the status reason; pass everything
// to stderr only when MUX_SAMPLER_VERBOSE is set.
static char first_warning[512];
static bool verbose;

static int capture_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    if (verbose) {
        va_list copy;

        va_copy(copy, ap);
        vfprintf(stderr, fmt, copy);
        va_end(copy);
    }
    if (level == LIBBPF_WARN && first_warning[0] == '\0') {
        char msg[sizeof first_warning];
        const char *m = msg;

        vsnprintf(msg, sizeof msg, fmt, ap);
        msg[strcspn(msg, "\n")] = '\0';
        // Not a cause: kernels since 5.11 account BPF memory to the cgroup.
        if (strstr(msg, "Failed to bump RLIMIT_MEMLOCK"))
            return 0;
        if (strncmp(m, "libbpf: ", 8) == 0)
            m += 8;
        snprintf(first_warning, sizeof first_warning, "%s", m);
    }
    return 0;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int add_status(mux_sampler *s, const char *probe, const char *reason)
{
    struct mux_status *grown;
    char *p, *r;

    grown = realloc(s->status, (size_t)(s->nstatus + 1) * sizeof *grown);
    if (!grown)
        return -ENOMEM;
    s->status = grown;
    p = strdup(probe);
    r = strdup(reason);
    if (!p || !r) {
        free(p);
        free(r);
        return -ENOMEM;
    }
    s->status[s->nstatus].probe = p;
    s->status[s->nstatus].reason = r;
    s->nstatus++;
    return 0;
}

// The reason for a failed attach: strerror, plus libbpf's own words if any.
static void attach_reason(char *buf, size_t len, int err)
{
    if (first_warning[0])
        snprintf(buf, len, "%s (libbpf: %s)", strerror(-err), first_warning);
    else
        snprintf(buf, len, "%s", strerror(-err));
}

struct tp_probe {
    const char *label;
    struct bpf_program *prog;
    struct bpf_link **link;
    bool core; // the sampler is useless without it
};

struct uprobe_probe {
    const char *func;
    struct bpf_program *prog;
    struct bpf_link **link;
};

#define NUM_UPROBES 6
#define MUX_MAX_UPROBED_PROCESSES 32

static void uprobe_table(struct muxsampler_bpf *skel, struct uprobe_probe ups[NUM_UPROBES])
{
    const struct uprobe_probe table[NUM_UPROBES] = {
        {"malloc", skel->progs.mux_malloc, &skel->links.mux_malloc},
        {"calloc", skel->progs.mux_calloc, &skel->links.mux_calloc},
        {"realloc", skel->progs.mux_realloc, &skel->links.mux_realloc},
        {"posix_memalign", skel->progs.mux_posix_memalign, &skel->links.mux_posix_memalign},
        {"aligned_alloc", skel->progs.mux_aligned_alloc, &skel->links.mux_aligned_alloc},
        {"free", skel->progs.mux_free, &skel->links.mux_free},
    };

    memcpy(ups, table, sizeof table);
}

static int attach_tracepoints(mux_sampler *s, char *err, size_t errlen)
{
    struct muxsampler_bpf *skel = s->skel;
    const struct tp_probe tps[] = {
        {"raw_tp:sys_enter", skel->progs.mux_sys_enter, &skel->links.mux_sys_enter, true},
        {"raw_tp:sys_exit", skel->progs.mux_sys_exit, &skel->links.mux_sys_exit, true},
        {"raw_tp:sched_process_fork", skel->progs.mux_fork, &skel->links.mux_fork, false},
        {"raw_tp:sched_process_exit", skel->progs.mux_exit, &skel->links.mux_exit, false},
        {"raw_tp:sched_switch", skel->progs.mux_sched_switch, &skel->links.mux_sched_switch, false},
        {"raw_tp:sched_wakeup", skel->progs.mux_sched_wakeup, &skel->links.mux_sched_wakeup, false},
        {"raw_tp:sched_migrate_task", skel->progs.mux_sched_migrate, &skel->links.mux_sched_migrate, false},
        {"raw_tp:page_fault_user", skel->progs.mux_page_fault, &skel->links.mux_page_fault, false},
        {"raw_tp:skb_copy_datagram_iovec", skel->progs.mux_skb_copy, &skel->links.mux_skb_copy, false},
        {"raw_tp:contention_begin", skel->progs.mux_contention_begin, &skel->links.mux_contention_begin,
         false},
        {"raw_tp:contention_end", skel->progs.mux_contention_end, &skel->links.mux_contention_end, false},
        {"raw_tp:io_uring_complete", skel->progs.mux_uring_complete, &skel->links.mux_uring_complete, false},
    };
    char reason[768];
    int i, ret;

    for (i = 0; i < (int)(sizeof tps / sizeof tps[0]); i++) {
        first_warning[0] = '\0';
        errno = 0;
        *tps[i].link = bpf_program__attach(tps[i].prog);
        if (*tps[i].link)
            continue;
        ret = errno ? -errno : -EINVAL;
        attach_reason(reason, sizeof reason, ret);
        if (tps[i].core) {
            set_err(err, errlen, "failed to attach %s: %s", tps[i].label, reason);
            return ret;
        }
        ret = add_status(s, tps[i].label, reason);
        if (ret) {
            set_err(err, errlen, "failed to record probe status: %s", strerror(-ret));
            return ret;
        }
    }
    return 0;
}

// Attaches the allocation uprobes for pid (-1: every process). Failures go to
// the status list; returns how many attached, or -ENOMEM.
static int attach_uprobes(mux_sampler *s, int pid, char *err, size_t errlen)
{
    struct uprobe_probe ups[NUM_UPROBES];
    char label[64], reason[768], why[700];
    struct bpf_link *link, **grown;
    int i, ret, attached = 0;

    uprobe_table(s->skel, ups);
    for (i = 0; i < NUM_UPROBES; i++) {
        LIBBPF_OPTS(bpf_uprobe_opts, uopts, .func_name = ups[i].func);

        first_warning[0] = '\0';
        errno = 0;
        link = bpf_program__attach_uprobe_opts(ups[i].prog, pid, s->libc_path, 0, &uopts);
        if (link) {
            attached++;
            if (pid < 0) {
                *ups[i].link = link;
                continue;
            }
            grown = realloc(s->pid_links, (size_t)(s->npid_links + 1) * sizeof *grown);
            if (!grown) {
                bpf_link__destroy(link);
                set_err(err, errlen, "failed to record uprobe link: %s", strerror(ENOMEM));
                return -ENOMEM;
            }
            s->pid_links = grown;
            s->pid_links[s->npid_links++] = link;
            continue;
        }
        ret = errno ? -errno : -EINVAL;
        attach_reason(why, sizeof why, ret);
        if (pid < 0)
            snprintf(reason, sizeof reason, "%s", why);
        else
            snprintf(reason, sizeof reason, "pid %d: %s", pid, why);
        snprintf(label, sizeof label, "uprobe:%s", ups[i].func);
        ret = add_status(s, label, reason);
        if (ret) {
            set_err(err, errlen, "failed to record probe status: %s", strerror(-ret));
            return ret;
        }
    }
    return attached;
}

int mux_sampler_open(const struct mux_sampler_opts *opts, mux_sampler **out, char *err, size_t errlen)
{
    struct uprobe_probe ups[NUM_UPROBES];
    libbpf_print_fn_t old_print;
    char label[64], reason[512];
    mux_sampler *s;
    bool uprobes;
    size_t vsz;
    int ret, i;

    if (err && errlen)
        err[0] = '\0';
    if (!opts || !out) {
        set_err(err, errlen, "invalid arguments to mux_sampler_open");
        return -EINVAL;
    }
    *out = NULL;

    s = calloc(1, sizeof *s);
    if (!s) {
        set_err(err, errlen, "failed to allocate sampler: %s", strerror(ENOMEM));
        return -ENOMEM;
    }

    verbose = getenv("MUX_SAMPLER_VERBOSE") != NULL;
    first_warning[0] = '\0';
    old_print = libbpf_set_print(capture_print);

    s->ncpus = libbpf_num_possible_cpus();
    if (s->ncpus <= 0) {
        ret = s->ncpus < 0 ? s->ncpus : -EINVAL;
        set_err(err, errlen, "failed to get number of possible cpus: %s", strerror(-ret));
        goto fail;
    }
    vsz = sizeof(struct mux_counters);
    if (vsz < sizeof(struct mux_syscall_val))
        vsz = sizeof(struct mux_syscall_val);
    s->percpu_buf = calloc((size_t)s->ncpus, vsz);
    if (!s->percpu_buf) {
        ret = -ENOMEM;
        set_err(err, errlen, "failed to allocate per-cpu buffer: %s", strerror(ENOMEM));
        goto fail;
    }

    errno = 0;
    s->skel = muxsampler_bpf__open();
    if (!s->skel) {
        ret = errno ? -errno : -EINVAL;
        set_err(err, errlen, "failed to open bpf skeleton: %s", strerror(-ret));
        goto fail;
    }

    // Allocation uprobes only when asked for and the library is there; the
    // programs are not even loaded otherwise.
    uprobe_table(s->skel, ups);
    uprobes = opts->want_uprobes != MUX_UPROBES_OFF && opts->libc_path && opts->libc_path[0];
    if (uprobes && access(opts->libc_path, R_OK) != 0) {
        snprintf(reason, sizeof reason, "libc not found: %s: %s", opts->libc_path, strerror(errno));
        for (i = 0; i < NUM_UPROBES; i++) {
            snprintf(label, sizeof label, "uprobe:%s", ups[i].func);
            ret = add_status(s, label, reason);
            if (ret) {
                set_err(err, errlen, "failed to record probe status: %s", strerror(-ret));
                goto fail;
            }
        }
        uprobes = false;
    }
    if (uprobes) {
        s->uprobe_mode = opts->want_uprobes == MUX_UPROBES_PER_TARGET ? MUX_UPROBES_PER_TARGET
                                                                       : MUX_UPROBES_ALL;
        s->libc_path = strdup(opts->libc_path);
        if (!s->libc_path) {
            ret = -ENOMEM;
            set_err(err, errlen, "failed to copy libc path: %s", strerror(ENOMEM));
            goto fail;
        }
    } else {
        for (i = 0; i < NUM_UPROBES; i++)
            bpf_program__set_autoload(ups[i].prog, false);
    }

    first_warning[0] = '\0';
    ret = muxsampler_bpf__load(s->skel);
    if (ret) {
        if (first_warning[0])
            set_err(err, errlen, "failed to load bpf programs: %s (libbpf: %s)", strerror(-ret),
                    first_warning);
        else
            set_err(err, errlen, "failed to load bpf programs: %s", strerror(-ret));
        goto fail;
    }

    // Seed the root first so that forks from here on are followed.
    if (opts->root_pid > 0) {
        ret = mux_sampler_add_target(s, opts->root_pid);
        if (ret) {
            set_err(err, errlen, "failed to add target pid %d: %s", opts->root_pid, strerror(-ret));
            goto fail;
        }
    }

    ret = attach_tracepoints(s, err, errlen);
    if (ret)
        goto fail;
    if (s->uprobe_mode == MUX_UPROBES_ALL) {
        ret = attach_uprobes(s, -1, err, errlen);
        if (ret < 0)
            goto fail;
    }

    libbpf_set_print(old_print);
    *out = s;
    return 0;

fail:
    libbpf_set_print(old_print);
    mux_sampler_close(s);
    return ret < 0 ? ret : -EINVAL;
}

int mux_sampler_add_target(mux_sampler *s, int tgid)
{
    libbpf_print_fn_t old_print;
    __u32 key;
    __u8 one = 1;
    int *grown;
    int ret, i;

    if (!s || !s->skel || tgid <= 0)
        return -EINVAL;
    key = (__u32)tgid;
    ret = bpf_map__update_elem(s->skel->maps.targets, &key, sizeof key, &one, sizeof one, BPF_ANY);
    if (ret == -E2BIG)
        s->targets_refused++;
    if (ret || s->uprobe_mode != MUX_UPROBES_PER_TARGET)
        return ret;

    // Per-target uprobes: once per tgid, or every hit would count twice.
    for (i = 0; i < s->nuprobed; i++)
        if (s->uprobed_tgids[i] == tgid)
            return 0;
    // Each process costs NUM_UPROBES links, and each link's detach waits for an RCU
    // grace period: a thousand per-connection processes would take minutes to let go.
    // Past the cap allocations are not counted at all (a partial count would mislead).
    if (s->nuprobed >= MUX_MAX_UPROBED_PROCESSES) {
        if (!s->uprobe_cap_noted) {
            char why[160];
            s->uprobe_cap_noted = 1;
            snprintf(why, sizeof why, "allocation uprobes are attached to at most %d processes of a tree; "
                     "this tree has more, so allocations are not counted", MUX_MAX_UPROBED_PROCESSES);
            add_status(s, "uprobe:tree", why);
        }
        return 0;
    }
    grown = realloc(s->uprobed_tgids, (size_t)(s->nuprobed + 1) * sizeof *grown);
    if (!grown)
        return -ENOMEM;
    s->uprobed_tgids = grown;
    s->uprobed_tgids[s->nuprobed++] = tgid;
    old_print = libbpf_set_print(capture_print);
    ret = attach_uprobes(s, tgid, NULL, 0);
    libbpf_set_print(old_print);
    if (ret <= 0)
        s->nuprobed--; // nothing attached (e.g. the process is gone): may retry later
    return ret < 0 ? ret : 0;
}

int mux_sampler_status_count(mux_sampler *s)
{
    return s ? s->nstatus : 0;
}

const char *mux_sampler_status_probe(mux_sampler *s, int i)
{
    if (!s || i < 0 || i >= s->nstatus)
        return NULL;
    return s->status[i].probe;
}

const char *mux_sampler_status_reason(mux_sampler *s, int i)
{
    if (!s || i < 0 || i >= s->nstatus)
        return NULL;
    return s->status[i].reason;
}

// Per-CPU values come back one per possible CPU, each padded to 8 bytes.
static int lookup_percpu(mux_sampler *s, struct bpf_map *map, __u32 key, size_t value_size)
{
    size_t stride = (value_size + 7) & ~(size_t)7;

    return bpf_map__lookup_elem(map, &key, sizeof key, s->percpu_buf, stride * (size_t)s->ncpus, 0);
}

static void sum_percpu(mux_sampler *s, __u64 *dst, size_t value_size)
{
    size_t stride = ((value_size + 7) & ~(size_t)7) / sizeof(__u64);
    size_t n = value_size / sizeof(__u64);
    const __u64 *src = s->percpu_buf;
    int cpu;
    size_t i;

    memset(dst, 0, value_size);
    for (cpu = 0; cpu < s->ncpus; cpu++)
        for (i = 0; i < n; i++)
            dst[i] += src[(size_t)cpu * stride + i];
}

int mux_sampler_read(mux_sampler *s, struct mux_counters *out)
{
    int err;

    if (!s || !s->skel || !out)
        return -EINVAL;
    err = lookup_percpu(s, s->skel->maps.counters, 0, sizeof *out);
    if (err)
        return err;
    sum_percpu(s, (__u64 *)out, sizeof *out);
    out->targets_full += s->targets_refused;
    return 0;
}

int mux_sampler_read_syscalls(mux_sampler *s, struct mux_syscall_stat *out, int cap)
{
    struct mux_syscall_val v;
    int n = 0, err;
    __u32 id;

    if (!s || !s->skel || (!out && cap > 0) || cap < 0)
        return -EINVAL;
    for (id = 0; id < MUX_MAX_SYSCALLS && n < cap; id++) {
        err = lookup_percpu(s, s->skel->maps.syscall_stats, id, sizeof v);
        if (err)
            return err;
        sum_percpu(s, (__u64 *)&v, sizeof v);
        if (v.count == 0)
            continue;
        out[n].id = id;
        out[n].count = v.count;
        out[n].total_ns = v.total_ns;
        out[n].errors = v.errors;
        out[n].eagain = v.eagain;
        n++;
    }
    return n;
}

void mux_sampler_close(mux_sampler *s)
{
    int i;

    if (!s)
        return;
    for (i = 0; i < s->npid_links; i++)
        bpf_link__destroy(s->pid_links[i]);
    free(s->pid_links);
    free(s->uprobed_tgids);
    muxsampler_bpf__destroy(s->skel);
    free(s->libc_path);
    for (i = 0; i < s->nstatus; i++) {
        free(s->status[i].probe);
        free(s->status[i].reason);
    }
    free(s->status);
    free(s->percpu_buf);
    free(s);
}
