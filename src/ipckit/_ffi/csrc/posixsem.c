#include <linux/futex.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
#define IPCKIT_GLIBC_230 1
#else
#define IPCKIT_GLIBC_230 0
#endif

/* refs: 1 for the open handle plus 1 per call in flight. It only ever reaches 0
 * once, and whoever takes it there closes the semaphore. */
struct ipckit_psem {
    sem_t *sem;
    _Atomic long refs;
    _Atomic int closed;
};

/* The absolute time *ns* nanoseconds from now on *clock*. */
static void ipckit_psem_deadline(clockid_t clock, int64_t ns, struct timespec *ts)
{
    clock_gettime(clock, ts);
    ts->tv_sec += ns / 1000000000LL;
    ts->tv_nsec += ns % 1000000000LL;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec += 1;
        ts->tv_nsec -= 1000000000L;
    }
}

static int ipckit_psem_enter(struct ipckit_psem *h)
{
    if (atomic_load(&h->closed))
        return -EBADF;
    long r = atomic_load(&h->refs);
    do {
        if (r <= 0)
            return -EBADF;
    } while (!atomic_compare_exchange_weak(&h->refs, &r, r + 1));
    return 0;
}

static void ipckit_psem_leave(struct ipckit_psem *h)
{
    if (atomic_fetch_sub(&h->refs, 1) == 1) {
        sem_t *sem = h->sem;
        h->sem = NULL;
        sem_close(sem);
    }
}

static int ipckit_psem_open(struct ipckit_psem *h, const char *name, int oflag, unsigned int mode, unsigned int value)
{
    sem_t *sem = (oflag & O_CREAT) ? sem_open(name, oflag, (mode_t)mode, value) : sem_open(name, oflag);
    if (sem == SEM_FAILED)
        return -errno;
    h->sem = sem;
    atomic_store(&h->closed, 0);
    atomic_store(&h->refs, 1);
    return 0;
}

static void ipckit_psem_close(struct ipckit_psem *h)
{
    if (atomic_exchange(&h->closed, 1) == 0 && atomic_load(&h->refs) > 0)
        ipckit_psem_leave(h);
}

static int ipckit_sem_unlink(const char *name) { return sem_unlink(name) == -1 ? -errno : 0; }

static int ipckit_psem_wait(struct ipckit_psem *h, int64_t timeout_ns)
{
    int rc = ipckit_psem_enter(h);
    if (rc < 0)
        return rc;
    if (timeout_ns < 0) {
        rc = sem_wait(h->sem);
    } else if (timeout_ns == 0) {
        rc = sem_trywait(h->sem);
    } else {
        struct timespec ts;
#if IPCKIT_GLIBC_230
        clockid_t clock = CLOCK_MONOTONIC;
#else
        clockid_t clock = CLOCK_REALTIME; /* no sem_clockwait: the caller's loop bounds the error */
#endif
        ipckit_psem_deadline(clock, timeout_ns, &ts);
#if IPCKIT_GLIBC_230
        rc = sem_clockwait(h->sem, clock, &ts);
#else
        rc = sem_timedwait(h->sem, &ts);
#endif
    }
    rc = rc == -1 ? -errno : 0;
    ipckit_psem_leave(h);
    return rc;
}

static int ipckit_psem_post(struct ipckit_psem *h, unsigned int n)
{
    int rc = ipckit_psem_enter(h);
    if (rc < 0)
        return rc;
    for (unsigned int i = 0; i < n && rc == 0; i++)
        rc = sem_post(h->sem) == -1 ? -errno : 0;
    ipckit_psem_leave(h);
    return rc;
}

static int ipckit_psem_getvalue(struct ipckit_psem *h)
{
    int value, rc = ipckit_psem_enter(h);
    if (rc < 0)
        return rc;
    rc = sem_getvalue(h->sem, &value) == -1 ? -errno : (value < 0 ? 0 : value);
    ipckit_psem_leave(h);
    return rc;
}

/* Waiting without taking, as glibc's own sem_wait slow path waits (nptl/sem_waitcommon.c):
 * on 64-bit glibc a sem_t starts with one 64-bit word, the value in its low 32 bits and
 * the number of sleepers in the high 32; sem_post adds 1 and, if there are sleepers,
 * FUTEX_WAKEs one of them on the low word. So: count ourselves as a sleeper, FUTEX_WAIT
 * while the value is 0, uncount. Since sem_post wakes only one sleeper, a wake-up we took
 * might have been meant for a real sem_wait: when we leave with the value positive and
 * others still sleep, we wake one of them, which costs at most a spurious wake-up. */
