/* The shared-memory message queue (backend="shm"): the ring, a unit of its own.
 *
 * The protocol is the module essay of src/ipckit/_mqueue_shm.py. Every call returns
 * 0 or a negative errno, never anything else; results come back in the named
 * structs below. Calls that can block take an absolute CLOCK_MONOTONIC deadline in
 * ns: -1 waits for ever, 0 never blocks (not even ~1 ms). Errors:
 *   -EAGAIN     deadline 0 and the call would have to wait
 *   -ETIMEDOUT  the deadline passed
 *   -EINTR      a signal arrived (or ipckit_shmq_interrupt): call again, same deadline
 *   -EBADF      the handle is closed (or closing)
 *   -EMSGSIZE   send: over max_msg; recv with refuse_big: the next message is
 *               longer than the buffer (result.len), and stays queued
 *   -ESTALE     our claim was taken over: another process judged this one dead
 *   -EBADMSG    the segment holds what no protocol step writes: ipckit_shmq_last_problem
 *               says what and where. A message with a bad length is dropped; a bad
 *               control word stays, and every call that reaches it fails again.
 */
#ifndef IPCKIT_SHMQUEUE_H
#define IPCKIT_SHMQUEUE_H

#include <stdint.h>

#define IPCKIT_SHMQ_VERSION 2
#define IPCKIT_SHMQ_HEADER_SIZE 1024
#define IPCKIT_SHMQ_SLOT_HEADER 64

/* ipckit_shmq_problem.reason */
#define IPCKIT_SHMQ_NOT_READY 1    /* attach: magic still 0 (being created, or not a queue) */
#define IPCKIT_SHMQ_BAD_MAGIC 2    /* attach: not an ipckit queue */
#define IPCKIT_SHMQ_BAD_VERSION 3  /* attach: value = the segment's layout version */
#define IPCKIT_SHMQ_BAD_LAYOUT 4   /* attach: header fields disagree with each other or the size */
#define IPCKIT_SHMQ_BAD_LENGTH 5   /* value = the length, where = slot index; message dropped */
#define IPCKIT_SHMQ_BAD_WORD 6     /* value = a slot control word no step leaves there, where = slot */
#define IPCKIT_SHMQ_BAD_POSITION 7 /* value = head, where = tail: head ran past tail */
#define IPCKIT_SHMQ_SHRUNK 8       /* the segment's file was truncated under the mapping */

/* What was wrong, for the last -EBADMSG of the calling thread. */
typedef struct {
    int reason;
    uint64_t value;
    uint64_t where;
} ipckit_shmq_problem;

/* The results of one call (zeroed by the call first). */
typedef struct {
    uint64_t len;    /* recv*: the message's length (refused: -EMSGSIZE; held) */
    uint64_t count;  /* send_many / recv_many: messages moved */
    uint64_t used;   /* recv_many: bytes of dst filled */
    uint64_t pos;    /* held: pass to ipckit_shmq_release when done */
    uint64_t offset; /* held: where its data starts, from the segment base */
    uint64_t held;   /* 1: it did not fit: the slot stays claimed, read it in place */
} ipckit_shmq_result;

/* A layout (ipckit_shmq_layout) or a handle's view of its ring (ipckit_shmq_stat). */
typedef struct {
    uint64_t capacity;
    uint64_t stride;  /* bytes per slot */
    uint64_t max_msg;
    uint64_t size;    /* bytes of the segment */
    uint64_t head;
    uint64_t tail;
    uint64_t abandoned; /* slots taken over from owners proven gone */
    uint64_t dropped;   /* messages dropped for a bad length */
    uint32_t version;
} ipckit_shmq_info;

struct ipckit_shmq_header;

/* Process-local handle: fill with ipckit_shmq_attach. */
typedef struct {
    int64_t spin_ns;  /* a blocked call spins this long before it sleeps */
    /* Adaptive spinning: spin_cur is this handle's current spin budget. A spin
     * that ends with the wanted slot resets it to spin_ns; one that ends in a
     * futex sleep anyway halves it (to 0 below 1 us), and a budget of 0 probes
     * with a full spin every 16th wait. Spinning pays only while the peer runs on
     * another CPU; when both share one, the spinner only delays the peer it waits
     * for (measured: 59 us round trips instead of ~8). */
    int64_t spin_cur;
    uint32_t spin_probe;
    /* The opening thread's receive buffer and result, set once from Python, so
     * the common recv() passes two arguments (ipckit_shmq_recv_scratch). */
    char *scratch;
    uint64_t scratch_cap;
    ipckit_shmq_result res;
    /* The layout, validated once by attach: the segment's own header fields are
     * never trusted again. */
    char *base;
    struct ipckit_shmq_header *hdr;
    char *slots;
    uint64_t cap, stride, max_msg, size, creator_ns;
    uint32_t version;
    uint32_t inflight;   /* calls of this handle now inside C (close() waits for 0) */
    uint32_t closing;
    uint32_t interrupts; /* bumped by ipckit_shmq_interrupt */
    uint32_t *broken;    /* set when the mapping lost pages (see the SIGBUS guard) */
    int guard;           /* index in the guard table, or -1 */
} ipckit_shmq;

