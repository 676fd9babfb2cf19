"""Logging for rotator: structlog configured once, JSON or console, secrets redacted.

Entry points (`rotator/cli/`, `rotator/aws_lambda/`) call `configure()` once; library
modules only hold `log = structlog.get_logger()` (a lazy proxy, so importing this module or
theirs before `configure()` is safe). Every event, ours or a stdlib `logging` record from httpx,
botocore or hvac, goes through the same list of small processors:

    merge_contextvars -> add_log_level -> timestamp (ISO, UTC) -> format_exc_info
        -> RedactSecrets -> JSONRenderer | ConsoleRenderer

`RedactSecrets` runs just before the renderer, after exceptions became text, so it sees
every byte that will be written. It replaces every known secret value (see the registry
in `rotator.secret`), anything shaped like a MotherDuck token (a JWT) and the other
credential shapes of `rotator.secret.SECRET_PATTERNS` (Vault tokens, AWS key ids, Slack
webhook URLs) with `***`. Logs go to stderr by default: stdout is reserved for command
output. The stream is wrapped in `rotator.util.safeio.SafeStream`: a reader that went away
never stops a run.

The same redactor serves every other way text leaves the process: `redact()` for a run's
failure, audit lines, notifications, CLI output and whatever a child process printed
(`scrub()` redacts first and only then bounds the length, so a secret cut at the edge
cannot survive in part). `register_known_secrets()` teaches the registry, once at start-up,
the credentials that never become a `Secret`: the admin token and the backends'
credentials in the environment, and the webhook URLs of the config.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, Literal, Protocol, TextIO, cast

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from rotator import secret as _secret
from rotator.secret import MASK, Secret
from rotator.util.safeio import SafeStream


class SecretSources(Protocol):
    """What the redactor needs from a config (rotator.config.Config is one)."""

    def credential_env_names(self) -> set[str]: ...

    def secret_values(self) -> list[str]: ...


__all__ = [
    "LIBRARY_LOGGERS",
    "RedactSecrets",
    "RedactingStream",
    "bind_run",
    "configure",
    "redact",
    "redact_fields",
    "register_known_secrets",
    "scrub",
]

Format = Literal["auto", "console", "json"]

LIBRARY_LOGGERS: Final = (
    "httpx",
    "httpcore",
    "botocore",
    "boto3",
    "urllib3",
    "s3transfer",
    "hvac",
)
"""Chatty third-party loggers, held at `library_level` (WARNING by default)."""

_KEY_LENGTH: Final = _secret.MIN_KNOWN_LENGTH
_SHAPE_HINTS: Final = ("hv", "AKIA", "ASIA", "hooks.slack")
_CREDENTIAL_ENV: Final = (
    "VAULT_TOKEN",
    "VAULT_SECRET_ID",
    "VAULT_ROLE_ID",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
)
"""Backend credentials rotator may find in its environment (see `register_known_secrets`)."""
_HANDLER_MARK: Final = "_rotator_log_handler"
_STEP: Final = 8
"""`_KnownIndex.hit` looks at the text's windows at every `_STEP`-th position."""
_SAMPLE_MIN: Final = _KEY_LENGTH + _STEP - 1
"""The shortest secret `_KnownIndex.samples` can stand for (shorter ones: `short`)."""
_SHAPE_HINT_RE: Final = re.compile("|".join(re.escape(hint) for hint in _SHAPE_HINTS))
"""One C-level search for any of `_SHAPE_HINTS` (each shape match contains one)."""
_SCALARS: Final = frozenset({int, float, bool, type(None)})
_JOIN: Final = "\x00"
"""Joins an event's texts for the one-pass check; any separator is safe (see `_clean`)."""


