"""rotator.log: secrets never reach rendered output, through the real configured pipeline."""

from __future__ import annotations

import io
import json
import logging
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from rotator import log as rlog
from rotator.log import RedactSecrets, bind_run, configure
from rotator.secret import Secret

UNKNOWN_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VybmFtZSI6InN2YyJ9.c2lnbmF0dXJlLXZhbHVl"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    structlog.reset_defaults()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    library_levels = {name: logging.getLogger(name).level for name in rlog.LIBRARY_LOGGERS}
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, library_level in library_levels.items():
        logging.getLogger(name).setLevel(library_level)


@pytest.fixture
def known() -> str:
    """A registered secret that looks nothing like a JWT."""
    value = "known-" + secrets.token_hex(12)
    Secret(value)
    return value


def render(fmt: str = "json", level: str = "info") -> io.StringIO:
    buffer = io.StringIO()
    configure(fmt, level=level, stream=buffer)  # type: ignore[arg-type]
    return buffer


def json_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


class TestRedactSecretsThroughThePipeline:
    @pytest.mark.parametrize("fmt", ["json", "console"])
    def test_known_secret_in_every_kind_of_field(self, known: str, fmt: str) -> None:
        """A known secret at top level, nested, in a Secret or an odd object never renders."""

        class Odd:
            def __repr__(self) -> str:
                return f"Odd({known})"

        buffer = render(fmt)
        structlog.get_logger().info(
            f"event mentions {known}",
            top=known,
            nested={"a": [f"x {known} y", ("t", known)], known: 1},
            wrapped=Secret(known),
            odd=Odd(),
            count=3,
        )
        output = buffer.getvalue()
        assert output
        assert known not in output
        assert "***" in output

    @pytest.mark.parametrize("fmt", ["json", "console"])
    def test_secret_in_exception_text(self, known: str, fmt: str) -> None:
        """An exception message carrying a secret is redacted in the rendered traceback."""
        buffer = render(fmt)
        try:
            raise RuntimeError(f"failed with {known} and {UNKNOWN_JWT}")
        except RuntimeError:
            structlog.get_logger().exception("step.failed")
        output = buffer.getvalue()
        assert "RuntimeError: failed with *** and ***" in output
        assert known not in output
        assert UNKNOWN_JWT not in output

    @pytest.mark.parametrize("fmt", ["json", "console"])
    def test_stdlib_logging_is_redacted_too(self, known: str, fmt: str) -> None:
        """httpx/botocore-style stdlib records go through the same redaction and renderer."""
        buffer = render(fmt)
        logging.getLogger("httpx").warning("header Bearer %s", known)
        try:
            raise ValueError(known)
        except ValueError:
            logging.getLogger("rotator.thing").error("boom %s", UNKNOWN_JWT, exc_info=True)
        output = buffer.getvalue()
        assert "header Bearer ***" in output
        assert "ValueError: ***" in output
        assert known not in output
        assert UNKNOWN_JWT not in output

    def test_unknown_jwt_redacted_non_secrets_survive(self) -> None:
        """A token-shaped string is masked even if unknown; ordinary values are untouched."""
        buffer = render()
        structlog.get_logger().info(
            "token.created",
            token=UNKNOWN_JWT,
            header=f"Bearer {UNKNOWN_JWT}.",
            token_id="5f0c0a8e-1234-4bcd-9abc-0123456789ab",
            token_name="rotator-svc_app-1a2b3c4d",
            eyJ_lookalike="eyJ but not a token",
            backend="vault:secret/data/app",
            n=7,
            ok=True,
        )
        (line,) = json_lines(buffer)
        assert line["token"] == "***"
        assert line["header"] == "Bearer ***."
        assert line["token_id"] == "5f0c0a8e-1234-4bcd-9abc-0123456789ab"
        assert line["token_name"] == "rotator-svc_app-1a2b3c4d"
        assert line["eyJ_lookalike"] == "eyJ but not a token"
        assert line["backend"] == "vault:secret/data/app"
        assert (line["n"], line["ok"]) == (7, True)

    def test_secret_registered_after_configure_is_redacted(self) -> None:
        """A Secret created after configure() (a freshly minted token) is known at once."""
        buffer = render()
        logger = structlog.get_logger()
        logger.info("before")
        late = "late-" + secrets.token_hex(10)
        Secret(late)
        logger.info("after", value=late)
        assert late not in buffer.getvalue()
        assert json_lines(buffer)[1]["value"] == "***"


