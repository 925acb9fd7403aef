/* The shared-memory message queue's hot path (backend="shm").
 *
 * The design -- segment layout, the slot protocol, waiting and crash recovery --
 * is written down in src/ipckit/_mqueue_shm.py; the names here follow it. In
 * short: a bounded MPMC ring of fixed-size slots. Each slot starts with one
 * 64-bit control word  lap:40 | state:2 | pid:22  that is only ever changed by
 * compare-and-swap, so every claim, publish, release and recovery is one atomic
 * step, and a word names the process that owns a slot while it is being
 * written or read.
 */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>

#define IPCKIT_SHMQ_MAGIC 0x514D48534B435049ULL /* "IPCKSHMQ" in memory order */
#define IPCKIT_SHMQ_VERSION 1
#define IPCKIT_SHMQ_HEADER_SIZE 1024
#define IPCKIT_SHMQ_SLOT_HEADER 64
#define IPCKIT_SHMQ_HELD (1LL << 62)

#define SHMQ_FREE 0u
#define SHMQ_WRITING 1u
#define SHMQ_FULL 2u
#define SHMQ_READING 3u

#define SHMQ_MK(lap, st, pid) (((uint64_t)(lap) << 24) | ((uint64_t)(st) << 22) | (uint64_t)(pid))
#define SHMQ_LAP(w) ((w) >> 24)
#define SHMQ_STATE(w) ((unsigned)(((w) >> 22) & 3u))
#define SHMQ_PID(w) ((uint32_t)((w) & 0x3FFFFFu))
/* Signed distance between two 40-bit laps (they wrap; only small distances occur). */
#define SHMQ_LAPDIFF(a, b) (((int64_t)(((a) - (b)) << 24)) >> 24)

#define SHMQ_SEQ __ATOMIC_SEQ_CST
#define SHMQ_LOAD(p) __atomic_load_n((p), SHMQ_SEQ)
#define SHMQ_CAS(p, expp, desired) __atomic_compare_exchange_n((p), (expp), (desired), 0, SHMQ_SEQ, SHMQ_SEQ)

/* A blocked call checks the owner of the slot it waits on once it has seen the
 * same control word for SHMQ_CHECK_AFTER_NS, then every SHMQ_POLL_NS. */
#define SHMQ_CHECK_AFTER_NS 2000000LL
/* Most pause instructions between two looks at the ring while spinning. */
#define SHMQ_MAX_BACKOFF 16u
#define SHMQ_POLL_NS 5000000LL

struct shmq_event {
    uint32_t seq;      /* futex word: bumped by every wake-up */
    uint32_t sleepers; /* 1 when someone may sleep on seq */
    char pad[120];
};

struct shmq_header {
    uint64_t magic; /* stored last by ipckit_shmq_init */
    uint32_t version;
    uint32_t header_size;
    uint64_t capacity;
    uint64_t stride;
    uint64_t max_msg;
    uint64_t size;
    uint64_t check; /* a hash of the fields above: catches a torn or foreign header */
    uint64_t abandoned; /* slots recovered from dead owners */
    char pad0[64];
    uint64_t tail; /* next position to write (a hint: never ahead of the truth) */
    char pad1[120];
    uint64_t head; /* next position to read (likewise) */
    char pad2[120];
    struct shmq_event not_empty; /* consumers sleep here */
    struct shmq_event not_full;  /* producers sleep here */
};

_Static_assert(sizeof(struct shmq_header) <= IPCKIT_SHMQ_HEADER_SIZE, "shmq header too big");
_Static_assert(__builtin_offsetof(struct shmq_header, tail) == 128, "shmq layout");
_Static_assert(__builtin_offsetof(struct shmq_header, head) == 256, "shmq layout");
_Static_assert(__builtin_offsetof(struct shmq_header, not_empty) == 384, "shmq layout");
_Static_assert(__builtin_offsetof(struct shmq_header, not_full) == 512, "shmq layout");

typedef struct {
    int64_t spin_ns;
    /* Adaptive spinning: spin_cur is this handle's current spin budget. A spin
     * that ends with the wanted slot resets it to spin_ns; one that ends in a
     * futex sleep anyway halves it (to 0 below 1 us), and a budget of 0 probes
     * with a full spin every 16th wait. Spinning pays only while the peer runs on
     * another CPU; when both share one, the spinner only delays the peer it waits
     * for (measured: 59 us round trips instead of ~8). */
    int64_t spin_cur;
    uint32_t spin_probe;
    /* The handle's own receive buffer and result words, set once from Python,
     * so the common recv() passes two arguments (ipckit_shmq_recv_scratch). */
    char *scratch;
    uint64_t scratch_cap;
    int64_t out[4];
    char *base;
    struct shmq_header *hdr;
    char *slots;
    uint64_t cap, stride, max_msg, size;
    uint32_t inflight; /* calls of this handle now inside C (close() waits for 0) */
    uint32_t closing;
} ipckit_shmq;

