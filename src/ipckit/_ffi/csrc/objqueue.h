/* ipckit.Queue's segment header: two robust tokens and the bookkeeping they guard.
 *
 * The design is the module essay of src/ipckit/_queue.py. The header sits at offset
 * 0 of a Queue's segment; the main ring and the lane (two shm rings, shmqueue.h)
 * follow at page-aligned offsets. Every call returns 0 or a negative errno, except
 * where said. Deadlines are absolute CLOCK_MONOTONIC ns: -1 waits for ever, 0 never
 * blocks (-EAGAIN).
 */
#ifndef IPCKIT_OBJQUEUE_H
#define IPCKIT_OBJQUEUE_H

#include <pthread.h>
#include <stdint.h>

#include "shmqueue.h"

#define IPCKIT_OBJQ_VERSION 1
#define IPCKIT_OBJQ_HEADER_SIZE 4096

/* A process-shared robust mutex, padded to its own cache line. */
typedef union {
    pthread_mutex_t m;
    char pad[64];
} ipckit_objq_token;

typedef struct {
    uint64_t magic; /* "IPCKOBJQ", stored last by ipckit_objq_init */
    uint32_t version;
    uint32_t header_size;
    uint64_t maxsize;   /* 0: unbounded */
    uint64_t ring_off, ring_size, lane_off, lane_size;
    uint64_t size;      /* of the whole segment */
    uint64_t check;     /* a hash of the fields above */
    char pad0[56];
    /* [128] The reader token Rd: every get() pops the main ring holding it, and a
     * get() that pops a marker keeps it while it reads the object from the lane. */
    ipckit_objq_token rd;
    uint64_t r_seq;  /* the object the holder is reading from the lane */
    uint64_t r_busy; /* 1 while it does */
    uint64_t r_skip; /* objects <= this were lost with a reader that died: discard */
    char pad1[40];
    /* [256] The writer token W: held by the one put() streaming an object into the lane. */
    ipckit_objq_token w;
    uint64_t w_seq;    /* the object being streamed */
    uint64_t w_busy;   /* 1 from before its marker is pushed until its last chunk is in */
    uint64_t next_seq; /* the next object's sequence number (from 1) */
    char pad2[40];
    /* [384] JoinableQueue: unfinished tasks, and a futex word bumped when they reach 0. */
    int64_t tasks;
    uint32_t tasks_seq;
    uint32_t tasks_sleepers;
} ipckit_objq_header;

/* ipckit_objq_lock / ipckit_objq_get: the previous holder died holding the token,
 * which is consistent again (the caller repairs what it guards). */
#define IPCKIT_OBJQ_OWNER_DIED 1
/* ipckit_objq_get: the popped record is a marker (its first byte 'M'); Rd stays held. */
#define IPCKIT_OBJQ_MARKER 2

/* Write a fresh (zero-filled) header; magic last. */
int ipckit_objq_init(ipckit_objq_header *q, uint64_t maxsize, uint64_t ring_off, uint64_t ring_size,
                     uint64_t lane_off, uint64_t lane_size, uint64_t size);
/* Check a mapped header against the segment's size: 0 or -EBADMSG (layout), -EPROTO (magic
 * or version). */
int ipckit_objq_validate(const ipckit_objq_header *q, uint64_t size);
/* Take a token (rd = 1: Rd, else W): 0, IPCKIT_OBJQ_OWNER_DIED, -ETIMEDOUT, -EAGAIN, or the
 * errno of a token that is not a working mutex (-EINVAL, -ENOTRECOVERABLE: corrupt). A
 * holder that died while reading (Rd) leaves r_skip = its object, r_busy = 0. */
int ipckit_objq_lock(ipckit_objq_header *q, int rd, int64_t deadline_ns);
int ipckit_objq_unlock(ipckit_objq_header *q, int rd);
/* get(): take Rd, pop one record of the main ring h into dst (cap >= its max message
 * size), release Rd unless the record is a marker (then r_seq = its object, r_busy = 1:
 * a marker is 'M', 7 bytes of padding, seq:u64, total:u64). Returns 0 / IPCKIT_OBJQ_MARKER
 * (r->len the record's length), or a negative errno from the token or the ring. */
int ipckit_objq_get(ipckit_objq_header *q, ipckit_shmq *h, char *dst, uint64_t cap, int64_t deadline_ns,
                    ipckit_shmq_result *r);
/* JoinableQueue: tasks += delta; -EOVERFLOW (nothing changed) if it would go below 0.
 * Wakes join() waiters when it reaches 0. *now = the new count. */
int ipckit_objq_tasks_add(ipckit_objq_header *q, int64_t delta, int64_t *now);
/* Wait until tasks == 0: 0, -ETIMEDOUT, -EAGAIN, -EINTR. Sleeps at most 200 ms at a time. */
int ipckit_objq_tasks_wait(ipckit_objq_header *q, int64_t deadline_ns);

#endif
