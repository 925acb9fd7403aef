/* The C limit for shared memory, the cross-core floor.
 *
 * "spin": a single-producer/single-consumer ring of fixed-size slots in a shared
 *   anonymous mapping; the reader busy-waits on the head index (yielding now and
 *   then so a same-CPU peer still runs). Nothing enters the kernel: this is what a
 *   cache line moving between two cores costs.
 * "sem": one slot per direction handed over with process-shared sem_t
 *   (futex-based): the same handoff as ipckit.SharedMemory + Semaphore.
 * Both live in anonymous memory inherited across fork(), so no name can leak.
 * See bench.h for the protocol and output. */
#define _GNU_SOURCE
#include <semaphore.h>
#include <stdatomic.h>

#include "bench.h"

#define RING_BYTES (8u << 20)

typedef struct {
    _Alignas(64) _Atomic uint64_t head; /* written by the producer */
    _Alignas(64) _Atomic uint64_t tail; /* written by the consumer */
    _Alignas(64) sem_t full, empty;     /* "sem" only */
    _Alignas(64) unsigned char data[];
} ring_t;

static ring_t *ring[2]; /* [0]: A -> B, [1]: B -> A */
static uint64_t nslots;
static size_t slot;

static int setup_common(const args_t *a, int sem) {
    slot = (a->size + 63) & ~(size_t)63;
    nslots = sem ? 1 : (RING_BYTES / slot < 2 ? 2 : RING_BYTES / slot);
    for (int i = 0; i < 2; i++) {
        ring[i] = mmap(NULL, sizeof(ring_t) + nslots * slot, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (ring[i] == MAP_FAILED) die("mmap");
        if (sem && (sem_init(&ring[i]->full, 1, 0) != 0 || sem_init(&ring[i]->empty, 1, 1) != 0)) die("sem_init");
    }
    return 0;
}

static int setup_spin(const args_t *a) { return setup_common(a, 0); }
static int setup_sem(const args_t *a) { return setup_common(a, 1); }

static void spin_send(int role, const unsigned char *m, size_t n) {
    ring_t *r = ring[role];
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    unsigned long spins = 0;
    while (head - atomic_load_explicit(&r->tail, memory_order_acquire) >= nslots) spin_pause(&spins);
    memcpy(r->data + (head % nslots) * slot, m, n);
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
}

static const unsigned char *spin_recv(int role, unsigned char *buf, size_t n) {
    (void)buf; (void)n;
    ring_t *r = ring[1 - role];
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    unsigned long spins = 0;
    while (atomic_load_explicit(&r->head, memory_order_acquire) == tail) spin_pause(&spins);
    return r->data + (tail % nslots) * slot; /* zero-copy: checked in place */
}

static void spin_release(int role) {
    ring_t *r = ring[1 - role];
    atomic_fetch_add_explicit(&r->tail, 1, memory_order_release);
}

static void sem_wait_all(sem_t *s) {
    while (sem_wait(s) != 0)
        if (errno != EINTR) die("sem_wait");
}

static void sem_send(int role, const unsigned char *m, size_t n) {
    ring_t *r = ring[role];
    sem_wait_all(&r->empty);
    memcpy(r->data, m, n);
    sem_post(&r->full);
}

static const unsigned char *sem_recv(int role, unsigned char *buf, size_t n) {
    (void)buf; (void)n;
    ring_t *r = ring[1 - role];
    sem_wait_all(&r->full);
    return r->data;
}

static void sem_release(int role) { sem_post(&ring[1 - role]->empty); }

static const mech_t mechs[] = {
    {"spin", setup_spin, spin_send, spin_recv, spin_release, NULL},
    {"sem", setup_sem, sem_send, sem_recv, sem_release, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

int main(int argc, char **argv) { return bench_main(argc, argv, mechs); }
