"""The public surface: every name of the contract (docs/reference/contract.md) is exported, __all__ is sorted and complete."""

import inspect

import ipckit

API_NAMES = {
    "Pipe", "MessageQueue", "SharedMemory", "Semaphore", "Signal", "Socket", "Message", "SignalInfo",
    "IPCError", "Timeout", "ExistsError", "NotFoundError", "ClosedError", "MessageTooLarge",
    "CorruptError", "Queue", "SimpleQueue", "JoinableQueue",
}


def test_every_api_name_is_exported():
    missing = API_NAMES - set(ipckit.__all__)
    assert not missing, f"contract names missing from ipckit.__all__: {sorted(missing)}"
    for name in API_NAMES:
        assert hasattr(ipckit, name)


def test_all_is_sorted_and_resolves():
    assert list(ipckit.__all__) == sorted(ipckit.__all__)
    assert len(set(ipckit.__all__)) == len(ipckit.__all__)
    for name in ipckit.__all__:
        assert getattr(ipckit, name) is not None


def test_public_names_are_not_leaking_private_modules():
    public = {n for n in dir(ipckit) if not n.startswith("_")}
    # Submodules a user may import explicitly are allowed; everything else must be in __all__.
    allowed_modules = {"testing", "lowlevel", "aio"}
    extra = {n for n in public - set(ipckit.__all__) if not inspect.ismodule(getattr(ipckit, n))}
    assert not extra, f"public names not in __all__: {sorted(extra)}"
    assert {n for n in public if inspect.ismodule(getattr(ipckit, n))} <= allowed_modules


def test_classes_report_module_ipckit():
    for name in ipckit.__all__:
        obj = getattr(ipckit, name)
        if inspect.isclass(obj):
            assert obj.__module__ == "ipckit", f"{name}.__module__ is {obj.__module__}"


def test_version_is_a_string():
    assert isinstance(ipckit.__version__, str) and ipckit.__version__.count(".") >= 1


def test_py_typed_marker_is_installed():
    import pathlib

    assert (pathlib.Path(ipckit.__file__).parent / "py.typed").exists()


AIO_NAMES = {"Pipe", "MessageQueue", "Semaphore", "Socket", "Signal", "Queue", "SimpleQueue", "JoinableQueue", "wrap"}


def test_aio_has_the_contract_names_sorted_and_shown_as_ipckit_aio():
    import ipckit.aio

    assert AIO_NAMES <= set(ipckit.aio.__all__)
    assert list(ipckit.aio.__all__) == sorted(ipckit.aio.__all__)
    public = {n for n in dir(ipckit.aio) if not n.startswith("_")}
    assert public - set(ipckit.aio.__all__) == set(), "public names of ipckit.aio not in its __all__"
    for name in ipckit.aio.__all__:
        assert getattr(ipckit.aio, name).__module__ == "ipckit.aio", name
