#define _GNU_SOURCE
#include "muxshims.h"

#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <numaif.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int mux_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int mux_epoll_ctl(int epfd, int op, int fd, uint32_t events) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.fd = fd;
    return epoll_ctl(epfd, op, fd, &ev);
}

int mux_epoll_wait(int epfd, mux_epoll_event *events, int maxevents, int timeout_ms) {
    return epoll_wait(epfd, events, maxevents, timeout_ms);
}

int mux_epoll_wait_ns(int epfd, mux_epoll_event *events, int maxevents, long long timeout_ns) {
    if (timeout_ns < 0) return epoll_wait(epfd, events, maxevents, -1);
    struct timespec ts = { .tv_sec = timeout_ns / 1000000000LL, .tv_nsec = timeout_ns % 1000000000LL };
    return (int)syscall(SYS_epoll_pwait2, epfd, events, maxevents, &ts, NULL, 0);
}

mux_epoll_event *mux_epoll_events_alloc(int n) { return calloc((size_t)n, sizeof(struct epoll_event)); }
void mux_epoll_events_free(mux_epoll_event *events) { free(events); }

int mux_accept4_nonblock(int fd) { return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }
int mux_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
int mux_gettid(void) { return (int)syscall(SYS_gettid); }

int mux_set_affinity(int pid, const int *cpus, int n) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < n; i++) {
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) return -EINVAL;
        CPU_SET(cpus[i], &set);
    }
    return sched_setaffinity(pid, sizeof set, &set) == 0 ? 0 : -errno;
}

int mux_get_affinity(int pid, int *cpus, int cap) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(pid, sizeof set, &set) != 0) return -errno;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < cap; c++)
        if (CPU_ISSET(c, &set)) cpus[n++] = c;
    return n;
}

int mux_current_cpu(void) { return sched_getcpu(); }

int mux_set_pdeathsig(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0 ? 0 : -errno; }

int mux_numa_available(void) { return numa_available(); }
int mux_numa_max_node(void) { return numa_max_node(); }

int mux_numa_bind_memory(int node) {
    if (numa_available() < 0) return -ENOSYS;
    if (node < 0 || node > numa_max_node()) return -EINVAL;
    struct bitmask *mask = numa_allocate_nodemask();
    if (!mask) return -ENOMEM;
    numa_bitmask_setbit(mask, (unsigned)node);
    errno = 0;
    numa_set_membind(mask);
    int err = errno;
    numa_bitmask_free(mask);
    return err ? -err : 0;
}

int mux_numa_preferred_node(void) {
    int mode = 0;
    unsigned long mask[16];
    memset(mask, 0, sizeof mask);
    if (get_mempolicy(&mode, mask, sizeof mask * 8, NULL, 0) != 0) return -1;
    if (mode == MPOL_DEFAULT) return -1;
    for (unsigned i = 0; i < sizeof mask * 8; i++)
        if (mask[i / (8 * sizeof(unsigned long))] & (1UL << (i % (8 * sizeof(unsigned long))))) return (int)i;
    return -1;
}

int mux_spawn(const char *path, char *const argv[], char *const envp[],
              int stdout_fd, int stderr_fd, int new_pgroup) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid > 0) {
        // Set the group from both sides so a kill(-pid) right after spawn finds it.
        if (new_pgroup) setpgid(pid, pid);
        return pid;
    }
    // Child: only async-signal-safe calls until exec.
    if (new_pgroup) setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int s = 1; s < 32; s++) signal(s, SIG_DFL);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(stdout_fd >= 0 ? stdout_fd : devnull, 1);
    dup2(stderr_fd >= 0 ? stderr_fd : devnull, 2);
    syscall(SYS_close_range, 3U, ~0U, 0U);
    execve(path, argv, envp);
    _exit(127);
}

uint64_t *mux_counters_create(void) {
    size_t bytes = (size_t)MUX_CTR_SLOTS * MUX_CTR_FIELDS * sizeof(uint64_t);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : (uint64_t *)p;
}

uint64_t mux_counter_sum(const uint64_t *c, int field) {
    uint64_t sum = 0;
    for (int s = 0; s < MUX_CTR_SLOTS; s++)
        sum += __atomic_load_n(&c[s * MUX_CTR_FIELDS + field], __ATOMIC_RELAXED);
    return sum;
}

static sigset_t stop_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    return set;
}

int mux_block_stop_signals(void) {
    sigset_t set = stop_signals();
    int e = pthread_sigmask(SIG_BLOCK, &set, NULL);
    return e == 0 ? 0 : -e;
}

int mux_wait_stop_signal(void) {
    sigset_t set = stop_signals();
    int sig = 0;
    int e = sigwait(&set, &sig);
    return e == 0 ? sig : -e;
}

int mux_thread_start(void *(*body)(void *), void *arg, size_t stack_bytes) {
    pthread_attr_t attr;
    pthread_t t;
    int e = pthread_attr_init(&attr);
    if (e) return e;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (stack_bytes) pthread_attr_setstacksize(&attr, stack_bytes);
    e = pthread_create(&t, &attr, body, arg);
    pthread_attr_destroy(&attr);
    return e;
}
