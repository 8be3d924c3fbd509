#if canImport(Glibc)
import Glibc
#endif
import Kernel
import Probe

/// A C program with exactly known multiplexer calls and futex waits, built with `cc` on first use:
/// C, so that no runtime adds calls of its own between the ones counted.
enum KnownWork {
    static let source = #"""
    // knownwork select N CALLS | poll N CALLS | epoll N K CALLS | futex LOCKS PI_LOCKS CONDS
    // Prints "ready pid=P", waits for SIGUSR1 (attach the probe first), works, prints "done", exits.
    #define _GNU_SOURCE
    #include <errno.h>
    #include <poll.h>
    #include <pthread.h>
    #include <signal.h>
    #include <stdatomic.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/epoll.h>
    #include <sys/eventfd.h>
    #include <sys/resource.h>
    #include <sys/select.h>
    #include <unistd.h>

    static void die(const char *what) { fprintf(stderr, "knownwork: %s: %s\n", what, strerror(errno)); _exit(2); }

    // n eventfds with a count of 1: always readable, so every call returns at once.
    static int *readable(int n)
    {
        struct rlimit rl;
        int *fds = malloc(sizeof(int) * (size_t)n);
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        for (int i = 0; i < n; i++)
            if ((fds[i] = eventfd(1, EFD_CLOEXEC)) < 0) die("eventfd");
        return fds;
    }

    // select(n, readfds only): the set holds every eventfd below n.
    static void do_select(int n, int calls)
    {
        int *fds = readable(n);
        fd_set set, want;
        FD_ZERO(&want);
        for (int i = 0; i < n; i++)
            if (fds[i] < n) FD_SET(fds[i], &want);
        for (int c = 0; c < calls; c++) {
            struct timeval tv = {0, 0};
            set = want;
            if (select(n, &set, NULL, NULL, &tv) <= 0) die("select");
        }
    }

    static void do_poll(int n, int calls)
    {
        int *fds = readable(n);
        struct pollfd *p = calloc((size_t)n, sizeof *p);
        for (int i = 0; i < n; i++) { p[i].fd = fds[i]; p[i].events = POLLIN; }
        for (int c = 0; c < calls; c++)
            if (poll(p, (nfds_t)n, 0) != n) die("poll");
    }

