/* The shared-memory message queue's ring (backend="shm"): a unit of its own.
 *
 * The design -- segment layout, the slot protocol, what is checked, waiting,
 * liveness and crash recovery -- is the module essay of src/ipckit/_mqueue_shm.py;
 * the names here follow it. In short: a bounded MPMC ring of fixed-size slots. Each
 * slot starts with one 64-bit control word  lap:40 | state:2 | pid:22  that is only
 * ever changed by compare-and-swap, so every claim, publish, release and recovery
 * is one atomic step; an owner then records who it is (start time, namespaces) in
 * its slot's header, so that others can later prove it gone.
 *
 * Everything read from the segment is input: a length, a lap, a state or a
 * position is range-checked before it is used, and no loop runs unbounded.
 */
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "futex.h"
#include "procid.h"
#include "shmqueue.h"

#define SHMQ_MAGIC 0x514D48534B435049ULL /* "IPCKSHMQ" in memory order */

#define SHMQ_FREE 0u
#define SHMQ_WRITING 1u
#define SHMQ_FULL 2u
#define SHMQ_READING 3u

#define SHMQ_MK(lap, st, pid) (((uint64_t)(lap) << 24) | ((uint64_t)(st) << 22) | (uint64_t)(pid))
#define SHMQ_LAP(w) ((w) >> 24)
#define SHMQ_STATE(w) ((unsigned)(((w) >> 22) & 3u))
#define SHMQ_PID(w) ((uint32_t)((w) & 0x3FFFFFu))
/* Signed distance between two 40-bit laps (they wrap). */
#define SHMQ_LAPDIFF(a, b) (((int64_t)(((a) - (b)) << 24)) >> 24)

/* The words of a slot's 64-byte header. */
#define SHMQ_W_WORD 0
#define SHMQ_W_LEN 1
#define SHMQ_W_TAG 2    /* the claim word the three below were recorded for */
#define SHMQ_W_START 3  /* the owner's start time, clock ticks after boot (0: unknown) */
#define SHMQ_W_PIDNS 4  /* the owner's pid namespace (inode of /proc/self/ns/pid; 0: unknown) */
#define SHMQ_W_TIMENS 5 /* the owner's time namespace (start times are relative to it) */

#define SHMQ_SEQ __ATOMIC_SEQ_CST
#define SHMQ_LOAD(p) __atomic_load_n((p), SHMQ_SEQ)
#define SHMQ_CAS(p, expp, desired) __atomic_compare_exchange_n((p), (expp), (desired), 0, SHMQ_SEQ, SHMQ_SEQ)

/* A blocked call checks the owner of the slot it waits on once it has seen the
 * same control word for SHMQ_CHECK_AFTER_NS, then every SHMQ_POLL_NS. */
#define SHMQ_CHECK_AFTER_NS 2000000LL
#define SHMQ_POLL_NS 5000000LL
/* No futex sleep is longer: a waiter whose wake-up was lost (a peer scribbled on
 * the event, or the page under it was replaced) looks again this often. */
#define SHMQ_MAX_SLEEP_NS 200000000LL
/* Most pause instructions between two looks at the ring while spinning. */
#define SHMQ_MAX_BACKOFF 16u
/* One look at the ring follows the hint at most this many positions before it
 * reports SHMQ_BUSY; a deadline-0 call gives up after SHMQ_NOW_LOOKS looks. */
#define SHMQ_LOOK_STEPS 64u
#define SHMQ_NOW_LOOKS 64u

/* shmq_look results, besides 0 (claimed / ready) and negative errnos. */
#define SHMQ_BLOCKED 1 /* c->w is the word in the way */
#define SHMQ_BUSY 2    /* the hint kept moving: others are making progress */
#define SHMQ_STOP 3    /* (gentle) the next message is not for this batch */
#define SHMQ_HELP 4    /* (shmq_classify) the position is taken: move the hint on */

/* shmq_look modes */
#define SHMQ_WRITE 1 /* the writer's side (else the reader's) */
#define SHMQ_PEEK 2  /* claim nothing: report whether a claim would succeed */
#define SHMQ_GENTLE 4 /* reader: stop before a message over the limit, even a corrupt one */

struct shmq_event {
    uint32_t seq;      /* futex word: bumped by every wake-up */
    uint32_t sleepers; /* 1 when someone may sleep on seq */
    char pad[120];
};

struct ipckit_shmq_header {
    uint64_t magic; /* stored last by ipckit_shmq_init */
    uint32_t version;
    uint32_t header_size;
    uint64_t capacity;
    uint64_t stride;
    uint64_t max_msg;
    uint64_t size;
    uint64_t check;      /* a hash of the layout fields and creator_ns */
    uint64_t abandoned;  /* slots taken over from owners proven gone */
    uint64_t creator_ns; /* the creator's pid namespace */
    uint32_t foreign_ns; /* 1 once a process of another pid namespace attached */
    uint32_t pad_;
    uint64_t dropped;    /* messages dropped for a bad length */
    char pad0[40];
    uint64_t tail; /* next position to write (a hint: never ahead of the truth) */
    char pad1[120];
    uint64_t head; /* next position to read (likewise) */
    char pad2[120];
    struct shmq_event not_empty; /* consumers sleep here */
    struct shmq_event not_full;  /* producers sleep here */
};

_Static_assert(sizeof(struct ipckit_shmq_header) <= IPCKIT_SHMQ_HEADER_SIZE, "shmq header too big");
_Static_assert(__builtin_offsetof(struct ipckit_shmq_header, tail) == 128, "shmq layout");
_Static_assert(__builtin_offsetof(struct ipckit_shmq_header, head) == 256, "shmq layout");
_Static_assert(__builtin_offsetof(struct ipckit_shmq_header, not_empty) == 384, "shmq layout");
_Static_assert(__builtin_offsetof(struct ipckit_shmq_header, not_full) == 512, "shmq layout");

