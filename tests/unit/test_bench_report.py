"""benchmarks/report.py writes issue 16's table between its markers from results JSON files.

Fixture results only: nothing is measured and no timing is asserted; the figures in the
fixtures are made up and only have to come out in the right cells.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.benchmarks import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
REF = "238727c"


def _load_report() -> ModuleType:
    return load_benchmark("report.py", "bench_report")


report = _load_report()


def _machine(commit: str, load: list[float]) -> dict[str, Any]:
    return {"commit": commit, "date": "2026-12-07 05:00:00 UTC", "loadavg_1_5_15": load,
            "loadavg_start_1_5_15": load}


def _results(commit: str, load: list[float], scale: float, pruned: bool) -> dict[str, Any]:
    """Fixture results: every figure `scale` times a base value."""
    fleet = {"repeats": 5, "rotate_extra_args": [],
             "median": {"ratio": 3.0 * scale, "wall_s": 4.2 * scale, "critical_path_s": 1.4,
                        "critical_path_exact_s": 1.4, "peak_rss_mb": 55.0},
             "vs_script": {"ratio_wall": 4.0 * scale, "script_median": {"wall_s": 1.05}}}
    retention: dict[str, Any] = {
        "accounts": 100, "rotations": 10000, "keep_runs": "30d",
        "unpruned": {"runs": {"files": 10000, "du_mb": 80.0 * scale}},
        "pruned": ({"runs": {"files": 3100, "du_mb": 25.0}, "removed": 6900} if pruned
                   else None)}
    return {
        "fleet-200.json": fleet,
        "fleet-1000.json": {**fleet, "median": {**fleet["median"], "ratio": 3.5 * scale,
                                                "critical_path_exact_s": 1.2,
                                                "peak_rss_mb": 61.0}},
        "single.json": {"subprocess_at_latency_ms": {
            "0": {"cli": 300, "script": 150, "ratio_cli_vs_script": 2.0},
            "50": {"cli": 600, "script": 280, "ratio_cli_vs_script": 2.2 * scale}}},
        "lambda.json": {"ratio_to_done": 1.8 * scale, "handler": {"to_done_s": 0.45},
                        "baseline_boto3_client": {"to_done_s": 0.25}},
        "syscalls.json": {("after" if pruned else "before"): {
            "fleet": {"fsyncs_per_rotation": 51.4 * scale}}},
        "retention.json": retention,
        "_machine": _machine(commit, load),
        "_command": f"BENCH_COMMIT={commit} .venv/bin/python benchmarks/bench_x.py --n 1",
    }


def _write(directory: Path, files: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        if name.startswith("_"):
            continue
        doc = {"machine": files["_machine"], "command": files["_command"], **body}
        (directory / name).write_text(json.dumps(doc))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    results = tmp_path / "results"
    _write(results / f"before-{REF}", _results(REF, [2.95, 1.08, 0.41], 1.0, pruned=False))
    _write(results, _results("abc1234", [0.5, 0.6, 0.7], 0.5, pruned=True))
    doc = tmp_path / "performance.md"
    doc.write_text(
        "# Performance\n\nintro\n\n"
        f"{report.BEGIN}\nstale text\n{report.END}\n\n## Summary\n\nleft alone\n"
    )
    return results, doc


def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and line[2].isdigit():
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def _by_label(figures: list[list[str]]) -> dict[str, list[str]]:
    """Rows keyed by the issue's row number ("2" twice: 200, then 1,000 accounts)."""
    keyed: dict[str, list[str]] = {}
    for row in figures:
        key = row[0] if row[0] not in keyed else row[0] + "b"
        keyed[key] = row
    return keyed


class TestReport:
    def test_writes_every_row_between_the_markers(self, setup: tuple[Path, Path]) -> None:
        results, doc = setup
        assert report.main(["--results", str(results), "--doc", str(doc), "--no-plot"]) == 0
        text = doc.read_text()
        assert "stale text" not in text
        assert text.startswith("# Performance\n\nintro\n\n" + report.BEGIN)
        assert text.endswith(report.END + "\n\n## Summary\n\nleft alone\n")
        inner = text[text.index(report.BEGIN):text.index(report.END)]
        figures = [r for r in _table_rows(inner) if len(r) == 7]
        commands = [r for r in _table_rows(inner) if len(r) == 5]
        assert len(figures) == len(report.SPECS) == 8 == len(commands)
        by_number = _by_label(figures)
        assert [r[0] for r in figures] == ["1", "2", "2", "3", "4", "5", "6", "7"]
        # fleet vs script: before 4.00x, after 2.00x, goal 2.2: met.
        assert by_number["1"][3:6] == ["4.00x", "2.00x", "**yes**"]
        # wall / critical path at 200: 3.00x -> 1.50x, goal 1.25: not met; and at 1,000.
        assert by_number["2"][3:6] == ["3.00x", "1.50x", "**no**"]
        assert by_number["2b"][3:6] == ["3.50x", "1.75x", "**no**"]
        assert by_number["3"][3:6] == ["2.20x", "1.10x", "**yes**"]
        assert by_number["4"][3:6] == ["1.80x", "0.90x", "**yes**"]
        assert by_number["5"][3:6] == ["51.4", "25.7", "**no**"]
        assert by_number["6"][3:6] == ["61.0 MB", "61.0 MB", "**yes**"]
        # Retention: unpruned before (no prune there), pruned after within keep_runs' bound.
        assert by_number["7"][3:6] == ["80.0 MB", "25.0 MB", "**yes**"]
        for row in commands:
            assert "benchmarks/bench_x.py --n 1" in row[1]
            assert row[2] == "2.95 / 1.08 / 0.41" and row[3] == "0.50 / 0.60 / 0.70"
            assert row[4] == f"`{REF}` → `abc1234`"

    def test_regenerating_replaces_the_block(self, setup: tuple[Path, Path]) -> None:
        results, doc = setup
        argv = ["--results", str(results), "--doc", str(doc), "--no-plot"]
        assert report.main(argv) == 0
        first = doc.read_text()
        assert report.main(argv) == 0
        assert doc.read_text() == first
        assert first.count(report.BEGIN) == 1 == first.count(report.END)

    def test_missing_results_are_not_measured(self, setup: tuple[Path, Path]) -> None:
        results, doc = setup
        (results / "lambda.json").unlink()
        assert report.main(["--results", str(results), "--doc", str(doc), "--no-plot"]) == 0
        lambda_row = _by_label(_table_rows(doc.read_text()))["4"]
        assert lambda_row[3:6] == ["1.80x", "—", "not measured"]

    def test_missing_markers_change_nothing(self, setup: tuple[Path, Path]) -> None:
        results, doc = setup
        doc.write_text("# Performance\n\nno markers\n")
        assert report.main(["--results", str(results), "--doc", str(doc), "--no-plot"]) == 1
        assert doc.read_text() == "# Performance\n\nno markers\n"

    def test_command_line_draws_the_plot(self, setup: tuple[Path, Path]) -> None:
        pytest.importorskip("matplotlib")
        results, doc = setup
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "report.py"), "--results", str(results),
             "--doc", str(doc)],
            capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        png = doc.parent / report.PLOT_NAME
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({report.PLOT_NAME})" in doc.read_text()


