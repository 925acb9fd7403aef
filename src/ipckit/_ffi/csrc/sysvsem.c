#include <sys/ipc.h>
#include <sys/sem.h>

/* semctl's fourth argument, which the caller must define (semctl(2)). */
union ipckit_semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};

static int ipckit_semtimedop(int semid, struct sembuf *sops, size_t nsops, const struct timespec *timeout)
{
    return semtimedop(semid, sops, nsops, timeout) == -1 ? -errno : 0;
}

static int ipckit_semops_timed(int semid, struct sembuf *sops, size_t nsops, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns == 0) {
        for (size_t i = 0; i < nsops; i++)
            sops[i].sem_flg |= IPC_NOWAIT;
    } else if (timeout_ns > 0) {
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        tsp = &ts;
    }
    return semtimedop(semid, sops, nsops, tsp) == -1 ? -errno : 0;
}

static int ipckit_semop1(int semid, unsigned short num, short delta, short flags, int64_t timeout_ns)
{
    struct sembuf op = {num, delta, flags};
    return ipckit_semops_timed(semid, &op, 1, timeout_ns);
}

static int ipckit_sem_wait_positive(int semid, unsigned short num, int64_t timeout_ns)
{
    struct sembuf ops[2] = {{num, -1, 0}, {num, +1, 0}};
    return ipckit_semops_timed(semid, ops, 2, timeout_ns);
}

static int ipckit_semctl_get(int semid, int semnum, int cmd)
{
    int rc = semctl(semid, semnum, cmd);
    return rc == -1 ? -errno : rc;
}

static int ipckit_semctl_setval(int semid, int semnum, int value)
{
    union ipckit_semun arg = {.val = value};
    return semctl(semid, semnum, SETVAL, arg) == -1 ? -errno : 0;
}

static int ipckit_semctl_setall(int semid, unsigned short *values)
{
    union ipckit_semun arg = {.array = values};
    return semctl(semid, 0, SETALL, arg) == -1 ? -errno : 0;
}
