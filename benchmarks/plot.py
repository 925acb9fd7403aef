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


# How each group is drawn in the throughput panels: ipckit stands out, the C limit
# is the dashed black reference line of each panel.
GROUP_STYLE = {
    "ipckit": {"linestyle": "-", "linewidth": 2.4},
    "raw": {"linestyle": "-", "linewidth": 1.0},
    "peer": {"linestyle": ":", "linewidth": 1.6},
    "c": {"linestyle": "--", "linewidth": 2.0, "color": "black"},
}


def _throughput(plt: Any, rows: list[dict], placement: str, directory: str) -> str:
    """Small multiples: one panel per mechanism family (pipe, unix socket, queues...),
    each with ipckit, its raw equivalent, the peers and the C limit, on shared axes."""
    thr = [r for r in rows if r["metric"] == THROUGHPUT and r["status"] == "ok"]
    families: list[str] = []
    for r in thr:
        if r["family"] not in families:
            families.append(r["family"])
    cols = 3
    nrows = max(1, -(-len(families) // cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.6 * nrows), sharex=True, sharey=True, squeeze=False)
    sizes = sorted({r["size"] for r in thr})
    for ax, family in zip(axes.flat, families):
        subjects: list[str] = []
        for r in thr:
            if r["family"] == family and r["subject"] not in subjects:
                subjects.append(r["subject"])
        for subject in subjects:
            pts = sorted((r["size"], r["mb_per_s"]) for r in thr if r["subject"] == subject)
            first = next(r for r in thr if r["subject"] == subject)
            ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", markersize=3,
                    label=first["label"], **GROUP_STYLE.get(first["group"], {}))
        ax.set_title(family, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5, loc="upper left")
    for ax in list(axes.flat)[len(families):]:
        ax.set_visible(False)
    if thr:
        axes[0][0].set_xscale("log", base=2)
        axes[0][0].set_yscale("log")
        axes[0][0].set_xticks(sizes)
        axes[0][0].set_xticklabels([fmt_size(s) for s in sizes])
    for ax in axes[:, 0]:
        ax.set_ylabel("MB/s (log)")
    for ax in axes[-1, :]:
        ax.set_xlabel("message size (log)")
    fig.suptitle(f"One-way throughput, {PLACEMENT_TEXT.get(placement, placement)}: "
                 "bold = ipckit, thin = raw equivalent, dotted = peers, dashed black = C limit", fontsize=11)
    fig.tight_layout()
    path = os.path.join(directory, f"throughput-{placement}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
