/* The C limit for byte streams: two pipe(2)s, or one AF_UNIX SOCK_STREAM socketpair.
 * Messages have a fixed size known to both sides, so no framing is needed (the
 * Python subjects pay for a length prefix; that difference is part of what the
 * ratio shows). See bench.h for the protocol and output. */
#define _GNU_SOURCE
#include <sys/socket.h>

#include "bench.h"

static int fd_tx[2], fd_rx[2]; /* per role: where it writes, where it reads */

static int setup_pipe(const args_t *a) {
    (void)a;
    int ab[2], ba[2];
    if (pipe(ab) != 0 || pipe(ba) != 0) die("pipe");
    fd_tx[0] = ab[1]; fd_rx[1] = ab[0];
    fd_tx[1] = ba[1]; fd_rx[0] = ba[0];
    return 0;
}

static int setup_unix(const args_t *a) {
    (void)a;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
    fd_tx[0] = fd_rx[0] = sv[0];
    fd_tx[1] = fd_rx[1] = sv[1];
    return 0;
}

static void fd_send(int role, const unsigned char *m, size_t n) {
    if (write_all(fd_tx[role], m, n) != 0) die("write");
}

static const unsigned char *fd_recv(int role, unsigned char *buf, size_t n) {
    if (read_all(fd_rx[role], buf, n) != 0) die("read");
    return buf;
}

static void nothing(int role) { (void)role; }

static const mech_t mechs[] = {
    {"pipe", setup_pipe, fd_send, fd_recv, nothing, NULL},
    {"unix", setup_unix, fd_send, fd_recv, nothing, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

int main(int argc, char **argv) { return bench_main(argc, argv, mechs); }
