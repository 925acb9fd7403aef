"""The C limit: the same mechanisms in C, compiled at run time with the system compiler.

The programs (c_pipe.c, c_mq.c, c_shm.c + bench.h, installed with the package)
are compiled once into a cache directory keyed by a hash of their source and
the compiler, and run once per repeat (see bench.h for their protocol). With no
compiler every C subject reports "n/a: no C compiler".
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

from .subjects import NotApplicable, Subject, posix_mq_too_big, sysv_mq_too_big

HERE = Path(__file__).resolve().parent
_BUILT: dict[str, Any] = {}  # program -> path, or the reason it could not be built


def compiler() -> Optional[str]:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc) or shutil.which("gcc") or shutil.which("clang")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ipckit-bench"


def build(program: str) -> str:
    """Path of the compiled program; raises NotApplicable if it cannot be built."""
    if program in _BUILT:
        result = _BUILT[program]
        if isinstance(result, NotApplicable):
            raise result
        return result
    cc = compiler()
    try:
        if cc is None:
            raise NotApplicable("no C compiler (install gcc or set CC)")
        src = HERE / f"{program}.c"
        digest = hashlib.sha256(src.read_bytes() + (HERE / "bench.h").read_bytes() + cc.encode()).hexdigest()[:16]
        out = cache_dir() / f"{program}-{digest}"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + f".tmp{os.getpid()}")
            cmd = [cc, "-O2", "-o", str(tmp), str(src), f"-I{HERE}", "-lrt", "-pthread"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                first = (proc.stderr.strip().splitlines() or ["?"])[0]
                raise NotApplicable(f"C compile failed: {first}")
            os.replace(tmp, out)
        _BUILT[program] = str(out)
        return str(out)
    except NotApplicable as exc:
        _BUILT[program] = exc
        raise


class CSubject(Subject):
    group = "c"
    program = ""
    mech = ""

    def unavailable(self) -> Optional[str]:
        try:
            build(self.program)
        except NotApplicable as exc:
            return str(exc)
        return None

    def run(self, env: Any, metric: str, size: int, cfg: Any, cpus: tuple, timeout: float) -> Any:
        """One repeat: ("latency", samples_ns) or ("throughput", messages, elapsed_ns)."""
        prog = build(self.program)
        lat = metric == "latency"
        budget = cfg.lat_budget if lat else cfg.thr_budget
        min_n, max_n = cfg.counts(metric, size)
        warmup = cfg.lat_warmup if lat else 0
        cpu_a, cpu_b = (-1 if c is None else c for c in cpus)
        argv = [
            prog, self.mech, "lat" if lat else "thr", str(size), repr(budget), str(min_n), str(max_n),
            str(warmup), str(cpu_a), str(cpu_b), env.name("c"), str(env.key(2)),
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{os.path.basename(prog)} failed: {proc.stderr.strip()[:200]}")
        lines = proc.stdout.split("\n")
        head = lines[0].split()
        if lat:
            n = int(head[1])
            return ("latency", [int(x) for x in lines[1 : n + 1]])
        return ("throughput", int(head[1]), int(head[2]))


class CPipe(CSubject):
    id, label, family, program, mech = "c.pipe", "C pipe(2)", "pipe", "c_pipe", "pipe"


class CUnix(CSubject):
    id, label, family, program, mech = "c.unix", "C socketpair(AF_UNIX)", "unix", "c_pipe", "unix"


class CMqPosix(CSubject):
    id, label, family, program, mech = "c.mq-posix", "C mq_send/mq_receive", "mq-posix", "c_mq", "posix"
    too_big = posix_mq_too_big


class CMqSysv(CSubject):
    id, label, family, program, mech = "c.mq-sysv", "C msgsnd/msgrcv", "mq-sysv", "c_mq", "sysv"
    too_big = sysv_mq_too_big


class CSem(CSubject):
    id, label, family, program, mech = "c.sem", "C shared memory + sem_t", "shm-sem", "c_shm", "sem"


class CSpin(CSubject):
    id, label, family, program, mech = "c.spin", "C shared-memory spin ring", "mq-shm", "c_shm", "spin"
    note = "busy-waiting SPSC ring: the cross-core floor, no system call"
