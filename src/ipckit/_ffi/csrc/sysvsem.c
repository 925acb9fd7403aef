#include <sys/ipc.h>
#include <sys/sem.h>

static int ipckit_semtimedop(int semid, struct sembuf *sops, size_t nsops, const struct timespec *timeout)
{
    return semtimedop(semid, sops, nsops, timeout) == -1 ? -errno : 0;
}

static int ipckit_semctl_get(int semid, int semnum, int cmd)
{
    int rc = semctl(semid, semnum, cmd);
    return rc == -1 ? -errno : rc;
}

static int ipckit_semctl_setval(int semid, int semnum, int value)
{
    return semctl(semid, semnum, SETVAL, value) == -1 ? -errno : 0;
}
