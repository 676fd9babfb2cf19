"""Schedules and shards as plain functions: window parsing, spread, shard split, due dates."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from rotator.config import parse_config
from rotator.engine.runrecord import TokenRef, rotation_due
from rotator.errors import ConfigError
from rotator.schedule import decide, parse_shard, parse_window, shard_of, spread_offset

# 2030-01-07 is a Monday.
MON = datetime(2030, 1, 7, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """`day` days after Monday 2030-01-07, at hh:mm UTC."""
    return MON + timedelta(days=day, hours=hour, minutes=minute)


class TestParseWindow:
    def test_weekdays_span(self) -> None:
        """'Mon-Fri 02:00-05:00' is open from 02:00 (inclusive) to 05:00 (exclusive) on weekdays."""
        window = parse_window("Mon-Fri 02:00-05:00")
        assert window.contains(at(0, 2))
        assert window.contains(at(4, 4, 59))
        assert not window.contains(at(0, 5))
        assert not window.contains(at(0, 1, 59))
        assert not window.contains(at(5, 3))  # Saturday
        assert not window.contains(at(6, 3))  # Sunday

    def test_day_range_wraps_the_week(self) -> None:
        """'Fri-Mon' means Friday, Saturday, Sunday and Monday."""
        window = parse_window("Fri-Mon 10:00-11:00")
        assert [window.contains(at(d, 10, 30)) for d in range(7)] == [
            True, False, False, False, True, True, True,
        ]

    def test_span_past_midnight(self) -> None:
        """'Sun 23:00-01:00' runs into Monday, across the end of the week."""
        window = parse_window("Sun 23:00-01:00")
        assert window.contains(at(6, 23, 30))
        assert window.contains(at(7, 0, 30))  # the next Monday
        assert not window.contains(at(6, 22, 59))
        assert not window.contains(at(7, 1))

    def test_every_day_and_several_spans(self) -> None:
        """Days are optional (every day); spans join with ';'; full day names work."""
        daily = parse_window("03:00-04:00")
        assert all(daily.contains(at(d, 3, 15)) for d in range(7))
        both = parse_window("Monday 01:00-02:00; sat,sun 12:00-24:00")
        assert both.contains(at(0, 1, 30)) and both.contains(at(6, 23, 59))
        assert not both.contains(at(1, 1, 30))

    def test_other_utc_offsets_are_converted(self) -> None:
        """A 'now' with a +02:00 offset is judged in UTC."""
        window = parse_window("Mon 02:00-03:00")
        local = datetime(2030, 1, 7, 4, 30, tzinfo=timezone(timedelta(hours=2)))
        assert window.contains(local)

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("Mon-Fry 02:00-05:00", "unknown day 'Fry'"),
            ("Mon 25:00-26:00", "not a time of day"),
            ("Mon 02:00-02:00", "empty"),
            ("whenever", "not a window like"),
            ("Mon-Wed-Fri 02:00-03:00", "day range"),
        ],
    )
    def test_bad_windows_say_what_is_wrong(self, text: str, fragment: str) -> None:
        """A bad window raises ValueError naming the problem."""
        with pytest.raises(ValueError, match=fragment):
            parse_window(text)

    def test_next_open(self) -> None:
        """Outside the window the next opening is found, across a weekend."""
        window = parse_window("Mon-Fri 02:00-05:00")
        assert window.next_open(at(5, 10)) == at(7, 2)  # Saturday -> next Monday
        assert window.next_open(at(1, 1)) == at(1, 2)
        assert window.next_open(at(1, 3)) == at(1, 3)  # open now


class TestSpread:
    def test_stable_and_in_range(self) -> None:
        """The offset depends only on the username (case-insensitive) and lies in [0, spread)."""
        spread = timedelta(days=7)
        offset = spread_offset("svc_orders", spread)
        assert offset == spread_offset("SVC_Orders", spread)
        assert timedelta(0) <= offset < spread
        assert spread_offset("svc_orders", timedelta(0)) == timedelta(0)

    def test_a_thousand_accounts_spread_over_the_days(self) -> None:
        """1,000 accounts adopted on one day come due on every day of the spread, none crowded."""
        days = Counter(
            spread_offset(f"svc_{i:04d}", timedelta(days=10)).days for i in range(1000)
        )
        assert sorted(days) == list(range(10))
        assert max(days.values()) < 150  # 100 expected per day

    def test_spread_moves_the_due_date(self) -> None:
        """With a spread, the token comes due at created + rotate_after + the account's offset."""
        created = MON
        offset = spread_offset("svc_a", timedelta(days=5))
        kwargs = dict(
            account="svc_a", created_ts=created.isoformat(), expire_at=None, has_token=True,
            rotate_after=timedelta(days=30), rotate_before_expiry=timedelta(days=7),
            spread=timedelta(days=5),
        )
        due_at = created + timedelta(days=30) + offset
        before = decide(now=due_at - timedelta(seconds=1), **kwargs)  # type: ignore[arg-type]
        assert not before.due and before.at == due_at
        assert decide(now=due_at, **kwargs).due  # type: ignore[arg-type]


