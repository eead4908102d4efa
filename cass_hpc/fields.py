"""Typed fields of the config dataclasses: a value of the wrong type is one line naming its key
(``seed=abc``, ``method.params.temperature=xyz``), checked when a config is read, so that a
grid's pre-check refuses it before anything is submitted."""

from __future__ import annotations

import types
import typing
from typing import Any

SIMPLE = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}


def check_types(prefix: str, cls: type, values: dict[str, Any]) -> None:
    """ValueError naming ``prefix + key`` for a value whose type does not fit the field of
    dataclass ``cls`` (int, float, bool, str, or one of them | None), e.g. ``seed=abc``; fields
    of other types and unknown keys are left to ``cls`` itself."""
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        hint = hints.get(key)
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = typing.get_args(hint) if union else (hint,)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), None)
        allowed = SIMPLE.get(base)  # type: ignore[call-overload]
        if allowed is None or (value is None and optional):
            continue
        if not isinstance(value, allowed) or (isinstance(value, bool) and base is not bool):
            kind = base.__name__ + (" or null" if optional else "")  # type: ignore[union-attr]
            raise ValueError(f"{prefix}{key} must be {kind}, got {value!r}")
