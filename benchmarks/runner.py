"""Running the subjects: child processes, pinning, the command protocol, cleanup, progress, ratios.

For each (placement, subject) the parent makes the kernel objects, forks two
children pinned with ``os.sched_setaffinity`` and keeps them for every
measurement of that subject. Per repeat it sends both a command ("ping"/"echo"
or "send"/"recv") and waits for both answers with a deadline. A child that
fails reports the exception; a child that hangs or dies is killed; either way
the pair is torn down, its objects removed, the failure recorded, and the suite
goes on (with a fresh pair for the next measurement). Ctrl-C stops the run: the
children are killed and reaped, every object removed, and the results so far
returned.
"""

from __future__ import annotations

import contextlib
import ctypes
import fnmatch
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import rich.progress
from rich.console import Console

from . import machine, stats
from .registry import all_subjects
from .subjects import LATENCY, THROUGHPUT, Env, NotApplicable, Subject

KiB, MiB = 1024, 1024 * 1024
DEFAULT_SIZES = (64, 4 * KiB, 64 * KiB, MiB)
LATENCY_SIZE = 64
PLACEMENTS = ("cross", "same", "unpinned")
PLACEMENT_TEXT = {
    "cross": "pinned to two different CPUs",
    "same": "both pinned to one CPU",
    "unpinned": "not pinned (the scheduler decides)",
}
_FORK = multiprocessing.get_context("fork")


