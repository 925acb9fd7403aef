#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

/* glibc's sigqueue() asks the kernel for getpid() on every call to fill si_pid: one
 * system call in three of a signal round trip. The pid only changes at fork, so it
 * is kept here and forgotten in the child. (si_uid is still read each time: a
 * process may change its uid, and the receiver is told the real one.) */
static pid_t ipckit_sigqueue_pid;
static pthread_once_t ipckit_sigqueue_once = PTHREAD_ONCE_INIT;

static void ipckit_sigqueue_forget_pid(void)
{
    ipckit_sigqueue_pid = 0;
}

static void ipckit_sigqueue_register(void)
{
    (void)pthread_atfork(NULL, NULL, ipckit_sigqueue_forget_pid);
}

static int ipckit_sigqueue(pid_t pid, int signo, int value)
{
    siginfo_t info;
    pthread_once(&ipckit_sigqueue_once, ipckit_sigqueue_register);
    if (ipckit_sigqueue_pid == 0)
        ipckit_sigqueue_pid = getpid();
    /* What glibc's sigqueue() builds: the kernel queues it as given (SI_QUEUE). */
    memset(&info, 0, sizeof info);
    info.si_signo = signo;
    info.si_code = SI_QUEUE;
    info.si_pid = ipckit_sigqueue_pid;
    info.si_uid = getuid();
    info.si_value.sival_int = value;
    return syscall(SYS_rt_sigqueueinfo, pid, signo, &info) == -1 ? -errno : 0;
}
