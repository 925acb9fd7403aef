"""Rendering results: the text report, the markdown report, the JSON document, and --compare."""

from __future__ import annotations

import json
from typing import Optional

from .runner import LATENCY, PLACEMENT_TEXT, THROUGHPUT, fmt_size

SCHEMA = "ipckit-bench/1"

WHY_PINNED = (
    "Why pinned: on this kind of (virtual) machine a blocking wake-up of a process on another CPU "
    "costs ~65 us per round trip, on the same CPU ~3 us; unpinned, the scheduler flips between the two "
    "regimes from run to run, so pinned placements are the default and unpinned runs only on request."
)

METHOD = (
    "Latency: 64 B ping-pong between two processes; median, p99 and p99.9 of the round-trip times of each "
    "repeat (after warm-up), then the median over repeats. Throughput: one-way stream; the receiver checks "
    "every message (length, sequence number in bytes 0-7, seq^0x5A5A.. in the last 8 bytes: complete, in "
    "order, ends intact; messages up to 4 KiB in bulk every 256) and the clock runs from the first send to "
    "the arrival and check of the last message. "
    "'±' is the spread of the repeats, (max-min)/median. Ratios (vs raw, vs C) compare time per message "
    "measured in this same run: above 1x is slower. 'n/a [k]' and 'error [k]' refer to the notes below a table."
)


# ------------------------------------------------------------------ numbers


