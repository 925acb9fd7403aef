"""The ``ipckit`` command: ``info`` (host limits and features), ``ls`` / ``rm`` (named IPC
objects, leftovers of crashed programs included) and ``bench``.

Heavy imports happen inside the subcommands, so ``ipckit --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional, Sequence

KINDS = ("posix-shm", "posix-sem", "posix-mq", "sysv-shm", "sysv-sem", "sysv-msg")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="ipckit", description="Linux IPC toolkit: host information and benchmarks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="print this host's IPC limits and which ipckit features work here")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    ls = sub.add_parser("ls", help="list named IPC objects (POSIX shm, semaphores, queues; SysV) and who uses them")
    ls.add_argument("--orphaned", action="store_true",
                    help="only objects proven orphaned: every process that could use them was inspected and none does")
    ls.add_argument("--prefix", default="", help="only POSIX names starting with this (e.g. /myapp-)")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rm = sub.add_parser("rm", help="remove named IPC objects by POSIX name or SysV key, or every orphan under a prefix")
    rm.add_argument("targets", nargs="*", metavar="NAME|KEY", help="a POSIX name such as /jobs, or a SysV key (1234, 0x4d2)")
    rm.add_argument("--kind", choices=KINDS, help="only objects of this kind")
    rm.add_argument("--orphaned", action="store_true",
                    help="remove every object proven orphaned whose POSIX name starts with --prefix (never one whose state is unknown)")
    rm.add_argument("--prefix", default="", help="with --orphaned: the name prefix (required, e.g. /myapp-)")
    rm.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    sub.add_parser("bench", help="benchmark every primitive on this host (ipckit bench --help)", add_help=False)
    if args[:1] == ["bench"]:
        return _bench(args[1:])
    ns = parser.parse_args(args)
    if ns.command == "info":
        from ._info import main as info_main

        return info_main(["--json"] if ns.json else [])
    if ns.command == "ls":
        return _ls(ns.orphaned, ns.prefix, ns.json)
    if ns.command == "rm":
        return _rm(parser, ns)
    parser.print_help()
    return 0 if ns.command is None and not args else 2


def _bench(args: list[str]) -> int:
    # Imported here, not at the top: the suite is a separate package (ipckit_bench) with
    # heavier dependencies (the bench extra), and it never imports this module back.
    try:
        from ipckit_bench.cli import main as bench_main
    except ImportError as exc:
        if exc.name not in ("rich", "numpy", "ipckit_bench"):
            raise
        print(f"ipckit bench needs the bench extra: pip install 'ipckit[bench]' ({exc.name} is missing)",
              file=sys.stderr)
        return 2
    return bench_main(args)


def _printable(text: object) -> str:
    """*text* safe to print: a name in /dev/shm may hold any byte (newlines, terminal
    escapes, bytes that are not UTF-8). Backslashes, unprintable characters and
    undecodable bytes (surrogate escapes) are written as backslash escapes."""
    text = str(text)
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte os.listdir could not decode
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def _label(o: Any) -> str:
    return f"{o.kind} {_printable(o.name) if isinstance(o.name, str) else hex(o.name)}"


def _matching(orphaned: bool, prefix: str) -> tuple[list[Any], list[Any]]:
    """(objects matching, unknown objects --orphaned left out)."""
    from ._leftovers import ORPHANED, UNKNOWN, list_objects

    found = list_objects(prefix)
    if not orphaned:
        return found, []
    return [o for o in found if o.state == ORPHANED], [o for o in found if o.state == UNKNOWN]


def _note_unknown(command: str, unknown: list[Any], verb: str) -> None:
    if not unknown:
        return
    reasons = sorted({o.why for o in unknown})
    print(f"ipckit {command}: {len(unknown)} object(s) {verb}: whether they are in use is unknown ({'; '.join(reasons)})",
          file=sys.stderr)


def _ls(orphaned: bool, prefix: str, as_json: bool) -> int:
    found, unknown = _matching(orphaned, prefix)
    if as_json:
        import json

        print(json.dumps([o.as_dict() for o in found], indent=2))
        _note_unknown("ls", unknown, "not listed")
        return 0
    rows = [("KIND", "NAME", "SIZE", "OWNER", "MODE", "STATE", "USED BY", "DETAIL")]
    for o in found:
        name = _printable(o.name) if isinstance(o.name, str) else f"{o.name:#x} (id {o.ident})"
        used = ",".join(map(str, o.users)) if o.users else "-"
        rows.append((o.kind, name, str(o.size), _printable(o.owner), f"{o.mode:04o}", o.state.replace("-", " "), used,
                     _printable(o.detail)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if len(rows) == 1:
        print("(no named IPC objects" + (" matching" if orphaned or prefix else "") + ")")
    for why in sorted({o.why for o in found if o.orphaned is None}):
        print(f"unknown: {why}")
    _note_unknown("ls", unknown, "not listed")
    return 0


def _parse_target(text: str) -> "str | int":
    if text.startswith("/"):
        from ._naming import check_posix_name

        return check_posix_name(text, "NAME")
    try:
        key = int(text, 0)
    except ValueError:
        raise ValueError(f"{text!r} is neither a POSIX name (/name) nor a SysV key (1234, 0x4d2)") from None
    from ._naming import check_sysv_key

    return check_sysv_key(key, "KEY")  # type: ignore[return-value]


def _rm(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> int:
    from ._errors import IPCError
    from ._leftovers import list_objects, remove

    if ns.orphaned == bool(ns.targets):
        parser.error("rm takes either NAME|KEY arguments or --orphaned --prefix PREFIX")
    missing: list[str] = []
    unknown: list[Any] = []
    if ns.orphaned:
        if not ns.prefix.startswith("/") or len(ns.prefix) < 2:
            parser.error("rm --orphaned needs --prefix naming the program's objects, e.g. --prefix /myapp-")
        victims, unknown = _matching(True, ns.prefix)
    else:
        try:
            wanted = [_parse_target(t) for t in ns.targets]
        except (TypeError, ValueError) as exc:
            parser.error(str(exc))
        objects = list_objects(inspect=False)  # named explicitly: removed whether in use or not
        victims = [o for o in objects if o.name in wanted]
        missing = [t for t, w in zip(ns.targets, wanted) if not any(o.name == w for o in victims)]
        for t in missing:
            print(f"ipckit rm: no IPC object named {_printable(t)}", file=sys.stderr)
    if ns.kind:
        victims = [o for o in victims if o.kind == ns.kind]
        unknown = [o for o in unknown if o.kind == ns.kind]
    status = 1 if not ns.orphaned and (missing or not victims) else 0
    for o in victims:
        if ns.dry_run:
            print(f"would remove {_label(o)}")
            continue
        try:
            remove(o)
        except IPCError as exc:
            print(f"ipckit rm: {_label(o)}: {_printable(exc)}", file=sys.stderr)
            status = 1
        else:
            print(f"removed {_label(o)}")
    for o in unknown:
        print(f"kept {_label(o)}: unknown whether it is in use ({o.why})")
    return status
