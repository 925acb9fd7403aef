#include <sys/mman.h>
#include <sys/stat.h>

static int ipckit_shm_open(const char *name, int oflag, unsigned int mode)
{
    int fd = shm_open(name, oflag | O_CLOEXEC, (mode_t)mode);
    return fd == -1 ? -errno : fd;
}

static int ipckit_shm_unlink(const char *name)
{
    return shm_unlink(name) == -1 ? -errno : 0;
}