def test_fleet_rows_show_what_the_scripts_cost_against_their_own_critical_paths(
    setup: tuple[Path, Path],
) -> None:
    """bench_fleet --vs-script records each script's wall / its own critical path; rows 1
    and 2 quote them beside rotator's figures."""
    results, doc = setup
    path = results / "fleet-200.json"
    body = json.loads(path.read_text())
    body["vs_script"]["script_own"] = {"ratio": 1.46, "wall_s": 1.02, "critical_path_s": 0.7}
    body["vs_script"]["like_rotator_own"] = {"ratio": 1.18, "wall_s": 2.07,
                                             "critical_path_s": 1.75,
                                             "critical_path_exact_s": 1.5}
    path.write_text(json.dumps(body))
    assert report.main(["--results", str(results), "--doc", str(doc), "--no-plot"]) == 0
    rows = _by_label([r for r in _table_rows(doc.read_text()) if len(r) == 7])
    assert "the script itself is 1.46x its own critical path" in rows["1"][6]
    assert "--like-rotator`, a thread per rotation, no checkpoints): 2.07 s = 1.38x (in " \
        "rounds 1.18x)" in rows["2"][6]
    # The 1,000-account file has no script runs: its detail is rotator's alone.
    assert rows["2b"][6] == ("2.10 s / 1.20 s; in whole rounds of C rotations (ceil(N / C)): "
                             "2.10 s / 1.40 s = 1.50x")


def test_row_2_computes_the_exact_critical_path_of_a_file_that_did_not_record_it(
    setup: tuple[Path, Path],
) -> None:
    """Results saved before `critical_path_exact_s` existed (the "before" files): requests
    per rotation x latency x accounts / concurrency, from what they did record."""
    results, doc = setup
    path = results / "fleet-200.json"
    body = json.loads(path.read_text())
    del body["median"]["critical_path_exact_s"]
    body.update(accounts=200, latency_s=0.05, concurrency=32)
    body["median"]["requests_per_rotation"] = 5.0  # 5 x 0.05 x 200 / 32 = 1.5625 s
    path.write_text(json.dumps(body))
    assert report.main(["--results", str(results), "--doc", str(doc), "--no-plot"]) == 0
    rows = _by_label([r for r in _table_rows(doc.read_text()) if len(r) == 7])
    assert rows["2"][4] == f"{2.1 / 1.5625:.2f}x"
    assert rows["2"][6].startswith("2.10 s / 1.56 s;")


def test_fleet_row_2_says_where_the_wall_goes_when_the_run_recorded_a_timeline(
    setup: tuple[Path, Path],
) -> None:
    """bench_fleet's timeline medians (benchmarks/fleet_timeline.py) show in row 2."""
    results, doc = setup
    path = results / "fleet-200.json"
    body = json.loads(path.read_text())
    body["median"]["timeline"] = {
        "first_answer_s": 0.19, "after_last_answer_s": 0.04, "rotation_ms": 262.0,
        "steps_ms": {"backend.staged": 17.4, "backend.promoted": 10.6, "token.created": 55.9},
    }
    path.write_text(json.dumps(body))
    assert report.main(["--results", str(results), "--doc", str(doc), "--no-plot"]) == 0
    rows = _by_label([r for r in _table_rows(doc.read_text()) if len(r) == 7])
    assert ("first answer 0.19 s after launch (start-up and one round trip), exit 0.04 s "
            "after the last; a rotation 262 ms (file backend under load: backend.staged "
            "17 ms, backend.promoted 11 ms)") in rows["2"][6]
    assert "first answer" not in rows["2b"][6]  # that file recorded no timeline
    # A run that recorded how busy the request slots were says so too.
    body["median"]["timeline"]["slots_busy"] = 0.834
    path.write_text(json.dumps(body))
    assert report.main(["--results", str(results), "--doc", str(doc), "--no-plot"]) == 0
    rows = _by_label([r for r in _table_rows(doc.read_text()) if len(r) == 7])
    assert ("exit 0.04 s after the last; request slots busy 83% in between; a rotation "
            "262 ms") in rows["2"][6]
