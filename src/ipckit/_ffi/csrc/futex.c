/* A unit of its own: see futex.h. */
#include "common.h"

#include <linux/futex.h>
#include <sys/syscall.h>

#include "futex.h"

int ipckit_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        tsp = &ts;
    }
    long rc = syscall(SYS_futex, addr, FUTEX_WAIT, expected, tsp, NULL, 0);
    return rc == -1 ? -errno : 0;
}

int ipckit_futex_wake(uint32_t *addr, int count)
{
    long rc = syscall(SYS_futex, addr, FUTEX_WAKE, count, NULL, NULL, 0);
    return rc == -1 ? -errno : (int)rc;
}
