"""ipckit's benchmark suite (installed as ``ipckit_bench``); run it with ``ipckit bench``."""