/* The layout for capacity x max_msg: 0 (out filled) or -EINVAL (too large). */
int ipckit_shmq_layout(uint64_t capacity, uint64_t max_msg, ipckit_shmq_info *out);
/* Write the header of a fresh zero-filled segment of that layout; magic last. */
int ipckit_shmq_init(char *base, uint64_t size, uint64_t capacity, uint64_t max_msg);
/* Validate a mapped segment and fill *h: 0, or -EBADMSG (ipckit_shmq_last_problem:
 * NOT_READY, BAD_MAGIC, BAD_VERSION, BAD_LAYOUT, SHRUNK). */
int ipckit_shmq_attach(ipckit_shmq *h, char *base, uint64_t size);
/* Forget the mapping (after it is unmapped, or about to be). */
void ipckit_shmq_detach(ipckit_shmq *h);

int ipckit_shmq_send(ipckit_shmq *h, const char *data, uint64_t len, int64_t deadline_ns);
/* One message of two parts, a then b (ipckit.Queue: a chunk's header and its data),
 * each copied once into the slot. */
int ipckit_shmq_send2(ipckit_shmq *h, const char *a, uint64_t alen, const char *b, uint64_t blen, int64_t deadline_ns);
/* count messages stored back to back in data; r->count = how many were sent. */
int ipckit_shmq_send_many(ipckit_shmq *h, const char *data, const uint64_t *lens, uint64_t count,
                          int64_t deadline_ns, ipckit_shmq_result *r);
/* Take the next message. If it fits in cap bytes it is copied to dst and its slot
 * released (r->len). Otherwise: refuse_big -> -EMSGSIZE (r->len), message left
 * queued; else the slot stays claimed: r->held, r->pos, r->offset, r->len. */
int ipckit_shmq_recv(ipckit_shmq *h, char *dst, uint64_t cap, int refuse_big, int64_t deadline_ns,
                     ipckit_shmq_result *r);
/* ipckit_shmq_recv(h, h->scratch, h->scratch_cap, 0, deadline_ns, &h->res). */
int ipckit_shmq_recv_scratch(ipckit_shmq *h, int64_t deadline_ns);
/* Wait (up to the deadline) for one message, then take up to max_count without
 * waiting, packed into dst: lens[i], r->count, r->used. A first message larger than
 * cap is held as by ipckit_shmq_recv (r->count = 1). */
int ipckit_shmq_recv_many(ipckit_shmq *h, char *dst, uint64_t cap, uint64_t *lens, uint64_t max_count,
                          int64_t deadline_ns, ipckit_shmq_result *r);
int ipckit_shmq_release(ipckit_shmq *h, uint64_t pos);
/* Sleep as a blocked claim would (as a sleeper that senders / receivers wake) until
 * a send (writer != 0) or receive may succeed, claiming nothing: 0 (r->len = the
 * next message's length, for a reader), -ETIMEDOUT / -EAGAIN, -EBADF, -EINTR. r may
 * be NULL. */
int ipckit_shmq_wait_ready(ipckit_shmq *h, int writer, int64_t deadline_ns, ipckit_shmq_result *r);
/* Make the handle's blocked calls return -EINTR soon (for a cancelled wait). */
void ipckit_shmq_interrupt(ipckit_shmq *h);

int ipckit_shmq_count(ipckit_shmq *h, uint64_t *count);
int ipckit_shmq_stat(ipckit_shmq *h, ipckit_shmq_info *out);
/* Mark closed, wake this handle's blocked calls and wait until none is inside. */
void ipckit_shmq_close(ipckit_shmq *h);
void ipckit_shmq_last_problem(ipckit_shmq_problem *out);
/* Name an O_TMPFILE file (linkat through /proc/self/fd): 0 or -errno (EEXIST). */
int ipckit_shmq_link_tmpfile(int fd, const char *path);

#endif
