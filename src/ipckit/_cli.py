"""The ``ipckit`` command: ``ipckit info`` (host limits and features) and ``ipckit bench``.

Heavy imports happen inside the subcommands, so ``ipckit --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="ipckit", description="Linux IPC toolkit: host information and benchmarks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="print this host's IPC limits and which ipckit features work here")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    sub.add_parser("bench", help="benchmark every primitive on this host (ipckit bench --help)", add_help=False)
    if args[:1] == ["bench"]:
        from ipckit_bench.cli import main as bench_main

        return bench_main(args[1:])
    ns = parser.parse_args(args)
    if ns.command == "info":
        from ._info import main as info_main

        return info_main(["--json"] if ns.json else [])
    parser.print_help()
    return 0 if ns.command is None and not args else 2
