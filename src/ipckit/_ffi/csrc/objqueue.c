/* ipckit.Queue's tokens and counters: csrc/objqueue.h; the design in src/ipckit/_queue.py. */
#include "common.h"

#include <pthread.h>

#include "futex.h"
#include "objqueue.h"

#define OBJQ_MAGIC 0x514A424F4B435049ULL /* "IPCKOBJQ" in memory order */
/* A blocked lock returns -EINTR at least this often, so Python sees signals and
 * close() between tries (the ring's calls do the same with their futex sleeps). */
#define OBJQ_SLICE_NS 50000000LL
#define OBJQ_MAX_SLEEP_NS 200000000LL

_Static_assert(sizeof(ipckit_objq_header) <= IPCKIT_OBJQ_HEADER_SIZE, "objq header too big");
_Static_assert(__builtin_offsetof(ipckit_objq_header, rd) == 128, "objq layout");
_Static_assert(__builtin_offsetof(ipckit_objq_header, w) == 256, "objq layout");
_Static_assert(__builtin_offsetof(ipckit_objq_header, tasks) == 384, "objq layout");

static int64_t objq_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t objq_check(const ipckit_objq_header *q)
{
    uint64_t f[7] = {q->maxsize, q->ring_off, q->ring_size, q->lane_off, q->lane_size, q->size, IPCKIT_OBJQ_VERSION};
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < 7; i++)
        h = (h ^ f[i]) * 0x100000001b3ULL;
    return h;
}

