/* What every C file of ipckit includes first: the module's own source (before the
 * shims, which may rely on these headers and nothing else) and each separately
 * compiled unit. */
#ifndef IPCKIT_COMMON_H
#define IPCKIT_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#endif