class TestConfigure:
    def test_json_line_shape(self) -> None:
        """JSON output has event, level, an ISO UTC timestamp and the bound context."""
        buffer = render()
        with bind_run(run_id="r1", account="svc_app"):
            structlog.get_logger().info("run.started", reason="schedule")
        structlog.get_logger().info("outside")
        first, second = json_lines(buffer)
        assert first["event"] == "run.started"
        assert first["level"] == "info"
        assert first["timestamp"].endswith("Z")
        assert (first["run_id"], first["account"], first["reason"]) == ("r1", "svc_app", "schedule")
        assert "run_id" not in second

    def test_level_filters(self) -> None:
        """Events below the configured level are dropped, ours and stdlib's alike."""
        buffer = render(level="warning")
        structlog.get_logger().info("quiet")
        logging.getLogger("rotator.x").info("quiet too")
        structlog.get_logger().warning("loud")
        assert [line["event"] for line in json_lines(buffer)] == ["loud"]

    def test_libraries_held_at_warning(self) -> None:
        """httpx/botocore/hvac info chatter is dropped even at debug level."""
        buffer = render(level="debug")
        logging.getLogger("httpx").info("HTTP Request: GET ...")
        logging.getLogger("botocore").debug("chatter")
        logging.getLogger("hvac").warning("hvac warns")
        assert [line["event"] for line in json_lines(buffer)] == ["hvac warns"]

    def test_auto_is_json_when_not_a_tty(self) -> None:
        """`auto` renders JSON into a non-TTY stream."""
        buffer = render("auto")
        structlog.get_logger().info("hello")
        assert json_lines(buffer)[0]["event"] == "hello"

    def test_auto_is_console_on_a_tty(self) -> None:
        """`auto` renders for people when the stream is a terminal."""

        class Tty(io.StringIO):
            def isatty(self) -> bool:
                return True

        buffer = Tty()
        configure("auto", stream=buffer)
        structlog.get_logger().info("hello", key="value")
        output = buffer.getvalue()
        assert "hello" in output
        assert not output.startswith("{")

    def test_defaults_to_stderr(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a stream, logs go to stderr; stdout stays clean for command output."""
        configure("json")
        structlog.get_logger().info("to.stderr")
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "to.stderr" in captured.err

    def test_reconfigure_replaces_handler(self) -> None:
        """Calling configure twice does not duplicate stdlib output."""
        render()
        buffer = render()
        logging.getLogger("rotator.x").warning("once")
        assert len(json_lines(buffer)) == 1

    def test_unknown_level_is_refused(self) -> None:
        """A typo in the level name is an error, not silence."""
        with pytest.raises(ValueError, match="log level"):
            configure("json", level="loud", stream=io.StringIO())


class TestRedactSecretsUnit:
    def test_with_capture_logs(self, known: str) -> None:
        """Passing the redactor to capture_logs redacts what tests capture."""
        with structlog.testing.capture_logs(processors=[RedactSecrets()]) as logs:
            structlog.get_logger().info("x", value=known, nested=[{"v": UNKNOWN_JWT}])
        assert logs[0]["value"] == "***"
        assert logs[0]["nested"] == [{"v": "***"}]

    def test_explicit_known_without_registry(self) -> None:
        """`known` values are redacted even with the process registry turned off."""
        redact = RedactSecrets(["explicit-value-123"], use_registry=False, pattern=None)
        assert redact.redact("a explicit-value-123 b") == "a *** b"
        assert redact.redact(UNKNOWN_JWT) == UNKNOWN_JWT  # pattern turned off

    def test_custom_pattern(self) -> None:
        """A custom pattern replaces the JWT default."""
        redact = RedactSecrets(pattern=r"pw=\S+", use_registry=False)
        assert redact.redact("user=a pw=hunter2 x") == "user=a *** x"

    def test_overlapping_and_repeated_secrets(self) -> None:
        """Every occurrence goes, and a secret containing another is masked whole."""
        inner = "inner-secret-" + secrets.token_hex(4)
        outer = f"outer-{inner}-tail"
        redact = RedactSecrets([inner, outer], use_registry=False)
        assert redact.redact(f"{outer} {inner}{inner}") == "*** ******"

    def test_short_values_are_not_registered(self) -> None:
        """A very short Secret does not turn common words into *** everywhere."""
        Secret("abc")
        assert RedactSecrets().redact("abc abcdef") == "abc abcdef"

    def test_cost_does_not_grow_with_the_number_of_secrets(self) -> None:
        """With 5,000 known secrets, a typical event costs a few key lookups per character
        and compares no secret in full: the work depends on the event, not on how many
        secrets are known. (Timings live in benchmarks/, never in tests.)"""
        values = [secrets.token_urlsafe(24) for _ in range(5000)]
        # Its own 5,000, not the process-wide registry: earlier tests register secrets
        # (some shaped like ids or names that do occur in this event), which would make
        # "no candidate" depend on test order.
        redact = RedactSecrets(values, use_registry=False)
        event = {
            "event": "backend.staged",
            "token_id": "5f0c0a8e-1234-4bcd-9abc-0123456789ab",
            "backend": "aws-secrets-manager:prod/motherduck/svc_app",
            "run_id": "0123456789abcdef",
            "account": "svc_app",
        }
        redact(None, "info", dict(event))  # builds the index once
        index = redact._current()
        lookups = _CountingDict(index.by_key)
        index.by_key = lookups
        for _ in range(100):
            out = redact(None, "info", dict(event))
        assert out == event
        assert redact._current() is index  # reused, not rebuilt per event
        assert lookups.found == 0  # no candidate secret, so no full comparison
        assert lookups.gets <= 100 * sum(len(v) for v in event.values())
        hit = redact(None, "info", {"event": "oops", "v": f"x{values[1234]}y"})
        assert hit["v"] == "x***y"
        assert lookups.found >= 1

    def test_index_grows_with_secrets_registered_between_events(self) -> None:
        """Values registered after the first event, in batches and with characters the
        index had not seen, are all scrubbed; earlier ones still are."""
        redact = RedactSecrets()
        first = "first-" + secrets.token_hex(8)
        Secret(first)
        assert redact.redact(f"a {first} b") == "a *** b"
        batch = ["batch-" + secrets.token_urlsafe(12) for _ in range(50)]
        for value in batch:
            Secret(value)
        odd = "odd~chars+" + secrets.token_hex(6) + "§"
        Secret(odd)
        inner = "inner-" + secrets.token_hex(6)
        Secret(inner)
        Secret(f"outer-{inner}-tail")
        text = " ".join([first, *batch, odd, f"outer-{inner}-tail", inner])
        assert set(redact.redact(text).split()) == {"***"}

    def test_threads_logging_while_secrets_are_registered(self) -> None:
        """A thread that registers a secret and then redacts never sees it unscrubbed,
        however many other threads are registering and redacting at the same time."""
        redact = RedactSecrets()
        leaks: list[str] = []

        def worker() -> None:
            for _ in range(200):
                value = "thread-" + secrets.token_urlsafe(16)
                Secret(value)
                if value in redact.redact(f"token={value}"):
                    leaks.append(value)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert leaks == []


class _CountingDict(dict[str, list[str]]):
    """Counts the index's key lookups and how many of them found candidate secrets."""

    gets = 0
    found = 0

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.gets += 1
        value = super().get(key, default)
        if value is not None:
            self.found += 1
        return value
