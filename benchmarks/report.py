"""Write issue 16's table into docs/performance.md from benchmarks/results/*.json.

    .venv/bin/python benchmarks/report.py                   # after run_all.py (make bench)
    .venv/bin/python benchmarks/report.py --before 238727c  # "before" from results/before-REF/

Each row: what is measured, the goal, the figure before (the same scripts on the code at
`--before`, results/before-REF/) and after (results/), whether the goal is met, the
exact command, the load average (1/5/15 minutes) when each figure was measured and the
commits. Only the text between the two markers below is replaced; the rest of the page
is left alone. The plot (`plot.py`, docs/performance-issue16.png) shows each figure
against its goal. Nothing here measures anything: it reads JSON files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DOC = ROOT / "docs" / "performance.md"
BEFORE_REF = "238727c"  # the commit issue 16 was filed against
BEGIN = "<!-- bench:issue16:begin -->"
END = "<!-- bench:issue16:end -->"
PLOT_NAME = "performance-issue16.png"

Doc = dict[str, Any]


@dataclass(frozen=True)
class Spec:
    """One row: where its figure is in which results file, and its goal."""

    key: str
    number: str  # the row of the issue's table
    label: str
    file: str
    goal_text: str
    goal: float | None  # the figure must be at most this (None: see `met`)
    unit: str
    value: Callable[[Doc], float | None]
    note: Callable[[Doc], str] = lambda doc: ""


@dataclass
class Row:
    spec: Spec
    before: float | None = None
    after: float | None = None
    met: bool | None = None
    command: str = ""
    load_before: list[float] | None = None
    load_after: list[float] | None = None
    commit_before: str = ""
    commit_after: str = ""
    date_after: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _dig(doc: Doc, *path: str | int) -> Any:
    for part in path:
        if isinstance(doc, dict) and isinstance(part, str):
            doc = doc.get(part)  # type: ignore[assignment]
        else:
            return None
        if doc is None:
            return None
    return doc


def _syscalls_fsyncs(doc: Doc) -> float | None:
    """One rotation's count (a fleet's average also carries the pass's own fixed writes)."""
    for label in ("after", "before"):
        value = _dig(doc, label, "single", "fsync+fdatasync")
        if value is None:
            value = _dig(doc, label, "fleet", "fsyncs_per_rotation")
        if value is not None:
            return float(value)
    return None


def _syscalls_note(doc: Doc) -> str:
    for label in ("after", "before"):
        fleet = _dig(doc, label, "fleet")
        if isinstance(fleet, dict) and "fsyncs_per_rotation" in fleet:
            return (f"{fleet['fsyncs_per_rotation']:.1f} per rotation averaged over a fleet of "
                    f"{fleet.get('accounts', '?')} (threads may share a journal sync; the pass "
                    "adds its own few)")
    return ""


def _runs_mb(doc: Doc) -> float | None:
    """state/runs after the 10,000 rotations: pruned where the code could, else unpruned."""
    value = _dig(doc, "pruned", "runs", "du_mb")
    if value is None:
        value = _dig(doc, "unpruned", "runs", "du_mb")
    return None if value is None else float(value)


def _retention_note(doc: Doc) -> str:
    unpruned = _dig(doc, "unpruned", "runs", "du_mb")
    if unpruned is None:
        return ""
    text = (f"{doc.get('rotations', 0):,} runs of {doc.get('accounts', 0):,} accounts "
            f"(daily): {unpruned:.1f} MB unpruned")
    kept = _dig(doc, "pruned", "runs", "files")
    if kept is not None:
        text += f"; `keep_runs = \"{doc.get('keep_runs')}\"` + `rotator state prune` keeps {kept:,}"
    return text


def _fleet_note(doc: Doc) -> str:
    script = _dig(doc, "vs_script", "script_median", "wall_s")
    rotator = _dig(doc, "median", "wall_s")
    if script is None or rotator is None:
        return ""
    extra = " ".join(doc.get("rotate_extra_args") or [])
    own = _dig(doc, "vs_script", "script_own", "ratio")
    return (f"{rotator:.2f} s vs {script:.2f} s (medians, {doc.get('repeats')} pairs)"
            + (f"; the script itself is {own:.2f}x its own critical path (2 requests)"
               if own is not None else "")
            + (f"; rotate args `{extra}`" if extra else ""))


