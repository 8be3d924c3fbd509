// Makes exactly known allocation calls, for AllocationCounterTests (compiled there with cc).
// Writes with write(2) only: stdio's buffer would be one more malloc.
//   exact            the fixed mix below (EXACT_* in AllocationCounterTests.swift)
//   fork N K         forks N children that each make K malloc+free pairs and exit
//   fork-exec K      forks a child that execs this program with `pairs K`
//   pairs K          K malloc+free pairs
//   threads T K      T threads, K malloc+free pairs each
// Exits 0 when every block was usable, 1 (with a message) otherwise.
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

static void fail(const char *what)
{
    say("fail ");
    say(what);
    say("\n");
    _exit(1);
}

// The pointer escapes into an empty asm, so the compiler keeps every call.
static void keep(void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

static void pairs(long k)
{
    for (long i = 0; i < k; i++) {
        char *p = malloc(64);
        if (!p)
            fail("malloc");
        p[0] = (char)i;
        keep(p);
        free(p);
    }
}

// 3 malloc, 2 calloc, 4 realloc (one realloc(NULL)), 1 reallocarray, 2 posix_memalign (one at
// alignment 16, which glibc relays to malloc inside itself), aligned_alloc, memalign, valloc,
// pvalloc: 16 allocation calls (600 + 3040 + 1920 + 13913 = 19473 bytes); 13 frees of non-NULL pointers and one free(NULL).
static void exact(void)
{
    char *a = malloc(100), *b = malloc(200), *c = malloc(300);
    int *d = calloc(10, 4), *e = calloc(3, 1000);
    void *f = NULL, *g = NULL;
    void *volatile nothing = NULL;

    if (!a || !b || !c || !d || !e)
        fail("malloc/calloc");
    if (d[9] != 0 || ((char *)e)[2999] != 0)
        fail("calloc is not zeroed");
    memset(a, 1, 100);
    a = realloc(a, 1000);       // grows
    b = realloc(b, 50);         // shrinks
    // glibc relays realloc(NULL, n) to malloc inside itself: one realloc, no malloc. (Through a volatile:
    // the compiler would turn a literal realloc(NULL, n) into malloc(n).)
    char *h = realloc(nothing, 70);
    h = realloc(h, 700);
    if (!a || !b || !h || a[99] != 1)
        fail("realloc");
    int *r = reallocarray(nothing, 25, 4);
    if (!r)
        fail("reallocarray");
    if (posix_memalign(&f, 16, 48) != 0 || posix_memalign(&g, 4096, 8192) != 0 || ((uintptr_t)g & 4095) != 0)
        fail("posix_memalign");
    void *i = aligned_alloc(64, 128), *j = memalign(256, 512), *k = valloc(33), *l = pvalloc(5000);
    if (!i || !j || !k || !l || ((uintptr_t)i & 63) || ((uintptr_t)j & 255) || ((uintptr_t)k & 4095) || ((uintptr_t)l & 4095))
        fail("aligned allocations");
    free(NULL);
    void *all[] = {a, b, c, d, e, f, g, h, r, i, j, k, l};
    for (size_t n = 0; n < sizeof all / sizeof all[0]; n++)
        free(all[n]);
}

static void *thread_pairs(void *arg)
{
    pairs((long)(intptr_t)arg);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";

    if (!strcmp(mode, "exact")) {
        exact();
    } else if (!strcmp(mode, "pairs") && argc == 3) {
        pairs(atol(argv[2]));
    } else if (!strcmp(mode, "fork") && argc == 4) {
        long n = atol(argv[2]), k = atol(argv[3]);
        for (long c = 0; c < n; c++) {
            pid_t pid = fork();
            if (pid < 0)
                fail("fork");
            if (pid == 0) {
                pairs(k);
                _exit(0);
            }
        }
        for (long c = 0; c < n; c++) {
            int st = 0;
            if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                fail("child");
        }
    } else if (!strcmp(mode, "fork-exec") && argc == 3) {
        pid_t pid = fork();
        int st = 0;
        if (pid < 0)
            fail("fork");
        if (pid == 0) {
            char *args[] = {argv[0], "pairs", argv[2], NULL};
            execv("/proc/self/exe", args);
            _exit(127);
        }
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail("exec child");
    } else if (!strcmp(mode, "threads") && argc == 4) {
        long t = atol(argv[2]), k = atol(argv[3]);
        pthread_t ids[64];
        if (t < 1 || t > 64)
            fail("threads: 1-64");
        for (long n = 0; n < t; n++)
            if (pthread_create(&ids[n], NULL, thread_pairs, (void *)(intptr_t)k) != 0)
                fail("pthread_create");
        for (long n = 0; n < t; n++)
            pthread_join(ids[n], NULL);
    } else {
        fail("usage: exact | pairs K | fork N K | fork-exec K | threads T K");
    }
    say("ok\n");
    return 0;
}
