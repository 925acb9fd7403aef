#include <errno.h>
#include <stdlib.h>
#include <time.h>
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

/* SysV has no timed msgrcv/msgsnd, so an event loop's waiter polls -- here, off the
 * GIL, so an idle wait costs a nanosleep per nap and no Python at all. */
static int ipckit_msgq_wait_ready(int msqid, int writer, size_t n, int64_t first_ns, int64_t max_ns,
                                  int64_t idle_max_ns, int64_t timeout_ns)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t start_ns = now.tv_sec * 1000000000LL + now.tv_nsec;
    int64_t end_ns = timeout_ns < 0 ? -1 : start_ns + timeout_ns;
    int64_t nap = first_ns > 0 ? first_ns : 1;
    for (;;) {
        struct msqid_ds ds;
        if (msgctl(msqid, IPC_STAT, &ds) == -1)
            return -errno;
        if (writer ? ds.__msg_cbytes + n <= ds.msg_qbytes && ds.msg_qnum + 1 <= ds.msg_qbytes : ds.msg_qnum > 0)
            return 0;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t t = now.tv_sec * 1000000000LL + now.tv_nsec;
        if (end_ns >= 0 && t >= end_ns)
            return -ETIMEDOUT;
        int64_t sleep_ns = end_ns >= 0 && end_ns - t < nap ? end_ns - t : nap;
        struct timespec ts = {sleep_ns / 1000000000LL, sleep_ns % 1000000000LL};
        if (nanosleep(&ts, NULL) == -1 && errno == EINTR)
            return -EINTR;
        /* After 100 ms of nothing the naps may grow to idle_max_ns: an idle wait's
         * cost is one wake-up per nap, and on a VM each costs tens of µs. */
        int64_t cap = t - start_ns >= 100000000LL ? idle_max_ns : max_ns;
        if (nap < cap)
            nap = nap * 2 > cap ? cap : nap * 2;
    }
}
