"""Pydantic errors -> one line per problem, naming the field path.

`accounts[0].backends[1].path: Field required`; an unknown key gets a "did you mean"
from the fields of the model it sits in; the ConfigError carries every line, the first
in its message. `parse_config` collects the lines from every table it validates.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from rotator.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

# pydantic is imported only by the loader that reports errors (rotator/config/slow.py):
# the fast loader uses config_error and did_you_mean alone.
_M = TypeVar("_M", bound="BaseModel")


def validate(model: type[_M], data: object, where: str, problems: list[str]) -> _M | None:
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(format_errors(exc, where, model))
        return None


def format_errors(
    exc: ValidationError, where: str, model: type[BaseModel] | None = None
) -> list[str]:
    lines = []
    for err in exc.errors():
        path = where
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            known = _fields_at(model, err["loc"][:-1]) if model is not None else []
            message = f"unknown field{did_you_mean(str(err['loc'][-1]), known)}"
        lines.append(f"{path or '<top>'}: {message}")
    return lines


def _fields_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names of the (nested) model that `loc` points into, if it is one."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field_info = getattr(current, "model_fields", {}).get(part)
        if field_info is None:
            return []
        current = field_info.annotation
    fields = getattr(current, "model_fields", None)
    return list(fields) if isinstance(fields, dict) else []


def did_you_mean(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def config_error(source: str, problems: Sequence[str]) -> ConfigError:
    more = (
        f" (and {len(problems) - 1} more; run `rotator config validate`)"
        if len(problems) > 1
        else ""
    )
    return ConfigError(f"{source}: {problems[0]}{more}", problems=problems)