def _exact_critical(doc: Doc) -> float | None:
    """requests x latency x N / C: the issue's critical path (files written before it was
    recorded give what it is computed from)."""
    recorded = _dig(doc, "median", "critical_path_exact_s")
    if recorded is not None:
        return float(recorded)
    calls = _dig(doc, "median", "requests_per_rotation")
    accounts, latency, concurrency = (doc.get(k) for k in ("accounts", "latency_s",
                                                           "concurrency"))
    if calls is None or not accounts or latency is None or not concurrency:
        return None
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from bench_fleet import exact_critical_path  # the formula the runs record with

    return exact_critical_path(float(calls), float(latency), int(accounts), int(concurrency))


def _exact_ratio(doc: Doc) -> float | None:
    wall, exact = _dig(doc, "median", "wall_s"), _exact_critical(doc)
    return None if wall is None or not exact else float(wall) / exact


def _critical_note(doc: Doc) -> str:
    wall, exact = _dig(doc, "median", "wall_s"), _exact_critical(doc)
    rounds = _dig(doc, "median", "critical_path_s")
    if wall is None or exact is None or rounds is None:
        return ""
    like = _dig(doc, "vs_script", "like_rotator_own")
    like_exact = like.get("critical_path_exact_s") if isinstance(like, dict) else None
    return (f"{wall:.2f} s / {exact:.2f} s; in whole rounds of C rotations "
            f"(ceil(N / C)): {wall:.2f} s / {rounds:.2f} s = {wall / rounds:.2f}x") + (
        f"; the script making rotator's 5 requests (`hand_script.py --like-rotator`, a "
        f"thread per rotation, no checkpoints): {like['wall_s']:.2f} s = "
        f"{like['wall_s'] / like_exact:.2f}x (in rounds {like['ratio']:.2f}x)"
        if isinstance(like, dict) and like_exact else "") + _timeline_note(doc)


def _timeline_note(doc: Doc) -> str:
    """Where the wall beyond the critical path goes (bench_fleet's `timeline` medians)."""
    timeline = _dig(doc, "median", "timeline")
    if not isinstance(timeline, dict) or timeline.get("first_answer_s") is None:
        return ""
    steps = timeline.get("steps_ms") or {}
    local = [f"{name} {steps[name]:.0f} ms" for name in ("backend.staged", "backend.promoted")
             if steps.get(name) is not None]
    busy = timeline.get("slots_busy")
    return (f"; first answer {timeline['first_answer_s']:.2f} s after launch (start-up and "
            f"one round trip), exit {timeline['after_last_answer_s']:.2f} s after the last"
            + (f"; request slots busy {busy:.0%} in between" if busy is not None else "")
            + f"; a rotation {timeline['rotation_ms']:.0f} ms"
            + (f" (file backend under load: {', '.join(local)})" if local else ""))


def _process_note(doc: Doc) -> str:
    ms = _dig(doc, "subprocess_at_latency_ms", "50")
    return "" if ms is None else f"{ms['cli']:.0f} ms vs {ms['script']:.0f} ms"


def _lambda_note(doc: Doc) -> str:
    handler, boto = _dig(doc, "handler", "to_done_s"), _dig(doc, "baseline_boto3_client",
                                                              "to_done_s")
    if handler is None or boto is None:
        return ""
    return f"{handler * 1000:.0f} ms vs {boto * 1000:.0f} ms"


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