    // n level-triggered readable descriptors, k events asked for: every call returns k.
    static void do_epoll(int n, int k, int calls)
    {
        int *fds = readable(n);
        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN}, *out = calloc((size_t)k, sizeof *out);
        for (int i = 0; i < n; i++) {
            ev.data.fd = fds[i];
            if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) != 0) die("epoll_ctl");
        }
        for (int c = 0; c < calls; c++)
            if (epoll_wait(ep, out, k, 0) != k) die("epoll_wait");
    }

    // Lock waits: the main thread holds the mutex until the other thread sleeps on it in the
    // kernel, so every round is exactly one futex wait (pipes, not futexes, hand the turn over).
    static pthread_mutex_t plain = PTHREAD_MUTEX_INITIALIZER, pi;
    static pthread_mutex_t cond_mutex = PTHREAD_MUTEX_INITIALIZER;
    static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    static int go[2], back[2], rounds_plain, rounds_pi, rounds_cond, flag;
    static atomic_int waiter_tid;

    static void hand(int fd) { char b = 1; if (write(fd, &b, 1) != 1) die("write"); }
    static void take(int fd) { char b; if (read(fd, &b, 1) != 1) die("read"); }

    // True while the thread sleeps in futex(2): /proc/self/task/TID/syscall starts with its number, 202.
    static int in_futex(int tid)
    {
        char path[64], buf[32] = {0};
        FILE *f;
        snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
        if (!(f = fopen(path, "r"))) die("open /proc/self/task/TID/syscall");
        if (fread(buf, 1, sizeof buf - 1, f) == 0) die("read /proc/self/task/TID/syscall");
        fclose(f);
        return strncmp(buf, "202 ", 4) == 0;
    }

    static void until_in_futex(void) { while (!in_futex(atomic_load(&waiter_tid))) usleep(100); }

    static void *waiter(void *arg)
    {
        (void)arg;
        atomic_store(&waiter_tid, gettid());
        for (int i = 0; i < rounds_plain + rounds_pi; i++) {
            pthread_mutex_t *m = i < rounds_plain ? &plain : &pi;
            take(go[0]);
            pthread_mutex_lock(m);
            pthread_mutex_unlock(m);
            hand(back[1]);
        }
        for (int i = 0; i < rounds_cond; i++) {
            pthread_mutex_lock(&cond_mutex);
            while (!flag) pthread_cond_wait(&cond, &cond_mutex);
            flag = 0;
            pthread_mutex_unlock(&cond_mutex);
            hand(back[1]);
        }
        return NULL;
    }

    static void do_futex(int locks, int pi_locks, int conds)
    {
        pthread_mutexattr_t a;
        pthread_t t;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
        pthread_mutex_init(&pi, &a);
        rounds_plain = locks; rounds_pi = pi_locks; rounds_cond = conds;
        if (pipe(go) || pipe(back)) die("pipe");
        if (pthread_create(&t, NULL, waiter, NULL)) die("pthread_create");
        while (!atomic_load(&waiter_tid)) usleep(100);
        for (int i = 0; i < locks + pi_locks; i++) {
            pthread_mutex_t *m = i < locks ? &plain : &pi;
            pthread_mutex_lock(m);
            hand(go[1]);
            until_in_futex();
            usleep(1000); // at least 1 ms of lock wait per round
            pthread_mutex_unlock(m);
            take(back[0]);
        }
        for (int i = 0; i < conds; i++) {
            until_in_futex();
            pthread_mutex_lock(&cond_mutex);
            flag = 1;
            pthread_mutex_unlock(&cond_mutex);
            // Signalled after the unlock: the woken waiter never finds the mutex held.
            pthread_cond_signal(&cond);
            take(back[0]);
        }
        // No join: that would be one more futex wait (on the thread's tid word).
    }

    int main(int argc, char **argv)
    {
        sigset_t set;
        int sig;
        if (argc < 2) { fprintf(stderr, "usage: knownwork select N CALLS | poll N CALLS | epoll N K CALLS | futex LOCKS PI_LOCKS CONDS\n"); return 2; }
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigprocmask(SIG_BLOCK, &set, NULL);
        printf("ready pid=%d\n", getpid());
        fflush(stdout);
        sigwait(&set, &sig);
        if (!strcmp(argv[1], "select") && argc == 4) do_select(atoi(argv[2]), atoi(argv[3]));
        else if (!strcmp(argv[1], "poll") && argc == 4) do_poll(atoi(argv[2]), atoi(argv[3]));
        else if (!strcmp(argv[1], "epoll") && argc == 5) do_epoll(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
        else if (!strcmp(argv[1], "futex") && argc == 5) do_futex(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
        else { fprintf(stderr, "knownwork: bad arguments: %s\n", argv[1]); return 2; }
        printf("done\n");
        fflush(stdout);
        _exit(0);
    }
    """#

    /// The built program, compiled once per test process.
    static let executable: Result<String, ProbeError> = {
        let dir = "/tmp/muxlab-knownwork-\(getpid())"
        mkdir(dir, 0o755)
        let c = dir + "/knownwork.c", binary = dir + "/knownwork"
        guard let f = fopen(c, "w") else { return .failure(ProbeError("cannot write \(c): \(String(cString: strerror(errno)))")) }
        fputs(source, f)
        fclose(f)
        do {
            let cc = try ChildProcess(executable: "/usr/bin/cc", arguments: ["-O2", "-Wall", "-pthread", c, "-o", binary],
                                      stderrPath: dir + "/cc.err")
            guard cc.wait(timeout: 60) == .exited(0) else {
                return .failure(ProbeError("cc \(c) failed: \(cc.stderrTail(5).joined(separator: " | "))"))
            }
        } catch {
            return .failure(ProbeError("cannot run /usr/bin/cc: \(error)"))
        }
        return .success(binary)
    }()

    /// Runs `knownwork arguments` under a fresh sampler and returns what the kernel saw while it worked.
    static func measure(_ arguments: [String]) throws -> KernelCounters {
        let child = try ChildProcess(executable: try executable.get(), arguments: arguments,
                                     stderrPath: "/tmp/muxlab-knownwork-\(getpid())/child.err")
        defer { _ = child.stop(grace: 0.5) }
        guard child.readLine(timeout: 10)?.hasPrefix("ready pid=") == true else {
            throw ProbeError("knownwork \(arguments) did not start: \(child.stderrTail(3))")
        }
        let sampler = try KernelSampler(pid: child.pid, allocations: false)
        let before = try sampler.snapshot()
        child.signal(SIGUSR1)
        guard child.readLine(timeout: 30)?.hasPrefix("done") == true else {
            throw ProbeError("knownwork \(arguments) did not finish: \(child.stderrTail(3))")
        }
        guard child.wait(timeout: 10) == .exited(0) else {
            throw ProbeError("knownwork \(arguments) did not exit cleanly: \(child.stderrTail(3))")
        }
        return KernelCounters(from: before, to: try sampler.snapshot())
    }
}
