"""Pipe: placeholder, implemented by the Pipe/Socket work (issue 2)."""


class Pipe:
    def __init__(self) -> None:
        raise NotImplementedError("ipckit.Pipe is not implemented yet")