SPECS = [
    Spec("fleet_vs_script", "1", "fleet, 200 accounts @ 50 ms, concurrency 32: rotator wall / the "
         "script's logic over as many accounts (interleaved)", "fleet-200.json", "≤ 2.2x",
         2.2, "x", lambda d: _num(_dig(d, "vs_script", "ratio_wall")), _fleet_note),
    Spec("fleet_critical_200", "2", "the same: wall / rotator's own critical path (calls x latency "
         "x accounts / concurrency)", "fleet-200.json", "≤ 1.25x", 1.25, "x",
         _exact_ratio, _critical_note),
    Spec("fleet_critical_1000", "2", "the same at 1,000 accounts", "fleet-1000.json", "≤ 1.25x",
         1.25, "x", _exact_ratio, _critical_note),
    Spec("process_50ms", "3", "one rotation as a process (`rotator rotate U --force`) vs the "
         "script as a process, 50 ms", "single.json", "≤ 1.5x", 1.5, "x",
         lambda d: _num(_dig(d, "subprocess_at_latency_ms", "50", "ratio_cli_vs_script")),
         _process_note),
    Spec("lambda", "4", "Lambda cold start: `import rotator.aws_lambda` + one no-op scheduled "
         "event vs `import boto3` + one client (interpreter shutdown excluded)", "lambda.json",
         "≤ 1.3x", 1.3, "x", lambda d: _num(d.get("ratio_to_done")), _lambda_note),
    Spec("fsyncs", "5", "fsyncs per rotation (file state + file backend; strace, one rotation)",
         "syscalls.json", "≤ 12", 12, "", _syscalls_fsyncs, _syscalls_note),
    Spec("rss", "6", "peak RSS, 1,000-account fleet", "fleet-1000.json", "≤ 150 MB (keep)", 150,
         " MB", lambda d: _num(_dig(d, "median", "peak_rss_mb"))),
    Spec("runs_dir", "7", "`state/runs/` after 10,000 rotations (`du`)", "retention.json",
         "bounded by a retention setting", None, " MB", _runs_mb, _retention_note),
]


def _load(path: Path) -> Doc | None:
    try:
        doc: Doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return doc


def collect(results: Path = RESULTS, before_ref: str = BEFORE_REF) -> list[Row]:
    """One Row per Spec from `results/` and `results/before-REF/` (missing files: None)."""
    rows = []
    for spec in SPECS:
        row = Row(spec)
        after = _load(results / spec.file)
        before = _load(results / f"before-{before_ref}" / spec.file)
        if before is not None:
            row.before = spec.value(before)
            row.command = str(before.get("command") or "")
            row.load_before = _dig(before, "machine", "loadavg_1_5_15")
            row.commit_before = str(_dig(before, "machine", "commit") or before_ref)
        if after is not None:
            row.after = spec.value(after)
            row.command = str(after.get("command") or row.command)
            row.load_after = _dig(after, "machine", "loadavg_1_5_15")
            row.commit_after = str(_dig(after, "machine", "commit") or "")
            row.date_after = str(_dig(after, "machine", "date") or "")
            row.note = spec.note(after)
            row.extra = after
        row.met = _met(spec, row, after)
        rows.append(row)
    return rows


def _met(spec: Spec, row: Row, after: Doc | None) -> bool | None:
    if row.after is None:
        return None
    if spec.goal is not None:
        return row.after <= spec.goal
    # Retention: met when the prune ran and left at most what keep_runs allows.
    assert after is not None
    kept = _dig(after, "pruned", "runs", "files")
    if kept is None:
        return False
    allowed = _allowed_runs(after)
    return allowed is not None and kept <= allowed


def _allowed_runs(doc: Doc) -> int | None:
    """Finished runs keep_runs lets stay: per account, the count or one per day of the age
    (plus today's), as the fill made one run per account per day."""
    keep = str(doc.get("keep_runs", ""))
    accounts = int(doc.get("accounts") or 0)
    if keep.isdigit():
        return accounts * int(keep)
    if keep.endswith("d") and keep[:-1].isdigit():
        return accounts * (int(keep[:-1]) + 1)
    return None


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == " MB":
        return f"{value:.1f} MB"
    return f"{value:.1f}"