class _KnownIndex:
    """An index of the known secrets, built so a miss costs a few C-level scans.

    Every registered secret is at least `_KEY_LENGTH` long; its last `_KEY_LENGTH`
    characters are its key. An occurrence of a secret lies inside a run of characters
    drawn from the secrets' alphabet, so `runs` (one compiled character-class regex) finds
    the only places worth looking at; a sliding window over those runs then looks keys up
    in a dict. Only secrets whose key was seen are searched for in full.

    `hit`, the test whether anything is to be found at all, looks at far fewer windows:
    `samples` holds, for every secret of at least `_SAMPLE_MIN` characters, its first
    `_STEP` windows (at offsets 0 .. _STEP-1). An occurrence of such a secret at position p
    covers exactly one text position q = p .. p+_STEP-1 that is a multiple of `_STEP`, and
    the window at q is the secret's window at offset q-p, which is in `samples`; so looking
    up the windows at 0, _STEP, 2*_STEP... of the text finds every occurrence. Shorter
    secrets (`short`) make `hit` look at every window of every run instead.

    The index only grows (`add`), in time proportional to what is added. Readers in other
    threads may use it meanwhile: each change is one assignment (a key's new group, a new
    `runs`, `short`) or one `set.add` to `samples`, which a reader's C-level `isdisjoint`
    never sees half-done; a reader sees a value either not yet or completely; `generation`
    is set last, by the caller, once everything up to it is in.
    """

    __slots__ = ("alphabet", "by_key", "generation", "runs", "samples", "short")

    def __init__(self, generation: int, values: Iterable[str]) -> None:
        self.generation = generation
        self.by_key: dict[str, list[str]] = {}
        self.samples: set[str] = set()
        self.short = False
        self.alphabet: frozenset[str] = frozenset()
        self.runs: re.Pattern[str] | None = None
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        alphabet = set(self.alphabet)
        for value in values:
            key = value[-_KEY_LENGTH:]
            group = self.by_key.get(key, [])
            if value in group:
                continue
            # A longer secret first, if one holds another; a new list, never sorted in place.
            self.by_key[key] = sorted([*group, value], key=len, reverse=True)
            alphabet.update(value)
            if len(value) >= _SAMPLE_MIN:
                for offset in range(_STEP):
                    self.samples.add(value[offset : offset + _KEY_LENGTH])
            else:
                self.short = True
        if len(alphabet) != len(self.alphabet):
            self.alphabet = frozenset(alphabet)
            charset = "".join(re.escape(c) for c in sorted(alphabet))
            self.runs = re.compile(f"[{charset}]{{{_KEY_LENGTH},}}")

    def hit(self, text: str) -> bool:
        """False only when no registered secret occurs in `text` (True: maybe one does).

        The windows at every `_STEP`-th position are looked up in `samples` (see the class)
        by C code: `map` of slices and `isdisjoint`, stopping at the first hit.
        """
        size = len(text)
        if size < _KEY_LENGTH:
            return False
        if self.short:
            return self._hit_any_window(text)
        windows = map(
            slice, range(0, size - _KEY_LENGTH + 1, _STEP), range(_KEY_LENGTH, size + 1, _STEP)
        )
        return not self.samples.isdisjoint(map(text.__getitem__, windows))

    def _hit_any_window(self, text: str) -> bool:
        """Whether some secret's key occurs in `text`: every window of every run is looked
        up, as in `redact`, but by C code (`map` of slices, `isdisjoint` against the keys)."""
        runs = self.runs
        if runs is None:
            return False
        keys = self.by_key.keys()
        for run in runs.finditer(text):
            chunk = run.group()
            starts = range(len(chunk) - _KEY_LENGTH + 1)
            windows = map(slice, starts, range(_KEY_LENGTH, len(chunk) + 1))
            if not keys.isdisjoint(map(chunk.__getitem__, windows)):
                return True
        return False

    def redact(self, text: str) -> str:
        runs = self.runs
        if runs is None or len(text) < _KEY_LENGTH or not self.hit(text):
            return text
        found: set[str] = set()
        for run in runs.finditer(text):
            chunk = run.group()
            for end in range(_KEY_LENGTH, len(chunk) + 1):
                group = self.by_key.get(chunk[end - _KEY_LENGTH : end])
                if group is not None:
                    found.update(value for value in group if value in text)
        for value in sorted(found, key=len, reverse=True):
            text = text.replace(value, MASK)
        return text


