/* Signals: collection for Signal.catch() and the sigsuspend of Signal.suspend()/pause().
 * The design is the essay at the top of _signal.py. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Signal numbers 1..64 on Linux; the tables are indexed by signo. */
#define IPCKIT_NSIG 65

struct ipckit_sigrecord {
    int signo;
    int code;
    int pid;
    unsigned int uid;
    int value;
    int has_value;
};

struct ipckit_sigcatcher {
    int rfd;
    int wfd;
    int sfd;
    int block_while_waiting;
    sigset_t set;
    /* 1 while open, + 1 per ipckit_sig_take() running: the last one out closes rfd and
     * sfd, so a take() on another thread never reads a descriptor number reused since. */
    int refs;
    int closing;
};

/* One wait's result and its catcher: each concurrent wait has its own. */
struct ipckit_sigwait {
    struct ipckit_sigrecord rec;
    struct ipckit_sigcatcher *catcher;
};

/* Write fd + 1 per signal (0: not collected), so the zero-initialised table means "none". */
static int ipckit_sig_fdp1[IPCKIT_NSIG];
static unsigned long ipckit_sig_lost[IPCKIT_NSIG];
static unsigned long ipckit_sig_written[IPCKIT_NSIG];
static int ipckit_sig_on[IPCKIT_NSIG];
static struct sigaction ipckit_sig_old[IPCKIT_NSIG];
/* Handler invocations running right now, on any thread. */
static int ipckit_sig_inflight;

static int ipckit_sig_has_value(int code)
{
    return code == SI_QUEUE || code == SI_TIMER || code == SI_MESGQ;
}

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
            if (ipckit_sig_has_value(si->si_code)) {
                rec.value = si->si_value.sival_int;
                rec.has_value = 1;
            }
            do {
                n = write(fd, &rec, sizeof rec);
            } while (n < 0 && errno == EINTR);
            __atomic_fetch_add(n == (ssize_t)sizeof rec ? &ipckit_sig_written[signo] : &ipckit_sig_lost[signo], 1, __ATOMIC_SEQ_CST);
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
    __atomic_store_n(&ipckit_sig_written[signo], 0, __ATOMIC_SEQ_CST);
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

static unsigned long ipckit_sig_via_handler(int signo)
{
    if (signo <= 0 || signo >= IPCKIT_NSIG)
        return 0;
    return __atomic_load_n(&ipckit_sig_written[signo], __ATOMIC_SEQ_CST);
}

/* In a child just forked: only the forking thread exists, so handlers that were
 * running on other threads of the parent never finish here. */
static void ipckit_sig_after_fork(void)
{
    __atomic_store_n(&ipckit_sig_inflight, 0, __ATOMIC_SEQ_CST);
}

static void ipckit_sig_set_from_bits(sigset_t *set, uint64_t bits)
{
    sigemptyset(set);
    for (int signo = 1; signo < IPCKIT_NSIG; signo++)
        if (bits >> (signo - 1) & 1)
            sigaddset(set, signo);
}

/* ------------------------------------------------------------ a catcher's descriptors */

static int ipckit_sig_open(struct ipckit_sigcatcher *c, uint64_t signals, int pipe_size)
{
    int fds[2];
    memset(c, 0, sizeof *c);
    c->rfd = c->wfd = c->sfd = -1;
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
        return -errno;
    c->rfd = fds[0];
    c->wfd = fds[1];
    /* A per-user pipe quota can refuse it; the default 64 KiB still works. */
    (void)fcntl(c->wfd, F_SETPIPE_SZ, pipe_size);
    ipckit_sig_set_from_bits(&c->set, signals);
    /* Without a signalfd (out of descriptors) every signal goes through the handler. */
    c->sfd = signalfd(-1, &c->set, SFD_NONBLOCK | SFD_CLOEXEC);
    c->refs = 1;
    return 0;
}

static int ipckit_sig_get(struct ipckit_sigcatcher *c)
{
    int refs = __atomic_load_n(&c->refs, __ATOMIC_SEQ_CST);
    do {
        if (refs == 0)
            return 0;
    } while (!__atomic_compare_exchange_n(&c->refs, &refs, refs + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    return 1;
}

static void ipckit_sig_put(struct ipckit_sigcatcher *c)
{
    if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_SEQ_CST) == 0) {
        int rfd = c->rfd, sfd = c->sfd;
        c->rfd = c->sfd = -1;
        if (rfd >= 0)
            close(rfd);
        if (sfd >= 0)
            close(sfd);
    }
}

