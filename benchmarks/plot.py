"""Draw docs/performance-*.png from benchmarks/results/*.json (matplotlib, Agg backend).

    .venv/bin/python benchmarks/plot.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

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


def main() -> None:
    for made in (single(), scaling()):
        if made is not None:
            print(f"wrote {made.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
