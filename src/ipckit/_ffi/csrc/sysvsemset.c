#include <sys/ipc.h>
#include <sys/sem.h>

#ifndef SEMVMX
#define SEMVMX 32767
#endif

struct ipckit_sem_stat {
    unsigned int nsems;
    unsigned int mode;
    unsigned int uid;
    long otime;
    long ctime;
};

static int ipckit_semget(int key, int nsems, int flags)
{
    int id = semget((key_t)key, nsems, flags);
    return id == -1 ? -errno : id;
}

static int ipckit_semctl_stat(int semid, struct ipckit_sem_stat *out)
{
    struct semid_ds ds;
    if (semctl(semid, 0, IPC_STAT, &ds) == -1)
        return -errno;
    out->nsems = (unsigned int)ds.sem_nsems;
    out->mode = ds.sem_perm.mode & 07777;
    out->uid = ds.sem_perm.uid;
    out->otime = (long)ds.sem_otime;
    out->ctime = (long)ds.sem_ctime;
    return 0;
}

static int ipckit_semctl_rmid(int semid)
{
    return semctl(semid, 0, IPC_RMID) == -1 ? -errno : 0;
}
