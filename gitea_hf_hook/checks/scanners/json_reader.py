"""JSON as serde_json reads it: Python's json, with the rules of the parser that will load the file added.

A check is worth only as much as its agreement with the reader that loads the file after it: one that accepts
what that reader refuses publishes files that do not load, one that refuses what it accepts blocks good files.
The safetensors loader parses its header with serde_json, which is stricter than Python's json in a few places,
each closed here:

- a lone UTF-16 surrogate escape (``"\\ud800"``): Python keeps it as a lone code point, serde_json refuses it;
- nesting: serde_json refuses a 128th level of arrays and objects, Python only stops at its recursion limit;
- numbers: serde_json keeps at most a u64 of significant digits and scales it in floating point, so it refuses
  numbers past the largest double by its own rounding (``1.7976931348623158e308`` too), where Python reads
  ``inf`` or a big int; and it reads ``-0`` as a float;
- ``NaN`` and ``Infinity``, Python's extensions, are refused;
- a repeated key: both keep the last value, but serde_json parses and type-checks every copy, so the earlier
  ones are kept (``dropped``) for the caller to check as well.

One rule is this server's, not serde_json's: Python's json spends 56 to 88 bytes on each array or object, so a
hostile text of nested empty lists costs about fifty times its size in memory. ``max_containers`` bounds their
number, counted at C speed before anything is parsed.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any, NamedTuple

# serde_json refuses a 128th level of arrays and objects (the document's own object is the first).
MAX_DEPTH = 127

_TOO_LARGE = "has a number too large for a 64-bit float"
_TOO_DEEP = f"nests more than {MAX_DEPTH} levels deep"
_U64_MAX = 2**64 - 1
_I32_MAX = 2**31 - 1
# serde_json's table of powers of ten, 1e0 to 1e308, as correctly rounded doubles.
_POW10 = [float(f"1e{i}") for i in range(309)]
_NUMBER = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?(?:[eE]([-+]?)([0-9]+))?")
# Only a text holding such an escape can hold a lone surrogate; most hold none, and skip the string scan.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NOT_SKELETON = bytes(set(range(256)) - set(b'"[]{}'))
_BRACKETED_STRING = re.compile(rb'"[^"]*"')
_BRACKET_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes
_CHUNK = 1 << 20
_PEELS = 3


class Parsed(NamedTuple):
    """A JSON object as serde_json reads it, or why it is refused: ``problem`` is "" exactly when ``value`` is set.

    ``problem`` reads after the document's name ("is not valid JSON"). ``limit`` is set when the refusal is the
    caller's ``max_containers`` bound rather than a rule of JSON: the fix is then a smaller document.
    """

    value: dict[str, Any] | None
    problem: str = ""
    limit: bool = False


class _ReaderError(ValueError):
    """A text valid for Python's json that serde_json refuses; the message is the problem."""


class _Object(dict[str, Any]):
    """A JSON object with a repeated key: the overwritten ``(key, value)`` pairs are kept in ``dropped``.

    serde_json parses and type-checks every copy even though the last one wins, so they must be checked too.
    """

    dropped: list[tuple[str, Any]]


def dropped(value: Any) -> list[tuple[str, Any]]:
    """The earlier ``(key, value)`` pairs of a parsed object's repeated keys, in order; [] for anything else."""
    return value.dropped if isinstance(value, _Object) else []


def _object_hook(every_dropped: list[Any]) -> Any:
    """JSON object hook keeping repeated keys' earlier values, per object and all together in ``every_dropped``."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        plain = dict(pairs)
        if len(plain) == len(pairs):
            return plain
        result = _Object()
        result.dropped = []
        for key, value in pairs:
            if key in result:
                result.dropped.append((key, result[key]))
            result[key] = value
        every_dropped.extend(value for _, value in result.dropped)
        return result

    return hook


def _absorb(significand: int, digits: str) -> tuple[int, int]:
    """serde_json's digit loop: append digits while the significand fits in a u64; return it and the count used."""
    used = 0
    if significand == 0:
        used = len(digits) - len(digits.lstrip("0"))
    # Past the zeros each digit multiplies by ten, so at most 20 more fit: the loop stays short.
    for ch in digits[used:]:
        grown = significand * 10 + ord(ch) - 48
        if grown > _U64_MAX:
            break
        significand, used = grown, used + 1
    return significand, used


def _overflows(significand: int, exponent: int) -> bool:
    """serde_json's ``f64_from_parts`` (without float_roundtrip): whether the scaled significand is infinite."""
    value = float(significand)
    while True:
        if abs(exponent) < len(_POW10):
            return exponent >= 0 and value * _POW10[exponent] == float("inf")
        if value == 0.0:
            return False
        if exponent >= 0:
            return True
        value /= 1e308
        exponent += 308


def _out_of_range(token: str) -> bool:
    """Whether serde_json refuses this JSON number with "number out of range" where Python reads a finite one.

    serde_json keeps at most a u64 of significant digits and scales it by powers of ten in floating point, so
    it overflows on some numbers just below the largest double (``1.7976931348623158e308``) as well.
    """
    match = _NUMBER.fullmatch(token)
    if match is None:  # Python's scanner matched a JSON number; be safe anyway
        return True
    whole, fraction, sign, power = match.groups()
    significand, used = _absorb(0, whole)
    exponent = len(whole) - used  # integer digits past a u64 are dropped and counted as powers of ten
    if fraction is not None:
        significand, used = _absorb(significand, fraction)
        exponent -= used
    if power is not None:
        digits = power.lstrip("0")
        if len(digits) > 10 or int(digits or "0") > _I32_MAX:
            return significand != 0 and sign != "-"
        exponent += -int(digits or "0") if sign == "-" else int(digits or "0")
    elif fraction is None and used == len(whole):
        return False  # a plain integer that fits: serde_json keeps it exact
    return _overflows(significand, max(-(2**31), min(exponent, _I32_MAX)))


