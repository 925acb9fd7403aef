"""SharedMemory: placeholder, implemented by issue 3."""


class SharedMemory:
    @classmethod
    def create(cls, name: object, size: int, **kwargs: object) -> "SharedMemory":
        raise NotImplementedError("ipckit.SharedMemory is not implemented yet")
