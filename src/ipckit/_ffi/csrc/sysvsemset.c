#include <sys/ipc.h>
#include <sys/sem.h>

#ifndef SEMVMX
#define SEMVMX 32767
#endif

struct ipckit_sem_stat {
    int key;
    unsigned int nsems;
    unsigned int mode;
    unsigned int uid;
    unsigned int gid;
    unsigned int cuid;
    unsigned int cgid;
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
    out->key = (int)ds.sem_perm.__key;
    out->nsems = (unsigned int)ds.sem_nsems;
    out->mode = ds.sem_perm.mode & 0777;
    out->uid = ds.sem_perm.uid;
    out->gid = ds.sem_perm.gid;
    out->cuid = ds.sem_perm.cuid;
    out->cgid = ds.sem_perm.cgid;
    out->otime = (long)ds.sem_otime;
    out->ctime = (long)ds.sem_ctime;
    return 0;
}

static int ipckit_semctl_set(int semid, long long uid, long long gid, long long mode)
{
    struct semid_ds ds;
    if (semctl(semid, 0, IPC_STAT, &ds) == -1)
        return -errno;
    if (uid >= 0)
        ds.sem_perm.uid = (uid_t)uid;
    if (gid >= 0)
        ds.sem_perm.gid = (gid_t)gid;
    if (mode >= 0)
        ds.sem_perm.mode = (unsigned short)mode;
    return semctl(semid, 0, IPC_SET, &ds) == -1 ? -errno : 0;
}

static int ipckit_semctl_rmid(int semid)
{
    return semctl(semid, 0, IPC_RMID) == -1 ? -errno : 0;
}