@dataclass
class Config:
    mode: str = "quick"
    sizes: tuple[int, ...] = DEFAULT_SIZES
    placements: tuple[str, ...] = ("cross",)
    only: Optional[str] = None
    repeats: int = 5  # medians of 5: this VM has slow and fast states, single runs vary 2x
    lat_budget: float = 0.2  # seconds of measuring per repeat, after warm-up
    lat_min_n: int = 200
    lat_max_n: int = 200_000
    lat_warmup: int = 50
    thr_budget: float = 0.12
    thr_min_n: int = 8
    thr_max_bytes: int = 64 * MiB
    thr_max_n: int = 1_000_000

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(
            mode="full", placements=("cross", "same"), repeats=5, lat_budget=1.0, lat_min_n=10_000,
            lat_max_n=1_000_000, lat_warmup=1000, thr_budget=0.5, thr_min_n=64, thr_max_bytes=1024 * MiB,
        )

    def fixed_iterations(self, n: int) -> None:
        """Exactly n messages per repeat and no time budget (smoke tests)."""
        self.lat_min_n = self.lat_max_n = self.thr_min_n = self.thr_max_n = n
        self.thr_max_bytes = n * max(self.sizes + (LATENCY_SIZE,))
        self.lat_warmup = min(self.lat_warmup, n)
        self.lat_budget = self.thr_budget = 0.0

    def counts(self, metric: str, size: int) -> tuple[int, int]:
        if metric == LATENCY:
            return self.lat_min_n, self.lat_max_n
        max_n = max(self.thr_min_n, min(self.thr_max_n, self.thr_max_bytes // size))
        return self.thr_min_n, max_n

    def estimate(self, task: "Task") -> float:
        """Rough seconds for one measurement, for the progress display (0 for a size it cannot carry)."""
        if task.subject.unsupported(task.metric, task.size) is not None:
            return 0.0
        return self.repeats * ((self.lat_budget if task.metric == LATENCY else self.thr_budget) + 0.03)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Task:
    subject: Subject
    placement: str
    metric: str
    size: int


def select(subjects: list[Subject], only: Optional[str]) -> list[Subject]:
    """Subjects whose id, label, group or family matches one of the comma-separated patterns.

    A pattern without wildcards matches as a substring (``--only pipe``), otherwise
    as a shell glob (``--only 'ipckit.*'``); case-insensitive.
    """
    if not only:
        return subjects
    pats = [p.strip().lower() for p in only.split(",") if p.strip()]

    def hit(s: Subject) -> bool:
        fields = [s.id.lower(), s.label.lower(), s.group.lower(), s.family.lower()]
        for p in pats:
            for f in fields:
                if (any(ch in p for ch in "*?[") and fnmatch.fnmatchcase(f, p)) or p in f:
                    return True
        return False

    return [s for s in subjects if hit(s)]


def plan(cfg: Config, subjects: list[Subject]) -> list[Task]:
    """Per placement, per subject: latency at 64 B, then throughput at each size
    (the family's own sizes if it declares them, else ``--sizes``)."""
    tasks = []
    for placement in cfg.placements:
        for s in subjects:
            tasks.append(Task(s, placement, LATENCY, LATENCY_SIZE))
            for size in s.sizes or cfg.sizes:
                tasks.append(Task(s, placement, THROUGHPUT, size))
    return tasks


def placement_cpus(placement: str) -> tuple[Optional[int], Optional[int]]:
    cpus = machine.cpus()
    if placement == "unpinned":
        return None, None
    if placement == "same":
        return cpus[0], cpus[0]
    if len(cpus) < 2:
        raise NotApplicable("only one CPU is usable, so there is no cross-CPU placement")
    return cpus[0], cpus[1]


# ------------------------------------------------------------------ children


def _describe(exc: BaseException) -> tuple[str, str]:
    """("n/a" or "error", text) for an exception raised by a subject."""
    name = type(exc).__name__
    text = str(exc) or name
    if isinstance(exc, (NotImplementedError, NotApplicable, ImportError)) or name == "MessageTooLarge":
        return "n/a", text if isinstance(exc, NotApplicable) else f"{name}: {text}"
    return "error", f"{name}: {text}"


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child(subject: Subject, spec: Any, role: str, cpu: Optional[int], conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _die_with_parent()
    ep = None
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        _, peer_pid = conn.recv()
        ep = subject.open(spec, role, peer_pid)
        conn.send(("ready", None))
        while True:
            cmd = conn.recv()
            if cmd[0] == "exit":
                break
            prepare = getattr(ep, "prepare", None)
            if prepare is not None:
                prepare()
            conn.send(("ok", _dispatch(subject, ep, cmd)))
    except BaseException as exc:  # reported to the parent, which decides what to do
        with contextlib.suppress(Exception):
            conn.send(("fail", _describe(exc)))
    finally:
        if ep is not None:
            with contextlib.suppress(Exception):
                ep.close()
        conn.close()


def _dispatch(subject: Subject, ep: Any, cmd: tuple) -> Any:
    result = subject.drive(ep, cmd[0], cmd[1:])
    return result.tolist() if cmd[0] == "ping" else result  # an array of samples: a list pickles faster


class PairFailed(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class Pair:
    """Two pinned children running one subject; see the module docstring."""

    def __init__(self, subject: Subject, spec: Any, cpus: tuple, timeout: float) -> None:
        self.subject = subject
        self.procs: list[Any] = []
        self.conns: list[Any] = []
        for role, cpu in zip("ab", cpus):
            mine, theirs = _FORK.Pipe()
            proc = _FORK.Process(target=_child, args=(subject, spec, role, cpu, theirs), daemon=True)
            proc.start()
            theirs.close()
            self.procs.append(proc)
            self.conns.append(mine)
        pids = [p.pid for p in self.procs]
        self.conns[0].send(("open", pids[1]))
        self.conns[1].send(("open", pids[0]))
        self._collect(timeout, "opening")

    def _collect(self, timeout: float, what: str) -> list[Any]:
        results: list[Any] = [None, None]
        pending = {0, 1}
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PairFailed("error", f"timed out after {timeout:.0f} s while {what}")
            ready = multiprocessing.connection.wait([self.conns[i] for i in pending], timeout=left)
            for conn in ready:
                i = self.conns.index(conn)
                try:
                    kind, payload = self.conns[i].recv()
                except (EOFError, OSError):
                    self.procs[i].join(1)
                    raise PairFailed("error", f"child {'ab'[i]} died (exit code {self.procs[i].exitcode}) while {what}")
                if kind == "fail":
                    raise PairFailed(*payload)
                results[i] = payload
                pending.discard(i)
        return results

    def run(self, cmd_a: tuple, cmd_b: tuple, timeout: float) -> list[Any]:
        self.conns[1].send(cmd_b)
        self.conns[0].send(cmd_a)
        return self._collect(timeout, f"running {cmd_a[0]}/{cmd_b[0]}")

    def close(self, graceful: bool = True) -> None:
        """Stop and reap both children (killing them if they do not exit promptly)."""
        if graceful:
            for conn in self.conns:
                with contextlib.suppress(Exception):
                    conn.send(("exit",))
            for proc in self.procs:
                proc.join(2)
        for proc in self.procs:
            if proc.is_alive():
                with contextlib.suppress(Exception):
                    proc.kill()
            proc.join(5)
        for conn in self.conns:
            conn.close()
        self.procs, self.conns = [], []


# ------------------------------------------------------------------ progress


class Progress:
    """What runs now, its repeat, how much is done and the time left, on stderr.

    On a terminal: a live rich display, redrawn from this thread at every repeat
    (``auto_refresh=False``: no refresh thread, so nothing holds a lock across the
    forks of the children, and stdout/stderr are not redirected). Elsewhere (logs,
    CI, pipes): one plain line per (subject, placement). The work is weighted by
    each measurement's expected seconds, so rich's rate gives a time left that
    already counts the quick n/a rows for what they are."""

    def __init__(self, tasks: list[Task], cfg: Config, console: Optional[Console] = None, enabled: bool = True) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal and not self.console.is_dumb_terminal
        self.weights = [cfg.estimate(t) for t in tasks]
        self.repeats = cfg.repeats
        self.total = len(tasks)
        self.done = 0
        self._group: Any = None
        self._bar = rich.progress.Progress(
            rich.progress.TextColumn("{task.description}", markup=False),
            rich.progress.BarColumn(),
            rich.progress.TextColumn("{task.fields[step]}", markup=False),
            rich.progress.TimeRemainingColumn(),
            console=self.console, auto_refresh=False, transient=True, redirect_stdout=False, redirect_stderr=False,
            speed_estimate_period=60.0, disable=not self.live,
        )
        self._id = self._bar.add_task("", total=max(sum(self.weights), 1e-9), step="")

    def start(self) -> None:
        if self.live:
            self._bar.start()

    def time_left(self) -> Optional[float]:
        return self._bar.tasks[0].time_remaining

    def begin(self, task: Task) -> None:
        """A measurement starts."""
        what = f"{task.subject.id} {task.metric} {fmt_size(task.size)} {task.placement}"
        self._bar.update(self._id, description=f"{what:<44}", step=self._step(0), refresh=self.live)
        group = (task.subject.id, task.placement)
        if self.enabled and not self.live and group != self._group:
            left = self.time_left()
            eta = "" if left is None else f": ~{int(left // 60)}m{int(left % 60):02d}s left"
            self.console.print(f"[{self.done + 1}/{self.total}] {task.subject.label}, {task.placement}{eta}",
                               markup=False, soft_wrap=True)
        self._group = group

    def repeat(self, done: int) -> None:
        """``done`` repeats of the current measurement are over."""
        self._bar.update(self._id, advance=self.weights[self.done] / max(self.repeats, 1), step=self._step(done),
                         refresh=self.live)

    def end(self) -> None:
        """The current measurement is over (measured, n/a, or failed)."""
        self.done += 1
        self._bar.update(self._id, completed=sum(self.weights[: self.done]), refresh=self.live)

    def finish(self) -> None:
        self._bar.stop()

    def _step(self, repeats_done: int) -> str:
        return f"{min(self.done + 1, self.total)}/{self.total}  repeat {min(repeats_done + 1, self.repeats)}/{self.repeats}"


def fmt_size(size: int) -> str:
    if size >= MiB and size % MiB == 0:
        return f"{size // MiB}MiB"
    if size >= KiB and size % KiB == 0:
        return f"{size // KiB}KiB"
    return f"{size}B"


# ------------------------------------------------------------------ the suite


@dataclass
class Outcome:
    results: list[dict] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    objects: dict = field(default_factory=dict)  # every name/key/dir used, all removed


class Suite:
    def __init__(self, cfg: Config, progress: bool = True, console: Optional[Console] = None) -> None:
        self.cfg = cfg
        self.subjects = select(all_subjects(), cfg.only)
        self.tasks = plan(cfg, self.subjects)
        self.progress = Progress(self.tasks, cfg, console=console, enabled=progress)
        self._run_counter = 0

    def timeout(self, metric: str) -> float:
        budget = self.cfg.lat_budget if metric == LATENCY else self.cfg.thr_budget
        return 30.0 + 20 * budget

    def run(self) -> Outcome:
        out = Outcome()
        start = time.monotonic()
        tmpdir = tempfile.mkdtemp(prefix="ipckit-bench-")
        env = Env(tmpdir)
        pair: Optional[Pair] = None
        current: Optional[Task] = None
        try:
            self.progress.start()
            group = None
            for task in self.tasks:
                if (task.subject.id, task.placement) != group:
                    # A new (subject, placement): the previous pair and its objects go.
                    if pair is not None:
                        pair.close()
                        pair = None
                    env.cleanup()
                    group = (task.subject.id, task.placement)
                current = task
                self.progress.begin(task)
                row, pair = self._measure(task, env, pair)
                out.results.append(row)
                self.progress.end()
                current = None
            if pair is not None:
                pair.close()
                pair = None
        except KeyboardInterrupt:
            out.interrupted = True
            if current is not None:
                out.results.append(self._row(current, "interrupted", "stopped by Ctrl-C"))
        finally:
            # Nothing may stop the cleanup, not even a second Ctrl-C.
            old = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                if pair is not None:
                    pair.close(graceful=False)
                env.cleanup()
                shutil.rmtree(tmpdir, ignore_errors=True)
                self.progress.finish()
            finally:
                signal.signal(signal.SIGINT, old)
        out.seconds = time.monotonic() - start
        out.objects = {"prefix": env.prefix, "posix_names": env.all_names, "sysv_keys": env.all_keys, "tmpdir": tmpdir}
        return out

    def _row(self, task: Task, status: str, reason: Optional[str] = None, **values: Any) -> dict:
        s = task.subject
        row = {
            "subject": s.id, "label": s.label, "group": s.group, "family": s.family, "raw": s.raw, "c": s.c,
            "baselines": list(s.baselines),
            "metric": task.metric, "size": task.size, "placement": task.placement,
            "status": status, "reason": reason, "note": s.note or None,
        }
        row.update(values)
        return row

    def _measure(self, task: Task, env: Env, pair: Optional[Pair]) -> tuple[dict, Optional[Pair]]:
        s = task.subject
        reason = s.unavailable() or s.unsupported(task.metric, task.size)
        if reason is not None:
            return self._row(task, "n/a", reason), pair
        try:
            cpus = placement_cpus(task.placement)
            if s.group == "c":
                return self._measure_c(task, env, cpus), pair
            if pair is None:
                try:
                    spec = s.setup(env)
                except Exception as exc:
                    status, text = _describe(exc)
                    return self._row(task, status, text), None
                pair = Pair(s, spec, cpus, timeout=30)
            reps = []
            for i in range(self.cfg.repeats):
                reps.append(self._repeat(task, pair))
                self.progress.repeat(i + 1)
            return self._summarize(task, reps), pair
        except NotApplicable as exc:
            return self._row(task, "n/a", str(exc)), pair
        except PairFailed as exc:
            if pair is not None:
                pair.close(graceful=False)
            env.cleanup()  # the next measurement starts from fresh objects
            return self._row(task, exc.status, exc.reason), None

    def _repeat(self, task: Task, pair: Pair) -> Any:
        cfg, size = self.cfg, task.size
        min_n, max_n = cfg.counts(task.metric, size)
        timeout = self.timeout(task.metric)
        if task.metric == LATENCY:
            samples, _ = pair.run(("ping", size, cfg.lat_budget, min_n, max_n, cfg.lat_warmup), ("echo", size), timeout)
            return ("latency", samples)
        self._run_counter += 1
        base = self._run_counter << 40
        lossy = task.subject.lossy
        (t0, _sent), (t1, received, lost) = pair.run(
            ("send", size, cfg.thr_budget, min_n, max_n, lossy, base), ("recv", size, lossy, base), timeout
        )
        return ("throughput", received, t1 - t0, lost)

    def _measure_c(self, task: Task, env: Env, cpus: tuple) -> dict:
        s = task.subject
        reps = []
        try:
            for i in range(self.cfg.repeats):
                reps.append(s.run(env, task.metric, task.size, self.cfg, cpus, self.timeout(task.metric)))  # type: ignore[attr-defined]
                self.progress.repeat(i + 1)
        except NotApplicable as exc:
            return self._row(task, "n/a", str(exc))
        except Exception as exc:
            return self._row(task, "error", f"{type(exc).__name__}: {exc}")
        finally:
            env.cleanup()
        reps = [r if r[0] == "latency" else (*r, 0) for r in reps]
        return self._summarize(task, reps)

    def _summarize(self, task: Task, reps: list) -> dict:
        if task.metric == LATENCY:
            summary = stats.combine_latency([stats.summarize_latency(r[1]) for r in reps])
            return self._row(task, "ok", None, **summary)
        lost = sum(r[3] for r in reps)
        summary = stats.combine_throughput([(r[1], r[2] / 1e9) for r in reps], task.size)
        row = self._row(task, "ok", None, **summary)
        row["lost"] = lost
        if lost:
            sent = lost + summary["n"]
            row["reason"] = f"lost {lost} of {sent} datagrams ({100.0 * lost / sent:.1f}%)"
        return row


def add_ratios(results: list[dict]) -> None:
    """Add the ratios of every ok row to the rows it compares with, measured in the same run.

    ``vs_raw``: an ipckit row against its raw twin (row ``raw``); ``vs_c``: any row
    but the C ones against its family's C limit (row ``c``); ``vs_baselines``: an
    ipckit row against each of its family's baselines (row ``baselines``), by
    subject id. All are ratios of time per message, this / other, so above 1
    always means slower: for latency the median round trips, for throughput the
    inverse of the message rates (other msgs/s / this msgs/s). A ratio whose other
    row did not measure (n/a, error, not run) is None.
    """
    index = {(r["subject"], r["metric"], r["size"], r["placement"]): r for r in results if r["status"] == "ok"}

    def vs(r: dict, other: Optional[str]) -> Optional[float]:
        o = index.get((other or "", r["metric"], r["size"], r["placement"]))
        return stats.ratio(time_per_message(r), time_per_message(o)) if o is not None else None

    for r in results:
        if r["status"] != "ok":
            continue
        r["vs_raw"] = vs(r, r.get("raw"))
        r["vs_c"] = vs(r, r.get("c")) if r["group"] != "c" else None
        r["vs_baselines"] = {b: vs(r, b) for b in r.get("baselines") or ()}


def time_per_message(r: dict) -> float:
    """Microseconds per round trip (latency) or seconds per message (throughput) of an ok row."""
    return r["median_us"] if r["metric"] == LATENCY else 1.0 / r["msgs_per_s"]
