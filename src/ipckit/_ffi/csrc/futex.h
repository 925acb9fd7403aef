/* Futex wait/wake on a 32-bit word in shared memory (not FUTEX_PRIVATE: the word
 * is mapped by several processes). Both return 0 / a count, or a negative errno,
 * and never leave errno to the caller. */
#ifndef IPCKIT_FUTEX_H
#define IPCKIT_FUTEX_H

#include <stdint.h>

/* Sleep while *addr == expected, at most timeout_ns (relative; < 0: no limit).
 * 0 when woken, -EAGAIN if *addr != expected, -ETIMEDOUT, -EINTR, -EFAULT. */
int ipckit_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns);
/* Wake up to count sleepers of addr; returns how many were woken. */
int ipckit_futex_wake(uint32_t *addr, int count);

#endif
