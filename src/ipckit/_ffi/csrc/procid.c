#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define IPCKIT_PROC_GONE 0
#define IPCKIT_PROC_ALIVE 1

static int ipckit_proc_identity(int pid, uint64_t *start_time)
{
    char path[48], buf[1024];
    *start_time = 0;
    if (pid <= 0)
        return -EINVAL;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return IPCKIT_PROC_GONE;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT && kill(pid, 0) != 0 && errno == ESRCH ? IPCKIT_PROC_GONE : IPCKIT_PROC_ALIVE;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return IPCKIT_PROC_ALIVE;
    buf[n] = 0;
    /* The command name (field 2) may hold spaces and parentheses: fields after it
     * start after the last ')'. Field 3 is the state, field 22 the start time. */
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ')
        return IPCKIT_PROC_ALIVE;
    p += 2;
    if (*p == 'Z' || *p == 'X')
        return IPCKIT_PROC_GONE;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (p == NULL)
            return IPCKIT_PROC_ALIVE;
        p++;
    }
    char *end;
    unsigned long long t = strtoull(p, &end, 10);
    if (end != p)
        *start_time = t;
    return IPCKIT_PROC_ALIVE;
}
