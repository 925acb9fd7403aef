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

from ipckit_bench import cli, loops, registry, report, runner, stats
from ipckit_bench.registry import all_subjects

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

    runner.add_ratios(results)
    return report.document(machine.describe(["ipckit", "bench", "--test"]), runner.Config().as_dict(), results,
                           "2024-01-01T00:00:00", 1.5, interrupted)


def test_ratios_are_time_ratios():
    results = [_lat("ipckit.pipe", "ipckit", 30.0), _lat("raw.pipe", "raw", 20.0), _lat("c.pipe", "c", 10.0),
               _thr("ipckit.pipe", "ipckit", 64, 1000.0), _thr("raw.pipe", "raw", 64, 4000.0)]
    runner.add_ratios(results)
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
    text = report.compare_text(report.compare(old, new))
    lines = [line for line in text.splitlines() if line.startswith("IPCKIT.PIPE")]
    assert "2.00x" in lines[0] and "slower" in lines[0]
    assert "0.25x" in lines[1] and "faster" in lines[1]
    assert "No vs-raw ratio grew" in text  # no raw twin in these runs: nothing to flag
    report.dump_json(old, str(tmp_path / "a.json"))
    report.dump_json(new, str(tmp_path / "b.json"))
    proc = subprocess.run([sys.executable, "-m", "ipckit", "bench", "--compare", str(tmp_path / "a.json"),
                           str(tmp_path / "b.json")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "slower" in proc.stdout


# ------------------------------------------------------------------ summary line and --compare flags


def _rated(subject, metric, size, placement, vs_raw, label=None):
    """An ok ipckit row with a given vs-raw ratio (the values behind it do not matter here)."""
    row = _lat(subject, "ipckit", 10.0) if metric == "latency" else _thr(subject, "ipckit", size, 1000.0)
    row.update(placement=placement, vs_raw=vs_raw, vs_c=None, label=label or subject.upper())
    return row


def _synthetic(rows):
    from ipckit_bench import machine

    return report.document(machine.describe(["ipckit", "bench", "--test"]), runner.Config().as_dict(), rows,
                           "2024-01-01T00:00:00", 1.5, False)


def test_summary_names_the_worst_vs_raw_ratio_of_any_metric_and_placement():
    rows = [
        _rated("ipckit.pipe", "latency", 64, "cross", 1.10),
        _rated("ipckit.pipe", "throughput", 4096, "cross", 1.30),
        _rated("ipckit.signal", "latency", 64, "cross", 0.90, label="ipckit Signal"),
        _rated("ipckit.mq-sysv", "throughput", 64, "same", 1.64, label="ipckit MessageQueue sysv"),
        _rated("ipckit.mq-sysv", "latency", 64, "same", 1.21, label="ipckit MessageQueue sysv"),
        _row("ipckit.udp", "ipckit", "latency", 64, status="error", reason="Boom"),  # no ratio: not counted
        _lat("raw.pipe", "raw", 10.0),  # raw rows have no vs raw
    ]
    s = report.summary(rows)
    assert (s["subject"], s["metric"], s["size"], s["placement"]) == ("ipckit.mq-sysv", "throughput", 64, "same")
    assert s["vs_raw"] == pytest.approx(1.64)
    assert (s["ratios"], s["over_target"]) == (5, 3)  # 1.30, 1.64, 1.21 are over 1.2x
    line = report.summary_line(s)
    assert line == ("Worst vs raw: 1.64x, ipckit MessageQueue sysv, throughput 64B, same-CPU; "
                    "3 of 5 vs-raw ratios above 1.2x")
    doc = _synthetic(rows)
    assert doc["summary"] == s  # and it is saved in the JSON
    assert report.render_text(doc).rstrip().splitlines()[-1] == line  # the text report ends with it
    assert f"**{line}**" in report.render_markdown(doc)


def test_summary_without_any_raw_twin():
    doc = _synthetic([_lat("raw.pipe", "raw", 10.0), _lat("c.pipe", "c", 5.0)])
    assert doc["summary"] is None
    assert "Worst vs raw: none measured" in report.render_text(doc)


def test_summary_from_the_run_matches_add_ratios():
    rows = [_lat("ipckit.pipe", "ipckit", 30.0), _lat("raw.pipe", "raw", 20.0),
            _thr("ipckit.pipe", "ipckit", 64, 1000.0), _thr("raw.pipe", "raw", 64, 4000.0)]
    s = _doc(rows)["summary"]  # _doc runs add_ratios: latency 1.5x, throughput 4x
    assert (s["subject"], s["metric"], s["vs_raw"]) == ("ipckit.pipe", "throughput", pytest.approx(4.0))


def _pair_of_runs(old_new):
    """Two runs with the given (old, new) vs-raw ratio per ipckit row."""
    keys = [("ipckit.pipe", "latency", 64, "cross"), ("ipckit.pipe", "throughput", 4096, "cross"),
            ("ipckit.unix", "latency", 64, "cross"), ("ipckit.unix", "latency", 64, "same"),
            ("ipckit.tcp", "throughput", 64, "cross")]
    old = _synthetic([_rated(*k, o) for k, (o, _) in zip(keys, old_new)])
    new = _synthetic([_rated(*k, n) for k, (_, n) in zip(keys, old_new)])
    return old, new


def test_compare_flags_vs_raw_growth_over_ten_percent():
    old, new = _pair_of_runs([
        (1.00, 1.12),  # +12 %: flagged
        (1.00, 1.09),  # +9 %: not flagged
        (2.00, 1.20),  # better: not flagged
        (0.50, 0.56),  # +12 % while still far under 1x: flagged, growth is what counts
        (1.50, 1.50),  # same
    ])
    cmp = report.compare(old, new)
    flagged = [(c.new["subject"], c.new["metric"], c.new["placement"]) for c in cmp.flagged]
    assert flagged == [("ipckit.pipe", "latency", "cross"), ("ipckit.unix", "latency", "same")]
    assert [c.ratio_growth for c in cmp.changes] == pytest.approx([1.12, 1.09, 0.6, 1.12, 1.0])
    text = report.compare_text(cmp)
    assert "FLAGGED: 2 vs-raw ratio(s) grew by more than 10%" in text
    assert "IPCKIT.PIPE (latency 64B, cross-CPU: 1.00x -> 1.12x)" in text
    pipe_lines = [line for line in text.splitlines() if line.startswith("IPCKIT.PIPE")]
    assert "vs raw +12%" in pipe_lines[0] and "vs raw" not in pipe_lines[1].split("->")[-1]
    assert "Old: Worst vs raw: 2.00x" in text and "New: Worst vs raw: 1.50x" in text
    assert "**FLAGGED: 2" in report.compare_markdown(cmp)


def test_compare_does_not_flag_rows_without_a_ratio_on_both_sides():
    old, new = _pair_of_runs([(None, 1.5), (1.0, None), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0)])
    new["results"][2].update(status="error", reason="Boom")  # vs raw 1.0 -> error
    cmp = report.compare(old, new)
    assert cmp.flagged == []
    assert "No vs-raw ratio grew by more than 10%." in report.compare_text(cmp)


@pytest.mark.parametrize("grow, status", [(1.2, 1), (1.05, 0)])
def test_compare_exit_status_of_two_files(tmp_path, grow, status):
    old, new = _pair_of_runs([(1.0, grow)] * 5)
    report.dump_json(old, str(tmp_path / "old.json"))
    report.dump_json(new, str(tmp_path / "new.json"))
    proc = subprocess.run([sys.executable, "-m", "ipckit", "bench", "--compare", str(tmp_path / "old.json"),
                           str(tmp_path / "new.json")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert ("FLAGGED: 5" in proc.stdout) == bool(status)
    assert "\x1b[" not in proc.stdout  # a pipe gets plain text


@pytest.mark.parametrize("old_ratio, status", [(1e-9, 1), (1e9, 0)])
def test_compare_a_new_run_with_an_old_file(tmp_path, old_ratio, status):
    # An old run whose ratio no real run can go under (or over): the outcome does not depend on timing.
    old = _synthetic([_rated("ipckit.pipe", "latency", 64, "cross", old_ratio)])
    report.dump_json(old, str(tmp_path / "old.json"))
    cmd = [sys.executable, "-m", "ipckit", "bench", "--only", "ipckit.pipe,raw.pipe", "--iterations", "3",
           "--repeats", "1", "--sizes", "64", "--no-save", "--no-progress", "--compare", str(tmp_path / "old.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert "Round-trip latency" in proc.stdout and "Comparison" in proc.stdout
    assert ("FLAGGED: 1 vs-raw" in proc.stdout) == bool(status)


def test_compare_rejects_bad_arguments(tmp_path):
    base = [sys.executable, "-m", "ipckit", "bench", "--compare"]
    (tmp_path / "x.json").write_text("[]")
    for extra, code in ((["a", "b", "c"], 2), ([str(tmp_path / "x.json")], 2), ([str(tmp_path / "missing.json")], 2)):
        proc = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert proc.returncode == code, proc.stderr


# ------------------------------------------------------------------ registry and imports


def test_registry_is_consistent_and_ordered():
    registry.check()
    subjects = all_subjects()
    families = [f.id for f in registry.FAMILIES]
    ranks = [families.index(s.family) for s in subjects]
    assert ranks == sorted(ranks)  # rows come family by family, in the declared order
    ids = {s.id for s in subjects}
    for s in subjects:
        assert s.raw is None or s.raw in ids
        if s.group == "ipckit" and registry.family(s.family).c:
            assert s.c == registry.family(s.family).c  # the family's C limit, filled in
    assert [s.id for s in subjects if s.family == "mq-posix"] == ["ipckit.mq-posix", "raw.mq-posix", "c.mq-posix"]


def test_registry_check_rejects_bad_references():
    from ipckit_bench.subjects import Subject

    class Stray(Subject):
        id, label, group, family, raw = "ipckit.stray", "stray", "ipckit", "no-such-family", "raw.nothing"

    with pytest.raises(ValueError) as err:
        registry.check(registry.FAMILIES, registry.SUBJECTS + (Stray,))
    assert "ipckit.stray: unknown family 'no-such-family'" in str(err.value)
    assert "ipckit.stray: raw 'raw.nothing' is not a registered subject" in str(err.value)
    with pytest.raises(ValueError, match="duplicate subject ipckit.pipe"):
        registry.check(registry.FAMILIES, registry.SUBJECTS + (registry.SUBJECTS[0],))
    bad_family = registry.Family("pipe2", "x", baselines=("mp.nothing",))
    with pytest.raises(ValueError, match="family pipe2"):
        registry.check(registry.FAMILIES + (bad_family,), registry.SUBJECTS)


def test_family_availability_sizes_and_baselines():
    from ipckit_bench.subjects import Subject

    class A(Subject):
        id, label, group, family = "ipckit.a", "A", "ipckit", "fam"

    class B(Subject):
        id, label, group, family = "peer.b", "B", "peer", "fam"

    fam = registry.Family("fam", "test family", baselines=("peer.b",), sizes=(64, 1 << 26))
    gone = registry.Family("gone", "needs a module", requires=("no_such_module_here",))
    subjects = registry.all_subjects((fam, gone), (A, B))
    assert [s.id for s in subjects] == ["ipckit.a", "peer.b"]
    assert subjects[0].baselines == ("peer.b",) and subjects[1].baselines == ()  # ipckit rows only
    assert "not installed" in gone.unavailable()
    cfg = runner.Config()
    assert [(t.metric, t.size) for t in runner.plan(cfg, subjects[:1])] == [
        ("latency", 64), ("throughput", 64), ("throughput", 1 << 26)]
    # The ratios against a baseline land in vs_baselines, and the ratio table shows them.
    rows = [_lat("ipckit.a", "ipckit", 30.0), _lat("peer.b", "peer", 60.0)]
    for r, s in zip(rows, subjects):
        r.update(family="fam", raw=None, c=None, baselines=list(s.baselines), label=s.label)
    runner.add_ratios(rows)
    assert rows[0]["vs_baselines"] == {"peer.b": pytest.approx(0.5)}
    text = report.render_text(_synthetic(rows))
    assert any(line.split()[:3] == ["A", "B", "0.50x"] for line in text.splitlines())


def test_no_import_cycles():
    code = """if True:
        import sys
        import ipckit_bench.cli, ipckit_bench.registry
        assert "ipckit._cli" not in sys.modules, "the bench imports the CLI"
        import ipckit._cli
        """
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    code = "import sys, ipckit._cli; assert 'ipckit_bench' not in sys.modules, 'the CLI imports the bench eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_subject_modules_import_only_the_base():
    import ast
    import pathlib

    import ipckit_bench

    here = pathlib.Path(ipckit_bench.__file__).parent
    for name in ("subjects_stream", "subjects_queue", "subjects_shm", "subjects_objects", "subjects_aio", "csubjects"):
        tree = ast.parse((here / f"{name}.py").read_text())
        local = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:  # from .x import y / from . import x
                local |= {node.module} if node.module else {alias.name for alias in node.names}
        assert local <= {"subjects", "loops", "machine"}, (name, local)


# ------------------------------------------------------------------ async subjects (the aio family's base)


class _AsyncLoopback:
    """An async endpoint in one process: what is sent is received (copied), optionally corrupted."""

    def __init__(self, corrupt_at=None):
        import collections

        self.q = collections.deque()
        self.corrupt_at, self.count, self.closed = corrupt_at, 0, False

    async def send(self, data):
        import anyio

        msg = bytearray(data)
        if self.count == self.corrupt_at:
            msg[-1] ^= 0xFF
        self.count += 1
        self.q.append(msg)
        await anyio.sleep(0)  # a real scheduling point, as an IPC call would have

    async def recv(self):
        return memoryview(self.q.popleft())

    async def aclose(self):
        self.closed = True


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_subject_runs_the_async_loops_in_its_event_loop(backend):
    pytest.importorskip(backend)
    from ipckit_bench.subjects import AsyncSubject

    seen = {}

    class Loop(AsyncSubject):
        async def aopen(self, spec, role, peer_pid):
            import sniffio

            seen["library"] = sniffio.current_async_library()
            return _AsyncLoopback(corrupt_at=spec)

    Loop.backend = backend
    ep = Loop().open(None, "a", 0)
    try:
        assert seen["library"] == backend
        samples = Loop().drive(ep, "ping", (64, 0.0, 20, 20, 5))
        assert len(samples) == 20 and all(t > 0 for t in samples)
        for size in (64, 8192):
            t0, sent = Loop().drive(ep, "send", (size, 0.0, 300, 300, False, 5 << 40))
            t1, received, lost = Loop().drive(ep, "recv", (size, False, 5 << 40))
            assert (sent, received, lost) == (300, 300, 0) and t1 >= t0 and not ep.inner.q
    finally:
        ep.close()
    assert ep.inner.closed
    bad = Loop().open(123, "a", 0)
    try:
        Loop().drive(bad, "send", (64, 0.0, 300, 300))
        with pytest.raises(loops.IntegrityError):
            Loop().drive(bad, "recv", (64,))
    finally:
        bad.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_subject_across_processes(backend):
    """A pair of real children, each with its event loop, through the runner's own Pair."""
    import socket

    pytest.importorskip(backend)
    anyio_abc = pytest.importorskip("anyio.abc")
    if not hasattr(anyio_abc.SocketStream, "from_socket"):
        pytest.skip("anyio too old for SocketStream.from_socket")
    from ipckit_bench.subjects import AsyncSubject

    class Framed:
        def __init__(self, stream):
            from anyio.streams.buffered import BufferedByteReceiveStream

            self.stream, self.reader = stream, BufferedByteReceiveStream(stream)

        async def send(self, data):
            await self.stream.send(len(data).to_bytes(8, "little") + bytes(data))

        async def recv(self):
            n = int.from_bytes(await self.reader.receive_exactly(8), "little")
            return await self.reader.receive_exactly(n)

        async def aclose(self):
            await self.stream.aclose()

    class SocketPairSubject(AsyncSubject):
        id, label, group, family = "test.async", "test async socketpair", "peer", "test"

        def setup(self, env):
            return socket.socketpair()

        async def aopen(self, spec, role, peer_pid):
            return Framed(await anyio_abc.SocketStream.from_socket(spec[0] if role == "a" else spec[1]))

    SocketPairSubject.backend = backend
    subject = SocketPairSubject()
    spec = subject.setup(None)
    pair = runner.Pair(subject, spec, (None, None), timeout=30)
    children = list(pair.procs)
    try:
        samples, echoed = pair.run(("ping", 64, 0.0, 50, 50, 5), ("echo", 64), 30)
        assert len(samples) == 50 and echoed == 55
        (t0, sent), (t1, received, lost) = pair.run(("send", 4096, 0.0, 500, 500, False, 1 << 40),
                                                     ("recv", 4096, False, 1 << 40), 30)
        assert sent == received == 500 and lost == 0
    finally:
        pair.close()
        for sock in spec:
            sock.close()
    assert [p.exitcode for p in children] == [0, 0]  # both closed their endpoint and loop, and exited


# ------------------------------------------------------------------ progress


def _progress_tasks():
    subjects = runner.select(all_subjects(), "ipckit.pipe,raw.mq-posix")
    cfg = runner.Config(sizes=(64, 1 << 20), repeats=2)
    return cfg, runner.plan(cfg, subjects)


def test_progress_plain_lines_when_not_a_terminal():
    import io

    from rich.console import Console

    cfg, tasks = _progress_tasks()
    buf = io.StringIO()
    progress = runner.Progress(tasks, cfg, console=Console(file=buf, force_terminal=False))
    assert not progress.live
    progress.start()
    for task in tasks:
        progress.begin(task)
        for i in range(cfg.repeats):
            progress.repeat(i + 1)
        progress.end()
    progress.finish()
    lines = buf.getvalue().splitlines()
    assert lines[0] == "[1/6] ipckit Pipe, cross"  # one line per subject and placement
    assert lines[1].startswith("[4/6] posix_ipc.MessageQueue, cross") and len(lines) == 2
    assert "\x1b" not in buf.getvalue()
    # 1 MiB on a POSIX queue cannot run here: it weighs nothing in the time left.
    assert progress.weights[-1] == 0.0 and all(w > 0 for w in progress.weights[:3])


def test_progress_live_display_on_a_terminal():
    import io

    from rich.console import Console

    cfg, tasks = _progress_tasks()
    buf = io.StringIO()
    progress = runner.Progress(tasks, cfg, console=Console(file=buf, force_terminal=True, width=120))
    assert progress.live
    progress.start()
    progress.begin(tasks[1])
    progress.repeat(1)
    shown = buf.getvalue()
    progress.finish()
    assert "ipckit.pipe throughput 64B cross" in shown and "repeat 2/2" in shown and "1/6" in shown
    assert not progress._bar.live.is_started  # stopped: nothing left running


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


def _iceoryx2_host_files() -> set[str]:
    """iceoryx2's host-wide files (``/dev/shm/iox2_*``, ``/tmp/iceoryx2``): the
    library keeps them for every later iceoryx2 program, by design."""
    found = {os.path.join("/dev/shm", n) for n in os.listdir("/dev/shm") if n.startswith("iox2_")}
    if os.path.isdir("/tmp/iceoryx2"):
        found.add("/tmp/iceoryx2")
    return found


def _remove_unused(paths: set[str]) -> None:
    """Remove what the benchmark's iceoryx2 peer made for the host, unless another
    process has started to use it meanwhile (mapped or open): a test run leaves the
    host as it found it, without breaking someone else's iceoryx2 program."""
    import shutil

    from ipckit import _procfs

    for path in sorted(paths):
        if os.path.isdir(path):
            subdirs = [os.path.join(path, sub) for sub in os.listdir(path)]
            if all(os.path.isdir(sub) and not os.listdir(sub) for sub in subdirs):
                shutil.rmtree(path, ignore_errors=True)
            continue
        try:
            inode = os.stat(path).st_ino
        except FileNotFoundError:
            continue
        if not any(_uses(pid, inode) for pid in _procfs.pids()):
            os.unlink(path)


def _uses(pid: int, inode: int) -> bool:
    from ipckit import _procfs

    try:
        return bool(_procfs.mapped_files(pid, {inode}) or _procfs.open_files(pid, {inode}))
    except (ProcessLookupError, PermissionError):
        # Gone, or one we may not inspect (pid 1 here): it did not start using a file
        # made a moment ago by this test's own benchmark run.
        return False


def test_smoke_every_subject(tmp_path):
    pytest.importorskip("matplotlib")
    out_json, out_md, plots = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "plots"
    cmd = [sys.executable, "-m", "ipckit", "bench", "--iterations", "5", "--repeats", "2", "--sizes", "64,4K,64K,1M",
           "--json", str(out_json), "--markdown", str(out_md), "--plot", str(plots), "--no-progress"]
    iox2_before = _iceoryx2_host_files()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    finally:
        _remove_unused(_iceoryx2_host_files() - iox2_before)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Round-trip latency" in proc.stdout
    assert "\x1b[" not in proc.stdout + proc.stderr  # piped: plain text, no colour or cursor codes
    assert proc.stdout.rstrip().splitlines()[-1].startswith("Worst vs raw: ")
    assert not (tmp_path / cli.RESULTS_DIR).exists()  # explicit paths replace the default

    doc = report.load_json(str(out_json))
    assert doc["schema"] == report.SCHEMA and doc["complete"] is True
    assert doc["summary"] == report.summary(doc["results"]) and doc["summary"]["ratios"] > 0
    assert doc["config"]["sizes"] == [64, 4096, 65536, 1 << 20]
    results = doc["results"]
    # Every subject appears with a latency row and a row per size (its family's own
    # sizes if it declares them): nothing silently dropped.
    for s in all_subjects():
        rows = [r for r in results if r["subject"] == s.id]
        assert len(rows) == 1 + len(s.sizes or doc["config"]["sizes"]), s.id
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
