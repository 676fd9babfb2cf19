"""rotator.log's fast path (issue 16): an event is checked once, its texts joined, and passes
through untouched only when nothing in it could be a secret. These tests prove a secret is
still masked wherever it sits, and that the fast path and the per-value walk always agree."""

from __future__ import annotations

import io
import json
import logging
import random
import secrets
import string
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from rotator import log as rlog
from rotator.log import RedactSecrets, configure, redact, redact_fields
from rotator.secret import MASK, Secret


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    structlog.reset_defaults()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def known() -> str:
    value = "fastpath-" + secrets.token_hex(12)
    Secret(value)
    return value


def slow(redactor: RedactSecrets, event: dict[str, Any]) -> dict[str, Any]:
    """The per-value walk alone, as the redactor did it for every event before the fast path."""
    index = redactor._current()
    return {redactor._str(k, index): redactor._value(v, index) for k, v in event.items()}


def test_clean_flat_event_is_returned_as_is() -> None:
    redactor = RedactSecrets()
    event = {"event": "rotation.step", "account": "svc_a", "attempt": 2, "ok": True, "x": None}
    assert redactor(None, "info", event) is event


@pytest.mark.parametrize(
    "event",
    [
        pytest.param({"event": "e", "token": "{s}"}, id="flat-value"),
        pytest.param({"event": "e", "note": "before {s} after"}, id="inside-text"),
        pytest.param({"event": "e", "{s}": 1}, id="key"),
        pytest.param({"event": "e", "nested": {"deep": ["x", {"k": "{s}"}]}}, id="nested"),
        pytest.param({"event": "e", "nested": {"{s}": "v"}}, id="nested-key"),
        pytest.param({"event": "e", "tuple": ("a", "{s}")}, id="tuple"),
        pytest.param(
            {"event": "e", "exception": "Traceback...\nValueError: bad {s}\n"}, id="exception-text"
        ),
    ],
)
def test_known_secret_is_masked_wherever_it_sits(known: str, event: dict[str, Any]) -> None:
    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{s}", known)
        if isinstance(value, dict):
            return {fill(k): fill(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return type(value)(fill(v) for v in value)
        return value

    out = RedactSecrets()(None, "info", fill(event))
    assert known not in repr(out)
    assert MASK in repr(out)


def test_secret_split_by_the_join_is_not_invented_and_whole_one_is_masked(known: str) -> None:
    """Two values that only form a secret's key when joined: a false alarm sends the event
    down the exact path, which finds nothing to mask; the values come out unchanged."""
    redactor = RedactSecrets()
    half = len(known) // 2
    event = {"a": known[:half], "b": known[half:]}
    assert slow(redactor, event) == event
    assert redactor(None, "info", dict(event)) == event


def test_exception_through_the_pipeline(known: str) -> None:
    buffer = io.StringIO()
    configure("json", level="info", stream=buffer)  # type: ignore[arg-type]
    log = structlog.get_logger("t")
    try:
        raise RuntimeError(f"server said {known}")
    except RuntimeError:
        log.exception("call.failed", **{f"k_{known}": "v"})
    line = buffer.getvalue()
    assert known not in line
    assert "call.failed" in json.loads(line)["event"]


def test_redact_fields_matches_redact_per_value(known: str) -> None:
    record = {
        "event": "run.transitioned",
        "failure": f"check printed {known}",
        "detail": None,
        "duration_seconds": 1.5,
        "account": "svc",
    }
    expected = {k: redact(v) if isinstance(v, str) else v for k, v in record.items()}
    assert redact_fields(record) == expected
    assert known not in json.dumps(redact_fields(record))
    clean = {"event": "run.transitioned", "account": "svc", "detail": None}
    assert redact_fields(clean) == clean


def test_shapes_and_tokens_still_caught_on_the_fast_path() -> None:
    redactor = RedactSecrets()
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
    vault = "hvs." + "A" * 24
    aws = "AKIA" + "B" * 16
    slack = "https://hooks.slack.com/services/T/B/xyz"
    for text in (jwt, vault, aws, slack):
        out = redactor(None, "info", {"event": "e", "v": f"x {text} y"})
        assert text not in repr(out), text


def test_fast_path_agrees_with_the_walk_on_random_events(known: str) -> None:
    """Random events built from secret fragments, secrets and noise: the output of the
    redactor always equals the per-value walk's."""
    rng = random.Random(16)
    redactor = RedactSecrets()
    pieces = [
        known,
        known[:5],
        known[-9:],
        known[3:],
        "eyJ",
        "hv",
        "AKIA",
        "svc_a",
        "rotation",
        "2026-12-07T06:00:00Z",
        "\x00",
        " ",
    ]
    alphabet = string.ascii_letters + string.digits + "-_:."

    def text() -> str:
        return "".join(
            rng.choice(pieces) if rng.random() < 0.3 else rng.choice(alphabet)
            for _ in range(rng.randrange(0, 12))
        )

    def value() -> Any:
        kind = rng.randrange(6)
        if kind == 0:
            return rng.choice([1, 2.5, True, None])
        if kind == 1:
            return {text(): text()}
        return text()

    for _ in range(2000):
        event = {text(): value() for _ in range(rng.randrange(1, 6))}
        out = redactor(None, "info", dict(event))
        assert out == slow(redactor, event)
        assert known not in repr(out)
        for v in event.values():
            if isinstance(v, str):
                assert redactor.redact(v) == redactor._str(v, redactor._current())


def test_registry_growth_reaches_the_fast_path() -> None:
    redactor = RedactSecrets()
    value = "late-" + secrets.token_hex(10)
    assert redactor(None, "info", {"event": "e", "v": "nothing here"}) == {
        "event": "e",
        "v": "nothing here",
    }
    rlog.register_known_secrets(environ={"VAULT_TOKEN": value})
    out = redactor(None, "info", {"event": "e", "v": f"now {value}"})
    assert value not in repr(out)


@pytest.mark.parametrize("length", [8, 9, 14, 15, 16, 23, 40, 200])
def test_index_hit_finds_a_secret_at_every_offset(length: int) -> None:
    """`hit` samples every 8th window of the text: a secret is found wherever it starts,
    long ones through `samples`, short ones (< 15 chars) through the full window scan."""
    value = secrets.token_urlsafe(length)[:length]
    index = rlog._KnownIndex(0, [value])
    assert index.short is (length < rlog._SAMPLE_MIN)
    noise = "a1 b2-c3:d4.e5_f6 g7" * 3
    for offset in range(len(noise)):
        for tail in ("", " ", "xyz", noise):
            text = noise[:offset] + value + tail
            assert index.hit(text), (offset, tail)
            assert value not in index.redact(text)
    assert not index.hit(noise)


def test_index_with_short_and_long_secrets(known: str) -> None:
    short = "s3cr3t-9"
    long = "long-" + secrets.token_hex(16)
    index = rlog._KnownIndex(0, [long])
    assert not index.short
    index.add([short])
    assert index.short
    for text in (f"x{short}y", f"{long}", f"ab{long}cd{short}"):
        out = index.redact(text)
        assert short not in out and long not in out
