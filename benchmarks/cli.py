"""``ipckit bench``: parse the options, run the suite, print and save the report.

Output: the text report goes to stdout (styled on a terminal, plain text
otherwise), the progress display to stderr; unless ``--no-save`` (or an explicit
``--json``/``--markdown``), the JSON and markdown are also written to
``./bench-results/bench-<timestamp>.json|.md``. Ctrl-C stops the run and still
prints and writes what was measured (exit status 130).

``--compare OLD.json NEW.json`` compares two saved runs; ``--compare OLD.json``
runs the suite and compares the new run with OLD. Either way the exit status is 1
when a vs-raw ratio grew by more than 10 % (report.RATIO_GROWTH), else 0.

This module never imports ``ipckit._cli``: ``ipckit bench`` imports this one
lazily, and ``python -m ipckit_bench`` enters here directly.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
from typing import Optional, Sequence

from . import machine, report, runner
from .registry import all_subjects, unavailable_families

RESULTS_DIR = "bench-results"


def parse_size(text: str) -> int:
    t = text.strip().lower().replace("ib", "").replace("b", "")
    scale = 1
    if t and t[-1] in "km":
        scale = 1024 if t[-1] == "k" else 1024 * 1024
        t = t[:-1]
    try:
        size = int(float(t) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 64, 4K, 64KiB, 1M)") from None
    if size < 16:
        raise argparse.ArgumentTypeError(f"sizes must be at least 16 bytes (a message carries two 8-byte stamps), got {text!r}")
    return size


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ipckit bench",
        description="Measure every ipckit primitive on this host, beside the raw mechanism, "
        "the libraries users pick instead, and the same mechanism in C.",
        epilog="See benchmarks/README.md for what each number means.",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short run, under 2 minutes (default)")
    mode.add_argument("--full", action="store_true", help=">= 10k round trips per repeat, 5 repeats, cross and same CPU")
    p.add_argument("--only", metavar="PATTERN", help="subjects to run: comma-separated substrings or globs "
                   "of id/label/group/family, e.g. 'pipe', 'ipckit.*', 'mq-posix,c'")
    p.add_argument("--sizes", metavar="LIST", help="throughput message sizes, e.g. '64,4K,64K,1M' (default)")
    p.add_argument("--placement", metavar="LIST", help="cross, same, unpinned (comma-separated); "
                   "default: cross (quick), cross,same (full)")
    p.add_argument("--unpinned", action="store_true", help="also run unpinned")
    p.add_argument("--repeats", type=int, metavar="N", help="repeats per value (default 5)")
    p.add_argument("--iterations", type=int, metavar="N", help="exactly N messages per repeat, no time budget (smoke tests)")
    p.add_argument("--json", metavar="PATH", help="write the JSON results here")
    p.add_argument("--markdown", metavar="PATH", help="write the markdown report here")
    p.add_argument("--plot", metavar="DIR", help="write PNG charts into DIR (needs matplotlib)")
    p.add_argument("--no-save", action="store_true", help=f"do not write ./{RESULTS_DIR}/ by default")
    p.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    p.add_argument("--list", action="store_true", help="list the subjects and exit")
    p.add_argument("--compare", nargs="+", metavar="RUN.json",
                   help="OLD.json NEW.json: compare two runs and exit; OLD.json alone: run, then compare with OLD. "
                   "Exit status 1 if a vs-raw ratio grew by more than 10%%")
    return p


def config_from(ns: argparse.Namespace, parser: argparse.ArgumentParser) -> runner.Config:
    cfg = runner.Config.full() if ns.full else runner.Config.quick()
    if ns.sizes:
        try:
            cfg.sizes = tuple(parse_size(s) for s in ns.sizes.split(",") if s.strip())
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
    if ns.placement:
        places = tuple(p.strip() for p in ns.placement.split(",") if p.strip())
        bad = [p for p in places if p not in runner.PLACEMENTS]
        if bad:
            parser.error(f"--placement: unknown {bad}; choose from {', '.join(runner.PLACEMENTS)}")
        cfg.placements = places
    if ns.unpinned and "unpinned" not in cfg.placements:
        cfg.placements = cfg.placements + ("unpinned",)
    if ns.repeats is not None:
        if ns.repeats < 1:
            parser.error("--repeats must be >= 1")
        cfg.repeats = ns.repeats
    if ns.iterations is not None:
        if ns.iterations < 1:
            parser.error("--iterations must be >= 1")
        cfg.fixed_iterations(ns.iterations)
    cfg.only = ns.only
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    ns = parser.parse_args(args)
    old: Optional[dict] = None
    if ns.compare:
        if len(ns.compare) > 2:
            parser.error("--compare takes OLD.json, or OLD.json NEW.json")
        try:
            runs = [report.load_json(p) for p in ns.compare]
        except (OSError, ValueError) as exc:
            print(f"ipckit bench --compare: {exc}", file=sys.stderr)
            return 2
        if len(runs) == 2:
            return _compared(runs[0], runs[1])
        old = runs[0]

    cfg = config_from(ns, parser)
    if ns.list:
        _list(cfg)
        return 0

    suite = runner.Suite(cfg, progress=not ns.no_progress)
    if not suite.tasks:
        print(f"ipckit bench: no subject matches --only {cfg.only!r} (see --list)", file=sys.stderr)
        return 2
    started = datetime.datetime.now().astimezone()
    # SIGTERM stops the run like Ctrl-C does: clean up, then write what was measured.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        outcome = suite.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    runner.add_ratios(outcome.results)
    doc = report.document(
        machine.describe(["ipckit", "bench", *args]), cfg.as_dict(), outcome.results,
        started.isoformat(timespec="seconds"), outcome.seconds, outcome.interrupted, outcome.objects,
    )
    report.print_report(report.renderables(doc), sys.stdout)
    sys.stdout.flush()
    _save(doc, ns, started)
    status = 130 if outcome.interrupted else 0
    if old is not None:
        sys.stdout.write("\n")
        flagged = _compared(old, doc)
        status = status or flagged
    return status


def _compared(old: dict, new: dict) -> int:
    """Print the comparison of two runs; 1 if a vs-raw ratio is flagged, else 0."""
    cmp = report.compare(old, new)
    report.print_report(report.compare_renderables(cmp), sys.stdout)
    return 1 if cmp.flagged else 0


def _list(cfg: runner.Config) -> None:
    subjects = runner.select(all_subjects(), cfg.only)
    width = max([20] + [len(s.id) for s in subjects])
    for s in subjects:
        why = s.unavailable()
        print(f"{s.id:<{width}} {s.group:<7} {s.family:<10} {s.label}" + (f"  (n/a: {why})" if why else ""))
    for family, why in unavailable_families():
        print(f"(family {family.id}: {family.title}: left out, {why})")


def _save(doc: dict, ns: argparse.Namespace, started: datetime.datetime) -> None:
    json_path, md_path = ns.json, ns.markdown
    if not ns.no_save and json_path is None and md_path is None:
        os.makedirs(RESULTS_DIR, exist_ok=True)
        stem = os.path.join(RESULTS_DIR, "bench-" + started.strftime("%Y%m%d-%H%M%S"))
        json_path, md_path = stem + ".json", stem + ".md"
    written = []
    if json_path:
        report.dump_json(doc, json_path)
        written.append(json_path)
    if md_path:
        with open(md_path, "w") as f:
            f.write(report.render_markdown(doc))
        written.append(md_path)
    if ns.plot:
        try:
            from .plot import write_plots

            written += write_plots(doc, ns.plot)
        except ImportError:
            print("ipckit bench: --plot needs matplotlib (pip install 'ipckit[bench]'); no charts written",
                  file=sys.stderr)
    if written:
        print("wrote " + ", ".join(written), file=sys.stderr)
