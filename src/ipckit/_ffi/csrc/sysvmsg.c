#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/msg.h>

struct ipckit_msg_stat {
    int key;
    unsigned int uid;
    unsigned int gid;
    unsigned int cuid;
    unsigned int cgid;
    unsigned int mode;
    uint64_t qnum;
    uint64_t qbytes;
    uint64_t cbytes;
    int lspid;
    int lrpid;
    long stime;
    long rtime;
    long ctime;
};

static int ipckit_msgget(int key, int flags)
{
    int id = msgget((key_t)key, flags);
    return id == -1 ? -errno : id;
}

/* msgsnd wants the type and the data in one block: small messages are put
 * together on the stack, larger ones in a heap block of their own size. */
#define IPCKIT_MSG_STACK 8192

static int ipckit_msgsnd(int msqid, long type, const char *data, size_t n, int flags)
{
    struct { long mtype; char mtext[IPCKIT_MSG_STACK]; } small;
    struct { long mtype; char mtext[]; } *msg = (void *)&small;
    if (n > IPCKIT_MSG_STACK) {
        msg = malloc(sizeof(long) + n);
        if (msg == NULL)
            return -ENOMEM;
    }
    msg->mtype = type;
    memcpy(msg->mtext, data, n);
    int rc = msgsnd(msqid, msg, n, flags);
    int err = errno;
    if (n > IPCKIT_MSG_STACK)
        free(msg);
    return rc == -1 ? -err : 0;
}

static long ipckit_msgrcv(int msqid, void *buf, size_t cap, long type, int flags)
{
    ssize_t n = msgrcv(msqid, buf, cap, type, flags);
    return n == -1 ? -errno : (long)n;
}

static int ipckit_msgsnd_wait(int msqid, long type, const char *data, size_t n)
{
    return ipckit_msgsnd(msqid, type, data, n, 0);
}

static long ipckit_msgrcv_wait(int msqid, void *buf, size_t cap)
{
    return ipckit_msgrcv(msqid, buf, cap, 0, 0);
}

static int ipckit_msgctl_stat(int msqid, struct ipckit_msg_stat *out)
{
    struct msqid_ds ds;
    if (msgctl(msqid, IPC_STAT, &ds) == -1)
        return -errno;
    out->key = (int)ds.msg_perm.__key;
    out->uid = ds.msg_perm.uid;
    out->gid = ds.msg_perm.gid;
    out->cuid = ds.msg_perm.cuid;
    out->cgid = ds.msg_perm.cgid;
    out->mode = ds.msg_perm.mode & 0777;
    out->qnum = ds.msg_qnum;
    out->qbytes = ds.msg_qbytes;
    out->cbytes = ds.__msg_cbytes;
    out->lspid = ds.msg_lspid;
    out->lrpid = ds.msg_lrpid;
    out->stime = (long)ds.msg_stime;
    out->rtime = (long)ds.msg_rtime;
    out->ctime = (long)ds.msg_ctime;
    return 0;
}

static int ipckit_msgctl_set(int msqid, long long uid, long long gid, long long mode, long long qbytes)
{
    struct msqid_ds ds;
    if (msgctl(msqid, IPC_STAT, &ds) == -1)
        return -errno;
    if (uid >= 0)
        ds.msg_perm.uid = (uid_t)uid;
    if (gid >= 0)
        ds.msg_perm.gid = (gid_t)gid;
    if (mode >= 0)
        ds.msg_perm.mode = (unsigned short)mode;
    if (qbytes >= 0)
        ds.msg_qbytes = (msglen_t)qbytes;
    return msgctl(msqid, IPC_SET, &ds) == -1 ? -errno : 0;
}

static int ipckit_msgctl_rmid(int msqid)
{
    return msgctl(msqid, IPC_RMID, NULL) == -1 ? -errno : 0;
}
