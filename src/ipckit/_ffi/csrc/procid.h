/* What can be proven about a process, for every "is the owner of this slot, lock or
 * object still alive?" question (the shm ring, ipckit ls/rm): see _procfs.py. */
#ifndef IPCKIT_PROCID_H
#define IPCKIT_PROCID_H

#include <stdint.h>

#define IPCKIT_PROC_GONE 0
#define IPCKIT_PROC_ALIVE 1

/* IPCKIT_PROC_GONE: no process has this pid (kill: ESRCH), or it is a zombie with no
 * thread left, which can never finish what it held. IPCKIT_PROC_ALIVE otherwise
 * (EPERM from kill means it exists; a zombie thread-group leader whose other threads
 * still run is alive), with *start_time = its start time in clock ticks after boot
 * (field 22 of /proc/PID/stat), or 0 when /proc does not show it (hidepid, another
 * pid namespace, a /proc mounted for another pid namespace): then nothing more can
 * be proven. A negative errno for pid <= 0. */
int ipckit_proc_identity(int pid, uint64_t *start_time);

#endif