/* A claimed (or looked-at) slot. */
struct shmq_claim {
    uint64_t pos;
    uint64_t *slot;
    uint64_t w;   /* the claim word (claimed), or the word in the way (blocked) */
    uint64_t len; /* reader: the message's length */
};

/* ---------------------------------------------------------------- problems */

static __thread ipckit_shmq_problem shmq_problem;

static int shmq_corrupt(int reason, uint64_t value, uint64_t where)
{
    shmq_problem.reason = reason;
    shmq_problem.value = value;
    shmq_problem.where = where;
    return -EBADMSG;
}

void ipckit_shmq_last_problem(ipckit_shmq_problem *out) { *out = shmq_problem; }

/* ---------------------------------------------------------------- who we are */

/* This process as an owner records it: cached, and forgotten in a forked child. */
struct shmq_self {
    uint32_t pid; /* 0: not known yet */
    uint64_t start, pidns, timens;
};

static struct shmq_self shmq_self_v;
static pthread_once_t shmq_once = PTHREAD_ONCE_INIT;
static uint64_t shmq_tick_ns = 10000000; /* ns per clock tick (USER_HZ) */

static void shmq_atfork_child(void) { __atomic_store_n(&shmq_self_v.pid, 0, __ATOMIC_RELAXED); }

static void shmq_init_once(void)
{
    long hz = sysconf(_SC_CLK_TCK);
    if (hz > 0 && 1000000000L % hz == 0)
        shmq_tick_ns = 1000000000ULL / (uint64_t)hz;
    pthread_atfork(NULL, NULL, shmq_atfork_child);
}

static uint64_t shmq_ns_inode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

static const struct shmq_self *shmq_me(void)
{
    struct shmq_self *s = &shmq_self_v;
    if (__builtin_expect(__atomic_load_n(&s->pid, __ATOMIC_ACQUIRE) == 0, 0)) {
        pthread_once(&shmq_once, shmq_init_once);
        uint32_t pid = (uint32_t)getpid();
        uint64_t start = 0;
        ipckit_proc_identity((int)pid, &start);
        __atomic_store_n(&s->start, start, __ATOMIC_RELAXED);
        __atomic_store_n(&s->pidns, shmq_ns_inode("/proc/self/ns/pid"), __ATOMIC_RELAXED);
        __atomic_store_n(&s->timens, shmq_ns_inode("/proc/self/ns/time"), __ATOMIC_RELAXED);
        __atomic_store_n(&s->pid, pid, __ATOMIC_RELEASE);
    }
    return s;
}

static int64_t shmq_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Now in the clock ticks of /proc/PID/stat's start time (CLOCK_BOOTTIME, floored
 * as the kernel floors a start time). */
static uint64_t shmq_boot_ticks(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec) / shmq_tick_ns;
}

/* ---------------------------------------------------------------- the SIGBUS guard
 *
 * A peer that truncates the segment's file takes the pages under every mapping
 * away, and the next access to them raises SIGBUS. A process-wide handler, installed
 * with the first queue, looks the faulting address up in the table of mapped
 * queues; if it is one, it maps anonymous zero pages over the rest of that mapping,
 * marks the handle broken and returns, so the access completes (reading zeros) --
 * in C or in Python alike -- and the call then fails with EBADMSG (SHRUNK). Any
 * other SIGBUS goes to the handler that was there before, or takes its default
 * course. A handler installed later that does not chain to this one (for example
 * faulthandler.enable() after the first queue) ends the protection; the module
 * essay says so. */

#define SHMQ_GUARDS 1024

struct shmq_guard {
    uintptr_t base; /* 0: free entry */
    uintptr_t size;
    uint32_t broken;
};

static struct shmq_guard shmq_guards[SHMQ_GUARDS];
static uint32_t shmq_unguarded; /* *broken for a handle without an entry: never set */
static pthread_mutex_t shmq_guard_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction shmq_prev_bus;
static int shmq_guard_installed;
static uintptr_t shmq_page = 4096;

