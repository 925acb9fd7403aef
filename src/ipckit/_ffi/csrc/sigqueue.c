#include <signal.h>

static int ipckit_sigqueue(pid_t pid, int signo, int value)
{
    union sigval sv;
    memset(&sv, 0, sizeof sv);
    sv.sival_int = value;
    return sigqueue(pid, signo, sv) == -1 ? -errno : 0;
}
