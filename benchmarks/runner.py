"""Running the subjects: child processes, pinning, the command protocol, cleanup, progress.

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
from typing import Any, Callable, Optional

from . import loops, machine, stats
from .subjects import LATENCY, THROUGHPUT, Env, NotApplicable, Subject, all_subjects

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

    def estimate(self, metric: str) -> float:
        """Rough seconds for one measurement, for the progress bar."""
        return self.repeats * ((self.lat_budget if metric == LATENCY else self.thr_budget) + 0.03)

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
    tasks = []
    for placement in cfg.placements:
        for s in subjects:
            tasks.append(Task(s, placement, LATENCY, LATENCY_SIZE))
            for size in cfg.sizes:
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
            conn.send(("ok", _dispatch(ep, cmd)))
    except BaseException as exc:  # reported to the parent, which decides what to do
        with contextlib.suppress(Exception):
            conn.send(("fail", _describe(exc)))
    finally:
        if ep is not None:
            with contextlib.suppress(Exception):
                ep.close()
        conn.close()


def _dispatch(ep: Any, cmd: tuple) -> Any:
    op, args = cmd[0], cmd[1:]
    if op == "ping":
        return loops.ping(ep, *args).tolist()
    if op == "echo":
        return loops.echo(ep, *args)
    if op == "send":
        return loops.stream_send(ep, *args)
    if op == "recv":
        return loops.stream_recv(ep, *args)
    raise ValueError(f"unknown command {op!r}")


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
                    kind, payload = conn.recv()
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
    """A one-line progress bar on stderr: done/total, what runs now, time left."""

    def __init__(self, tasks: list[Task], cfg: Config, stream: Any = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.cfg = cfg
        self.estimates = [cfg.estimate(t.metric) for t in tasks]
        self.total = len(tasks)
        self.done = 0
        self.start = time.monotonic()
        self._last_line = ""

    def eta(self) -> float:
        left = sum(self.estimates[self.done :])
        spent_est = sum(self.estimates[: self.done])
        elapsed = time.monotonic() - self.start
        scale = elapsed / spent_est if spent_est > 0 and self.done >= 3 else 1.0
        return left * max(scale, 0.3)

    def show(self, task: Task) -> None:
        if not self.enabled:
            return
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        what = f"{task.subject.id} {task.metric} {fmt_size(task.size)} {task.placement}"
        eta = self.eta()
        line = f"[{bar}] {self.done}/{self.total} {what:<44} ~{int(eta // 60)}m{int(eta % 60):02d}s left"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(len(self._last_line[:120])))
        elif task.subject.id != getattr(self, "_last_subject", None):
            self.stream.write(line + "\n")
            self._last_subject = task.subject.id
        self._last_line = line
        self.stream.flush()

    def advance(self) -> None:
        self.done += 1

    def finish(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r" + " " * min(len(self._last_line), 120) + "\r")
            self.stream.flush()


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
    def __init__(self, cfg: Config, progress: bool = True, log: Callable[[str], None] = lambda s: None) -> None:
        self.cfg = cfg
        self.subjects = select(all_subjects(), cfg.only)
        self.tasks = plan(cfg, self.subjects)
        self.progress = Progress(self.tasks, cfg, enabled=progress)
        self.log = log
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
                self.progress.show(task)
                row, pair = self._measure(task, env, pair)
                out.results.append(row)
                self.progress.advance()
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
            reps = [self._repeat(task, pair) for _ in range(self.cfg.repeats)]
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
            for _ in range(self.cfg.repeats):
                reps.append(s.run(env, task.metric, task.size, self.cfg, cpus, self.timeout(task.metric)))  # type: ignore[attr-defined]
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


def add_ratios(results: list[dict], subjects: Optional[list[Subject]] = None) -> None:
    """Add vs_raw (ipckit rows) and vs_c (every row whose family has a C limit), from the same run.

    Both are ratios of time per message, this / other, so above 1 always means
    slower: for latency the median round trips, for throughput the inverse of the
    message rates (other msgs/s / this msgs/s).
    """
    family_c = {}
    for s in subjects if subjects is not None else all_subjects():
        if s.c and s.family not in family_c:
            family_c[s.family] = s.c
    index = {(r["subject"], r["metric"], r["size"], r["placement"]): r for r in results if r["status"] == "ok"}

    def value(r: dict) -> float:  # time per message
        return r["median_us"] if r["metric"] == LATENCY else 1.0 / r["msgs_per_s"]

    for r in results:
        if r["status"] != "ok":
            continue
        key = (r["metric"], r["size"], r["placement"])
        raw = index.get((r.get("raw") or "",) + key)
        r["vs_raw"] = stats.ratio(value(r), value(raw)) if raw else None
        c_id = r.get("c") or family_c.get(r["family"])
        c_row = index.get((c_id or "",) + key) if r["group"] != "c" else None
        r["vs_c"] = stats.ratio(value(r), value(c_row)) if c_row else None