/* Before releasing: what is still pending for the signalfd was collected, and is
 * discarded with the unread records rather than left to the old disposition. */
static void ipckit_sig_discard_pending(struct ipckit_sigcatcher *c)
{
    struct signalfd_siginfo ssi;
    if (!ipckit_sig_get(c))
        return;
    if (c->sfd >= 0)
        while (read(c->sfd, &ssi, sizeof ssi) == (ssize_t)sizeof ssi)
            ;
    ipckit_sig_put(c);
}

/* After ipckit_sig_release() of every signal: close the write end, which wakes every
 * take() with POLLHUP, then drop the owner's reference. */
static void ipckit_sig_close(struct ipckit_sigcatcher *c)
{
    int wfd;
    if (__atomic_exchange_n(&c->closing, 1, __ATOMIC_SEQ_CST))
        return;
    wfd = c->wfd;
    c->wfd = -1;
    if (wfd >= 0)
        close(wfd);
    ipckit_sig_put(c);
}

/* In a freshly forked child (one thread): close everything, whatever the counts say. */
static void ipckit_sig_forget(struct ipckit_sigcatcher *c)
{
    __atomic_store_n(&c->closing, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->refs, 1, __ATOMIC_SEQ_CST);
    if (c->wfd >= 0)
        close(c->wfd);
    c->wfd = -1;
    ipckit_sig_put(c);
}

static int ipckit_sig_read_ready(struct ipckit_sigcatcher *c, const struct pollfd *p, int nfds, struct ipckit_sigrecord *rec)
{
    /* The pipe first: what the handler wrote was delivered before anything still pending. */
    if (p[0].revents) {
        ssize_t n = read(c->rfd, rec, sizeof *rec);
        if (n == (ssize_t)sizeof *rec)
            return 1;
        if (n == 0)
            return -EPIPE;  /* the write end is closed: the block ended */
        if (n > 0)
            return -EIO;  /* cannot happen: records are written whole */
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
    }
    if (nfds > 1 && p[1].revents) {
        struct signalfd_siginfo ssi;
        ssize_t n = read(c->sfd, &ssi, sizeof ssi);
        if (n == (ssize_t)sizeof ssi) {
            memset(rec, 0, sizeof *rec);
            rec->signo = (int)ssi.ssi_signo;
            rec->code = ssi.ssi_code;
            rec->pid = (int)ssi.ssi_pid;
            rec->uid = ssi.ssi_uid;
            if (ipckit_sig_has_value(ssi.ssi_code)) {
                rec->value = ssi.ssi_int;
                rec->has_value = 1;
            }
            return 1;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
    }
    return 0;  /* another thread took it */
}

/* Wait up to timeout_ns (-1: no limit; 0: just look) for one collected signal and fill
 * w->rec: 1 + has_value when filled, 0 if none (timed out, or another waiter took it),
 * -EPIPE once the block has ended, -EINTR, -errno. */
static int ipckit_sig_take(struct ipckit_sigwait *w, int64_t timeout_ns)
{
    struct ipckit_sigcatcher *c = w->catcher;
    struct ipckit_sigrecord *rec = &w->rec;
    struct pollfd p[2];
    struct timespec ts, *limit = NULL;
    sigset_t old;
    int n, nfds, rc, masked = 0;

    if (!ipckit_sig_get(c))
        return -EPIPE;
    if (__atomic_load_n(&c->closing, __ATOMIC_SEQ_CST)) {
        ipckit_sig_put(c);
        return -EPIPE;
    }
    p[0].fd = c->rfd;
    p[1].fd = c->sfd;
    p[0].events = p[1].events = POLLIN;
    /* A sleeping wait watches the signalfd only when it blocks the signals itself:
     * otherwise they reach a handler, and the signalfd, readable for the instant a
     * signal is pending, would only wake this thread for nothing. A signal that every
     * thread blocks is still taken by a wait that only looks (timeout 0). */
    nfds = c->sfd >= 0 && (timeout_ns == 0 || c->block_while_waiting) ? 2 : 1;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        limit = &ts;
    }
    /* While this thread sleeps, no other thread would take the signals (the catcher
     * checked), so blocking them here leaves them pending for the signalfd: the kernel
     * wakes this thread once, as sigwaitinfo would, and no handler runs. Should another
     * thread take one after all, its handler writes the pipe, which is watched too. */
    if (timeout_ns != 0 && nfds > 1)
        masked = pthread_sigmask(SIG_BLOCK, &c->set, &old) == 0;
    n = ppoll(p, (nfds_t)nfds, limit, NULL);
    if (n < 0 && errno == EINTR) {
        /* Most often our own handler ran in this thread and wrote the record that ends
         * the wait: take it now. If nothing is there, EINTR lets Python run its own
         * handlers (PEP 475) before waiting again. */
        struct timespec zero = {0, 0};
        n = ppoll(p, (nfds_t)nfds, &zero, NULL);
        if (n == 0) {
            n = -1;
            errno = EINTR;
        }
    }
    if (n < 0)
        rc = -errno;
    else if (n == 0)
        rc = 0;
    else if (__atomic_load_n(&c->closing, __ATOMIC_SEQ_CST))
        rc = -EPIPE;
    else if ((rc = ipckit_sig_read_ready(c, p, nfds, rec)) > 0)
        rc = 1 + (rec->has_value != 0);
    /* One still pending now goes to the handler, and so into the pipe, in kernel order. */
    if (masked)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    ipckit_sig_put(c);
    return rc;
}

