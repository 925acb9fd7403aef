/* The module's first shim, after common.h. IPCKIT_FFI_VERSION comes from _build.py. */
static const char *ipckit_ffi_version(void) { return IPCKIT_FFI_VERSION; }