def _parse_int(token: str) -> int | float:
    if token == "-0":
        return -0.0  # serde_json reads -0 as the float -0.0, which no unsigned integer field accepts
    if len(token) <= 20:
        return int(token)  # exact, as serde_json's u64 or i64; a larger one is no u64 anyway
    # Below 10**308 even serde_json's rounding stays finite; past 64 bits it reads a float, as here.
    if len(token) > 308 and _out_of_range(token):
        raise _ReaderError(_TOO_LARGE)
    return float(token)


def _parse_float(token: str) -> float:
    if _out_of_range(token):
        raise _ReaderError(_TOO_LARGE)
    return float(token)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _bracket_signs(raw: bytes) -> bytes:
    """The brackets outside strings, in order, as signed bytes: +1 opens an array or object, -1 closes one.

    Exact for valid JSON, and for the prefix Python's json reads before an error. With escaped backslashes and
    quotes taken out, every quote left opens or closes a string; keeping only quotes and brackets, then dropping
    each pair of adjacent quotes (an empty string, or two strings with nothing between them: one string as far
    as brackets go) leaves few strings to cut out. All of it is linear in the text, at C speed.
    """
    skeleton = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_SKELETON).replace(b'""', b"")
    return _BRACKETED_STRING.sub(b"", skeleton).translate(_BRACKET_SIGNS)


def _too_deep(signs: bytes) -> bool:
    """Whether these bracket signs (of valid JSON) nest deeper than serde_json allows.

    The signs are summed by C-level iterators: walking the parsed tree in Python would cost a microsecond per list.
    """
    # Each pass takes out the innermost arrays and objects, one level, at the speed of a substring search: a
    # wide text (a long list of lists) is gone before the slower sum.
    for _ in range(_PEELS):
        if not signs:
            return False
        signs = signs.replace(b"\x01\xff", b"")
    depth = 0
    for start in range(0, len(signs), _CHUNK):
        chunk = signs[start:start + _CHUNK]
        if max(accumulate(memoryview(chunk).cast("b"), initial=depth)) > MAX_DEPTH - _PEELS:
            return True
        depth += chunk.count(1) - chunk.count(0xFF)
    return False


def _odd_numbers(raw: bytes) -> bool:
    """Whether the text may hold a number Python and serde_json read differently (see ``_out_of_range``).

    Only a -0, a run of 20 digits or an exponent of 100 or more can be one; this looks for them (in strings too:
    a false alarm only costs the slower exact parse) with substring searches, the digits all made 0 first.
    """
    if b"-0" in raw:
        return True
    zeroed = raw.translate(_DIGITS_TO_ZERO)
    return b"0" * 20 in zeroed or any(mark in zeroed for mark in (b"e000", b"E000", b"e+000", b"E+000"))


def _has_lone_surrogate(value: dict[str, Any], every_dropped: list[Any]) -> bool:
    """Whether a parsed string (key or value, repeated keys' earlier values included) holds a lone surrogate.

    Python's json pairs surrogate escapes it can and keeps the rest as lone code points; serde_json refuses
    those. Encoding the whole tree at C speed finds them, and is safe once the nesting has been checked.
    """
    text = json.dumps([value, every_dropped], ensure_ascii=False, check_circular=False)
    return _SURROGATE.search(text) is not None


def read_object(raw: bytes, max_containers: int) -> Parsed:
    """Decode and parse ``raw``, a UTF-8 JSON object, as serde_json would, holding at most ``max_containers``
    arrays and objects (the object itself included)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Parsed(None, "is not valid UTF-8")
    # Both the nesting and the container bound need the brackets outside strings; few texts have enough
    # brackets of any kind for either to matter.
    signs = b""
    if raw.count(b"[") + raw.count(b"{") > min(MAX_DEPTH, max_containers):
        signs = _bracket_signs(raw)
    containers = signs.count(1)
    if containers > max_containers:
        return Parsed(None, f"holds {containers} arrays and objects, over the {max_containers} this server reads",
                      limit=True)
    every_dropped: list[Any] = []
    # Python's own number parsing is much faster, and agrees with serde_json on most texts.
    exact = _odd_numbers(raw)
    try:
        value = json.loads(
            text, object_pairs_hook=_object_hook(every_dropped), parse_constant=_reject_constant,
            parse_int=_parse_int if exact else None, parse_float=_parse_float if exact else None,
        )
    except _ReaderError as error:
        return Parsed(None, str(error))
    except RecursionError:
        # Python's json counts its nesting against the interpreter's recursion limit (1000 by default) and stops
        # cleanly there; anything that deep is far past serde_json's limit.
        return Parsed(None, _TOO_DEEP)
    except ValueError:
        return Parsed(None, "is not valid JSON")
    if not isinstance(value, dict):
        return Parsed(None, "is not a JSON object")
    if _too_deep(signs):
        return Parsed(None, _TOO_DEEP)
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value, every_dropped):
        return Parsed(None, "has a lone UTF-16 surrogate escape in a string")
    return Parsed(value)

