/* The C limit for kernel message queues: POSIX mq_send/mq_receive and SysV
 * msgsnd/msgrcv, one queue per direction. POSIX queues are unlinked as soon as
 * both descriptors exist (they stay usable), so a crash leaves nothing behind;
 * SysV queues use the keys KEY and KEY+1 given by the Python suite, which removes
 * them afterwards whatever happens. See bench.h for the protocol and output. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <mqueue.h>
#include <sys/ipc.h>
#include <sys/msg.h>

#include "bench.h"

static mqd_t mq_tx[2], mq_rx[2];
static int msq_tx[2], msq_rx[2];
static struct { long mtype; unsigned char data[]; } *msgbuf[2];

static int setup_posix(const args_t *a) {
    char name_ab[300], name_ba[300];
    snprintf(name_ab, sizeof name_ab, "%s-ab", a->name);
    snprintf(name_ba, sizeof name_ba, "%s-ba", a->name);
    struct mq_attr attr = {0};
    attr.mq_maxmsg = 10;
    attr.mq_msgsize = (long)a->size;
    mqd_t ab = mq_open(name_ab, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
    if (ab == (mqd_t)-1) die("mq_open");
    mq_unlink(name_ab);
    mqd_t ba = mq_open(name_ba, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
    if (ba == (mqd_t)-1) die("mq_open");
    mq_unlink(name_ba);
    mq_tx[0] = ab; mq_rx[1] = ab;
    mq_tx[1] = ba; mq_rx[0] = ba;
    return 0;
}

static void posix_send(int role, const unsigned char *m, size_t n) {
    while (mq_send(mq_tx[role], (const char *)m, n, 0) != 0)
        if (errno != EINTR) die("mq_send");
}

static const unsigned char *posix_recv(int role, unsigned char *buf, size_t n) {
    ssize_t r;
    while ((r = mq_receive(mq_rx[role], (char *)buf, n, NULL)) < 0)
        if (errno != EINTR) die("mq_receive");
    if ((size_t)r != n) { fprintf(stderr, "short message\n"); exit(1); }
    return buf;
}

static int setup_sysv(const args_t *a) {
    int ab = msgget((key_t)a->key, IPC_CREAT | IPC_EXCL | 0600);
    if (ab < 0) die("msgget");
    int ba = msgget((key_t)(a->key + 1), IPC_CREAT | IPC_EXCL | 0600);
    if (ba < 0) { msgctl(ab, IPC_RMID, NULL); die("msgget"); }
    msq_tx[0] = ab; msq_rx[1] = ab;
    msq_tx[1] = ba; msq_rx[0] = ba;
    for (int i = 0; i < 2; i++) {
        msgbuf[i] = malloc(sizeof(long) + a->size);
        if (!msgbuf[i]) die("malloc");
        msgbuf[i]->mtype = 1;
    }
    return 0;
}

static void sysv_send(int role, const unsigned char *m, size_t n) {
    memcpy(msgbuf[role]->data, m, n);
    msgbuf[role]->mtype = 1;
    while (msgsnd(msq_tx[role], msgbuf[role], n, 0) != 0)
        if (errno != EINTR) die("msgsnd");
}

static const unsigned char *sysv_recv(int role, unsigned char *buf, size_t n) {
    ssize_t r;
    (void)buf;
    while ((r = msgrcv(msq_rx[role], msgbuf[role], n, 0, 0)) < 0)
        if (errno != EINTR) die("msgrcv");
    if ((size_t)r != n) { fprintf(stderr, "short message\n"); exit(1); }
    return msgbuf[role]->data;
}

static void sysv_cleanup(void) {
    msgctl(msq_tx[0], IPC_RMID, NULL);
    msgctl(msq_tx[1], IPC_RMID, NULL);
}

static void nothing(int role) { (void)role; }

static const mech_t mechs[] = {
    {"posix", setup_posix, posix_send, posix_recv, nothing, NULL},
    {"sysv", setup_sysv, sysv_send, sysv_recv, nothing, sysv_cleanup},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

int main(int argc, char **argv) { return bench_main(argc, argv, mechs); }
