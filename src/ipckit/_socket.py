"""Socket: placeholder, implemented by the Pipe/Socket work (issue 2)."""


class Socket:
    @classmethod
    def listen(cls, address: str, *, backlog: int = 128) -> "Socket":
        raise NotImplementedError("ipckit.Socket is not implemented yet")
