"""The benchmark suite (``ipckit bench``): statistics, rendering, compare, and end-to-end runs.

No timing assertions: the numbers themselves are the suite's output, not its test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ipckit_bench import cli, loops, report, runner, stats
from ipckit_bench.subjects import all_subjects

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STATUSES = {"ok", "n/a", "error", "interrupted"}


# ------------------------------------------------------------------ statistics


@pytest.mark.parametrize(
    "values, q, expected",
    [
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3, 4], 0, 1.0),
        ([1, 2, 3, 4], 100, 4.0),
        ([1, 2, 3, 4], 25, 1.75),  # rank 0.75 between 1 and 2
        ([1, 2, 3, 4], 99, 3.97),  # rank 2.97 between 3 and 4
        ([4, 1, 3, 2], 50, 2.5),  # order does not matter
        ([10], 99.9, 10.0),
        (list(range(1, 1001)), 99.9, 999.001),  # rank 998.001
        ([5, 5, 5], 99, 5.0),
    ],
)
def test_percentile_table(values, q, expected):
    assert stats.percentile(values, q) == pytest.approx(expected)


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1], 101)


def test_spread_and_median():
    assert stats.median([3, 1, 2]) == 2
    assert stats.spread([1, 2, 4]) == (1, 4, 150.0)  # (4-1)/2
    assert stats.spread([7]) == (7, 7, 0.0)


def test_latency_summary_and_combine():
    one = stats.summarize_latency([1000, 2000, 3000, 4000])
    assert one.n == 4
    assert one.median_us == pytest.approx(2.5)
    assert one.p99_us == pytest.approx(3.97)
    reps = [stats.LatencySummary(10, 1.0, 2.0, 3.0), stats.LatencySummary(10, 3.0, 6.0, 9.0),
            stats.LatencySummary(20, 2.0, 4.0, 6.0)]
    c = stats.combine_latency(reps)
    assert (c["n"], c["median_us"], c["p99_us"], c["p999_us"]) == (40, 2.0, 4.0, 6.0)
    assert c["spread_percent"] == pytest.approx(100.0)  # (3-1)/2


def test_throughput_combine():
    c = stats.combine_throughput([(100, 1.0), (300, 1.0), (400, 2.0)], 1000)
    assert c["msgs_per_s"] == 200  # rates 100, 300, 200
    assert c["mb_per_s"] == pytest.approx(0.2)
    assert c["spread_percent"] == pytest.approx(100.0)
    assert c["n"] == 800


def test_stamp_and_check():
    buf = bytearray(64)
    loops.stamp(buf, 7)
    assert loops.check(buf, 7, 64) is False
    loops.stamp(buf, 8, last=True)
    assert loops.check(bytes(buf), 8, 64) is True
    with pytest.raises(loops.IntegrityError):
        loops.check(buf, 9, 64)  # out of order
    with pytest.raises(loops.IntegrityError):
        loops.check(buf[:32], 8, 64)  # truncated
    buf[-1] ^= 1
    with pytest.raises(loops.IntegrityError):
        loops.check(buf, 8, 64)  # torn tail


def _chunk(seq, k, size, last=False):
    pack = loops.packer(size)
    msgs = [pack(s, s ^ loops.MAGIC) for s in range(seq, seq + k)]
    if last:
        s = seq + k - 1
        msgs[-1] = pack(s | loops.STOP, s ^ loops.MAGIC)
    return msgs


@pytest.mark.parametrize("use_numpy", [True, False])
@pytest.mark.parametrize("size", [16, 64, 100, 4096])
def test_check_chunk_accepts_and_rejects(size, use_numpy):
    if use_numpy:
        pytest.importorskip("numpy")
    base = 3 << 40
    good = _chunk(base, 40, size)
    loops.check_chunk(good, base, size, False, use_numpy)
    loops.check_chunk(_chunk(base, 40, size, last=True), base, size, True, use_numpy)
    bad_cases = {
        "out of order": good[:5] + [good[6], good[5]] + good[7:],
        "missing": good[:5] + good[6:],
        "torn tail": good[:-1] + [good[-1][:-1] + bytes([good[-1][-1] ^ 1])],
        "short and long": [good[0][:-8], good[1] + b"\0" * 8] + good[2:],
        "truncated": good[:-1] + [good[-1][: size // 2]],
    }
    for what, chunk in bad_cases.items():
        with pytest.raises(loops.IntegrityError):
            loops.check_chunk(chunk, base, size, False, use_numpy)
            pytest.fail(what)
    with pytest.raises(loops.IntegrityError):  # the flag on a message that is not the last
        loops.check_chunk(_chunk(base, 40, size, last=True), base, size, False, use_numpy)
    with pytest.raises(loops.IntegrityError):  # the last message without its flag
        loops.check_chunk(good, base, size, True, use_numpy)


class _Loopback:
    """An in-process endpoint: what is sent is received, in order (copied, as IPC would)."""

    def __init__(self, batch=0, corrupt_at=None, views=False):
        import collections

        self.q = collections.deque()
        self.corrupt_at = corrupt_at
        self.views = views
        self.count = 0
        if batch:
            self.batch = batch
            self.send_many = lambda msgs: [self.send(m) for m in msgs]
            self.recv_many = lambda: [self.recv() for _ in range(min(batch, len(self.q)) or 1)]

    def send(self, data):
        msg = bytearray(data)
        if self.count == self.corrupt_at:
            msg[-1] ^= 0xFF
        self.count += 1
        self.q.append(msg)

    def recv(self):
        msg = self.q.popleft()
        return memoryview(msg) if self.views else bytes(msg)


@pytest.mark.parametrize("size", [64, 4096, 8192])
@pytest.mark.parametrize("batch", [0, 32])
@pytest.mark.parametrize("views", [False, True])
def test_stream_loops_end_to_end(size, batch, views):
    ep = _Loopback(batch, views=views)
    base = 7 << 40
    _, sent = loops.stream_send(ep, size, 0.0, 300, 300, base=base)
    assert sent == 300 and len(ep.q) == 300
    _, received, lost = loops.stream_recv(ep, size, base=base)
    assert (received, lost) == (300, 0) and not ep.q


@pytest.mark.parametrize("size", [64, 8192])
def test_stream_recv_detects_corruption(size):
    ep = _Loopback(corrupt_at=123)
    loops.stream_send(ep, size, 0.0, 300, 300)
    with pytest.raises(loops.IntegrityError):
        loops.stream_recv(ep, size)


def test_stream_send_respects_counts_and_budget():
    ep = _Loopback()
    _, sent = loops.stream_send(ep, 64, 0.0, 1, 1)
    assert sent == 1 and loops.check(ep.q.popleft(), 0, 64) is True  # the only message is the last
    ep = _Loopback()
    _, sent = loops.stream_send(ep, 64, 0.02, 10, 10_000_000)  # stops on time, not on max_n
    assert 10 <= sent < 10_000_000
    assert loops.stream_recv(ep, 64)[1] == sent


def test_ping_echo_checks_replies():
    ep = _Loopback()
    ep.recv_orig = ep.recv
    samples = loops.ping(ep, 64, 0.0, 20, 20, 5)
    assert len(samples) == 20
    bad = _Loopback(corrupt_at=9)
    with pytest.raises(loops.IntegrityError):
        loops.ping(bad, 64, 0.0, 20, 20, 5)


def test_parse_size():
    assert [cli.parse_size(s) for s in ("64", "4K", "64KiB", "1M", "1MiB", "4096B")] == [64, 4096, 65536, 1 << 20, 1 << 20, 4096]
    for bad in ("x", "8", "-4K"):
        with pytest.raises(Exception):
            cli.parse_size(bad)


def test_select_patterns():
    subjects = all_subjects()
    ids = {s.id for s in runner.select(subjects, "ipckit.*")}
    assert ids and all(i.startswith("ipckit.") for i in ids)
    assert {s.id for s in runner.select(subjects, "mq-posix")} == {"ipckit.mq-posix", "raw.mq-posix", "c.mq-posix"}
    assert runner.select(subjects, "no-such-thing") == []


# ------------------------------------------------------------------ report


def _row(subject, group, metric, size, status="ok", **kw):
    row = {"subject": subject, "label": subject.upper(), "group": group, "family": "pipe",
           "raw": "raw.pipe" if group == "ipckit" else None, "c": "c.pipe" if group == "ipckit" else None,
           "metric": metric, "size": size, "placement": "cross", "status": status, "reason": kw.pop("reason", None),
           "note": None}
    row.update(kw)
    return row


def _lat(subject, group, median):
    return _row(subject, group, "latency", 64, median_us=median, p99_us=2 * median, p999_us=3 * median,
                n=1000, spread_percent=5.0)


def _thr(subject, group, size, rate):
    return _row(subject, group, "throughput", size, msgs_per_s=rate, mb_per_s=rate * size / 1e6, n=100,
                spread_percent=1.0, lost=0)


def _doc(results, interrupted=False):
    from ipckit_bench import machine

    runner.add_ratios(results, all_subjects())
    return report.document(machine.describe(["ipckit", "bench", "--test"]), runner.Config().as_dict(), results,
                           "2024-01-01T00:00:00", 1.5, interrupted)


def test_ratios_are_time_ratios():
    results = [_lat("ipckit.pipe", "ipckit", 30.0), _lat("raw.pipe", "raw", 20.0), _lat("c.pipe", "c", 10.0),
               _thr("ipckit.pipe", "ipckit", 64, 1000.0), _thr("raw.pipe", "raw", 64, 4000.0)]
    runner.add_ratios(results, all_subjects())
    assert results[0]["vs_raw"] == pytest.approx(1.5)
    assert results[0]["vs_c"] == pytest.approx(3.0)
    assert results[3]["vs_raw"] == pytest.approx(4.0)  # 4x the time per message
    assert results[3]["vs_c"] is None


def test_markdown_and_text_tables():
    results = [_lat("ipckit.pipe", "ipckit", 30.0), _lat("raw.pipe", "raw", 20.0),
               _row("c.pipe", "c", "latency", 64, status="n/a", reason="no C compiler"),
               _thr("ipckit.pipe", "ipckit", 64, 1000.0), _thr("raw.pipe", "raw", 64, 4000.0),
               _row("ipckit.pipe", "ipckit", "throughput", 1 << 20, status="error", reason="Boom: it broke")]
    doc = _doc(results)
    md = report.render_markdown(doc)
    assert "| subject | median us | p99 us | p99.9 us | spread | round trips | vs raw | vs C |" in md
    assert "| IPCKIT.PIPE | 30.0 | 60.0 | 90.0 | ±5% | 1000 | 1.50x | - |" in md
    assert "| C.PIPE | n/a [1] |" in md and "[1] n/a: no C compiler" in md
    assert "| subject | 64B | 1MiB |" in md
    assert "error [1]" in md and "Boom: it broke" in md
    text = report.render_text(doc)
    assert "Command: ipckit bench --test" in text and "Why pinned" in text
    assert "1.50x" in text


def test_json_schema_roundtrip(tmp_path):
    doc = _doc([_lat("ipckit.pipe", "ipckit", 30.0)], interrupted=True)
    path = tmp_path / "r.json"
    report.dump_json(doc, str(path))
    back = report.load_json(str(path))
    assert back["schema"] == report.SCHEMA
    assert back["interrupted"] is True and back["complete"] is False
    for key in ("cpu_model", "cpus_usable", "kernel", "python", "packages", "limits", "command"):
        assert key in back["machine"]
    (tmp_path / "bad.json").write_text('{"results": []}')
    with pytest.raises(ValueError):
        report.load_json(str(tmp_path / "bad.json"))


def test_compare(tmp_path):
    old = _doc([_lat("ipckit.pipe", "ipckit", 20.0), _thr("ipckit.pipe", "ipckit", 64, 1000.0)])
    new = _doc([_lat("ipckit.pipe", "ipckit", 40.0), _thr("ipckit.pipe", "ipckit", 64, 4000.0)])
    text = report.compare(old, new)
    lines = [line for line in text.splitlines() if line.startswith("IPCKIT.PIPE")]
    assert "2.00x" in lines[0] and "slower" in lines[0]
    assert "0.25x" in lines[1] and "faster" in lines[1]
    report.dump_json(old, str(tmp_path / "a.json"))
    report.dump_json(new, str(tmp_path / "b.json"))
    proc = subprocess.run([sys.executable, "-m", "ipckit", "bench", "--compare", str(tmp_path / "a.json"),
                           str(tmp_path / "b.json")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "slower" in proc.stdout


# ------------------------------------------------------------------ end to end


def _assert_no_objects(doc):
    import posix_ipc

    objects = doc["objects"]
    prefix = objects["prefix"]
    assert prefix.startswith("ipckit-bench-")
    assert [e for e in os.listdir("/dev/shm") if prefix in e] == []
    for name in objects["posix_names"]:
        for candidate in (name, name + "-ab", name + "-ba"):
            with pytest.raises(posix_ipc.ExistentialError):
                posix_ipc.MessageQueue(candidate)
    keys = set(objects["sysv_keys"])
    for kind in ("msg", "sem", "shm"):
        with open(f"/proc/sysvipc/{kind}") as f:
            rows = [int(line.split()[0]) & 0xFFFFFFFF for line in list(f)[1:]]
        assert keys.isdisjoint(rows), kind
    assert not os.path.exists(objects["tmpdir"])


def test_smoke_every_subject(tmp_path):
    pytest.importorskip("matplotlib")
    out_json, out_md, plots = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "plots"
    cmd = [sys.executable, "-m", "ipckit", "bench", "--iterations", "5", "--repeats", "2", "--sizes", "64,4K,64K,1M",
           "--json", str(out_json), "--markdown", str(out_md), "--plot", str(plots), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Round-trip latency" in proc.stdout
    assert not (tmp_path / cli.RESULTS_DIR).exists()  # explicit paths replace the default

    doc = report.load_json(str(out_json))
    assert doc["schema"] == report.SCHEMA and doc["complete"] is True
    assert doc["config"]["sizes"] == [64, 4096, 65536, 1 << 20]
    results = doc["results"]
    # Every subject appears with a latency row and a row per size: nothing silently dropped.
    for s in all_subjects():
        rows = [r for r in results if r["subject"] == s.id]
        assert len(rows) == 5, s.id
    for r in results:
        assert r["status"] in STATUSES
        assert r["status"] == "ok" or r["reason"], r
        if r["status"] == "ok" and r["metric"] == "latency":
            assert r["n"] == 10 and r["median_us"] > 0 and r["p99_us"] >= r["median_us"]
        if r["status"] == "ok" and r["metric"] == "throughput":
            assert r["msgs_per_s"] > 0 and r["mb_per_s"] > 0
    # Sizes a mechanism cannot carry are n/a with the reason.
    posix_1m = next(r for r in results if r["subject"] == "raw.mq-posix" and r["size"] == 1 << 20)
    assert posix_1m["status"] == "n/a" and "msgsize_max" in posix_1m["reason"]
    # The stdlib/posix_ipc/sysv_ipc raw subjects and the C limit must work on this host.
    for sid in ("raw.pipe", "raw.unix", "raw.mq-posix", "raw.mq-sysv", "raw.shm-sem", "mp.pipe", "mp.queue"):
        assert all(r["status"] in ("ok", "n/a") for r in results if r["subject"] == sid), sid
    md = out_md.read_text()
    assert "| subject | median us | p99 us | p99.9 us | spread | round trips | vs raw | vs C |" in md
    assert "| subject | 64B | 4KiB | 64KiB | 1MiB |" in md
    pngs = sorted(plots.glob("*.png"))
    assert [p.name for p in pngs] == ["latency-cross.png", "throughput-cross.png"]
    for p in pngs:
        assert p.read_bytes()[:8] == PNG_MAGIC
    _assert_no_objects(doc)


def test_ctrl_c_writes_partial_results(tmp_path):
    out_json = tmp_path / "partial.json"
    cmd = [sys.executable, "-m", "ipckit", "bench", "--only", "pipe,mq", "--json", str(out_json)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        # The progress line for the second subject means the run is well under way.
        seen = 0
        deadline = time.monotonic() + 60
        while seen < 2 and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line.startswith("[")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "INTERRUPTED" in stdout
    doc = json.loads(out_json.read_text())
    assert doc["interrupted"] is True and doc["complete"] is False
    assert doc["results"], "what was measured before Ctrl-C is kept"
    _assert_no_objects(doc)
    # No child of the bench is left behind.
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert children == []