/* ---------------------------------------------------------------- helpers */

static pid_t shmq_pid_cache;
static int shmq_atfork_registered;

static void shmq_atfork_child(void) { shmq_pid_cache = 0; }

/* getpid() is a system call; cache it, forgetting it in a forked child. */
static uint32_t shmq_mypid(void)
{
    pid_t p = __atomic_load_n(&shmq_pid_cache, __ATOMIC_RELAXED);
    if (p == 0) {
        if (!__atomic_exchange_n(&shmq_atfork_registered, 1, SHMQ_SEQ))
            pthread_atfork(NULL, NULL, shmq_atfork_child);
        p = getpid();
        __atomic_store_n(&shmq_pid_cache, p, __ATOMIC_RELAXED);
    }
    return (uint32_t)p;
}

static int64_t shmq_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

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

static uint64_t shmq_check(uint64_t cap, uint64_t stride, uint64_t max_msg, uint64_t size)
{
    uint64_t x = 0x9E3779B97F4A7C15ULL ^ IPCKIT_SHMQ_VERSION;
    uint64_t v[4] = {cap, stride, max_msg, size};
    for (int i = 0; i < 4; i++) {
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

static inline void shmq_leave(ipckit_shmq *h) { __atomic_fetch_sub(&h->inflight, 1, SHMQ_SEQ); }

int ipckit_shmq_pid_alive(int pid)
{
    if (pid <= 0)
        return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    /* kill() succeeds on a zombie, which will never finish its write. */
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : 1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 1;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'))
        return 0;
    return 1;
}

/* ---------------------------------------------------------------- layout */

uint64_t ipckit_shmq_layout(uint64_t capacity, uint64_t max_msg, uint64_t *stride)
{
    uint64_t s, total;
    if (capacity == 0 || max_msg == 0 || max_msg > (1ULL << 48) || capacity > (1ULL << 38))
        return 0;
    s = IPCKIT_SHMQ_SLOT_HEADER + ((max_msg + 63) & ~63ULL);
    if (__builtin_mul_overflow(capacity, s, &total) || __builtin_add_overflow(total, IPCKIT_SHMQ_HEADER_SIZE, &total))
        return 0;
    if (total > (1ULL << 56))
        return 0;
    *stride = s;
    return total;
}

int ipckit_shmq_init(char *base, uint64_t size, uint64_t capacity, uint64_t max_msg)
{
    struct shmq_header *H = (struct shmq_header *)base;
    uint64_t stride;
    if (ipckit_shmq_layout(capacity, max_msg, &stride) != size)
        return -EINVAL;
    /* Slots need no initialisation: an all-zero control word is (lap 0, FREE),
     * the state of slot i for position i. */
    H->version = IPCKIT_SHMQ_VERSION;
    H->header_size = IPCKIT_SHMQ_HEADER_SIZE;
    H->capacity = capacity;
    H->stride = stride;
    H->max_msg = max_msg;
    H->size = size;
    H->check = shmq_check(capacity, stride, max_msg, size);
    __atomic_store_n(&H->magic, IPCKIT_SHMQ_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

int ipckit_shmq_attach(ipckit_shmq *h, char *base, uint64_t size, uint32_t *version_out)
{
    struct shmq_header *H = (struct shmq_header *)base;
    uint64_t stride;
    if (size < IPCKIT_SHMQ_HEADER_SIZE)
        return -4;
    uint64_t magic = __atomic_load_n(&H->magic, __ATOMIC_ACQUIRE);
    if (magic == 0)
        return -2;
    if (magic != IPCKIT_SHMQ_MAGIC)
        return -1;
    *version_out = H->version;
    if (H->version != IPCKIT_SHMQ_VERSION)
        return -3;
    if (H->header_size != IPCKIT_SHMQ_HEADER_SIZE || H->size != size ||
        ipckit_shmq_layout(H->capacity, H->max_msg, &stride) != size || stride != H->stride ||
        H->check != shmq_check(H->capacity, H->stride, H->max_msg, H->size))
        return -4;
    h->base = base;
    h->hdr = H;
    h->slots = base + IPCKIT_SHMQ_HEADER_SIZE;
    h->cap = H->capacity;
    h->stride = H->stride;
    h->max_msg = H->max_msg;
    h->size = size;
    h->inflight = 0;
    h->closing = 0;
    return 0;
}

/* ---------------------------------------------------------------- the ring */

/* Claim the slot for the next write. 0: claimed (*pos, *slot). 1: would block;
 * *w is the control word in the way (the previous lap's message). */
static int shmq_try_write(ipckit_shmq *h, uint32_t me, uint64_t *pos_out, uint64_t **slot_out, uint64_t *w_out)
{
    struct shmq_header *H = h->hdr;
    for (;;) {
        uint64_t lap, pos = SHMQ_LOAD(&H->tail);
        uint64_t *slot = shmq_slot(h, pos, &lap);
        uint64_t w = SHMQ_LOAD(slot);
        int64_t d = SHMQ_LAPDIFF(SHMQ_LAP(w), lap);
        if (d == 0 && SHMQ_STATE(w) == SHMQ_FREE) {
            if (SHMQ_CAS(slot, &w, SHMQ_MK(lap, SHMQ_WRITING, me))) {
                uint64_t p = pos;
                SHMQ_CAS(&H->tail, &p, pos + 1);
                *pos_out = pos;
                *slot_out = slot;
                return 0;
            }
            continue;
        }
        if (d >= 0) { /* position taken already: tail is stale, help it on */
            uint64_t p = pos;
            SHMQ_CAS(&H->tail, &p, pos + 1);
            continue;
        }
        *slot_out = slot;
        *w_out = w;
        return 1;
    }
}

/* Claim the next message. 0: claimed (*pos, *slot, *len). 1: would block (*w as
 * above). -EMSGSIZE: the next message is longer than limit (*len); not claimed. */
static int shmq_try_read(ipckit_shmq *h, uint32_t me, uint64_t limit, uint64_t *pos_out, uint64_t **slot_out,
                         uint64_t *w_out, uint64_t *len_out)
{
    struct shmq_header *H = h->hdr;
    for (;;) {
        uint64_t lap, pos = SHMQ_LOAD(&H->head);
        uint64_t *slot = shmq_slot(h, pos, &lap);
        uint64_t w = SHMQ_LOAD(slot);
        int64_t d = SHMQ_LAPDIFF(SHMQ_LAP(w), lap);
        unsigned st = SHMQ_STATE(w);
        if (d == 0 && st == SHMQ_FULL) {
            uint64_t len = __atomic_load_n(&slot[1], __ATOMIC_RELAXED);
            if (len > limit) {
                /* The length belongs to this word only if the word is unchanged. */
                if (SHMQ_LOAD(slot) != w)
                    continue;
                *len_out = len;
                return -EMSGSIZE;
            }
            if (SHMQ_CAS(slot, &w, SHMQ_MK(lap, SHMQ_READING, me))) {
                uint64_t p = pos;
                SHMQ_CAS(&H->head, &p, pos + 1);
                *pos_out = pos;
                *slot_out = slot;
                *len_out = len;
                return 0;
            }
            continue;
        }
        if (d > 0 || (d == 0 && st == SHMQ_READING)) { /* taken already: help head on */
            uint64_t p = pos;
            SHMQ_CAS(&H->head, &p, pos + 1);
            continue;
        }
        *slot_out = slot;
        *w_out = w;
        return 1;
    }
}

/* The owner of a slot in mid-write or mid-read died: finish its step for it, as
 * if the message had been consumed. The CAS succeeds only if the word is still
 * exactly the dead owner's (lap, state, pid). */
static void shmq_recover(ipckit_shmq *h, uint64_t *slot, uint64_t w)
{
    if (SHMQ_CAS(slot, &w, SHMQ_MK(SHMQ_LAP(w) + 1, SHMQ_FREE, 0))) {
        __atomic_fetch_add(&h->hdr->abandoned, 1, SHMQ_SEQ);
        shmq_notify(&h->hdr->not_full);
        shmq_notify(&h->hdr->not_empty);
    }
}

/* Claim a slot (writer) or a message (reader), spinning then sleeping until the
 * deadline. Returns 0 or a negative errno. */
/* The spin budget of the next wait (see spin_cur). */
static inline int64_t shmq_spin_budget(ipckit_shmq *h)
{
    if (h->spin_cur > 0)
        return h->spin_cur;
    return (++h->spin_probe & 15) == 0 ? h->spin_ns : 0;
}

static int shmq_acquire(ipckit_shmq *h, int writer, uint64_t limit, int64_t deadline, uint64_t *pos,
                        uint64_t **slot, uint64_t *len)
{
    struct shmq_event *ev = writer ? &h->hdr->not_full : &h->hdr->not_empty;
    uint32_t me = shmq_mypid();
    uint64_t w = 0, seen_w = 0;
    int64_t seen_since = 0, spin_until = 0;
    int rc;

#define SHMQ_TRY() (writer ? shmq_try_write(h, me, pos, slot, &w) : shmq_try_read(h, me, limit, pos, slot, &w, len))

    /* Spin with a growing pause between looks: the word looked at is the one
     * the other side is about to write, and every look pulls its cache line
     * away from that side and slows it down. */
    for (unsigned i = 0, backoff = 1;; i++) {
        rc = SHMQ_TRY();
        if (rc <= 0) {
            if (i > 0)
                h->spin_cur = h->spin_ns; /* the spin paid off */
            return rc;
        }
        if (deadline == 0)
            return -EAGAIN;
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
        rc = SHMQ_TRY();
        if (rc <= 0)
            return rc;
        if (SHMQ_LOAD(&h->closing))
            return -EBADF;
        int64_t now = shmq_now();
        if (deadline > 0 && now >= deadline)
            return -ETIMEDOUT;
        int64_t slice = deadline < 0 ? -1 : deadline - now;
        unsigned st = SHMQ_STATE(w);
        uint32_t owner = (st == SHMQ_WRITING || st == SHMQ_READING) ? SHMQ_PID(w) : 0;
        if (owner && owner != me) {
            if (w != seen_w) {
                seen_w = w;
                seen_since = now;
            } else if (now - seen_since >= SHMQ_CHECK_AFTER_NS && !ipckit_shmq_pid_alive((int)owner)) {
                shmq_recover(h, *slot, w);
                continue;
            }
            if (slice < 0 || slice > SHMQ_POLL_NS)
                slice = SHMQ_POLL_NS;
        }
        rc = ipckit_futex_wait(&ev->seq, seq, slice);  /* futex.c: same translation unit */
        if (rc == -EINTR)
            return -EINTR;
    }
#undef SHMQ_TRY
}

/* Publish (writer) or release (reader) a claimed slot: one CAS from our own
 * word, which fails only if the slot was recovered from us. */
static int shmq_finish(ipckit_shmq *h, uint64_t *slot, uint64_t pos, int writer)
{
    uint64_t lap = pos / h->cap;
    uint32_t me = shmq_mypid();
    uint64_t expect = SHMQ_MK(lap, writer ? SHMQ_WRITING : SHMQ_READING, me);
    uint64_t next = writer ? SHMQ_MK(lap, SHMQ_FULL, 0) : SHMQ_MK(lap + 1, SHMQ_FREE, 0);
    if (!SHMQ_CAS(slot, &expect, next))
        return -ESTALE;
    shmq_notify(writer ? &h->hdr->not_empty : &h->hdr->not_full);
    return 0;
}

static int64_t shmq_send_one(ipckit_shmq *h, const char *data, uint64_t len, int64_t deadline)
{
    uint64_t pos, *slot, unused;
    if (len > h->max_msg)
        return -EMSGSIZE;
    int rc = shmq_acquire(h, 1, 0, deadline, &pos, &slot, &unused);
    if (rc)
        return rc;
    memcpy((char *)slot + IPCKIT_SHMQ_SLOT_HEADER, data, len);
    __atomic_store_n(&slot[1], len, __ATOMIC_RELAXED);
    return shmq_finish(h, slot, pos, 1);
}

int64_t ipckit_shmq_send(ipckit_shmq *h, const char *data, uint64_t len, int64_t deadline_ns)
{
    if (shmq_enter(h))
        return -EBADF;
    int64_t rc = shmq_send_one(h, data, len, deadline_ns);
    shmq_leave(h);
    return rc;
}

int64_t ipckit_shmq_send_many(ipckit_shmq *h, const char *data, const uint64_t *lens, uint64_t count,
                              int64_t deadline_ns, int64_t *err)
{
    uint64_t i;
    *err = 0;
    if (shmq_enter(h)) {
        *err = -EBADF;
        return 0;
    }
    for (i = 0; i < count; i++) {
        int64_t rc = shmq_send_one(h, data, lens[i], deadline_ns);
        if (rc) {
            *err = rc;
            break;
        }
        data += lens[i];
    }
    shmq_leave(h);
    return (int64_t)i;
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

int64_t ipckit_shmq_recv(ipckit_shmq *h, char *dst, uint64_t cap, int refuse_big, int64_t deadline_ns, int64_t *out)
{
    uint64_t pos, *slot, len = 0;
    out[0] = 0;
    if (shmq_enter(h))
        return -EBADF;
    int64_t rc = shmq_acquire(h, 0, refuse_big ? cap : UINT64_MAX, deadline_ns, &pos, &slot, &len);
    if (rc == 0) {
        char *src = (char *)slot + IPCKIT_SHMQ_SLOT_HEADER;
        shmq_prefetch_next(h, pos);
        if (len <= cap) {
            memcpy(dst, src, len);
            rc = shmq_finish(h, slot, pos, 0);
            if (rc == 0)
                rc = (int64_t)len;
        } else {
            out[0] = (int64_t)pos + 1;
            out[1] = src - h->base;
            out[2] = (int64_t)len;
            rc = (int64_t)len | IPCKIT_SHMQ_HELD;
        }
    } else if (rc == -EMSGSIZE) {
        out[2] = (int64_t)len;
    }
    shmq_leave(h);
    return rc;
}

int64_t ipckit_shmq_recv_scratch(ipckit_shmq *h, int64_t deadline_ns)
{
    return ipckit_shmq_recv(h, h->scratch, h->scratch_cap, 0, deadline_ns, h->out);
}

int64_t ipckit_shmq_recv_many(ipckit_shmq *h, char *dst, uint64_t cap, uint64_t *lens, uint64_t max_count,
                              int64_t deadline_ns, int64_t *out)
{
    uint64_t pos, *slot, len = 0, w, used = 0, n = 0;
    uint32_t me = shmq_mypid();
    out[0] = 0;
    out[3] = 0;
    if (max_count == 0)
        return 0;
    if (shmq_enter(h))
        return -EBADF;
    int64_t rc = shmq_acquire(h, 0, UINT64_MAX, deadline_ns, &pos, &slot, &len);
    if (rc) {
        shmq_leave(h);
        return rc;
    }
    if (len > cap) {
        out[0] = (int64_t)pos + 1;
        out[1] = (char *)slot + IPCKIT_SHMQ_SLOT_HEADER - h->base;
        out[2] = (int64_t)len;
        lens[0] = len;
        shmq_leave(h);
        return 1;
    }
    for (;;) {
        shmq_prefetch_next(h, pos);
        memcpy(dst + used, (char *)slot + IPCKIT_SHMQ_SLOT_HEADER, len);
        rc = shmq_finish(h, slot, pos, 0);
        if (rc == 0) {
            lens[n++] = len;
            used += len;
        }
        if (n == max_count)
            break;
        if (shmq_try_read(h, me, cap - used, &pos, &slot, &w, &len) != 0)
            break;
    }
    out[3] = (int64_t)used;
    shmq_leave(h);
    return (int64_t)n;
}

int ipckit_shmq_release(ipckit_shmq *h, uint64_t pos)
{
    uint64_t lap;
    if (shmq_enter(h))
        return -EBADF;
    int rc = shmq_finish(h, shmq_slot(h, pos, &lap), pos, 0);
    shmq_leave(h);
    return rc;
}

int64_t ipckit_shmq_count(ipckit_shmq *h)
{
    uint64_t head = SHMQ_LOAD(&h->hdr->head);
    uint64_t tail = SHMQ_LOAD(&h->hdr->tail);
    int64_t n = (int64_t)(tail - head);
    if (n < 0)
        return 0;
    return n > (int64_t)h->cap ? (int64_t)h->cap : n;
}

void ipckit_shmq_stat(ipckit_shmq *h, uint64_t *out)
{
    out[0] = h->cap;
    out[1] = h->stride;
    out[2] = h->max_msg;
    out[3] = h->size;
    out[4] = SHMQ_LOAD(&h->hdr->head);
    out[5] = SHMQ_LOAD(&h->hdr->tail);
    out[6] = SHMQ_LOAD(&h->hdr->abandoned);
    out[7] = h->hdr->version;
}

void ipckit_shmq_close(ipckit_shmq *h)
{
    __atomic_store_n(&h->closing, 1, SHMQ_SEQ);
    if (h->hdr == NULL)
        return;
    /* Blocked calls of this handle re-check `closing` after any wake-up; the
     * other processes' sleepers just see a spurious wake-up and sleep again. */
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