class RedactSecrets:
    """Replace known secret values and token-shaped strings anywhere in an event.

    Walks every value: strings, nested mappings, lists, tuples and sets; `Secret` objects
    become `***`; any other object is rendered with `repr()` and then scrubbed, so nothing
    reaches the renderer unscrubbed. `known` adds fixed values to the process registry
    that `Secret` fills; `use_registry=False` uses `known` alone. `pattern` (default: a
    JWT) matches secrets nobody registered; pass None to turn it off.
    """

    def __init__(
        self,
        known: Iterable[str] = (),
        *,
        pattern: str | re.Pattern[str] | None = _secret.TOKEN_PATTERN,
        use_registry: bool = True,
        shapes: bool = True,
    ) -> None:
        self._extra = frozenset(v for v in known if len(v) >= _KEY_LENGTH)
        self._pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        # Every default-pattern match contains "eyJ": a substring test skips the regex.
        self._hint = "eyJ" if pattern == _secret.TOKEN_PATTERN else ""
        # Other credential shapes (`shapes=False` turns them off); each match contains one
        # of the hints, so most strings skip this regex too.
        self._shapes = re.compile("|".join(_secret.SECRET_PATTERNS)) if shapes else None
        self._use_registry = use_registry
        self._index = _KnownIndex(0, self._extra)
        self._grow_lock = threading.Lock()

    def _current(self) -> _KnownIndex:
        """The index, holding every value registered before this call."""
        index = self._index
        if not self._use_registry or index.generation == _secret.registry_generation():
            return index
        with self._grow_lock:  # one thread adds what is new; the others wait for it
            generation, values = _secret.known_secrets_since(index.generation)
            if generation != index.generation:
                index.add(values)
                index.generation = generation
        return index

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        index = self._current()
        # Fast path: an event made of plain scalars whose keys and texts, joined, hold no
        # trace of a secret comes out of the walk below unchanged, so it is returned as is.
        if self._plain_and_clean(event_dict, index):
            return event_dict
        return {self._str(k, index): self._value(v, index) for k, v in event_dict.items()}

    def redact(self, text: str) -> str:
        """Scrub one string (also handy for messages bound for other outputs)."""
        index = self._current()
        if self._clean(text, index):
            return text
        return self._str(text, index)

    def redact_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """`record` (a flat dict) with every str value scrubbed as `redact` would do it."""
        index = self._current()
        texts = [v for v in record.values() if isinstance(v, str)]
        if self._clean(_JOIN.join(texts), index):
            return dict(record)
        return {k: self._str(v, index) if isinstance(v, str) else v for k, v in record.items()}

    def _plain_and_clean(self, event_dict: EventDict, index: _KnownIndex) -> bool:
        """True when every key is a str, every value a str or plain scalar, and none of those
        texts (checked joined, in one pass) contains a known secret or a credential hint."""
        texts: list[str] = []
        for key, value in event_dict.items():
            if key.__class__ is not str:
                return False
            texts.append(key)
            cls = value.__class__
            if cls is str:
                texts.append(value)
            elif cls not in _SCALARS:
                return False
        return self._clean(_JOIN.join(texts), index)

    def _clean(self, text: str, index: _KnownIndex) -> bool:
        """True only when `_str(text)` is certainly `text`: no credential shape can match
        (none of the substrings every match contains is there) and no known secret's key
        occurs. A piece found in `text` joined from several strings only means the slow,
        exact path runs; a piece in any one of them is always in the joined text too."""
        if self._pattern is not None and self._hint in text:
            return False
        if self._shapes is not None and _SHAPE_HINT_RE.search(text) is not None:
            return False
        return not index.hit(text)

    def _str(self, text: str, index: _KnownIndex) -> str:
        # Known values first: a registered secret that also matches a shape is masked whole.
        text = index.redact(text)
        if self._pattern is not None and self._hint in text:
            text = self._pattern.sub(MASK, text)
        if self._shapes is not None and _SHAPE_HINT_RE.search(text) is not None:
            text = self._shapes.sub(MASK, text)
        return text

    def _value(self, value: Any, index: _KnownIndex) -> Any:
        if isinstance(value, str):
            return self._str(value, index)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Secret):
            return MASK
        if isinstance(value, Mapping):
            return {self._value(k, index): self._value(v, index) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            items = [self._value(v, index) for v in value]
            return tuple(items) if isinstance(value, tuple) else items
        if isinstance(value, dt.datetime | dt.date):
            return value.isoformat()
        return self._str(repr(value), index)


_shared: RedactSecrets | None = None


def redact(text: str) -> str:
    """`text` with every known secret and credential shape replaced by `***`."""
    global _shared
    if _shared is None:
        _shared = RedactSecrets()
    return _shared.redact(text)


def redact_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the flat `record` with every str value passed through `redact`.

    The same result as redacting each value, but a record with nothing to mask (the usual
    case) costs one check of its texts joined instead of one per value.
    """
    global _shared
    if _shared is None:
        _shared = RedactSecrets()
    return _shared.redact_record(record)


def scrub(text: str, limit: int = 500, *, keep: Literal["head", "tail"] = "tail") -> str:
    """Untrusted text (a child's output, a server's body) made fit for a message.

    Redacts first, then keeps at most `limit` characters (the end, or the start with
    `keep="head"`), so truncation can never cut a secret in two and let a piece through.
    """
    text = redact(text)
    if len(text) <= limit:
        return text
    return "..." + text[-limit:] if keep == "tail" else text[:limit] + "..."


def register_known_secrets(
    config: SecretSources | None = None, environ: Mapping[str, str] | None = None
) -> None:
    """Teach the redactor the credentials around this process; call once at start-up.

    The admin token (the variable `[motherduck] admin_token_env` names), the backend
    credentials in the environment (Vault token, AppRole role and secret ids under the
    names the config gives, AWS keys) and every notification URL. Safe to call again.
    """
    env = os.environ if environ is None else environ
    names = set(_CREDENTIAL_ENV)
    if config is not None:
        names |= config.credential_env_names()
        for url in config.secret_values():
            _secret.register(url)
    else:
        names.add("MOTHERDUCK_ADMIN_TOKEN")
    for name in sorted(names):
        value = env.get(name)
        if value:
            _secret.register(value)


class RedactingStream:
    """A text stream that redacts every write before passing it on (CLI stdout/stderr)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _renderer(fmt: Format, stream: TextIO) -> Processor:
    if fmt == "auto":
        fmt = "console" if _isatty(stream) else "json"
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=_isatty(stream))
    return structlog.processors.JSONRenderer(sort_keys=False)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False