class TestShard:
    def test_parse(self) -> None:
        """'I/N' parses to (I, N)."""
        assert parse_shard("0/4") == (0, 4)
        assert parse_shard(" 3 / 4 ") == (3, 4)

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [("4/4", "between 0 and N-1"), ("1/0", "at least 1"), ("-1/4", "not I/N"), ("a/b", "not I/N")],
    )
    def test_bad_shards(self, text: str, fragment: str) -> None:
        """An index outside 0..N-1, or something else than I/N, is refused."""
        with pytest.raises(ValueError, match=fragment):
            parse_shard(text)

    def test_split_is_a_stable_partition(self) -> None:
        """Every account is in exactly one shard, the same one every time, and all shards fill."""
        names = [f"svc_{i:04d}" for i in range(1000)]
        shards = [shard_of(n, 4) for n in names]
        assert shards == [shard_of(n.upper(), 4) for n in names]
        counts = Counter(shards)
        assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 200


class TestDecide:
    """`decide` and `rotation_due` at a fixed 'now' (the fake clock)."""

    POLICY = dict(rotate_after=timedelta(days=30), rotate_before_expiry=timedelta(days=7))

    def token(self, created: datetime, expire: datetime | None = None) -> TokenRef:
        return TokenRef(
            id="t1", created_ts=created.isoformat(), expire_at=expire.isoformat() if expire else None
        )

    def test_due_inside_the_window(self) -> None:
        """An old token is due when 'now' is inside the window."""
        due, reason = rotation_due(
            self.token(at(0, 3) - timedelta(days=40)), now=at(0, 3),
            window="Mon-Fri 02:00-05:00", account="svc_a", **self.POLICY,  # type: ignore[arg-type]
        )
        assert due and "old" in reason

    def test_held_outside_the_window_until_it_opens(self) -> None:
        """Outside the window an old token waits; the decision names the opening."""
        now = at(5, 12)  # Saturday noon
        decision = decide(
            account="svc_a", created_ts=(now - timedelta(days=40)).isoformat(), expire_at=None,
            has_token=True, now=now, window="Mon-Fri 02:00-05:00", **self.POLICY,  # type: ignore[arg-type]
        )
        assert not decision.due
        assert decision.at == at(7, 2)
        assert "waiting for the window" in decision.reason

    def test_force_ignores_window_and_spread(self) -> None:
        """--force starts a rotation at any time, even for a fresh token."""
        due, reason = rotation_due(
            self.token(at(5, 11)), now=at(5, 12), force=True, window="Mon 02:00-03:00",
            spread=timedelta(days=7), account="svc_a", **self.POLICY,  # type: ignore[arg-type]
        )
        assert due and reason == "forced"

    def test_expiry_overrides_the_window(self) -> None:
        """A token that would expire before the window opens is rotated outside it."""
        now = at(5, 12)
        token = self.token(now - timedelta(days=10), expire=now + timedelta(days=1))
        due, reason = rotation_due(
            token, now=now, window="Mon-Fri 02:00-05:00", account="svc_a", **self.POLICY,  # type: ignore[arg-type]
        )
        assert due and "expires before the window" in reason

    def test_not_yet_due_lands_on_the_next_opening(self) -> None:
        """A token due on a Saturday is next due when the window opens on Monday."""
        created = at(5, 12) - timedelta(days=30)
        decision = decide(
            account="svc_a", created_ts=created.isoformat(), expire_at=None, has_token=True,
            now=at(0, 0), window="Mon-Fri 02:00-05:00", **self.POLICY,  # type: ignore[arg-type]
        )
        assert not decision.due and decision.at == at(7, 2)

    def test_first_token_is_due_but_waits_for_the_window(self) -> None:
        """An account with no managed token is due at once, inside the window only."""
        inside = rotation_due(None, now=at(0, 3), window="Mon 02:00-04:00", **self.POLICY)  # type: ignore[arg-type]
        outside = rotation_due(None, now=at(0, 5), window="Mon 02:00-04:00", **self.POLICY)  # type: ignore[arg-type]
        assert inside[0] and not outside[0]


class TestConfig:
    def config(self, defaults: str = "", account: str = "", state: str = "") -> str:
        return (
            f"[state]\n{state}\n[defaults]\n{defaults}\n[[accounts]]\nusername = \"svc_a\"\n{account}\n"
            '[[accounts.backends]]\ntype = "file"\npath = "s.json"\n'
        )

    def test_window_spread_keep_runs_load(self, tmp_path: Path) -> None:
        """window, spread (defaults or per account) and keep_runs reach the models."""
        config = parse_config(
            self.config('window = "Mon-Fri 02:00-05:00"', 'spread = "3d"', 'keep_runs = "90d"'),
            base_dir=tmp_path,
        )
        policy = config.account("svc_a").policy
        assert policy.window == "Mon-Fri 02:00-05:00"
        assert policy.spread == timedelta(days=3)
        assert config.state.keep_runs == "90d"

    @pytest.mark.parametrize(
        ("parts", "prefix"),
        [
            ({"defaults": 'window = "Mon-Fry 02:00-05:00"'}, "defaults.window: "),
            ({"account": 'window = "Mon 9-5"'}, "accounts[0].window: "),
            ({"defaults": 'spread = "soon"'}, "defaults.spread: "),
            ({"state": 'keep_runs = "forever"'}, "state.keep_runs: "),
            ({"state": "keep_runs = 0"}, "state.keep_runs: "),
        ],
    )
    def test_bad_values_name_the_field(
        self, tmp_path: Path, parts: dict[str, str], prefix: str
    ) -> None:
        """A bad schedule or retention value is one line naming the field."""
        with pytest.raises(ConfigError) as caught:
            parse_config(self.config(**parts), base_dir=tmp_path)
        message = str(caught.value)
        assert prefix in message and "\n" not in message
