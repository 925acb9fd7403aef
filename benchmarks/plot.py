"""PNG charts (matplotlib, Agg backend): latency per subject, throughput against message size."""

from __future__ import annotations

import os
from typing import Any

from .runner import LATENCY, PLACEMENT_TEXT, THROUGHPUT, fmt_size

GROUP_COLORS = {"ipckit": "tab:blue", "raw": "tab:orange", "peer": "tab:green", "c": "black"}


def write_plots(doc: dict, directory: str) -> list[str]:
    """Write latency-<placement>.png and throughput-<placement>.png; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    paths = []
    placements: list[str] = []
    for r in doc["results"]:
        if r["placement"] not in placements:
            placements.append(r["placement"])
    for placement in placements:
        rows = [r for r in doc["results"] if r["placement"] == placement]
        paths.append(_latency(plt, rows, placement, directory))
        paths.append(_throughput(plt, rows, placement, directory))
    return paths


def _latency(plt: Any, rows: list[dict], placement: str, directory: str) -> str:
    lat = [r for r in rows if r["metric"] == LATENCY]
    fig, ax = plt.subplots(figsize=(9, 0.32 * max(len(lat), 4) + 1.5))
    labels, medians, p99s, colors = [], [], [], []
    for r in lat:
        labels.append(r["label"] if r["status"] == "ok" else f"{r['label']} ({r['status']})")
        ok = r["status"] == "ok"
        medians.append(r["median_us"] if ok else 0)
        p99s.append(r["p99_us"] if ok else 0)
        colors.append(GROUP_COLORS.get(r["group"], "grey"))
    y = range(len(labels))
    ax.barh(list(y), medians, color=colors)
    ax.scatter(p99s, list(y), marker="|", color="red", s=120, label="p99", zorder=3)
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    if any(m > 0 for m in medians):
        ax.set_xscale("log")
    ax.set_xlabel("round trip, 64 B (us, log scale): bar = median, red mark = p99")
    ax.set_title(f"Latency, {PLACEMENT_TEXT.get(placement, placement)}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = os.path.join(directory, f"latency-{placement}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _throughput(plt: Any, rows: list[dict], placement: str, directory: str) -> str:
    thr = [r for r in rows if r["metric"] == THROUGHPUT]
    fig, ax = plt.subplots(figsize=(10, 6))
    subjects: list[str] = []
    for r in thr:
        if r["subject"] not in subjects:
            subjects.append(r["subject"])
    plotted = False
    for subject in subjects:
        pts = sorted((r["size"], r["mb_per_s"]) for r in thr if r["subject"] == subject and r["status"] == "ok")
        if not pts:
            continue
        first = next(r for r in thr if r["subject"] == subject)
        is_c = first["group"] == "c"
        ax.plot(
            [p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
            linestyle="--" if is_c else "-", linewidth=2.2 if is_c else 1.2,
            color="black" if is_c else None, alpha=0.9 if is_c else 0.8, label=first["label"],
        )
        plotted = True
    sizes = sorted({r["size"] for r in thr})
    if plotted:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
    if sizes:
        ax.set_xticks(sizes)
        ax.set_xticklabels([fmt_size(s) for s in sizes])
    ax.set_xlabel("message size (log scale)")
    ax.set_ylabel("MB/s (log scale)")
    ax.set_title(f"One-way throughput, {PLACEMENT_TEXT.get(placement, placement)} (dashed black: C limit)")
    if plotted:
        ax.legend(fontsize=6, ncol=2, loc="best")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = os.path.join(directory, f"throughput-{placement}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
