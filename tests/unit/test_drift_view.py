"""Tables for people: rich on a terminal, plain and aligned elsewhere."""

from __future__ import annotations

import io

from rotator.ops.drift import DriftReport, Finding
from rotator.ops.status_view import DRIFT_HEADER, drift_rows, render_table


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


REPORTS = [
    DriftReport("svc_a", "t", (), (), "cur", ("cur",)),
    DriftReport(
        "svc_b",
        "t",
        (Finding("critical", "backend_on_dead_token", "vault:x serves [dead]"),),
        (),
        "c",
        (),
    ),
]


class TestRenderTable:
    def test_plain_when_not_a_terminal(self) -> None:
        """A pipe gets aligned columns with no escape codes."""
        out = io.StringIO()
        render_table(out, DRIFT_HEADER, drift_rows(REPORTS))
        header, clean, critical = out.getvalue().splitlines()
        assert header.split() == list(DRIFT_HEADER)
        assert clean.split()[:2] == ["svc_a", "ok"] and critical.split()[:2] == [
            "svc_b",
            "critical",
        ]
        assert header.index("SEVERITY") == critical.index("critical")
        assert "\x1b[" not in out.getvalue()

    def test_rich_on_a_terminal(self) -> None:
        """A terminal gets a boxed rich table; markup-like text in messages is shown verbatim."""
        out = Terminal()
        render_table(out, DRIFT_HEADER, drift_rows(REPORTS), title="rotator drift")
        text = out.getvalue()
        assert "rotator drift" in text and "backend_on_dead_token" in text
        assert "[dead]" in text
        assert any(ch in text for ch in "┃│┏━")