/* ------------------------------------------------------------ sigsuspend, telling which */

/* Never waited for: the two that cannot be, and those that report a fault of the
 * thread itself (blocking a real fault kills the process). */
static int ipckit_sig_not_awaited(int signo)
{
    return (signo >= 32 && signo < SIGRTMIN)  /* glibc's own, for its threads */
        || signo == SIGKILL || signo == SIGSTOP || signo == SIGSEGV || signo == SIGBUS
        || signo == SIGFPE || signo == SIGILL || signo == SIGTRAP || signo == SIGSYS;
}

static int ipckit_sig_default_ignores(int signo)
{
    return signo == SIGCHLD || signo == SIGCONT || signo == SIGURG || signo == SIGWINCH;
}

static int ipckit_sig_default_stops(int signo)
{
    return signo == SIGTSTP || signo == SIGTTIN || signo == SIGTTOU;
}

/* sigsuspend(mask) -- or pause() with use_mask 0 -- with a timeout (-1: none), which
 * also says which signal ended it: the signal number once its disposition has acted
 * (a handler ran, in this thread), 0 if none did within timeout_ns (or one that is
 * ignored, or stopped the process, was taken: wait again), -EINTR, -errno.
 *
 * The signals the wait lets in are blocked and taken with sigtimedwait, which gives
 * their siginfo; the one taken is then queued again to this thread with that same
 * siginfo (rt_tgsigqueueinfo may do that to itself) and let in by setting *mask*, so
 * its handler runs exactly as it would have inside sigsuspend(mask). The thread's own
 * mask is the caller's again on return. */
static int ipckit_sig_suspend(int use_mask, uint64_t mask_bits, int64_t timeout_ns)
{
    sigset_t old, mask, wanted, during;
    siginfo_t si;
    struct sigaction sa;
    struct timespec ts, *limit = NULL;
    int signo, rc;

    if (pthread_sigmask(SIG_BLOCK, NULL, &old) != 0)
        return -EINVAL;
    if (use_mask)
        ipckit_sig_set_from_bits(&mask, mask_bits);
    else
        mask = old;
    sigemptyset(&wanted);
    for (signo = 1; signo < IPCKIT_NSIG; signo++)
        if (!ipckit_sig_not_awaited(signo) && sigismember(&mask, signo) == 0)
            sigaddset(&wanted, signo);
    during = mask;
    sigorset(&during, &during, &wanted);
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        limit = &ts;
    }
    pthread_sigmask(SIG_SETMASK, &during, NULL);
    signo = sigtimedwait(&wanted, &si, limit);
    if (signo < 0) {
        rc = errno == EAGAIN ? 0 : -errno;
        goto out;
    }
    if (sigaction(signo, NULL, &sa) == -1) {
        rc = -errno;
        goto out;
    }
    if (sa.sa_handler == SIG_IGN || (sa.sa_handler == SIG_DFL && ipckit_sig_default_ignores(signo))) {
        rc = 0;  /* dropped, as the kernel drops it when it is let in */
        goto out;
    }
    if (syscall(SYS_rt_tgsigqueueinfo, (long)getpid(), (long)syscall(SYS_gettid), (long)signo, &si) == -1) {
        rc = -errno;
        goto out;
    }
    rc = sa.sa_handler == SIG_DFL && ipckit_sig_default_stops(signo) ? 0 : signo;
    pthread_sigmask(SIG_SETMASK, &mask, NULL);  /* the disposition acts here */
out:
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
