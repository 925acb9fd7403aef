/* The C limit: the same two-process experiments as the Python suite, in C.
 *
 * Each mechanism file (c_pipe.c, c_mq.c, c_shm.c) defines a table of mech_t and
 * calls bench_main(). The program forks once: the parent is side A (pinger or
 * sender), the child side B (echo or receiver). Messages carry the same stamp as
 * the Python suite's: the sequence number in the first 8 bytes (top bit set on the
 * last message) and seq ^ 0x5A5A5A5A5A5A5A5A in the last 8 bytes; the receiver
 * checks both and the length of every message.
 *
 * Usage: PROG MECH lat|thr SIZE BUDGET_S MIN_N MAX_N WARMUP CPU_A CPU_B NAME KEY
 * Output on stdout: "lat N" then N round-trip times in ns, one a line, or
 * "thr N ELAPSED_NS"; errors go to stderr with exit status 1.
 */
#ifndef IPCKIT_BENCH_H
#define IPCKIT_BENCH_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STOP_FLAG (1ULL << 63)
#define TRAILER_MAGIC 0x5A5A5A5A5A5A5A5AULL

typedef struct {
    const char *mech;
    int latency;      /* 1: ping-pong, 0: one-way stream */
    size_t size;
    double budget;    /* seconds of measuring after warm-up */
    long min_n, max_n, warmup;
    int cpu_a, cpu_b; /* -1: unpinned */
    const char *name; /* POSIX name for mechanisms that need one */
    long key;         /* SysV key base */
} args_t;

typedef struct {
    const char *name;
    int (*setup)(const args_t *a);                  /* before fork; 0 or -1 */
    void (*send)(int role, const unsigned char *m, size_t n);
    const unsigned char *(*recv)(int role, unsigned char *buf, size_t n);
    void (*release)(int role);                      /* after the received message is used */
    void (*cleanup)(void);                          /* side A, after B exited */
} mech_t;

static void die(const char *what) {
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

static void stamp(unsigned char *m, size_t size, uint64_t seq, int last) {
    uint64_t head = seq | (last ? STOP_FLAG : 0), tail = seq ^ TRAILER_MAGIC;
    memcpy(m, &head, 8);
    memcpy(m + size - 8, &tail, 8);
}

/* Returns 1 for the last message, 0 for any other; exits on a corrupt one. */
static int check(const unsigned char *m, size_t size, uint64_t expect) {
    uint64_t head, tail;
    memcpy(&head, m, 8);
    memcpy(&tail, m + size - 8, 8);
    if ((head & ~STOP_FLAG) != expect || tail != (expect ^ TRAILER_MAGIC)) {
        fprintf(stderr, "message %llu corrupt or out of order (got %llu)\n",
                (unsigned long long)expect, (unsigned long long)(head & ~STOP_FLAG));
        exit(1);
    }
    return (head & STOP_FLAG) != 0;
}

/* Busy-wait helper: yields now and then (so a same-CPU peer can run) and gives up
 * after ~20 s so a lost peer never leaves a process spinning forever. */
static inline void spin_pause(unsigned long *spins) {
    if (++*spins % 256 == 0) sched_yield();
    if (*spins > 200000000UL) { fprintf(stderr, "peer vanished (spin timeout)\n"); exit(1); }
}

static inline int write_all(int fd, const unsigned char *m, size_t n) {
    while (n) {
        ssize_t w = write(fd, m, n);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        m += w; n -= (size_t)w;
    }
    return 0;
}

static inline int read_all(int fd, unsigned char *m, size_t n) {
    while (n) {
        ssize_t r = read(fd, m, n);
        if (r == 0) { errno = EPIPE; return -1; }
        if (r < 0) { if (errno == EINTR) continue; return -1; }
        m += r; n -= (size_t)r;
    }
    return 0;
}

/* Side B's results travel back through a shared anonymous page. */
typedef struct { uint64_t t_end, count; } shared_result_t;

static int run_b(const mech_t *mech, const args_t *a, shared_result_t *res) {
    unsigned char *buf = malloc(a->size);
    if (!buf) die("malloc");
    uint64_t expect = 0;
    for (;;) {
        const unsigned char *m = mech->recv(1, buf, a->size);
        int last = check(m, a->size, expect);
        if (a->latency) mech->send(1, m, a->size);
        mech->release(1);
        expect++;
        if (last) break;
    }
    res->t_end = now_ns();
    res->count = expect;
    return 0;
}

static void run_a(const mech_t *mech, const args_t *a, shared_result_t *res, pid_t child) {
    unsigned char *msg = calloc(1, a->size), *buf = malloc(a->size);
    uint64_t *samples = malloc(sizeof(uint64_t) * (size_t)(a->max_n + 1));
    if (!msg || !buf || !samples) die("malloc");
    uint64_t seq = 0;
    long n = 0;
    if (a->latency) {
        for (long i = 0; i < a->warmup; i++, seq++) {
            stamp(msg, a->size, seq, 0);
            mech->send(0, msg, a->size);
            check(mech->recv(0, buf, a->size), a->size, seq);
            mech->release(0);
        }
    }
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(a->budget * 1e9);
    for (;;) {
        int last = n + 1 >= a->max_n || (n + 1 >= a->min_n && now_ns() >= deadline);
        stamp(msg, a->size, seq, last);
        if (a->latency) {
            uint64_t s = now_ns();
            mech->send(0, msg, a->size);
            check(mech->recv(0, buf, a->size), a->size, seq);
            samples[n] = now_ns() - s;
            mech->release(0);
        } else {
            mech->send(0, msg, a->size);
        }
        seq++; n++;
        if (last) break;
    }
    int status;
    if (waitpid(child, &status, 0) < 0) die("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "side B failed (status %d)\n", status);
        exit(1);
    }
    if (a->latency) {
        printf("lat %ld\n", n);
        for (long i = 0; i < n; i++) printf("%llu\n", (unsigned long long)samples[i]);
    } else {
        printf("thr %llu %llu\n", (unsigned long long)res->count, (unsigned long long)(res->t_end - t0));
    }
}

static int bench_main(int argc, char **argv, const mech_t *mechs) {
    if (argc != 12) {
        fprintf(stderr, "usage: %s MECH lat|thr SIZE BUDGET_S MIN_N MAX_N WARMUP CPU_A CPU_B NAME KEY\n", argv[0]);
        return 2;
    }
    args_t a = {argv[1], strcmp(argv[2], "lat") == 0, (size_t)atol(argv[3]), atof(argv[4]), atol(argv[5]),
                atol(argv[6]), atol(argv[7]), atoi(argv[8]), atoi(argv[9]), argv[10], atol(argv[11])};
    if (a.size < 16) { fprintf(stderr, "size must be >= 16\n"); return 2; }
    if (a.max_n < 1) a.max_n = 1;
    const mech_t *mech = NULL;
    for (const mech_t *m = mechs; m->name; m++)
        if (strcmp(m->name, a.mech) == 0) mech = m;
    if (!mech) { fprintf(stderr, "unknown mechanism %s\n", a.mech); return 2; }
    shared_result_t *res = mmap(NULL, sizeof *res, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (res == MAP_FAILED) die("mmap");
    if (mech->setup(&a) != 0) return 1;
    pid_t parent = getpid();
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        pin(a.cpu_b);
        _exit(run_b(mech, &a, res));
    }
    pin(a.cpu_a);
    run_a(mech, &a, res, child);
    if (mech->cleanup) mech->cleanup();
    return 0;
}

#endif