def _load_text(load: list[float] | None) -> str:
    return "—" if not load else " / ".join(f"{x:.2f}" for x in load)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[Row], before_ref: str = BEFORE_REF, plot: str | None = PLOT_NAME) -> str:
    """The Markdown between the markers (markers not included)."""
    commits = sorted({r.commit_after for r in rows if r.commit_after})
    dates = sorted({r.date_after for r in rows if r.date_after})
    lines = [
        "",
        "## Issue 16: the table, regenerated by `make bench`",
        "",
        "Written by [`benchmarks/report.py`](../benchmarks/report.py) from the JSON files in "
        "`benchmarks/results/` (after) and "
        f"`benchmarks/results/before-{before_ref}/` (before: the same scripts on a `git "
        f"archive` of `{before_ref}`, first on `PYTHONPATH`, re-measured with "
        f"`benchmarks/run_all.py --baseline {before_ref}`); do not edit it by hand. Ratios "
        "are medians of one run in which the two sides were interleaved (the order "
        "alternating); the figures of different rows come from different runs, each with the "
        "machine's load average when it ended (1 / 5 / 15 min). The script's fleet logic "
        "is `hand_script.py --fleet` (a thread pool of 32, one HTTP client) over as many "
        "accounts of its own on the same simulator: rotator refuses to mint while a user "
        "has live tokens its state does not know, so the two cannot share users. The "
        "critical path counts the requests per rotation the simulator logged in that run, "
        "times the latency, times accounts / concurrency (row 2's words; the figures of "
        "`before` are recomputed so from what they recorded); the detail also gives it "
        "in whole rounds of `concurrency` rotations (ceil), the floor of a pool of "
        "threads that each run one whole rotation, which the table used before rotator "
        "counted its requests, not its rotations, against `--concurrency`.",
        "",
        (f"After: commit {', '.join(f'`{c}`' for c in commits)}"
         + (f", {dates[0]}" + (f" to {dates[-1]}" if len(dates) > 1 else "") if dates else "")
         + ".") if commits else "After: not measured yet; `make bench` measures it and "
        "rewrites this section.",
        "",
        f"| # | measurement | goal | before (`{before_ref}`) | after | met? | detail (after) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        met = {True: "**yes**", False: "**no**", None: "not measured"}[row.met]
        lines.append(
            f"| {row.spec.number} | {_cell(row.spec.label)} | {row.spec.goal_text} "
            f"| {_fmt(row.before, row.spec.unit)} | {_fmt(row.after, row.spec.unit)} "
            f"| {met} | {_cell(row.note) or '—'} |"
        )
    lines += [
        "",
        "The command behind each row (run from the checkout's root; the \"before\" figure is "
        "the same command on the older code) and the load average (1 / 5 / 15 min) when the "
        "benchmark ended; the load when it started is in its JSON file too:",
        "",
        "| # | command | load before | load after | commits (before → after) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        command = f"`{row.command}`" if row.command else "—"
        lines.append(
            f"| {row.spec.number} | {_cell(command)} | {_load_text(row.load_before)} "
            f"| {_load_text(row.load_after)} "
            f"| `{row.commit_before or '—'}` → `{row.commit_after or '—'}` |"
        )
    if plot:
        lines += ["", f"![issue 16: each figure against its goal, before and after]({plot})"]
    lines.append("")
    return "\n".join(lines)


def write(doc_path: Path, block: str) -> None:
    """Replace what is between the markers in `doc_path` (ValueError if they are missing)."""
    text = doc_path.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{doc_path}: markers {BEGIN} / {END} not found")
    doc_path.write_text(text[: start + len(BEGIN)] + block + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--before", default=BEFORE_REF, help="results/before-REF (default "
                        f"{BEFORE_REF})")
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--no-plot", action="store_true", help="write the table only")
    args = parser.parse_args(argv)
    rows = collect(args.results, args.before)
    plot_name = None
    if not args.no_plot:
        sys.path.insert(0, str(HERE))
        import plot

        made = plot.issue16(rows, args.doc.parent / PLOT_NAME, args.before)
        plot_name = made.name
    try:
        write(args.doc, render(rows, args.before, plot_name))
    except ValueError as exc:
        print(f"report.py: {exc}", file=sys.stderr)
        return 1
    print(f"wrote issue 16's table into {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
