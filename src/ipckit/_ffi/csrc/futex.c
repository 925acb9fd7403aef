#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/syscall.h>

/* timeout_ns < 0 waits forever. The timeout is relative; callers recompute it
 * from their own monotonic deadline after each wake-up. Shared (not PRIVATE)
 * futexes, because the word lives in memory mapped by several processes. */
static int ipckit_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns)
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

static int ipckit_futex_wake(uint32_t *addr, int count)
{
    long rc = syscall(SYS_futex, addr, FUTEX_WAKE, count, NULL, NULL, 0);
    return rc == -1 ? -errno : (int)rc;
}

static uint32_t ipckit_load32(uint32_t *p) { return atomic_load((_Atomic uint32_t *)p); }
static void ipckit_store32(uint32_t *p, uint32_t v) { atomic_store((_Atomic uint32_t *)p, v); }
static uint32_t ipckit_fetch_add32(uint32_t *p, uint32_t v) { return atomic_fetch_add((_Atomic uint32_t *)p, v); }
static int ipckit_cas32(uint32_t *p, uint32_t expected, uint32_t desired)
{
    return atomic_compare_exchange_strong((_Atomic uint32_t *)p, &expected, desired);
}

static uint64_t ipckit_load64(uint64_t *p) { return atomic_load((_Atomic uint64_t *)p); }
static void ipckit_store64(uint64_t *p, uint64_t v) { atomic_store((_Atomic uint64_t *)p, v); }
static uint64_t ipckit_fetch_add64(uint64_t *p, uint64_t v) { return atomic_fetch_add((_Atomic uint64_t *)p, v); }
static int ipckit_cas64(uint64_t *p, uint64_t expected, uint64_t desired)
{
    return atomic_compare_exchange_strong((_Atomic uint64_t *)p, &expected, desired);
}
