"""Config policies that would rotate on every run, unbounded durations, typos in [defaults]."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rotator.config import parse_config
from rotator.durations import MAX_DURATION, parse_duration
from rotator.errors import ConfigError

ACCOUNTS = "".join(
    f'\n[[accounts]]\nusername = "svc_{n}"\n  [[accounts.backends]]\n  type = "file"\n'
    f'  path = "{n}.json"\n'
    for n in ("a", "b", "c")
)


def problems(defaults: str, accounts: str = ACCOUNTS) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse_config(f"[defaults]\n{defaults}\n{accounts}", base_dir=Path("/x"))
    assert "\n" not in str(info.value)
    return info.value.problems


class TestRotateOnEveryRun:
    @pytest.mark.parametrize(
        "defaults",
        [
            'ttl = "1d"\nrotate_before_expiry = "7d"',
            'ttl = "7d"\nrotate_before_expiry = "7d"',
            'ttl = "1d"\nrotate_before_expiry = "1h"',
        ],
    )
    def test_ttl_too_close_to_rotate_before_expiry(self, defaults: str) -> None:
        """Each token would be due within a day of being made: refused once, with the margin."""
        [problem] = problems(defaults)
        assert problem.startswith("defaults.ttl: ")
        assert "must exceed rotate_before_expiry" in problem and "at least 1d" in problem

    def test_account_override_is_checked_where_it_is(self) -> None:
        accounts = ACCOUNTS.replace('username = "svc_b"', 'username = "svc_b"\nttl = "2d"')
        [problem] = problems('ttl = "90d"\nrotate_before_expiry = "7d"', accounts)
        assert problem.startswith("accounts[1].ttl: ")

    def test_sane_policies_pass(self) -> None:
        """90d/7d, ttl 2d with 12h, no ttl at all, and a short rotate_after are fine."""
        for defaults in (
            'ttl = "90d"\nrotate_before_expiry = "7d"',
            'ttl = "2d"\nrotate_before_expiry = "12h"',
            'rotate_after = "1h"',
        ):
            parse_config(f"[defaults]\n{defaults}\n{ACCOUNTS}", base_dir=Path("/x"))


class TestDurationBound:
    @pytest.mark.parametrize("value", ['"99999999999999d"', '"999999999d"', '"3651d"', "10000000000"])
    def test_too_long_names_the_bound(self, value: str) -> None:
        [problem] = problems(f"revoke_grace = {value}")
        assert problem.startswith("defaults.revoke_grace: ") and "3650d" in problem

    def test_the_bound_itself_is_accepted(self) -> None:
        assert parse_duration("3650d") == MAX_DURATION == timedelta(days=3650)


class TestDefaultsTypo:
    def test_reported_once_with_a_suggestion(self) -> None:
        """Three accounts inherit [defaults]; its typo is still one problem."""
        assert problems('rotate_aftr = "10d"') == (
            "defaults.rotate_aftr: unknown field; did you mean 'rotate_after'?",
        )

    def test_bad_default_value_reported_once(self) -> None:
        assert len(problems('ttl = "10s"')) == 1

    def test_account_typo_and_section_typo(self) -> None:
        accounts = ACCOUNTS.replace('username = "svc_a"', 'username = "svc_a"\nrevoke_grase = "1h"')
        assert problems("", accounts) == (
            "accounts[0].revoke_grase: unknown field; did you mean 'revoke_grace'?",
        )
        with pytest.raises(ConfigError, match="did you mean 'api_url'"):
            parse_config('[motherduck]\napi_ulr = "http://x"\n', base_dir=Path("/x"))

    def test_no_suggestion_when_nothing_is_close(self) -> None:
        [problem] = problems('zzzz = "1"')
        assert problem == "defaults.zzzz: unknown field"
