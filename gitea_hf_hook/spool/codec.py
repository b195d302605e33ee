"""Typed records to JSON and back, with every field's type checked on the way in.

Every file in the spool is written by one side of the privilege line and read by the other, so reading one is
parsing untrusted input: :func:`from_data` accepts exactly the shape the record's annotations describe, and names
the first field that differs. Records are NamedTuples whose fields are ``str``, ``int``, ``float``, ``bool``,
other records, ``tuple[X, ...]`` and ``X | None``.
"""

from __future__ import annotations

import types
import typing
from functools import cache
from typing import Any, TypeVar

R = TypeVar("R")
MAX_TIME = 2**34  # seconds since 1970: beyond the year 2500
MAX_INT = 2**53


class ShapeError(ValueError):
    """Data that does not fit a record; ``where`` is the field's path, such as ``request.target.kind``."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem


def to_data(value: Any) -> Any:
    """A record as plain JSON data: records become objects, tuples lists."""
    if hasattr(value, "_asdict"):
        return {name: to_data(item) for name, item in value._asdict().items()}
    if isinstance(value, (tuple, list)):
        return [to_data(item) for item in value]
    return value


@cache
def _fields(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(kind: Any) -> str:
    if kind is type(None):
        return "null"
    return {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}.get(
        kind, getattr(kind, "__name__", str(kind)))


def _value(kind: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return _value(inner, data, where)
    if origin is tuple:
        item_kind, ellipsis = typing.get_args(kind)
        assert ellipsis is Ellipsis, kind
        if not isinstance(data, list):
            raise ShapeError(where, f"must be a list (got {type(data).__name__})")
        return tuple(_value(item_kind, item, f"{where}[{i}]") for i, item in enumerate(data))
    if isinstance(kind, type) and issubclass(kind, tuple) and hasattr(kind, "_fields"):
        return from_data(kind, data, where)
    # JSON has one number type: a float field takes a whole number, but true and false are no numbers.
    ok = isinstance(data, kind) and not (isinstance(data, bool) and kind is not bool)
    if kind is float and isinstance(data, (int, float)) and not isinstance(data, bool):
        # Every number in our records is a time, a count or a pid. JSON also allows NaN, Infinity and numbers
        # too large for a float, which would break every ordering, or raise where no one expects it.
        if not 0 <= data < MAX_TIME:
            raise ShapeError(where, f"must be a number from 0 to {MAX_TIME}")
        return float(data)
    if not ok:
        raise ShapeError(where, f"must be {_type_name(kind)} (got {type(data).__name__})")
    if kind is int and not 0 <= data < MAX_INT:
        raise ShapeError(where, f"must be a whole number from 0 to {MAX_INT}")
    return data


def from_data(cls: type[R], data: Any, where: str = "") -> R:
    """``data`` as a ``cls`` record. Missing fields with a default take it; unknown keys are errors."""
    if not isinstance(data, dict):
        raise ShapeError(where, f"must be an object (got {type(data).__name__})")
    hints = _fields(cls)  # type: ignore[arg-type]  # classes are hashable
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ShapeError(f"{where}.{unknown[0]}" if where else unknown[0], "is not a field this version knows")
    defaults: dict[str, Any] = getattr(cls, "_field_defaults", {})
    values = {}
    for name, kind in hints.items():
        at = f"{where}.{name}" if where else name
        if name not in data:
            if name not in defaults:
                raise ShapeError(at, "is missing")
            continue
        values[name] = _value(kind, data[name], at)
    return cls(**values)