def fmt_us(x: Optional[float]) -> str:
    if x is None:
        return "-"
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def fmt_rate(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            v = x / scale
            return f"{v:.3g}{unit}"
    return f"{x:.3g}"


def fmt_mb(x: float) -> str:
    if x >= 1000:
        return f"{x / 1000:.3g}GB/s"
    return f"{x:.3g}MB/s"


def fmt_ratio(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}x"


# ------------------------------------------------------------------ tables


def render_table(headers: list[str], rows: list[list[str]], markdown: bool = False, align: Optional[str] = None) -> str:
    """A plain-text (space-aligned) or markdown (pipe) table; align is a string of 'l'/'r' per column."""
    align = align or "l" + "r" * (len(headers) - 1)
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


class Notes:
    """Numbered footnotes for n/a and error cells, so the tables stay narrow."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def ref(self, row: dict) -> str:
        status = row["status"]
        text = f"{status}: {row.get('reason') or 'no reason given'}"
        if text not in self.items:
            self.items.append(text)
        return f"{status} [{self.items.index(text) + 1}]"

    def render(self) -> str:
        return "\n".join(f"[{i}] {t}" for i, t in enumerate(self.items, 1))


def _subjects_in_order(results: list[dict], metric: str, placement: str) -> list[str]:
    seen: list[str] = []
    for r in results:
        if r["metric"] == metric and r["placement"] == placement and r["subject"] not in seen:
            seen.append(r["subject"])
    return seen


def _label(results: list[dict], subject: str) -> str:
    for r in results:
        if r["subject"] == subject:
            return r["label"]
    return subject


def latency_table(results: list[dict], placement: str, markdown: bool = False) -> str:
    notes = Notes()
    rows = []
    for r in results:
        if r["metric"] != LATENCY or r["placement"] != placement:
            continue
        if r["status"] != "ok":
            rows.append([r["label"], notes.ref(r), "", "", "", "", "", ""])
            continue
        rows.append([
            r["label"], fmt_us(r["median_us"]), fmt_us(r["p99_us"]), fmt_us(r["p999_us"]),
            f"±{r['spread_percent']:.0f}%", str(r["n"]), fmt_ratio(r.get("vs_raw")), fmt_ratio(r.get("vs_c")),
        ])
    if not rows:
        return ""
    headers = ["subject", "median us", "p99 us", "p99.9 us", "spread", "round trips", "vs raw", "vs C"]
    out = render_table(headers, rows, markdown)
    if notes.items:
        out += "\n\n" + notes.render()
    return out


def throughput_table(results: list[dict], placement: str, markdown: bool = False) -> str:
    notes = Notes()
    sizes = sorted({r["size"] for r in results if r["metric"] == THROUGHPUT and r["placement"] == placement})
    cells: dict[tuple[str, int], str] = {}
    for r in results:
        if r["metric"] != THROUGHPUT or r["placement"] != placement:
            continue
        if r["status"] != "ok":
            cells[(r["subject"], r["size"])] = notes.ref(r)
            continue
        cell = f"{fmt_rate(r['msgs_per_s'])}/s {fmt_mb(r['mb_per_s'])} ±{r['spread_percent']:.0f}%"
        if r.get("lost"):
            cell += " " + notes.ref({"status": "lossy", "reason": r["reason"]})
        cells[(r["subject"], r["size"])] = cell
    rows = []
    for subject in _subjects_in_order(results, THROUGHPUT, placement):
        rows.append([_label(results, subject)] + [cells.get((subject, size), "-") for size in sizes])
    if not rows:
        return ""
    out = render_table(["subject"] + [fmt_size(s) for s in sizes], rows, markdown)
    if notes.items:
        out += "\n\n" + notes.render()
    return out


def ratio_table(results: list[dict], placement: str, markdown: bool = False) -> str:
    """ipckit rows only: time per message vs raw and vs C, latency and every size."""
    sizes = sorted({r["size"] for r in results if r["metric"] == THROUGHPUT and r["placement"] == placement})
    index = {(r["subject"], r["metric"], r["size"]): r for r in results if r["placement"] == placement}
    rows = []
    for subject in _subjects_in_order(results, LATENCY, placement) or _subjects_in_order(results, THROUGHPUT, placement):
        if not subject.startswith("ipckit."):
            continue
        cols = [(LATENCY, 64)] + [(THROUGHPUT, s) for s in sizes]
        cells = []
        for metric, size in cols:
            r = index.get((subject, metric, size))
            if r is None or r["status"] != "ok":
                cells.append("-")
            else:
                cells.append(f"{fmt_ratio(r.get('vs_raw'))} / {fmt_ratio(r.get('vs_c'))}")
        rows.append([_label(results, subject)] + cells)
    if not rows:
        return ""
    headers = ["ipckit subject", "latency"] + [f"thr {fmt_size(s)}" for s in sizes]
    return render_table(headers, rows, markdown)


# ------------------------------------------------------------------ whole reports


def header_lines(doc: dict) -> list[str]:
    m = doc["machine"]
    cfg = doc["config"]
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v) or "-"
    missing = ", ".join(k for k, v in m["packages"].items() if not v)
    lim = m["limits"]
    cpus = ",".join(str(c) for c in m["cpus_usable"])
    lines = [
        f"ipckit bench ({cfg['mode']} mode), {doc['started']}, took {doc['seconds']:.0f} s"
        + (" -- INTERRUPTED, partial results" if doc.get("interrupted") else ""),
        f"Machine: {m['cpu_model']}, {m['cpus_online']} CPUs (usable: {cpus})"
        + (f", virtual ({m['hypervisor']})" if m.get("hypervisor") else "")
        + f"; {m['kernel']}; {m['python']}; load {m['loadavg'][0]}",
        f"Packages: {pk}" + (f" (not installed: {missing})" if missing else ""),
        "Kernel IPC limits: "
        f"mqueue msg_max {lim.get('mqueue.msg_max')}, msgsize_max {lim.get('mqueue.msgsize_max')}; "
        f"SysV msgmax {lim.get('sysv.msgmax')}, msgmnb {lim.get('sysv.msgmnb')}; "
        f"socket wmem_default {lim.get('net.wmem_default')}; pipe-max-size {lim.get('pipe.max_size')}",
        f"Command: {m['command']}",
        f"Repeats: {cfg['repeats']} per value; latency runs >= {cfg['lat_min_n']} round trips per repeat "
        f"(time budget {cfg['lat_budget']} s, warm-up {cfg['lat_warmup']}); "
        f"throughput runs >= {cfg['thr_min_n']} messages per repeat (time budget {cfg['thr_budget']} s).",
        WHY_PINNED,
        METHOD,
    ]
    return lines


def placements_of(results: list[dict]) -> list[str]:
    out: list[str] = []
    for r in results:
        if r["placement"] not in out:
            out.append(r["placement"])
    return out


def render_text(doc: dict) -> str:
    parts = ["\n".join(header_lines(doc))]
    for placement in placements_of(doc["results"]):
        where = PLACEMENT_TEXT.get(placement, placement)
        lat = latency_table(doc["results"], placement)
        if lat:
            parts.append(f"Round-trip latency, 64 B, {where}\n\n{lat}")
        thr = throughput_table(doc["results"], placement)
        if thr:
            parts.append(f"One-way throughput (messages/s, MB/s), {where}\n\n{thr}")
        rat = ratio_table(doc["results"], placement)
        if rat:
            parts.append(f"ipckit time per message vs raw / vs C (same run; above 1x is slower), {where}\n\n{rat}")
    return "\n\n".join(parts) + "\n"


def render_markdown(doc: dict) -> str:
    head = header_lines(doc)
    parts = [f"# {head[0]}", "\n".join(f"- {line}" for line in head[1:])]
    for placement in placements_of(doc["results"]):
        where = PLACEMENT_TEXT.get(placement, placement)
        lat = latency_table(doc["results"], placement, markdown=True)
        if lat:
            parts.append(f"## Round-trip latency, 64 B, {where}\n\n{lat}")
        thr = throughput_table(doc["results"], placement, markdown=True)
        if thr:
            parts.append(f"## One-way throughput (messages/s, MB/s), {where}\n\n{thr}")
        rat = ratio_table(doc["results"], placement, markdown=True)
        if rat:
            parts.append(f"## ipckit time per message vs raw / vs C, {where}\n\n{rat}")
    # Footnote lines are "[k] ..." and need to be separate paragraphs in markdown.
    return "\n\n".join(parts).replace("\n[", "\n\n[") + "\n"


def document(
    machine_info: dict, cfg: dict, results: list[dict], started: str, seconds: float, interrupted: bool,
    objects: Optional[dict] = None,
) -> dict:
    return {
        "schema": SCHEMA,
        "started": started,
        "seconds": round(seconds, 3),
        "interrupted": interrupted,
        "complete": not interrupted,
        "machine": machine_info,
        "config": cfg,
        "results": results,
        "objects": objects or {},
    }


def dump_json(doc: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False, default=str)
        f.write("\n")


def load_json(path: str) -> dict:
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith("ipckit-bench/"):
        raise ValueError(f"{path} is not an ipckit bench JSON file (schema {SCHEMA})")
    return doc


# ------------------------------------------------------------------ compare


def compare(old: dict, new: dict, markdown: bool = False) -> str:
    """Per (subject, metric, size, placement): old and new values and new time / old time."""

    def key(r: dict) -> tuple:
        return (r["subject"], r["metric"], r["size"], r["placement"])

    old_rows = {key(r): r for r in old["results"]}
    rows = []
    for r in new["results"]:
        o = old_rows.get(key(r))
        if o is None:
            continue
        if r["metric"] == LATENCY:
            fmt = lambda x: f"{fmt_us(x['median_us'])} us"  # noqa: E731
            change = (r["median_us"] / o["median_us"]) if r["status"] == o["status"] == "ok" else None
        else:
            fmt = lambda x: f"{fmt_rate(x['msgs_per_s'])}/s"  # noqa: E731
            change = (o["msgs_per_s"] / r["msgs_per_s"]) if r["status"] == o["status"] == "ok" else None
        verdict = "-" if change is None else ("slower" if change > 1.05 else "faster" if change < 1 / 1.05 else "same")
        rows.append([
            r["label"], r["metric"], fmt_size(r["size"]), r["placement"],
            fmt(o) if o["status"] == "ok" else o["status"], fmt(r) if r["status"] == "ok" else r["status"],
            fmt_ratio(change), verdict,
        ])
    headers = ["subject", "metric", "size", "placement", "old", "new", "new/old time", ""]
    title = "Comparison (time per message, new / old: above 1x is slower; within 5% counts as same)"
    return f"{title}\n\n" + render_table(headers, rows, markdown, align="llllrrrl") + "\n"