def _level_number(level: str) -> int:
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning or error")
    return number


def configure(
    fmt: Format = "auto",
    level: str = "info",
    stream: TextIO | None = None,
    *,
    library_level: str = "warning",
) -> None:
    """Set up structlog and stdlib logging; call once, from an entry point.

    `fmt="auto"` renders for people on a TTY and JSON lines otherwise. `stream` defaults
    to stderr. Calling it again replaces the previous setup (tests, Lambda re-init).
    Raises ValueError for an unknown level name. A reader of the stream that goes away
    (`2>&1 | head`, a dead `logger`) silences the log instead of raising into a run.
    """
    given = sys.stderr if stream is None else stream
    out = cast(TextIO, given if isinstance(given, SafeStream) else SafeStream(given))
    threshold = _level_number(level)
    renderer = _renderer(fmt, out)
    redact = RedactSecrets()
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        timestamper,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redact, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        # Not cached: a reconfigure (tests, a new stream) must reach module-level loggers.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(threshold)
    library_threshold = max(threshold, _level_number(library_level))
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_threshold)


@contextlib.contextmanager
def bind_run(**values: Any) -> Iterator[None]:
    """Attach `values` (run_id, account, step...) to every event logged inside the block."""
    with structlog.contextvars.bound_contextvars(**values):
        yield
