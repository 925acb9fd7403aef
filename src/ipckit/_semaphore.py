"""Semaphore: placeholder, implemented by issue 3."""


class Semaphore:
    @classmethod
    def create(cls, name: object, value: int = 1, **kwargs: object) -> "Semaphore":
        raise NotImplementedError("ipckit.Semaphore is not implemented yet")
