"""Rendering results: the text and markdown reports, the JSON document, the summary line, --compare.

Every table is built once as a ``Grid`` (headers, alignment, rows grouped in
sections, footnotes) and drawn two ways: as a rich ``Table`` for the text
report, and as a markdown pipe table. On a terminal the text report is styled
(ipckit rows bold, a ratio over the target red); into a file, a pipe or a CI log
it is plain text at the tables' natural width (no colour codes, no wrapping:
``plain_console``), so it reads the same in ``less`` and in a log viewer.

The summary line (issue 14) is the worst ``vs raw`` ratio of the run: ipckit's
own overhead over the raw mechanism, latency or throughput, any placement, so a
regression shows at a glance; ``--compare`` flags every row whose ``vs raw``
ratio grew by more than ``RATIO_GROWTH`` between two runs.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import IO, Optional, Sequence, Union

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from .runner import LATENCY, PLACEMENT_TEXT, THROUGHPUT, fmt_size, time_per_message

SCHEMA = "ipckit-bench/1"
TARGET = 1.2  # issue 14: every ipckit subject within 1.2x of its raw twin
RATIO_GROWTH = 1.10  # --compare flags a vs-raw ratio that grew by more than 10 %
SAME = 1.05  # --compare calls a change in time per message within 5 % "same"
PLACEMENT_SHORT = {"cross": "cross-CPU", "same": "same-CPU", "unpinned": "unpinned"}

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
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def fmt_mb(x: float) -> str:
    if x >= 1000:
        return f"{x / 1000:.3g}GB/s"
    return f"{x:.3g}MB/s"


def fmt_ratio(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}x"


def where(placement: str) -> str:
    return PLACEMENT_SHORT.get(placement, placement)


# ------------------------------------------------------------------ tables

Cell = Union[str, Text]  # a Text carries a style for the terminal; markdown keeps only its text


@dataclass
class Notes:
    """Numbered footnotes for n/a and error cells, so the tables stay narrow."""

    items: list[str] = field(default_factory=list)

    def ref(self, row: dict) -> str:
        status = row["status"]
        text = f"{status}: {row.get('reason') or 'no reason given'}"
        if text not in self.items:
            self.items.append(text)
        return f"{status} [{self.items.index(text) + 1}]"

    def lines(self) -> list[str]:
        return [f"[{i}] {t}" for i, t in enumerate(self.items, 1)]


@dataclass
class Grid:
    """One table, before it is drawn: ``sections`` are lists of rows (a family, a subject)."""

    title: str
    headers: list[str]
    align: str  # "l" or "r" per column
    sections: list[list[list[Cell]]] = field(default_factory=list)
    notes: Notes = field(default_factory=Notes)

    def rows(self) -> list[list[Cell]]:
        return [row for section in self.sections for row in section]

    def to_rich(self) -> Table:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for header, a in zip(self.headers, self.align):
            table.add_column(header, justify="left" if a == "l" else "right")
        for section in self.sections:
            for row in section:
                table.add_row(*(c if isinstance(c, Text) else Text(c) for c in row))
            table.add_section()
        return table

    def to_markdown(self) -> str:
        out = ["| " + " | ".join(self.headers) + " |", "|" + "|".join(":---" if a == "l" else "---:" for a in self.align) + "|"]
        out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in self.rows()]
        return "\n".join(out)


def _sections_by(results: list[dict], key: str) -> list[list[dict]]:
    """Consecutive rows grouped by ``row[key]`` (results are in display order)."""
    out: list[list[dict]] = []
    for r in results:
        if out and out[-1][0][key] == r[key]:
            out[-1].append(r)
        else:
            out.append([r])
    return out


def _label(r: dict) -> Text:
    return Text(r["label"], style="bold" if r["group"] == "ipckit" else "")


def _ratio_cell(x: Optional[float], against_raw: bool = False) -> Text:
    style = ("red" if x > TARGET else "green") if against_raw and x is not None else ""
    return Text(fmt_ratio(x), style=style)


def latency_grid(results: list[dict], placement: str) -> Optional[Grid]:
    rows = [r for r in results if r["metric"] == LATENCY and r["placement"] == placement]
    if not rows:
        return None
    grid = Grid(f"Round-trip latency, 64 B, {PLACEMENT_TEXT.get(placement, placement)}",
                ["subject", "median us", "p99 us", "p99.9 us", "spread", "round trips", "vs raw", "vs C"], "lrrrrrrr")
    for family in _sections_by(rows, "family"):
        section: list[list[Cell]] = []
        for r in family:
            if r["status"] != "ok":
                section.append([_label(r), grid.notes.ref(r), "", "", "", "", "", ""])
                continue
            section.append([
                _label(r), fmt_us(r["median_us"]), fmt_us(r["p99_us"]), fmt_us(r["p999_us"]),
                f"±{r['spread_percent']:.0f}%", str(r["n"]), _ratio_cell(r.get("vs_raw"), True),
                _ratio_cell(r.get("vs_c")),
            ])
        grid.sections.append(section)
    return grid


def throughput_grid(results: list[dict], placement: str) -> Optional[Grid]:
    rows = [r for r in results if r["metric"] == THROUGHPUT and r["placement"] == placement]
    if not rows:
        return None
    sizes = sorted({r["size"] for r in rows})
    grid = Grid(f"One-way throughput (messages/s, MB/s), {PLACEMENT_TEXT.get(placement, placement)}",
                ["subject"] + [fmt_size(s) for s in sizes], "l" + "r" * len(sizes))
    for family in _sections_by(rows, "family"):
        section: list[list[Cell]] = []
        for subject in _sections_by(family, "subject"):
            cells: dict[int, str] = {}
            for r in subject:
                if r["status"] != "ok":
                    cells[r["size"]] = grid.notes.ref(r)
                    continue
                cell = f"{fmt_rate(r['msgs_per_s'])}/s {fmt_mb(r['mb_per_s'])} ±{r['spread_percent']:.0f}%"
                if r.get("lost"):
                    cell += " " + grid.notes.ref({"status": "lossy", "reason": r["reason"]})
                cells[r["size"]] = cell
            section.append([_label(subject[0])] + [cells.get(size, "-") for size in sizes])
        grid.sections.append(section)
    return grid


def ratio_grid(results: list[dict], placement: str) -> Optional[Grid]:
    """ipckit rows only: time per message against each row it compares with, latency and every size."""
    rows = [r for r in results if r["placement"] == placement]
    sizes = sorted({r["size"] for r in rows if r["metric"] == THROUGHPUT})
    labels = {r["subject"]: r["label"] for r in rows}
    index = {(r["subject"], r["metric"], r["size"]): r for r in rows}
    cols = [(LATENCY, 64)] + [(THROUGHPUT, s) for s in sizes]
    grid = Grid(f"ipckit time per message vs raw, vs C and vs the family's baselines (same run; above 1x is "
                f"slower; the target for vs raw is {TARGET}x), {PLACEMENT_TEXT.get(placement, placement)}",
                ["ipckit subject", "vs", "latency"] + [f"thr {fmt_size(s)}" for s in sizes], "ll" + "r" * len(cols))
    for subject in _sections_by([r for r in rows if r["group"] == "ipckit"], "subject"):
        first = subject[0]
        others = [("raw", first.get("raw"), "vs_raw"), ("C", first.get("c"), "vs_c")]
        others += [("", b, b) for b in first.get("baselines") or ()]
        section: list[list[Cell]] = []
        for role, other, key in others:
            if other not in labels:  # none, or it did not run here
                continue
            cells: list[Cell] = []
            for metric, size in cols:
                r = index.get((first["subject"], metric, size))
                value = None if r is None or r["status"] != "ok" else (
                    r.get(key) if key.startswith("vs_") else (r.get("vs_baselines") or {}).get(key))
                cells.append(_ratio_cell(value, role == "raw"))
            name = labels[other]
            section.append([_label(first) if not section else "", f"{role}: {name}" if role else name] + cells)
        if section:
            grid.sections.append(section)
    return grid if grid.sections else None


# ------------------------------------------------------------------ the summary line


def summary(results: list[dict]) -> Optional[dict]:
    """The worst vs-raw ratio of the run and how many ratios are over the target, or None if there are none."""
    rated = [r for r in results if r["status"] == "ok" and r.get("vs_raw") is not None]
    if not rated:
        return None
    worst = max(rated, key=lambda r: r["vs_raw"])
    return {
        "subject": worst["subject"], "label": worst["label"], "vs_raw": worst["vs_raw"], "metric": worst["metric"],
        "size": worst["size"], "placement": worst["placement"], "target": TARGET, "ratios": len(rated),
        "over_target": sum(1 for r in rated if r["vs_raw"] > TARGET),
    }


def summary_line(s: Optional[dict]) -> str:
    if s is None:
        return "Worst vs raw: none measured (no ipckit subject ran beside its raw twin)"
    return (f"Worst vs raw: {s['vs_raw']:.2f}x, {s['label']}, {s['metric']} {fmt_size(s['size'])}, "
            f"{where(s['placement'])}; {s['over_target']} of {s['ratios']} vs-raw ratios above {s['target']}x")


def _summary_text(s: Optional[dict]) -> Text:
    bad = s is not None and s["vs_raw"] > s["target"]
    return Text(summary_line(s), style="bold red" if bad else "bold green" if s else "bold")


# ------------------------------------------------------------------ whole reports


def header_lines(doc: dict) -> list[str]:
    m = doc["machine"]
    cfg = doc["config"]
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v) or "-"
    missing = ", ".join(k for k, v in m["packages"].items() if not v)
    lim = m["limits"]
    cpus = ",".join(str(c) for c in m["cpus_usable"])
    return [
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


def placements_of(results: list[dict]) -> list[str]:
    out: list[str] = []
    for r in results:
        if r["placement"] not in out:
            out.append(r["placement"])
    return out


def grids(doc: dict) -> list[Grid]:
    out = []
    for placement in placements_of(doc["results"]):
        for make in (latency_grid, throughput_grid, ratio_grid):
            grid = make(doc["results"], placement)
            if grid is not None:
                out.append(grid)
    return out


def _summary_of(doc: dict) -> Optional[dict]:
    return doc["summary"] if "summary" in doc else summary(doc["results"])


def _grid_renderables(grid: Grid) -> list[RenderableType]:
    out: list[RenderableType] = [Text(""), Text(grid.title, style="bold"), Text(""), grid.to_rich()]
    if grid.notes.items:
        out += [Text(""), Text("\n".join(grid.notes.lines()))]
    return out


def renderables(doc: dict) -> list[RenderableType]:
    """The text report as rich renderables: header, tables, and the summary line last (where a
    terminal leaves the eye)."""
    out: list[RenderableType] = [Text("\n".join(header_lines(doc)))]
    for grid in grids(doc):
        out += _grid_renderables(grid)
    out += [Text(""), _summary_text(_summary_of(doc))]
    return out


def plain_console(file: IO[str]) -> Console:
    """A console for files, pipes and CI logs: no colour, no cursor control, and wide enough that
    tables keep their natural width (rich would otherwise wrap them at 80 columns)."""
    return Console(file=file, width=100_000, color_system=None, force_terminal=False, highlight=False, emoji=False,
                   soft_wrap=True)


def render(items: Sequence[RenderableType]) -> str:
    """Plain text of rich renderables, without the trailing blanks of table cells."""
    buf = io.StringIO()
    console = plain_console(buf)
    for item in items:
        console.print(item)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def render_text(doc: dict) -> str:
    return render(renderables(doc))


def print_report(items: Sequence[RenderableType], file: IO[str]) -> None:
    """Styled on a terminal, plain text (``render``) anywhere else."""
    console = Console(file=file, highlight=False, emoji=False)
    if console.is_terminal:
        for item in items:
            console.print(item)
    else:
        file.write(render(items))


def render_markdown(doc: dict) -> str:
    head = header_lines(doc)
    parts = [f"# {head[0]}", "\n".join(f"- {line}" for line in head[1:]), f"**{summary_line(_summary_of(doc))}**"]
    for grid in grids(doc):
        parts.append(f"## {grid.title}\n\n{grid.to_markdown()}")
        parts += grid.notes.lines()  # each "[k] ..." its own paragraph
    return "\n\n".join(parts) + "\n"


def document(
    machine_info: dict, cfg: dict, results: list[dict], started: str, seconds: float, interrupted: bool,
    objects: Optional[dict] = None,
) -> dict:
    """The JSON document of a run (``results`` must already carry their ratios: runner.add_ratios)."""
    return {
        "schema": SCHEMA,
        "started": started,
        "seconds": round(seconds, 3),
        "interrupted": interrupted,
        "complete": not interrupted,
        "machine": machine_info,
        "config": cfg,
        "summary": summary(results),
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
    if not isinstance(doc.get("results"), list):
        raise ValueError(f"{path} has no results list")
    return doc


# ------------------------------------------------------------------ compare


@dataclass
class Change:
    old: dict
    new: dict
    time_ratio: Optional[float]  # new time per message / old
    ratio_growth: Optional[float]  # new vs_raw / old vs_raw

    @property
    def flagged(self) -> bool:
        return self.ratio_growth is not None and self.ratio_growth > RATIO_GROWTH


@dataclass
class Comparison:
    changes: list[Change]
    old_summary: Optional[dict]
    new_summary: Optional[dict]

    @property
    def flagged(self) -> list[Change]:
        return [c for c in self.changes if c.flagged]


def compare(old: dict, new: dict) -> Comparison:
    """Every (subject, metric, size, placement) in both runs: the change of its time per message,
    and of its vs-raw ratio (flagged above RATIO_GROWTH)."""

    def key(r: dict) -> tuple:
        return (r["subject"], r["metric"], r["size"], r["placement"])

    old_rows = {key(r): r for r in old["results"]}
    changes = []
    for r in new["results"]:
        o = old_rows.get(key(r))
        if o is None:
            continue
        both_ok = r["status"] == o["status"] == "ok"
        time_ratio = time_per_message(r) / time_per_message(o) if both_ok else None
        growth = None
        if both_ok and r.get("vs_raw") is not None and o.get("vs_raw"):
            growth = r["vs_raw"] / o["vs_raw"]
        changes.append(Change(o, r, time_ratio, growth))
    return Comparison(changes, _summary_of(old), _summary_of(new))


def _value(r: dict) -> str:
    if r["status"] != "ok":
        return r["status"]
    return f"{fmt_us(r['median_us'])} us" if r["metric"] == LATENCY else f"{fmt_rate(r['msgs_per_s'])}/s"


def compare_grid(cmp: Comparison) -> Grid:
    grid = Grid(
        f"Comparison: time per message new / old (above 1x is slower; within {round((SAME - 1) * 100)}% is same), "
        f"and vs raw old -> new (flagged when it grew by more than {round((RATIO_GROWTH - 1) * 100)}%)",
        ["subject", "metric", "size", "placement", "old", "new", "new/old time", "", "vs raw old -> new", "flag"],
        "llllrrrlrl",
    )
    section: list[list[Cell]] = []
    for c in cmp.changes:
        t = c.time_ratio
        verdict = "-" if t is None else ("slower" if t > SAME else "faster" if t < 1 / SAME else "same")
        vs_raw = "-"
        if c.old.get("vs_raw") is not None or c.new.get("vs_raw") is not None:
            vs_raw = f"{fmt_ratio(c.old.get('vs_raw'))} -> {fmt_ratio(c.new.get('vs_raw'))}"
        flag: Cell = Text(f"vs raw +{((c.ratio_growth or 1) - 1) * 100:.0f}%", style="bold red") if c.flagged else ""
        section.append([_label(c.new), c.new["metric"], fmt_size(c.new["size"]), c.new["placement"], _value(c.old),
                        _value(c.new), fmt_ratio(t), verdict, vs_raw, flag])
    grid.sections.append(section)
    return grid


def compare_verdict(cmp: Comparison) -> str:
    limit = f"{round((RATIO_GROWTH - 1) * 100)}%"
    if not cmp.flagged:
        return f"No vs-raw ratio grew by more than {limit}."
    names = ", ".join(f"{c.new['label']} ({c.new['metric']} {fmt_size(c.new['size'])}, {where(c.new['placement'])}: "
                      f"{c.old['vs_raw']:.2f}x -> {c.new['vs_raw']:.2f}x)" for c in cmp.flagged)
    return f"FLAGGED: {len(cmp.flagged)} vs-raw ratio(s) grew by more than {limit}: {names}"


def compare_renderables(cmp: Comparison) -> list[RenderableType]:
    grid = compare_grid(cmp)
    return [
        Text(grid.title, style="bold"), Text(""), grid.to_rich(), Text(""),
        Text("Old: " + summary_line(cmp.old_summary)), Text("New: " + summary_line(cmp.new_summary)),
        Text(compare_verdict(cmp), style="bold red" if cmp.flagged else "bold green"),
    ]


def compare_markdown(cmp: Comparison) -> str:
    grid = compare_grid(cmp)
    return "\n\n".join([
        f"## {grid.title}", grid.to_markdown(), "Old: " + summary_line(cmp.old_summary),
        "New: " + summary_line(cmp.new_summary), f"**{compare_verdict(cmp)}**",
    ]) + "\n"


def compare_text(cmp: Comparison) -> str:
    return render(compare_renderables(cmp))
