"""rotator.util.attempt: the deadline and size cap both HTTP clients apply per attempt."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rotator.util.attempt import TooLarge, capped, deadline, left, remaining


def test_outside_an_attempt_timeouts_are_left_alone() -> None:
    assert remaining() is None
    assert left(5.0) == 5.0
    assert left(None) is None


def test_inside_an_attempt_every_timeout_is_cut_to_what_is_left() -> None:
    with deadline(2.0):
        rest = remaining()
        assert rest is not None and 0 < rest <= 2.0
        got = left(30.0)
        assert got is not None and got <= 2.0
        assert left(0.5) == 0.5  # a shorter timeout stays
        bounded = left(None)
        assert bounded is not None and bounded <= 2.0
    assert remaining() is None  # restored when the attempt ends


def test_a_spent_attempt_raises_the_callers_error() -> None:
    class ReadTimeout(Exception):
        pass

    with deadline(0.0):
        time.sleep(0.001)
        with pytest.raises(TimeoutError, match="deadline passed"):
            left(5.0)
        with pytest.raises(ReadTimeout):
            left(5.0, ReadTimeout)


def test_nested_attempts_restore_the_outer_deadline() -> None:
    with deadline(60.0):
        with deadline(1.0):
            inner = remaining()
            assert inner is not None and inner <= 1.0
        outer = remaining()
        assert outer is not None and outer > 1.0


def test_capped_joins_the_chunks_and_stops_reading_past_the_limit() -> None:
    assert capped([b"ab", b"cd"], 4) == b"abcd"
    read: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:
            read.append(1)
            yield b"x" * 10

    with pytest.raises(TooLarge, match="larger than 25 bytes"):
        capped(endless(), 25)
    assert len(read) == 3  # 30 bytes read, no more
