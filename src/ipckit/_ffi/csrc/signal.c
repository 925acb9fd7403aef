#include <sched.h>
#include <signal.h>

/* Signal numbers 1..64 on Linux; the table is indexed by signo. */
#define IPCKIT_NSIG 65

struct ipckit_sigrecord {
    int signo;
    int code;
    int pid;
    unsigned int uid;
    int value;
    int has_value;
};

/* Write fd + 1 per signal (0: not collected), so the zero-initialised table means "none". */
static int ipckit_sig_fdp1[IPCKIT_NSIG];
static unsigned long ipckit_sig_lost[IPCKIT_NSIG];
static int ipckit_sig_on[IPCKIT_NSIG];
static struct sigaction ipckit_sig_old[IPCKIT_NSIG];
/* Handler invocations running right now, on any thread. */
static int ipckit_sig_inflight;

static int ipckit_sig_nsig(void) { return IPCKIT_NSIG; }

/* Runs on whichever thread the kernel picked. Only async-signal-safe work:
 * atomics and one write(2) of a record smaller than PIPE_BUF (so records never
 * interleave, and a full pipe drops a whole record, never half of one). */
static void ipckit_sig_handler(int signo, siginfo_t *si, void *ctx)
{
    int saved_errno = errno;
    (void)ctx;
    __atomic_fetch_add(&ipckit_sig_inflight, 1, __ATOMIC_SEQ_CST);
    if (signo > 0 && signo < IPCKIT_NSIG) {
        int fd = __atomic_load_n(&ipckit_sig_fdp1[signo], __ATOMIC_SEQ_CST) - 1;
        if (fd >= 0) {
            struct ipckit_sigrecord rec;
            ssize_t n;
            memset(&rec, 0, sizeof rec);
            rec.signo = signo;
            rec.code = si->si_code;
            rec.pid = (int)si->si_pid;
            rec.uid = (unsigned int)si->si_uid;
            if (si->si_code == SI_QUEUE || si->si_code == SI_TIMER || si->si_code == SI_MESGQ) {
                rec.value = si->si_value.sival_int;
                rec.has_value = 1;
            }
            do {
                n = write(fd, &rec, sizeof rec);
            } while (n < 0 && errno == EINTR);
            if (n != (ssize_t)sizeof rec)
                __atomic_fetch_add(&ipckit_sig_lost[signo], 1, __ATOMIC_SEQ_CST);
        }
    }
    __atomic_fetch_sub(&ipckit_sig_inflight, 1, __ATOMIC_SEQ_CST);
    errno = saved_errno;
}

static int ipckit_sig_catch(int signo, int wfd)
{
    struct sigaction sa;
    if (signo <= 0 || signo >= IPCKIT_NSIG || wfd < 0)
        return -EINVAL;
    if (ipckit_sig_on[signo])
        return -EBUSY;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = ipckit_sig_handler;
    /* SA_RESTART: other threads' system calls are not interrupted by a signal that
     * only needs recording. SA_ONSTACK: as CPython does for its own handlers. */
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigfillset(&sa.sa_mask);
    __atomic_store_n(&ipckit_sig_lost[signo], 0, __ATOMIC_SEQ_CST);
    /* The fd is published before the handler, so the first delivery finds it. */
    __atomic_store_n(&ipckit_sig_fdp1[signo], wfd + 1, __ATOMIC_SEQ_CST);
    if (sigaction(signo, &sa, &ipckit_sig_old[signo]) == -1) {
        int err = errno;
        __atomic_store_n(&ipckit_sig_fdp1[signo], 0, __ATOMIC_SEQ_CST);
        return -err;
    }
    ipckit_sig_on[signo] = 1;
    return 0;
}

static int ipckit_sig_release(int signo, int wait_handlers)
{
    int rc = 0;
    if (signo <= 0 || signo >= IPCKIT_NSIG || !ipckit_sig_on[signo])
        return -EINVAL;
    if (sigaction(signo, &ipckit_sig_old[signo], NULL) == -1)
        rc = -errno;
    __atomic_store_n(&ipckit_sig_fdp1[signo], 0, __ATOMIC_SEQ_CST);
    ipckit_sig_on[signo] = 0;
    /* A handler that started before the store above may still be writing to the
     * old fd on another thread; wait for it so the caller can close that fd
     * without a later write landing in a reused descriptor. Handlers are a few
     * microseconds long. */
    while (wait_handlers && __atomic_load_n(&ipckit_sig_inflight, __ATOMIC_SEQ_CST) != 0)
        sched_yield();
    return rc;
}

static int ipckit_sig_active(int signo)
{
    if (signo <= 0 || signo >= IPCKIT_NSIG)
        return 0;
    return ipckit_sig_on[signo];
}

static unsigned long ipckit_sig_dropped(int signo)
{
    if (signo <= 0 || signo >= IPCKIT_NSIG)
        return 0;
    return __atomic_load_n(&ipckit_sig_lost[signo], __ATOMIC_SEQ_CST);
}

/* In a child just forked: only the forking thread exists, so handlers that were
 * running on other threads of the parent never finish here. */
static void ipckit_sig_after_fork(void)
{
    __atomic_store_n(&ipckit_sig_inflight, 0, __ATOMIC_SEQ_CST);
}