int ipckit_objq_init(ipckit_objq_header *q, uint64_t maxsize, uint64_t ring_off, uint64_t ring_size,
                     uint64_t lane_off, uint64_t lane_size, uint64_t size)
{
    pthread_mutexattr_t attr;
    int rc;
    q->version = IPCKIT_OBJQ_VERSION;
    q->header_size = IPCKIT_OBJQ_HEADER_SIZE;
    q->maxsize = maxsize;
    q->ring_off = ring_off;
    q->ring_size = ring_size;
    q->lane_off = lane_off;
    q->lane_size = lane_size;
    q->size = size;
    q->check = objq_check(q);
    q->next_seq = 1;
    if ((rc = pthread_mutexattr_init(&attr)) != 0)
        return -rc;
    /* Robust: the kernel marks a token whose holder died (any way, SIGKILL included:
     * the robust list is walked at thread exit), and the next taker gets EOWNERDEAD. */
    rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (!rc)
        rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (!rc)
        rc = pthread_mutex_init(&q->rd.m, &attr);
    if (!rc)
        rc = pthread_mutex_init(&q->w.m, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc)
        return -rc;
    __atomic_store_n(&q->magic, OBJQ_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

int ipckit_objq_validate(const ipckit_objq_header *q, uint64_t size)
{
    if (__atomic_load_n(&q->magic, __ATOMIC_ACQUIRE) != OBJQ_MAGIC || q->version != IPCKIT_OBJQ_VERSION)
        return -EPROTO;
    if (q->header_size != IPCKIT_OBJQ_HEADER_SIZE || q->size != size || q->check != objq_check(q))
        return -EBADMSG;
    uint64_t ring_end, lane_end;
    if (__builtin_add_overflow(q->ring_off, q->ring_size, &ring_end) ||
        __builtin_add_overflow(q->lane_off, q->lane_size, &lane_end))
        return -EBADMSG;
    if (q->ring_off < IPCKIT_OBJQ_HEADER_SIZE || ring_end > q->lane_off || lane_end > size || q->ring_off % 4096 ||
        q->lane_off % 4096)
        return -EBADMSG;
    return 0;
}

int ipckit_objq_lock(ipckit_objq_header *q, int rd, int64_t deadline_ns)
{
    ipckit_objq_token *t = rd ? &q->rd : &q->w;
    int rc;
    if (deadline_ns == 0) {
        rc = pthread_mutex_trylock(&t->m);
        if (rc == EBUSY)
            return -EAGAIN;
    } else {
        int64_t now = objq_now(), until = now + OBJQ_SLICE_NS;
        int sliced = deadline_ns < 0 || deadline_ns > until;
        if (!sliced)
            until = deadline_ns;
        struct timespec ts = {until / 1000000000LL, until % 1000000000LL};
        rc = pthread_mutex_clocklock(&t->m, CLOCK_MONOTONIC, &ts);
        if (rc == ETIMEDOUT)
            return sliced ? -EINTR : -ETIMEDOUT;
    }
    if (rc == EOWNERDEAD) {
        if (pthread_mutex_consistent(&t->m) != 0) {
            pthread_mutex_unlock(&t->m);
            return -ENOTRECOVERABLE;
        }
        if (rd && __atomic_load_n(&q->r_busy, __ATOMIC_RELAXED)) {
            /* It died reading r_seq from the lane: that object is lost with it, and
             * whatever of it is still in the lane is discarded by the next reader
             * (or seen by its writer, which then stops streaming it). */
            uint64_t seq = __atomic_load_n(&q->r_seq, __ATOMIC_RELAXED);
            if (seq > __atomic_load_n(&q->r_skip, __ATOMIC_RELAXED))
                __atomic_store_n(&q->r_skip, seq, __ATOMIC_SEQ_CST);
            __atomic_store_n(&q->r_busy, 0, __ATOMIC_SEQ_CST);
        }
        return IPCKIT_OBJQ_OWNER_DIED;
    }
    return rc ? -rc : 0;
}

int ipckit_objq_unlock(ipckit_objq_header *q, int rd)
{
    int rc = pthread_mutex_unlock(rd ? &q->rd.m : &q->w.m);
    return rc ? -rc : 0;
}

int ipckit_objq_get(ipckit_objq_header *q, ipckit_shmq *h, char *dst, uint64_t cap, int64_t deadline_ns,
                    ipckit_shmq_result *r)
{
    r->len = 0;
    r->held = 0;
    int rc = ipckit_objq_lock(q, 1, deadline_ns);
    if (rc < 0)
        return rc;
    rc = ipckit_shmq_recv(h, dst, cap, 1, deadline_ns, r);
    if (rc == 0 && r->len > 0 && dst[0] == 'M') {
        /* Recorded before returning, so a reader killed from here on leaves r_skip
         * for this object's writer to see (ipckit_objq_lock). */
        if (r->len == 24) {
            uint64_t seq;
            memcpy(&seq, dst + 8, sizeof seq);
            __atomic_store_n(&q->r_seq, seq, __ATOMIC_RELAXED);
            __atomic_store_n(&q->r_busy, 1, __ATOMIC_SEQ_CST);
        }
        return IPCKIT_OBJQ_MARKER;
    }
    pthread_mutex_unlock(&q->rd.m);
    return rc;
}

int ipckit_objq_tasks_add(ipckit_objq_header *q, int64_t delta, int64_t *now)
{
    int64_t cur = __atomic_load_n(&q->tasks, __ATOMIC_SEQ_CST), next;
    do {
        if (__builtin_add_overflow(cur, delta, &next) || next < 0) {
            *now = cur;
            return -EOVERFLOW;
        }
    } while (!__atomic_compare_exchange_n(&q->tasks, &cur, next, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    *now = next;
    if (next == 0 && __atomic_load_n(&q->tasks_sleepers, __ATOMIC_SEQ_CST)) {
        __atomic_store_n(&q->tasks_sleepers, 0, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&q->tasks_seq, 1, __ATOMIC_SEQ_CST);
        ipckit_futex_wake(&q->tasks_seq, INT_MAX);
    }
    return 0;
}

int ipckit_objq_tasks_wait(ipckit_objq_header *q, int64_t deadline_ns)
{
    uint32_t seq = __atomic_load_n(&q->tasks_seq, __ATOMIC_SEQ_CST);
    __atomic_store_n(&q->tasks_sleepers, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&q->tasks, __ATOMIC_SEQ_CST) == 0)
        return 0;
    if (deadline_ns == 0)
        return -EAGAIN;
    int64_t wait = OBJQ_MAX_SLEEP_NS;
    if (deadline_ns > 0) {
        int64_t left = deadline_ns - objq_now();
        if (left <= 0)
            return -ETIMEDOUT;
        if (left < wait)
            wait = left;
    }
    int rc = ipckit_futex_wait(&q->tasks_seq, seq, wait);
    if (__atomic_load_n(&q->tasks, __ATOMIC_SEQ_CST) == 0)
        return 0;
    if (rc == -EINTR)
        return -EINTR;
    if (deadline_ns > 0 && objq_now() >= deadline_ns)
        return -ETIMEDOUT;
    return -EINTR; /* woken, or a sleep slice ended: look again */
}
