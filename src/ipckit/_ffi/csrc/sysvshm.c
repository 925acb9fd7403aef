#include <sys/ipc.h>
#include <sys/shm.h>

struct ipckit_shm_stat {
    int key;
    uint64_t segsz;
    unsigned int mode;
    uint64_t nattch;
    int cpid;
    int lpid;
    unsigned int uid;
    unsigned int gid;
    unsigned int cuid;
    unsigned int cgid;
    long atime;
    long dtime;
    long ctime;
};

static int ipckit_shmget(int key, uint64_t size, int flags)
{
    int id = shmget((key_t)key, (size_t)size, flags);
    return id == -1 ? -errno : id;
}

static int ipckit_shmat(int shmid, void **out)
{
    void *addr = shmat(shmid, NULL, 0);
    if (addr == (void *)-1)
        return -errno;
    *out = addr;
    return 0;
}

static int ipckit_shmdt(void *addr)
{
    return shmdt(addr) == -1 ? -errno : 0;
}

static int ipckit_shmctl_stat(int shmid, struct ipckit_shm_stat *out)
{
    struct shmid_ds ds;
    if (shmctl(shmid, IPC_STAT, &ds) == -1)
        return -errno;
    out->key = (int)ds.shm_perm.__key;
    out->segsz = ds.shm_segsz;
    out->mode = ds.shm_perm.mode & 07777;
    out->nattch = ds.shm_nattch;
    out->cpid = ds.shm_cpid;
    out->lpid = ds.shm_lpid;
    out->uid = ds.shm_perm.uid;
    out->gid = ds.shm_perm.gid;
    out->cuid = ds.shm_perm.cuid;
    out->cgid = ds.shm_perm.cgid;
    out->atime = (long)ds.shm_atime;
    out->dtime = (long)ds.shm_dtime;
    out->ctime = (long)ds.shm_ctime;
    return 0;
}

static int ipckit_shmctl_set(int shmid, long long uid, long long gid, long long mode)
{
    struct shmid_ds ds;
    if (shmctl(shmid, IPC_STAT, &ds) == -1)
        return -errno;
    if (uid >= 0)
        ds.shm_perm.uid = (uid_t)uid;
    if (gid >= 0)
        ds.shm_perm.gid = (gid_t)gid;
    if (mode >= 0)
        ds.shm_perm.mode = (unsigned short)mode;
    return shmctl(shmid, IPC_SET, &ds) == -1 ? -errno : 0;
}

static int ipckit_shmctl_rmid(int shmid)
{
    return shmctl(shmid, IPC_RMID, NULL) == -1 ? -errno : 0;
}
