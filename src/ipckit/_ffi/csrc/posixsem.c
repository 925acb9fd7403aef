#include <semaphore.h>
#include <sys/stat.h>

static int ipckit_sem_open(const char *name, int oflag, unsigned int mode, unsigned int value, sem_t **out)
{
    sem_t *sem = (oflag & O_CREAT) ? sem_open(name, oflag, (mode_t)mode, value) : sem_open(name, oflag);
    if (sem == SEM_FAILED)
        return -errno;
    *out = sem;
    return 0;
}

static int ipckit_sem_close(sem_t *sem) { return sem_close(sem) == -1 ? -errno : 0; }
static int ipckit_sem_unlink(const char *name) { return sem_unlink(name) == -1 ? -errno : 0; }
static int ipckit_sem_post(sem_t *sem) { return sem_post(sem) == -1 ? -errno : 0; }

static int ipckit_sem_getvalue(sem_t *sem)
{
    int value;
    if (sem_getvalue(sem, &value) == -1)
        return -errno;
    return value < 0 ? 0 : value;
}

static int ipckit_sem_wait(sem_t *sem, int64_t timeout_ns)
{
    int rc;
    if (timeout_ns < 0) {
        rc = sem_wait(sem);
    } else if (timeout_ns == 0) {
        rc = sem_trywait(sem);
    } else {
        struct timespec ts;
        clockid_t clock = CLOCK_MONOTONIC;
#if !(defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30)))
        clock = CLOCK_REALTIME; /* no sem_clockwait: the caller's loop bounds the error */
#endif
        clock_gettime(clock, &ts);
        ts.tv_sec += timeout_ns / 1000000000LL;
        ts.tv_nsec += timeout_ns % 1000000000LL;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec += 1;
            ts.tv_nsec -= 1000000000L;
        }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
        rc = sem_clockwait(sem, clock, &ts);
#else
        rc = sem_timedwait(sem, &ts);
#endif
    }
    return rc == -1 ? -errno : 0;
}
