#include <mqueue.h>

struct ipckit_mq_attr {
    long maxmsg;
    long msgsize;
    long curmsgs;
};

static int ipckit_mq_open(const char *name, int oflag, unsigned int mode, long maxmsg, long msgsize)
{
    mqd_t q;
    oflag |= O_RDWR | O_CLOEXEC;
    if (oflag & O_CREAT) {
        struct mq_attr attr = {0};
        attr.mq_maxmsg = maxmsg;
        attr.mq_msgsize = msgsize;
        q = mq_open(name, oflag, (mode_t)mode, (maxmsg > 0 && msgsize > 0) ? &attr : NULL);
    } else {
        q = mq_open(name, oflag);
    }
    return q == (mqd_t)-1 ? -errno : (int)q;
}

static int ipckit_mq_close(int mqd) { return mq_close((mqd_t)mqd) == -1 ? -errno : 0; }
static int ipckit_mq_unlink(const char *name) { return mq_unlink(name) == -1 ? -errno : 0; }

static int ipckit_mq_getattr(int mqd, struct ipckit_mq_attr *out)
{
    struct mq_attr attr;
    if (mq_getattr((mqd_t)mqd, &attr) == -1)
        return -errno;
    out->maxmsg = attr.mq_maxmsg;
    out->msgsize = attr.mq_msgsize;
    out->curmsgs = attr.mq_curmsgs;
    return 0;
}

/* A deadline already past: the kernel then fails at once (ETIMEDOUT) instead of
 * blocking, without touching the descriptor's O_NONBLOCK flag, which other threads
 * share. Which clock it is on does not matter, since it is over on every clock. */
static const struct timespec ipckit_mq_past = {0, 0};

static int ipckit_mq_send(int mqd, const char *data, size_t n, unsigned int prio, int nowait)
{
    int rc = nowait ? mq_timedsend((mqd_t)mqd, data, n, prio, &ipckit_mq_past) : mq_send((mqd_t)mqd, data, n, prio);
    if (rc == 0)
        return 0;
    return errno == ETIMEDOUT ? -EAGAIN : -errno;
}

static int ipckit_mq_send_wait(int mqd, const char *data, size_t n, unsigned int prio)
{
    return mq_send((mqd_t)mqd, data, n, prio) == 0 ? 0 : -errno;
}

static long ipckit_mq_receive_wait(int mqd, char *buf, size_t cap)
{
    ssize_t n = mq_receive((mqd_t)mqd, buf, cap, NULL);
    return n >= 0 ? (long)n : -errno;
}

static long ipckit_mq_receive(int mqd, char *buf, size_t cap, unsigned int *prio, int nowait)
{
    ssize_t n = nowait ? mq_timedreceive((mqd_t)mqd, buf, cap, prio, &ipckit_mq_past) : mq_receive((mqd_t)mqd, buf, cap, prio);
    if (n >= 0)
        return (long)n;
    return errno == ETIMEDOUT ? -EAGAIN : -errno;
}
