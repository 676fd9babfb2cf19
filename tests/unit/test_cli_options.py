"""Global options anywhere on the command line, and the exit-status table."""

from __future__ import annotations

import pytest

from rotator.cli import EXIT_USAGE, build_parser, exit_code_for, worst
from rotator.errors import BackendCredentials, BackendError, ConfigError


class TestGlobalOptions:
    @pytest.mark.parametrize(
        "argv",
        [
            ["--config", "c.toml", "--log-level", "debug", "rotate", "svc_a"],
            ["rotate", "svc_a", "--config", "c.toml", "--log-level", "debug"],
            ["--log-level", "debug", "rotate", "--config", "c.toml", "svc_a"],
        ],
    )
    def test_before_or_after_the_command(self, argv: list[str]) -> None:
        args = build_parser().parse_args(argv)
        assert args.config == "c.toml" and args.log_level == "debug"
        assert args.usernames == ["svc_a"] and args.log_format == "auto"

    def test_after_wins_and_defaults_stay(self) -> None:
        """Given twice, the one after the command wins; not given, the defaults hold."""
        args = build_parser().parse_args(["--config", "a.toml", "status", "--config", "b.toml"])
        assert args.config == "b.toml"
        plain = build_parser().parse_args(["status"])
        assert plain.config is None and plain.log_format == "auto" and plain.log_level == "info"

    @pytest.mark.parametrize(
        "argv",
        [
            ["config", "validate", "--config", "c.toml"],
            ["state", "init", "--config", "c.toml"],
            ["revoke", "svc_a", "tok", "--config", "c.toml"],
            ["history", "svc_a", "--log-format", "json", "--config", "c.toml"],
        ],
    )
    def test_every_command_takes_them(self, argv: list[str]) -> None:
        assert build_parser().parse_args(argv).config == "c.toml"

    def test_bad_choice_is_a_usage_error(self) -> None:
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(["rotate", "--log-level", "loud"])
        assert info.value.code == 2


class TestExitStatuses:
    def test_backend_credentials_are_usage_errors(self) -> None:
        """A missing VAULT_TOKEN is 2, like a bad admin token; other backend errors stay 1."""
        assert exit_code_for(BackendCredentials("VAULT_TOKEN is not set")) == EXIT_USAGE
        assert exit_code_for(BackendError("unreachable")) == 1
        assert exit_code_for(ConfigError("bad")) == EXIT_USAGE

    def test_most_severe_wins(self) -> None:
        assert worst([0, 2, 3]) == 3 and worst([3, 1]) == 1 and worst([2, 0]) == 2
        assert worst([]) == 0
