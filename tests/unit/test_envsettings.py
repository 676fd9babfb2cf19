"""rotator.envsettings: the environment variables that tune a run, and their one-line errors."""

from __future__ import annotations

import pytest

from rotator.envsettings import (
    DEFAULT_PROGRESS_INTERVAL,
    bind_cpus,
    check_fleet,
    log_level,
    progress_interval,
)
from rotator.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, True),
        ("", True),
        ("  ", True),
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        (" 0 ", False),
        ("false", False),
        ("No", False),
        ("OFF", False),
    ],
)
def test_bind_cpus(value: str | None, expected: bool) -> None:
    env = {} if value is None else {"ROTATOR_BIND_CPUS": value}
    assert bind_cpus(env) is expected


@pytest.mark.parametrize("value", ["2", "maybe", "disable", "-1", "none"])
def test_bind_cpus_not_understood_names_the_variable_and_the_value(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        bind_cpus({"ROTATOR_BIND_CPUS": value})
    message = str(err.value)
    assert message.startswith(f"ROTATOR_BIND_CPUS: {value!r}") and "\n" not in message


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, DEFAULT_PROGRESS_INTERVAL),
        ("", DEFAULT_PROGRESS_INTERVAL),
        ("2", 2.0),
        ("0.2", 0.2),
        (" 10 ", 10.0),
        ("30s", 30.0),
        ("1m", 60.0),
        ("86400", 86400.0),
    ],
)
def test_progress_interval(value: str | None, seconds: float) -> None:
    env = {} if value is None else {"ROTATOR_PROGRESS_INTERVAL": value}
    assert progress_interval(env) == seconds


@pytest.mark.parametrize("value", ["0", "-5", "soon", "nan", "inf", "1e400", "2d", "5 minutes"])
def test_progress_interval_not_understood(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^ROTATOR_PROGRESS_INTERVAL: ") as err:
        progress_interval({"ROTATOR_PROGRESS_INTERVAL": value})
    assert repr(value) in str(err.value)


@pytest.mark.parametrize(
    ("value", "level"),
    [(None, "info"), ("", "info"), ("debug", "debug"), ("WARNING", "warning"), ("error", "error")],
)
def test_log_level(value: str | None, level: str) -> None:
    env = {} if value is None else {"ROTATOR_LOG_LEVEL": value}
    assert log_level(env) == level


@pytest.mark.parametrize("value", ["verbose", "critical", "5", "notset"])
def test_log_level_not_understood(value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^ROTATOR_LOG_LEVEL: {value!r} is not a log level"):
        log_level({"ROTATOR_LOG_LEVEL": value})


def test_check_fleet_reports_the_first_bad_setting_and_passes_good_ones() -> None:
    check_fleet({"ROTATOR_BIND_CPUS": "off", "ROTATOR_PROGRESS_INTERVAL": "1"})
    check_fleet({})
    with pytest.raises(ConfigError, match="ROTATOR_PROGRESS_INTERVAL"):
        check_fleet({"ROTATOR_PROGRESS_INTERVAL": "often"})
