"""Draw docs/performance-*.png from benchmarks/results/*.json (matplotlib, Agg backend).

    .venv/bin/python benchmarks/plot.py

docs/performance-issue16.png (issue 16's table against its goals) is drawn here too, from
the rows `report.py` collects; `report.py` calls `issue16` when it writes the table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT

DOCS = ROOT / "docs"
BEFORE = "before-c875506"  # results of the same scripts on the code before issue 8's changes


def scaling() -> Path | None:
    path = RESULTS / "scaling.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    points = data["points"]
    sizes = [p["accounts"] for p in points]
    per_rot = [p["median"]["per_rotation_ms"] for p in points]
    cpu_rot = [p["median"]["cpu_per_rotation_ms"] for p in points]
    rss = [p["median"]["peak_rss_mb"] for p in points]
    capped = [bool(p["runs"][0].get("capped")) for p in points]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 4.2))
    ax1.semilogx(sizes, per_rot, "o-", label="wall ms per rotation")
    ax1.semilogx(sizes, cpu_rot, "s--", label="CPU ms per rotation (user+sys)")
    before_path = RESULTS / BEFORE / "scaling.json"
    if before_path.exists():
        before = json.loads(before_path.read_text())["points"]
        ax1.semilogx([p["accounts"] for p in before],
                     [p["median"]["per_rotation_ms"] for p in before], "o:", color="grey",
                     label=f"wall ms per rotation, before ({BEFORE.split('-')[-1]})")
    for size, value, cut in zip(sizes, per_rot, capped, strict=True):
        if cut:
            ax1.annotate("stopped at cap;\nper completed rotation", (size, value),
                         textcoords="offset points", xytext=(-120, 10), fontsize=8)
    ax1.set_xlabel("accounts")
    ax1.set_ylabel("ms")
    ax1.set_ylim(bottom=0)
    ax1.set_title("rotate --all --force --concurrency 32")
    ax1.legend(fontsize=8)
    big = next((p for p in reversed(points) if p["runs"][0].get("progress_t_runs_rssmb")), None)
    if big is not None:
        samples = big["runs"][0]["progress_t_runs_rssmb"]
        t = [x[0] for x in samples]
        ax2.plot(t, [x[1] for x in samples], "-", label="rotations started")
        ax2.set_xlabel("seconds since the CLI started")
        ax2.set_ylabel("rotations started", color="tab:blue")
        twin = ax2.twinx()
        twin.plot(t, [x[2] for x in samples], "-", color="tab:red", label="RSS")
        twin.set_ylabel("RSS (MB)", color="tab:red")
        twin.set_ylim(bottom=0)
        ax2.set_title(f"{big['accounts']:,} accounts: progress over time")
    ax3.semilogx(sizes, rss, "o-", color="tab:red")
    ax3.axhline(150, color="grey", ls=":", label="150 MB target")
    ax3.set_xlabel("accounts")
    ax3.set_ylabel("peak RSS (MB)")
    ax3.set_ylim(bottom=0)
    ax3.set_title("memory of the rotator process")
    ax3.legend(fontsize=8)
    fig.suptitle(f"simulator latency {data['latency_s'] * 1000:g} ms, file backend, "
                 "FileStore (fsync on), 2 cores")
    fig.tight_layout()
    out = DOCS / "performance-scaling.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def single() -> Path | None:
    path = RESULTS / "single.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    med = data["median_ms"]
    split = data["split_ms"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = ["script", "rotator", "rotator_nd", "script_nofs", "rotator_nofs"]
    labels = ["script", "rotator", "rotator\nstore\nno fsync", "script\nno fsync",
              "rotator\nno fsync"]
    colors = ["tab:green", "tab:blue", "tab:blue", "tab:green", "tab:blue"]
    shown = [(label, med[n], c) for n, label, c in zip(names, labels, colors, strict=True)
             if n in med]
    bars = ax1.bar([x[0] for x in shown], [x[1] for x in shown], color=[x[2] for x in shown])
    ax1.bar_label(bars, fmt="%.0f", fontsize=8)
    ax1.tick_params(axis="x", labelsize=8)
    ax1.set_ylabel("ms per rotation (median)")
    ax1.set_title("one rotation, simulator at 0 ms latency")
    bottom = [0.0, 0.0]
    cols = ["fsync_on", "fsync_off"]
    for part, color in (("http", "tab:green"), ("checkpoint", "tab:orange"),
                        ("backend", "tab:purple"), ("other", "tab:grey")):
        values = [split[c][part] for c in cols]
        ax2.bar(["fsync on", "fsync off"], values, bottom=bottom, label=part, color=color)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax2.set_ylabel("ms per rotation (median, instrumented)")
    ax2.set_title("where rotator's time goes")
    ax2.legend()
    fig.tight_layout()
    out = DOCS / "performance-single.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def issue16(rows: list[Any], out: Path, before_ref: str) -> Path:
    """Left: each figure as a fraction of its goal (at most 1 is met), before and after, on
    a log scale. Right: `state/runs/` after 10,000 rotations, unpruned and pruned (MB).
    `rows` are report.Row objects."""
    goals = [r for r in rows if r.spec.goal is not None]
    retention = next((r for r in rows if r.spec.goal is None), None)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8),
                                   gridspec_kw={"width_ratios": [3, 1]})
    y = list(range(len(goals)))
    for offset, attr, color, label in ((-0.2, "before", "tab:grey", f"before ({before_ref})"),
                                       (0.2, "after", "tab:blue", "after")):
        values = [(i + offset, getattr(r, attr) / r.spec.goal) for i, r in enumerate(goals)
                  if getattr(r, attr) is not None]
        if values:
            bars = ax1.barh([v[0] for v in values], [v[1] for v in values], height=0.38,
                            color=color, label=label)
            ax1.bar_label(bars, labels=[f"{v[1]:.2f}" for v in values], fontsize=7, padding=2)
    ax1.axvline(1.0, color="tab:red", ls="--", label="goal")
    ax1.set_xscale("log")
    ax1.set_xticks([0.25, 0.5, 1, 2, 4])
    ax1.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax1.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax1.set_yticks(y)
    ax1.set_yticklabels([f"{r.spec.number}. {_short(r.spec.key)} ({r.spec.goal_text})"
                         for r in goals], fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel("figure / goal (log scale; left of the red line: goal met)")
    ax1.set_title("issue 16: ratios and counts against their goals")
    ax1.legend(fontsize=8, loc="lower right")
    if retention is not None and (retention.extra or retention.before is not None):
        data = retention.extra
        names, values, colors = [], [], []
        if retention.before is not None:
            names.append(f"before\n({before_ref})")
            values.append(retention.before)
            colors.append("tab:grey")
        unpruned = data.get("unpruned", {}).get("runs", {}).get("du_mb")
        if unpruned is not None:
            names.append("after,\nunpruned")
            values.append(unpruned)
            colors.append("tab:cyan")
        pruned = (data.get("pruned") or {}).get("runs", {}).get("du_mb")
        if pruned is not None:
            names.append(f"after, keep_runs\n= {data.get('keep_runs')}")
            values.append(pruned)
            colors.append("tab:blue")
        bars = ax2.bar(names, values, color=colors)
        ax2.bar_label(bars, fmt="%.1f", fontsize=8)
        ax2.tick_params(axis="x", labelsize=8)
        ax2.set_ylabel("MB (du)")
        ax2.set_title(f"7. state/runs/ after {data.get('rotations', 10_000):,} rotations",
                      fontsize=10)
    else:
        ax2.set_axis_off()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _short(key: str) -> str:
    return {
        "fleet_vs_script": "fleet 200 / script",
        "fleet_critical_200": "fleet 200 / critical path",
        "fleet_critical_1000": "fleet 1,000 / critical path",
        "process_50ms": "process vs script, 50 ms",
        "lambda": "Lambda cold start vs boto3",
        "fsyncs": "fsyncs per rotation",
        "rss": "peak RSS, 1,000 accounts",
    }.get(key, key)


def main() -> None:
    for made in (single(), scaling()):
        if made is not None:
            print(f"wrote {made.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