struct ipckit_glibc_sem {
    uint64_t data;
    int private;
    int pad;
};
#define IPCKIT_SEM_VALUE(d) ((uint32_t)((d) & 0xffffffffULL))
#define IPCKIT_SEM_NWAITERS(d) ((uint32_t)((d) >> 32))
#define IPCKIT_SEM_ONE_WAITER (1ULL << 32)

/* glibc's "private" field is the value it XORs with FUTEX_PRIVATE_FLAG to make the
 * futex op: FUTEX_PRIVATE_FLAG (128) for a process-shared semaphore (every named
 * one), 0 for a process-private one. The flag to use is the opposite. */
static int ipckit_psem_futex_private(const struct ipckit_glibc_sem *g)
{
    return g->private == FUTEX_PRIVATE_FLAG ? 0 : FUTEX_PRIVATE_FLAG;
}

static int ipckit_psem_can_peek(void)
{
    static int known = -1;
    if (known >= 0)
        return known;
    int ok = 0;
#if defined(__GLIBC__) && UINTPTR_MAX == 0xffffffffffffffffULL && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (sizeof(sem_t) >= sizeof(struct ipckit_glibc_sem)) {
        sem_t probe;
        struct ipckit_glibc_sem *g = (struct ipckit_glibc_sem *)&probe;
        int value = -1;
        if (sem_init(&probe, 1, 3) == 0) {
            ok = g->data == 3 && g->private == FUTEX_PRIVATE_FLAG;
            sem_post(&probe);
            ok = ok && g->data == 4 && sem_getvalue(&probe, &value) == 0 && value == 4;
            ok = ok && sem_trywait(&probe) == 0 && g->data == 3;
            sem_destroy(&probe);
        }
    }
#endif
    known = ok;
    return ok;
}

static int ipckit_psem_wait_positive(struct ipckit_psem *h, int64_t timeout_ns)
{
    if (!ipckit_psem_can_peek())
        return -ENOSYS;
    int rc = ipckit_psem_enter(h);
    if (rc < 0)
        return rc;
    struct ipckit_glibc_sem *g = (struct ipckit_glibc_sem *)h->sem;
    _Atomic uint64_t *data = (_Atomic uint64_t *)&g->data;
    uint32_t *word = (uint32_t *)&g->data; /* the low half: little-endian */
    int private = ipckit_psem_futex_private(g);
    struct timespec end;
    if (IPCKIT_SEM_VALUE(atomic_load(data)) > 0) {
        ipckit_psem_leave(h);
        return 0;
    }
    if (timeout_ns == 0) {
        ipckit_psem_leave(h);
        return -EAGAIN;
    }
    if (timeout_ns > 0)
        ipckit_psem_deadline(CLOCK_MONOTONIC, timeout_ns, &end);
    atomic_fetch_add(data, IPCKIT_SEM_ONE_WAITER);
    for (;;) {
        if (IPCKIT_SEM_VALUE(atomic_load(data)) > 0) {
            rc = 0;
            break;
        }
        struct timespec left, *leftp = NULL;
        if (timeout_ns > 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            left.tv_sec = end.tv_sec - now.tv_sec;
            left.tv_nsec = end.tv_nsec - now.tv_nsec;
            if (left.tv_nsec < 0) {
                left.tv_sec -= 1;
                left.tv_nsec += 1000000000L;
            }
            if (left.tv_sec < 0) {
                rc = -EAGAIN;
                break;
            }
            leftp = &left;
        }
        /* Sleeps only while the word is still 0; a post in between makes it EAGAIN. */
        if (syscall(SYS_futex, word, FUTEX_WAIT | private, 0, leftp, NULL, 0) == -1 && errno == EINTR) {
            rc = -EINTR;
            break;
        }
    }
    uint64_t after = atomic_fetch_sub(data, IPCKIT_SEM_ONE_WAITER) - IPCKIT_SEM_ONE_WAITER;
    if (rc == 0 && IPCKIT_SEM_NWAITERS(after) > 0)
        syscall(SYS_futex, word, FUTEX_WAKE | private, 1, NULL, NULL, 0);
    ipckit_psem_leave(h);
    return rc;
}
