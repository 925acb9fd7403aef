"""``ipckit info``: placeholder, implemented by issue 2."""


def main() -> int:
    print("ipckit info: not implemented yet")
    return 0