static void shmq_on_sigbus(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    if (si->si_code > 0) { /* a fault, not kill() or raise() */
        uintptr_t a = (uintptr_t)si->si_addr;
        for (int i = 0; i < SHMQ_GUARDS; i++) {
            struct shmq_guard *g = &shmq_guards[i];
            uintptr_t b = __atomic_load_n(&g->base, __ATOMIC_ACQUIRE);
            if (b == 0 || a - b >= __atomic_load_n(&g->size, __ATOMIC_RELAXED))
                continue;
            uintptr_t page = a & ~(shmq_page - 1);
            void *m = mmap((void *)page, b + g->size - page, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            if (m != MAP_FAILED) {
                __atomic_store_n(&g->broken, 1, SHMQ_SEQ);
                errno = saved;
                return;
            }
            break;
        }
    }
    errno = saved;
    if (shmq_prev_bus.sa_flags & SA_SIGINFO) {
        shmq_prev_bus.sa_sigaction(sig, si, uc);
    } else if (shmq_prev_bus.sa_handler == SIG_DFL || shmq_prev_bus.sa_handler == SIG_IGN) {
        /* Put the old disposition back and let the signal take its course: a
         * fault repeats on return, a sent signal is raised again. */
        sigaction(SIGBUS, &shmq_prev_bus, NULL);
        if (si->si_code <= 0)
            raise(sig);
    } else {
        shmq_prev_bus.sa_handler(sig);
    }
}

static int shmq_guard_add(char *base, uint64_t size)
{
    int idx = -1;
    pthread_mutex_lock(&shmq_guard_lock);
    if (!shmq_guard_installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = shmq_on_sigbus;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
        sigemptyset(&sa.sa_mask);
        long page = sysconf(_SC_PAGESIZE);
        if (page > 0)
            shmq_page = (uintptr_t)page;
        if (sigaction(SIGBUS, NULL, &shmq_prev_bus) == 0 && sigaction(SIGBUS, &sa, NULL) == 0)
            shmq_guard_installed = 1;
    }
    for (int i = 0; shmq_guard_installed && i < SHMQ_GUARDS; i++) {
        if (shmq_guards[i].base == 0) {
            shmq_guards[i].size = size;
            shmq_guards[i].broken = 0;
            __atomic_store_n(&shmq_guards[i].base, (uintptr_t)base, __ATOMIC_RELEASE);
            idx = i;
            break;
        }
    }
    pthread_mutex_unlock(&shmq_guard_lock);
    return idx;
}

static void shmq_guard_remove(int idx)
{
    if (idx < 0)
        return;
    pthread_mutex_lock(&shmq_guard_lock);
    __atomic_store_n(&shmq_guards[idx].base, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&shmq_guard_lock);
}

/* ---------------------------------------------------------------- helpers */

static inline void shmq_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline uint64_t *shmq_slot(ipckit_shmq *h, uint64_t pos, uint64_t *lap)
{
    uint64_t l = pos / h->cap;
    *lap = l;
    return (uint64_t *)(h->slots + (pos - l * h->cap) * h->stride);
}

static inline uint64_t shmq_index(ipckit_shmq *h, uint64_t *slot)
{
    return (uint64_t)((char *)slot - h->slots) / h->stride;
}

static uint64_t shmq_check(uint64_t cap, uint64_t stride, uint64_t max_msg, uint64_t size, uint64_t ns)
{
    uint64_t x = 0x9E3779B97F4A7C15ULL ^ IPCKIT_SHMQ_VERSION;
    uint64_t v[5] = {cap, stride, max_msg, size, ns};
    for (int i = 0; i < 5; i++) {
        x ^= v[i];
        x *= 0xBF58476D1CE4E5B9ULL;
        x ^= x >> 31;
    }
    return x;
}

/* Wake the sleepers of ev, if any: a load when nobody sleeps, so the
 * uncontended path makes no system call. Called after a seq_cst CAS that made
 * progress; the sleeper sets `sleepers` (seq_cst) before re-checking, so one of
 * the two sees the other (Dekker). */
static inline void shmq_notify(struct shmq_event *ev)
{
    if (SHMQ_LOAD(&ev->sleepers) && __atomic_exchange_n(&ev->sleepers, 0, SHMQ_SEQ)) {
        __atomic_fetch_add(&ev->seq, 1, SHMQ_SEQ);
        ipckit_futex_wake(&ev->seq, INT_MAX);
    }
}

static void shmq_wake_all(ipckit_shmq *h)
{
    struct shmq_event *evs[2] = {&h->hdr->not_empty, &h->hdr->not_full};
    for (int i = 0; i < 2; i++) {
        __atomic_fetch_add(&evs[i]->seq, 1, SHMQ_SEQ);
        ipckit_futex_wake(&evs[i]->seq, INT_MAX);
    }
}

static inline int shmq_enter(ipckit_shmq *h)
{
    __atomic_fetch_add(&h->inflight, 1, SHMQ_SEQ);
    if (SHMQ_LOAD(&h->closing)) {
        __atomic_fetch_sub(&h->inflight, 1, SHMQ_SEQ);
        return -EBADF;
    }
    return 0;
}

static inline int shmq_shrunk(ipckit_shmq *h) { return shmq_corrupt(IPCKIT_SHMQ_SHRUNK, 0, h->size); }

/* Leave with rc -- unless the mapping lost pages meanwhile: whatever was copied
 * then was zeros. */
static inline int shmq_leave(ipckit_shmq *h, int rc)
{
    if (__builtin_expect(__atomic_load_n(h->broken, __ATOMIC_RELAXED), 0))
        rc = shmq_shrunk(h);
    __atomic_fetch_sub(&h->inflight, 1, SHMQ_SEQ);
    return rc;
}

/* ---------------------------------------------------------------- liveness */

/* Record who owns the slot just claimed with word w, for the checks below. */
static inline void shmq_record(uint64_t *slot, uint64_t w, const struct shmq_self *me)
{
    __atomic_store_n(&slot[SHMQ_W_START], me->start, __ATOMIC_RELAXED);
    __atomic_store_n(&slot[SHMQ_W_PIDNS], me->pidns, __ATOMIC_RELAXED);
    __atomic_store_n(&slot[SHMQ_W_TIMENS], me->timens, __ATOMIC_RELAXED);
    __atomic_store_n(&slot[SHMQ_W_TAG], w, __ATOMIC_RELEASE);
}

/* 1 only if the owner of claim word w is provably gone (see "Liveness" in the
 * essay). seen_tick: the boot tick at which this waiter first saw w, after the
 * load that showed it, so no later than the claim's own time plus the wait. A
 * wrong "gone" would let two processes use one slot, so every doubt is "alive".
 * (A record read while a new owner writes it may mix two owners; it is then used
 * for a word that is no longer in the slot, and the recovery CAS fails.) */
static int shmq_owner_gone(ipckit_shmq *h, uint64_t *slot, uint64_t w, uint64_t seen_tick,
                           const struct shmq_self *me)
{
    uint32_t pid = SHMQ_PID(w);
    int recorded = __atomic_load_n(&slot[SHMQ_W_TAG], __ATOMIC_ACQUIRE) == w;
    uint64_t start = 0, timens = me->timens, pidns;
    if (recorded) {
        start = __atomic_load_n(&slot[SHMQ_W_START], __ATOMIC_RELAXED);
        pidns = __atomic_load_n(&slot[SHMQ_W_PIDNS], __ATOMIC_RELAXED);
        timens = __atomic_load_n(&slot[SHMQ_W_TIMENS], __ATOMIC_RELAXED);
    } else if (__atomic_load_n(&h->hdr->foreign_ns, __ATOMIC_RELAXED)) {
        return 0; /* died before recording, in a queue shared across pid namespaces */
    } else {
        pidns = h->creator_ns;
    }
    /* A pid means a process only in the namespace it was taken in. */
    if (pidns != me->pidns)
        return 0;
    if (pid == me->pid && recorded && start == me->start && timens == me->timens)
        return 0; /* ours: another thread of this process holds it */
    uint64_t now_start;
    int rc = ipckit_proc_identity((int)pid, &now_start);
    if (rc == IPCKIT_PROC_GONE)
        return 1;
    if (rc != IPCKIT_PROC_ALIVE || now_start == 0)
        return 0; /* invisible through /proc: alive as far as anyone can prove */
    if (recorded && start && timens == me->timens)
        return now_start != start; /* the pid now names a later process */
    /* No usable record: a process that started after we first saw the claim
     * cannot have made it. */
    return now_start > seen_tick;
}

/* The owner of a slot in mid-write or mid-read is gone: finish its step for it,
 * as if the message had been consumed. The CAS succeeds only if the word is still
 * exactly the gone owner's (lap, state, pid). */
static void shmq_recover(ipckit_shmq *h, uint64_t *slot, uint64_t w)
{
    if (SHMQ_CAS(slot, &w, SHMQ_MK(SHMQ_LAP(w) + 1, SHMQ_FREE, 0))) {
        __atomic_fetch_add(&h->hdr->abandoned, 1, SHMQ_SEQ);
        shmq_notify(&h->hdr->not_full);
        shmq_notify(&h->hdr->not_empty);
    }
}

/* ---------------------------------------------------------------- the ring */

/* A word that is not the one a claim expects, at position pos (lap `lap`), read
 * after `hint` (tail for the writer, head for the reader) showed pos. Returns
 * SHMQ_BLOCKED (wait for this word), SHMQ_HELP (pos is taken: move the hint past
 * it), SHMQ_BUSY (the hint moved: look again), or -EBADMSG: no sequence of
 * protocol steps leaves this word at this position. The argument for each case is
 * in the essay ("What is checked"). */
static int shmq_classify(ipckit_shmq *h, int writer, uint64_t *hint, uint64_t pos, uint64_t lap, uint64_t *slot,
                         uint64_t w)
{
    unsigned st = SHMQ_STATE(w);
    int owned = st == SHMQ_WRITING || st == SHMQ_READING;
    if (owned == (SHMQ_PID(w) == 0))
        return shmq_corrupt(IPCKIT_SHMQ_BAD_WORD, w, shmq_index(h, slot));
    int64_t d = SHMQ_LAPDIFF(SHMQ_LAP(w), lap);
    if (d == 0) {
        if (writer || st == SHMQ_READING)
            return SHMQ_HELP; /* pos is taken (the writer's FREE was the fast path) */
        if (st == SHMQ_FREE || st == SHMQ_WRITING)
            return SHMQ_BLOCKED; /* empty, or its writer is mid-copy */
        return SHMQ_BUSY;        /* FULL: the fast path lost a race */
    }
    if (d == -1 && (writer ? st != SHMQ_FREE : st == SHMQ_READING))
        return SHMQ_BLOCKED; /* the previous lap still holds the slot */
    if (d > 0) {
        /* The word is for a later position: the one it claims (or, FREE, the one
         * whose end freed it). Fine only if that one was already claimed. */
        uint64_t k = (uint64_t)d - (st == SHMQ_FREE);
        uint64_t tail = SHMQ_LOAD(&h->hdr->tail);
        if (tail >= pos && k <= (tail - pos) / h->cap)
            return SHMQ_HELP;
    }
    if (SHMQ_LOAD(hint) != pos || SHMQ_LOAD(slot) != w)
        return SHMQ_BUSY; /* not a snapshot: look again */
    return shmq_corrupt(IPCKIT_SHMQ_BAD_WORD, w, shmq_index(h, slot));
}

/* Act on shmq_classify for a look: 0 to look again (the hint was helped on, or
 * had moved), SHMQ_BLOCKED with *c naming the word in the way, or -EBADMSG. */
static int shmq_judge(ipckit_shmq *h, int writer, uint64_t *hint, uint64_t pos, uint64_t lap, uint64_t *slot,
                      uint64_t w, struct shmq_claim *c)
{
    int v = shmq_classify(h, writer, hint, pos, lap, slot, w);
    if (v == SHMQ_HELP) {
        uint64_t p = pos;
        SHMQ_CAS(hint, &p, pos + 1);
        return 0;
    }
    if (v == SHMQ_BLOCKED) {
        c->pos = pos;
        c->slot = slot;
        c->w = w;
    }
    return v == SHMQ_BUSY ? 0 : v;
}

/* Claim the slot for the next write. */
static int shmq_look_write(ipckit_shmq *h, int mode, const struct shmq_self *me, struct shmq_claim *c)
{
    struct ipckit_shmq_header *H = h->hdr;
    for (unsigned n = 0; n < SHMQ_LOOK_STEPS; n++) {
        uint64_t lap, pos = SHMQ_LOAD(&H->tail);
        uint64_t *slot = shmq_slot(h, pos, &lap);
        uint64_t w = SHMQ_LOAD(slot);
        if (w == SHMQ_MK(lap, SHMQ_FREE, 0)) {
            if (mode & SHMQ_PEEK)
                return 0;
            uint64_t mine = SHMQ_MK(lap, SHMQ_WRITING, me->pid);
            if (SHMQ_CAS(slot, &w, mine)) {
                shmq_record(slot, mine, me);
                uint64_t p = pos;
                SHMQ_CAS(&H->tail, &p, pos + 1);
                c->pos = pos;
                c->slot = slot;
                c->w = mine;
                return 0;
            }
            continue;
        }
        int v = shmq_judge(h, 1, &H->tail, pos, lap, slot, w, c);
        if (v)
            return v;
    }
    return SHMQ_BUSY;
}

/* Give back a slot we claimed: publish (writer) or release (reader). One CAS from
 * our own word, which fails only if the slot was taken over from us. */
static int shmq_finish(ipckit_shmq *h, struct shmq_claim *c, int writer)
{
    uint64_t lap = SHMQ_LAP(c->w);
    uint64_t expect = c->w;
    uint64_t next = writer ? SHMQ_MK(lap, SHMQ_FULL, 0) : SHMQ_MK(lap + 1, SHMQ_FREE, 0);
    if (!SHMQ_CAS(c->slot, &expect, next))
        return -ESTALE;
    shmq_notify(writer ? &h->hdr->not_empty : &h->hdr->not_full);
    return 0;
}

/* Claim the next message, if its length is at most limit. -EMSGSIZE (c->len): the
 * next message is longer, and stays queued; with SHMQ_GENTLE, SHMQ_STOP instead
 * (corrupt lengths included). A length over max_msg is corrupt: the message is
 * claimed and dropped, -EBADMSG. */
static int shmq_look_read(ipckit_shmq *h, int mode, const struct shmq_self *me, uint64_t limit, struct shmq_claim *c)
{
    struct ipckit_shmq_header *H = h->hdr;
    for (unsigned n = 0; n < SHMQ_LOOK_STEPS; n++) {
        uint64_t lap, pos = SHMQ_LOAD(&H->head);
        uint64_t *slot = shmq_slot(h, pos, &lap);
        uint64_t w = SHMQ_LOAD(slot);
        if (w == SHMQ_MK(lap, SHMQ_FULL, 0)) {
            uint64_t len = __atomic_load_n(&slot[SHMQ_W_LEN], __ATOMIC_RELAXED);
            c->len = len;
            if (mode & SHMQ_PEEK)
                return 0;
            if (len > limit) {
                /* The length belongs to this word only if the word is unchanged. */
                if (SHMQ_LOAD(slot) != w)
                    continue;
                if (mode & SHMQ_GENTLE)
                    return SHMQ_STOP;
                if (len <= h->max_msg)
                    return -EMSGSIZE;
            }
            uint64_t mine = SHMQ_MK(lap, SHMQ_READING, me->pid);
            if (SHMQ_CAS(slot, &w, mine)) {
                shmq_record(slot, mine, me);
                uint64_t p = pos;
                SHMQ_CAS(&H->head, &p, pos + 1);
                c->pos = pos;
                c->slot = slot;
                c->w = mine;
                /* Ours now, so stable -- unless a peer scribbles. */
                uint64_t now_len = __atomic_load_n(&slot[SHMQ_W_LEN], __ATOMIC_RELAXED);
                if (__builtin_expect(now_len > h->max_msg || now_len != len, 0)) {
                    shmq_finish(h, c, 0);
                    __atomic_fetch_add(&H->dropped, 1, SHMQ_SEQ);
                    return shmq_corrupt(IPCKIT_SHMQ_BAD_LENGTH, now_len > h->max_msg ? now_len : len,
                                        shmq_index(h, slot));
                }
                return 0;
            }
            continue;
        }
        int v = shmq_judge(h, 0, &H->head, pos, lap, slot, w, c);
        if (v)
            return v;
    }
    return SHMQ_BUSY;
}

static inline int shmq_look(ipckit_shmq *h, int mode, const struct shmq_self *me, uint64_t limit,
                            struct shmq_claim *c)
{
    return (mode & SHMQ_WRITE) ? shmq_look_write(h, mode, me, c) : shmq_look_read(h, mode, me, limit, c);
}

/* A reader waiting on an empty position: head may not run more than one past tail
 * (a position is passed only once it was claimed). Checked once per sleep, not
 * while spinning, so that a spinning reader does not pull tail's line away from
 * the writers. */
static int shmq_check_positions(ipckit_shmq *h)
{
    uint64_t head = SHMQ_LOAD(&h->hdr->head);
    uint64_t tail = SHMQ_LOAD(&h->hdr->tail);
    if (head > tail + 1 && SHMQ_LOAD(&h->hdr->head) == head)
        return shmq_corrupt(IPCKIT_SHMQ_BAD_POSITION, head, tail);
    return 0;
}

/* The spin budget of the next wait (see spin_cur). */
static inline int64_t shmq_spin_budget(ipckit_shmq *h)
{
    if (h->spin_cur > 0)
        return h->spin_cur;
    return (++h->spin_probe & 15) == 0 ? h->spin_ns : 0;
}

/* Claim a slot (writer) or a message (reader) -- or, SHMQ_PEEK, wait until one
 * could be claimed -- spinning, then sleeping, until the deadline. Returns 0 or a
 * negative errno. Every loop here looks at `closing` and the deadline. */
static int shmq_acquire(ipckit_shmq *h, int mode, uint64_t limit, int64_t deadline, struct shmq_claim *c)
{
    int writer = mode & SHMQ_WRITE;
    struct shmq_event *ev = writer ? &h->hdr->not_full : &h->hdr->not_empty;
    const struct shmq_self *me = shmq_me();
    uint32_t interrupts = SHMQ_LOAD(&h->interrupts);
    uint64_t seen_w = 0, seen_tick = 0;
    int64_t seen_since = 0, spin_until = 0;
    int rc;

    /* Spin with a growing pause between looks: the word looked at is the one
     * the other side is about to write, and every look pulls its cache line
     * away from that side and slows it down. */
    for (unsigned i = 0, backoff = 1;; i++) {
        rc = shmq_look(h, mode, me, limit, c);
        if (rc <= 0) {
            if (i > 0)
                h->spin_cur = h->spin_ns; /* the spin paid off */
            return rc;
        }
        if (deadline == 0) {
            if (rc == SHMQ_BUSY && i < SHMQ_NOW_LOOKS)
                continue;
            return -EAGAIN;
        }
        if ((i & 15) == 0) {
            if (SHMQ_LOAD(&h->closing))
                return -EBADF;
            int64_t now = shmq_now();
            if (i == 0)
                spin_until = now + shmq_spin_budget(h);
            if (now >= spin_until || (deadline > 0 && now >= deadline))
                break;
        }
        for (unsigned j = 0; j < backoff; j++)
            shmq_relax();
        if (backoff < SHMQ_MAX_BACKOFF)
            backoff <<= 1;
    }
    h->spin_cur = h->spin_cur >= 2000 ? h->spin_cur / 2 : 0; /* the spin did not pay */
    for (;;) {
        uint32_t seq = SHMQ_LOAD(&ev->seq);
        __atomic_exchange_n(&ev->sleepers, 1, SHMQ_SEQ);
        rc = shmq_look(h, mode, me, limit, c);
        if (rc <= 0)
            return rc;
        if (SHMQ_LOAD(&h->closing))
            return -EBADF;
        if (__atomic_load_n(h->broken, __ATOMIC_RELAXED))
            return shmq_shrunk(h);
        if (SHMQ_LOAD(&h->interrupts) != interrupts)
            return -EINTR;
        int64_t now = shmq_now();
        if (deadline > 0 && now >= deadline)
            return -ETIMEDOUT;
        if (rc == SHMQ_BUSY)
            continue;
        int64_t slice = SHMQ_MAX_SLEEP_NS;
        if (deadline > 0 && deadline - now < slice)
            slice = deadline - now;
        unsigned st = SHMQ_STATE(c->w);
        if (st == SHMQ_WRITING || st == SHMQ_READING) {
            if (c->w != seen_w) {
                seen_w = c->w;
                seen_since = now;
                seen_tick = shmq_boot_ticks();
            } else if (now - seen_since >= SHMQ_CHECK_AFTER_NS && shmq_owner_gone(h, c->slot, c->w, seen_tick, me)) {
                shmq_recover(h, c->slot, c->w);
                continue;
            }
            if (slice > SHMQ_POLL_NS)
                slice = SHMQ_POLL_NS;
        } else if (!writer && (rc = shmq_check_positions(h)) != 0) {
            return rc;
        }
        rc = ipckit_futex_wait(&ev->seq, seq, slice);
        if (rc == -EINTR)
            return -EINTR;
        if (rc == -EFAULT)
            return shmq_shrunk(h);
    }
}

/* ---------------------------------------------------------------- layout */

int ipckit_shmq_layout(uint64_t capacity, uint64_t max_msg, ipckit_shmq_info *out)
{
    uint64_t s, total;
    memset(out, 0, sizeof *out);
    if (capacity == 0 || max_msg == 0 || max_msg > (1ULL << 48) || capacity > (1ULL << 38))
        return -EINVAL;
    s = IPCKIT_SHMQ_SLOT_HEADER + ((max_msg + 63) & ~63ULL);
    if (__builtin_mul_overflow(capacity, s, &total) || __builtin_add_overflow(total, IPCKIT_SHMQ_HEADER_SIZE, &total))
        return -EINVAL;
    if (total > (1ULL << 56))
        return -EINVAL;
    out->capacity = capacity;
    out->stride = s;
    out->max_msg = max_msg;
    out->size = total;
    out->version = IPCKIT_SHMQ_VERSION;
    return 0;
}

int ipckit_shmq_init(char *base, uint64_t size, uint64_t capacity, uint64_t max_msg)
{
    struct ipckit_shmq_header *H = (struct ipckit_shmq_header *)base;
    ipckit_shmq_info layout;
    if (ipckit_shmq_layout(capacity, max_msg, &layout) != 0 || layout.size != size)
        return -EINVAL;
    /* Slots need no initialisation: an all-zero control word is (lap 0, FREE),
     * the state of slot i for position i, and a zero tag matches no claim. */
    H->version = IPCKIT_SHMQ_VERSION;
    H->header_size = IPCKIT_SHMQ_HEADER_SIZE;
    H->capacity = capacity;
    H->stride = layout.stride;
    H->max_msg = max_msg;
    H->size = size;
    H->creator_ns = shmq_me()->pidns;
    H->check = shmq_check(capacity, layout.stride, max_msg, size, H->creator_ns);
    __atomic_store_n(&H->magic, SHMQ_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

int ipckit_shmq_attach(ipckit_shmq *h, char *base, uint64_t size)
{
    struct ipckit_shmq_header *H = (struct ipckit_shmq_header *)base;
    ipckit_shmq_info layout;
    const struct shmq_self *me = shmq_me();
    h->guard = -1;
    h->broken = &shmq_unguarded;
    h->hdr = NULL;
    if (size < IPCKIT_SHMQ_HEADER_SIZE)
        return shmq_corrupt(IPCKIT_SHMQ_BAD_LAYOUT, size, 0);
    h->guard = shmq_guard_add(base, size);
    if (h->guard >= 0)
        h->broken = &shmq_guards[h->guard].broken;
    /* Read the header once, into locals: a peer may change it meanwhile. */
    uint64_t magic = __atomic_load_n(&H->magic, __ATOMIC_ACQUIRE);
    uint32_t version = __atomic_load_n(&H->version, __ATOMIC_RELAXED);
    uint32_t header_size = __atomic_load_n(&H->header_size, __ATOMIC_RELAXED);
    uint64_t cap = __atomic_load_n(&H->capacity, __ATOMIC_RELAXED);
    uint64_t stride = __atomic_load_n(&H->stride, __ATOMIC_RELAXED);
    uint64_t max_msg = __atomic_load_n(&H->max_msg, __ATOMIC_RELAXED);
    uint64_t hsize = __atomic_load_n(&H->size, __ATOMIC_RELAXED);
    uint64_t ns = __atomic_load_n(&H->creator_ns, __ATOMIC_RELAXED);
    uint64_t check = __atomic_load_n(&H->check, __ATOMIC_RELAXED);
    int rc = 0;
    if (__atomic_load_n(h->broken, __ATOMIC_RELAXED))
        rc = shmq_corrupt(IPCKIT_SHMQ_SHRUNK, 0, size);
    else if (magic == 0)
        rc = shmq_corrupt(IPCKIT_SHMQ_NOT_READY, 0, 0);
    else if (magic != SHMQ_MAGIC)
        rc = shmq_corrupt(IPCKIT_SHMQ_BAD_MAGIC, magic, 0);
    else if (version != IPCKIT_SHMQ_VERSION)
        rc = shmq_corrupt(IPCKIT_SHMQ_BAD_VERSION, version, 8);
    else if (header_size != IPCKIT_SHMQ_HEADER_SIZE || hsize != size || ipckit_shmq_layout(cap, max_msg, &layout) != 0 ||
             layout.size != size || layout.stride != stride || check != shmq_check(cap, stride, max_msg, size, ns))
        rc = shmq_corrupt(IPCKIT_SHMQ_BAD_LAYOUT, size, 0);
    if (rc) {
        shmq_guard_remove(h->guard);
        h->guard = -1;
        h->broken = &shmq_unguarded;
        return rc;
    }
    if (ns != me->pidns && !__atomic_load_n(&H->foreign_ns, __ATOMIC_RELAXED))
        __atomic_store_n(&H->foreign_ns, 1, SHMQ_SEQ);
    h->base = base;
    h->hdr = H;
    h->slots = base + IPCKIT_SHMQ_HEADER_SIZE;
    h->cap = cap;
    h->stride = stride;
    h->max_msg = max_msg;
    h->size = size;
    h->creator_ns = ns;
    h->version = version;
    h->inflight = 0;
    h->closing = 0;
    h->interrupts = 0;
    return 0;
}

void ipckit_shmq_detach(ipckit_shmq *h)
{
    shmq_guard_remove(h->guard);
    h->guard = -1;
    h->broken = &shmq_unguarded;
}

/* ---------------------------------------------------------------- calls */

static int shmq_send_one(ipckit_shmq *h, const char *data, uint64_t len, int64_t deadline)
{
    struct shmq_claim c;
    if (len > h->max_msg)
        return -EMSGSIZE;
    int rc = shmq_acquire(h, SHMQ_WRITE, 0, deadline, &c);
    if (rc)
        return rc;
    memcpy((char *)c.slot + IPCKIT_SHMQ_SLOT_HEADER, data, len);
    __atomic_store_n(&c.slot[SHMQ_W_LEN], len, __ATOMIC_RELAXED);
    return shmq_finish(h, &c, 1);
}

int ipckit_shmq_send(ipckit_shmq *h, const char *data, uint64_t len, int64_t deadline_ns)
{
    if (shmq_enter(h))
        return -EBADF;
    return shmq_leave(h, shmq_send_one(h, data, len, deadline_ns));
}

int ipckit_shmq_send2(ipckit_shmq *h, const char *a, uint64_t alen, const char *b, uint64_t blen, int64_t deadline_ns)
{
    struct shmq_claim c;
    uint64_t len;
    if (__builtin_add_overflow(alen, blen, &len))
        return -EMSGSIZE;
    if (shmq_enter(h))
        return -EBADF;
    if (len > h->max_msg)
        return shmq_leave(h, -EMSGSIZE);
    int rc = shmq_acquire(h, SHMQ_WRITE, 0, deadline_ns, &c);
    if (rc)
        return shmq_leave(h, rc);
    char *slot = (char *)c.slot + IPCKIT_SHMQ_SLOT_HEADER;
    memcpy(slot, a, alen);
    memcpy(slot + alen, b, blen);
    __atomic_store_n(&c.slot[SHMQ_W_LEN], len, __ATOMIC_RELAXED);
    return shmq_leave(h, shmq_finish(h, &c, 1));
}

int ipckit_shmq_send_many(ipckit_shmq *h, const char *data, const uint64_t *lens, uint64_t count,
                          int64_t deadline_ns, ipckit_shmq_result *r)
{
    int rc = 0;
    uint64_t i;
    memset(r, 0, sizeof *r);
    if (shmq_enter(h))
        return -EBADF;
    for (i = 0; i < count; i++) {
        rc = shmq_send_one(h, data, lens[i], deadline_ns);
        if (rc)
            break;
        data += lens[i];
    }
    r->count = i;
    return shmq_leave(h, rc);
}

/* Start fetching the slot of the position after pos (its control word, which
 * the next receive will CAS, and the first line of its data) while this one
 * is copied: a consumer behind its producer then finds them in cache. */
static inline void shmq_prefetch_next(ipckit_shmq *h, uint64_t pos)
{
    uint64_t lap;
    char *next = (char *)shmq_slot(h, pos + 1, &lap);
    __builtin_prefetch(next, 1, 3);
    __builtin_prefetch(next + IPCKIT_SHMQ_SLOT_HEADER, 0, 3);
}

static inline void shmq_hold(ipckit_shmq *h, struct shmq_claim *c, ipckit_shmq_result *r)
{
    r->held = 1;
    r->pos = c->pos;
    r->offset = (uint64_t)((char *)c->slot + IPCKIT_SHMQ_SLOT_HEADER - h->base);
}

int ipckit_shmq_recv(ipckit_shmq *h, char *dst, uint64_t cap, int refuse_big, int64_t deadline_ns,
                     ipckit_shmq_result *r)
{
    struct shmq_claim c;
    r->len = 0;
    r->held = 0;
    if (shmq_enter(h))
        return -EBADF;
    int rc = shmq_acquire(h, 0, refuse_big ? cap : UINT64_MAX, deadline_ns, &c);
    if (rc == 0) {
        r->len = c.len;
        shmq_prefetch_next(h, c.pos);
        if (c.len <= cap) {
            memcpy(dst, (char *)c.slot + IPCKIT_SHMQ_SLOT_HEADER, c.len);
            rc = shmq_finish(h, &c, 0);
        } else {
            shmq_hold(h, &c, r);
        }
    } else if (rc == -EMSGSIZE) {
        r->len = c.len;
    }
    return shmq_leave(h, rc);
}

int ipckit_shmq_recv_scratch(ipckit_shmq *h, int64_t deadline_ns)
{
    return ipckit_shmq_recv(h, h->scratch, h->scratch_cap, 0, deadline_ns, &h->res);
}

int ipckit_shmq_recv_many(ipckit_shmq *h, char *dst, uint64_t cap, uint64_t *lens, uint64_t max_count,
                          int64_t deadline_ns, ipckit_shmq_result *r)
{
    struct shmq_claim c;
    uint64_t used = 0, n = 0;
    memset(r, 0, sizeof *r);
    if (max_count == 0)
        return 0;
    if (shmq_enter(h))
        return -EBADF;
    const struct shmq_self *me = shmq_me();
    int rc = shmq_acquire(h, 0, UINT64_MAX, deadline_ns, &c);
    if (rc)
        return shmq_leave(h, rc);
    if (c.len > cap) {
        r->len = lens[0] = c.len;
        r->count = 1;
        shmq_hold(h, &c, r);
        return shmq_leave(h, 0);
    }
    r->len = c.len;
    for (;;) {
        shmq_prefetch_next(h, c.pos);
        memcpy(dst + used, (char *)c.slot + IPCKIT_SHMQ_SLOT_HEADER, c.len);
        rc = shmq_finish(h, &c, 0);
        if (rc == 0) {
            lens[n++] = c.len;
            used += c.len;
        }
        /* Gentle: a message over what is left, or over max_msg, ends the batch
         * unclaimed (the next call reports a bad one). */
        if (n == max_count || shmq_look_read(h, SHMQ_GENTLE, me, cap - used, &c) != 0)
            break;
    }
    r->count = n;
    r->used = used;
    return shmq_leave(h, n ? 0 : rc);
}

int ipckit_shmq_release(ipckit_shmq *h, uint64_t pos)
{
    struct shmq_claim c;
    uint64_t lap;
    if (shmq_enter(h))
        return -EBADF;
    c.pos = pos;
    c.slot = shmq_slot(h, pos, &lap);
    c.w = SHMQ_MK(lap, SHMQ_READING, shmq_me()->pid);
    return shmq_leave(h, shmq_finish(h, &c, 0));
}

int ipckit_shmq_wait_ready(ipckit_shmq *h, int writer, int64_t deadline_ns, ipckit_shmq_result *r)
{
    struct shmq_claim c;
    c.len = 0;
    if (r)
        memset(r, 0, sizeof *r);
    if (shmq_enter(h))
        return -EBADF;
    int rc = shmq_acquire(h, SHMQ_PEEK | (writer ? SHMQ_WRITE : 0), UINT64_MAX, deadline_ns, &c);
    if (rc == 0 && r && !writer)
        r->len = c.len;
    return shmq_leave(h, rc);
}

void ipckit_shmq_interrupt(ipckit_shmq *h)
{
    if (shmq_enter(h))
        return;
    __atomic_fetch_add(&h->interrupts, 1, SHMQ_SEQ);
    shmq_wake_all(h);
    shmq_leave(h, 0);
}

int ipckit_shmq_count(ipckit_shmq *h, uint64_t *count)
{
    *count = 0;
    if (shmq_enter(h))
        return -EBADF;
    uint64_t head = SHMQ_LOAD(&h->hdr->head);
    uint64_t tail = SHMQ_LOAD(&h->hdr->tail);
    if (tail > head)
        *count = tail - head > h->cap ? h->cap : tail - head;
    return shmq_leave(h, 0);
}

int ipckit_shmq_stat(ipckit_shmq *h, ipckit_shmq_info *out)
{
    memset(out, 0, sizeof *out);
    if (shmq_enter(h))
        return -EBADF;
    out->capacity = h->cap;
    out->stride = h->stride;
    out->max_msg = h->max_msg;
    out->size = h->size;
    out->head = SHMQ_LOAD(&h->hdr->head);
    out->tail = SHMQ_LOAD(&h->hdr->tail);
    out->abandoned = SHMQ_LOAD(&h->hdr->abandoned);
    out->dropped = SHMQ_LOAD(&h->hdr->dropped);
    out->version = h->version;
    return shmq_leave(h, 0);
}

void ipckit_shmq_close(ipckit_shmq *h)
{
    __atomic_store_n(&h->closing, 1, SHMQ_SEQ);
    if (h->hdr == NULL)
        return;
    /* Blocked calls of this handle re-check `closing` after any wake-up (and every
     * SHMQ_MAX_SLEEP_NS at the latest); the other processes' sleepers just see a
     * spurious wake-up and sleep again. */
    while (SHMQ_LOAD(&h->inflight)) {
        shmq_wake_all(h);
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
}

/* Give an O_TMPFILE file its name: linkat(2) through /proc with
 * AT_SYMLINK_FOLLOW, which os.link() does not pass on Linux before 3.13.
 * 0 or a negative errno (EEXIST if the name is taken). */
int ipckit_shmq_link_tmpfile(int fd, const char *path)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0 ? 0 : -errno;
}
