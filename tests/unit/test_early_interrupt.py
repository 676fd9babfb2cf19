"""Ctrl-C before rotator's own signal handlers are installed."""

from __future__ import annotations

import pytest

from rotator import cli


class TestEarlyInterrupt:
    def test_sigint_while_parsing_is_one_line_and_130(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A KeyboardInterrupt before any handler runs: one line, exit 130, no traceback."""

        def interrupted() -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(cli, "build_parser", interrupted)
        assert cli.main(["status"]) == 130
        err = capsys.readouterr().err
        assert err == "rotator: stopped by SIGINT before starting; nothing was changed\n"
