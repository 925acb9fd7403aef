/* A unit of its own (the shm ring calls it without the GIL): see procid.h. */
#include "common.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "procid.h"

/* /proc shows the processes of the pid namespace it was mounted for, which need not
 * be ours (a container given the host's /proc, or the other way round): then its
 * PID directories are other processes than kill() reaches. /proc/self names our
 * own pid only when the two agree. Cached per process (a fork re-checks). */
static int procid_proc_is_ours(void)
{
    static pid_t checked_for;
    static int ours;
    pid_t me = getpid();
    if (__atomic_load_n(&checked_for, __ATOMIC_ACQUIRE) != me) {
        char link[32];
        ssize_t n = readlink("/proc/self", link, sizeof link - 1);
        int ok = 0;
        if (n > 0) {
            link[n] = 0;
            ok = strtol(link, NULL, 10) == me;
        }
        __atomic_store_n(&ours, ok, __ATOMIC_RELAXED);
        __atomic_store_n(&checked_for, me, __ATOMIC_RELEASE);
    }
    return __atomic_load_n(&ours, __ATOMIC_RELAXED);
}

static int procid_no_such_pid(int pid) { return kill(pid, 0) != 0 && errno == ESRCH; }

int ipckit_proc_identity(int pid, uint64_t *start_time)
{
    char path[48], buf[1024];
    *start_time = 0;
    if (pid <= 0)
        return -EINVAL;
    if (procid_no_such_pid(pid))
        return IPCKIT_PROC_GONE;
    if (!procid_proc_is_ours())
        return IPCKIT_PROC_ALIVE;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) /* hidepid hides it (ENOENT too): alive unless kill() now says otherwise */
        return errno == ENOENT && procid_no_such_pid(pid) ? IPCKIT_PROC_GONE : IPCKIT_PROC_ALIVE;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return IPCKIT_PROC_ALIVE;
    buf[n] = 0;
    /* The command name (field 2) may hold spaces and parentheses: fields after it
     * start after the last ')'. Field 3 is the state, 20 the thread count, 22 the
     * start time. */
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ')
        return IPCKIT_PROC_ALIVE;
    p += 2;
    char state = *p;
    long threads = 0;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (p == NULL)
            return IPCKIT_PROC_ALIVE;
        p++;
        if (field + 1 == 20)
            threads = strtol(p, NULL, 10);
    }
    /* A zombie is gone, unless it is a thread-group leader that returned from
     * main with pthread_exit() while other threads still run (they may hold it). */
    if ((state == 'Z' || state == 'X') && threads <= 1)
        return IPCKIT_PROC_GONE;
    char *end;
    unsigned long long t = strtoull(p, &end, 10);
    if (end != p)
        *start_time = t;
    return IPCKIT_PROC_ALIVE;
}
