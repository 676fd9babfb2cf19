"""rotator.secret: the masked Secret type, its registry and the token-shape pattern."""

from __future__ import annotations

import pickle
import re
import secrets

import pytest

from rotator import secret as secret_module
from rotator.secret import MASK, MIN_KNOWN_LENGTH, TOKEN_PATTERN, Secret, known_secrets


class TestSecret:
    def test_printable_forms_are_masked(self) -> None:
        """repr, str, f-strings and format specs all show the mask."""
        value = Secret("eyJhbGciOiJIUzI1NiJ9.e30.c2ln")
        assert repr(value) == "Secret('***')"
        assert str(value) == MASK
        assert f"{value} {value:>20}" == "*** ***"
        assert "eyJ" not in repr([value, {"k": value}])

    def test_reveal_equality_and_hash(self) -> None:
        """reveal() gives the value back; equal values compare and hash equal."""
        a, b = Secret("same-value-1"), Secret("same-value-1")
        assert a.reveal() == "same-value-1"
        assert a == b and hash(a) == hash(b)
        assert a != Secret("other-value-2")
        assert a != "same-value-1"
        assert len(a) == 12 and bool(a) and not Secret("")

    def test_only_str_is_wrapped(self) -> None:
        """Wrapping bytes or None is a bug caught at once."""
        with pytest.raises(TypeError):
            Secret(b"bytes")  # type: ignore[arg-type]

    def test_cannot_be_pickled(self) -> None:
        """Pickling would write the value somewhere we do not control."""
        with pytest.raises(TypeError):
            pickle.dumps(Secret("never-on-disk"))

    def test_fingerprint_is_keyed_and_short(self) -> None:
        """The HMAC differs per key, is stable per key and never contains the value."""
        value = Secret("fingerprint-me")
        one, two = value.fingerprint(b"k1"), value.fingerprint(b"k2")
        assert one == value.fingerprint(b"k1")
        assert one != two
        assert len(one) == 16 and len(value.fingerprint(b"k1", length=8)) == 8
        assert re.fullmatch("[0-9a-f]+", one)


class TestRegistry:
    def test_construction_registers_the_value(self) -> None:
        """A new Secret's value is known to the process and bumps the generation."""
        value = "registry-" + secrets.token_hex(8)
        before = secret_module.registry_generation()
        Secret(value)
        generation, values = known_secrets()
        assert value in values
        assert generation == secret_module.registry_generation() > before

    def test_repeat_and_short_values_do_not_bump_generation(self) -> None:
        """Re-wrapping a known value or a short one changes nothing (no index rebuild)."""
        value = "repeat-" + secrets.token_hex(8)
        Secret(value)
        generation = secret_module.registry_generation()
        Secret(value)
        Secret("x" * (MIN_KNOWN_LENGTH - 1))
        assert secret_module.registry_generation() == generation
        assert "x" * (MIN_KNOWN_LENGTH - 1) not in known_secrets()[1]

    def test_values_since_a_generation_are_the_later_ones_in_order(self) -> None:
        """known_secrets_since(g) gives exactly what was registered after g, oldest first."""
        Secret("earlier-" + secrets.token_hex(8))
        mark = secret_module.registry_generation()
        later = ["later-" + secrets.token_hex(8) for _ in range(3)]
        for value in later:
            Secret(value)
        generation, values = secret_module.known_secrets_since(mark)
        assert values == later and generation == mark + 3
        assert secret_module.known_secrets_since(generation) == (generation, [])


class TestTokenPattern:
    @pytest.mark.parametrize(
        "token",
        [
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0In0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            "eyJhbGciOiJub25lIn0.eyJhIjoxfQ.",
            "eyJh.eyJi.c",
            "eyJhbGciOiJIUzI1NiJ9==.eyJzdWIiOiIxIn0=.abc-_",
        ],
    )
    def test_matches_jwt_shapes(self, token: str) -> None:
        """JWTs of any length, padded or unsigned, match in full."""
        assert re.fullmatch(TOKEN_PATTERN, token)

    @pytest.mark.parametrize(
        "text",
        ["eyJhbGciOiJIUzI1NiJ9", "eyJ.x.y", "abc.def.ghi", "5f0c0a8e-1234-4bcd-9abc-0123456789ab"],
    )
    def test_leaves_non_tokens_alone(self, text: str) -> None:
        """One segment, an empty header body, or ordinary ids do not match."""
        assert re.search(TOKEN_PATTERN, text) is None
