"""Canonical JSON: the exact bytes that are hashed into the audit ledger.

Follows RFC 8785 (JSON Canonicalization Scheme) for everything that can
appear in a CloudEvent decoded from JSON:

* object members sorted by the UTF-16 code units of their names;
* no insignificant whitespace;
* strings as UTF-8, escaping only ``"``, ``\\`` and control characters
  (``\\b \\f \\n \\r \\t`` by name, others as lowercase ``\\u00xx``);
* floats in the ECMAScript ``Number.prototype.toString`` form of their
  shortest round-trip representation (``1.0`` -> ``1``, ``1e-7`` -> ``1e-7``,
  ``1e21`` -> ``1e+21``, ``-0.0`` -> ``0``).

One deliberate departure from RFC 8785: Python integers are written exactly
as they are, whatever their magnitude, instead of being rounded through an
IEEE 754 double. Nothing in the ledger relies on that rounding, and silently
changing a large integer would be worse.

Errors::

    ValueError
     └── CanonicalizationError   NaN/Infinity, non-string keys, lone
                                 surrogates, unsupported types
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["CanonicalizationError", "canonicalize", "format_float"]


class CanonicalizationError(ValueError):
    """The value has no canonical JSON form."""


# The C string encoder behind json.dumps(ensure_ascii=False) escapes exactly
# what RFC 8785 requires: '"', '\\', \b \f \n \r \t by name and other C0
# controls as lowercase \u00xx; everything else is written as is.
_encode_string: Callable[[str], str] = json.encoder.encode_basestring


def canonicalize(value: Any) -> bytes:
    """Return the canonical UTF-8 JSON encoding of ``value``.

    ``value`` may be built from dicts with string keys, lists and tuples,
    strings, ints, floats, bools and None. Raises ``CanonicalizationError``
    for NaN or infinite floats, non-string keys, strings that are not valid
    Unicode (lone surrogates) and any other type.
    """
    parts: list[str] = []
    _write(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError("string is not valid Unicode (lone surrogate)") from exc


def _utf16_key(name: str) -> bytes:
    # Big-endian UTF-16 bytes compare in the same order as UTF-16 code units.
    return name.encode("utf-16-be", "surrogatepass")


def _sorted_keys(obj: Mapping[Any, Any]) -> list[str]:
    try:
        # join() rejects non-string keys at C speed.
        joined = "".join(obj)
    except TypeError:
        bad = next(k for k in obj if not isinstance(k, str))
        raise CanonicalizationError(f"object key {bad!r} is not a string") from None
    # Code point order equals UTF-16 code unit order unless astral characters
    # meet U+E000..U+FFFF; ASCII-only keys, the usual case, need no care.
    if joined.isascii():
        return sorted(obj)
    return sorted(obj, key=_utf16_key)


def _write(value: Any, out: list[str]) -> None:
    kind = type(value)
    if kind is str:
        out.append(_encode_string(value))
    elif kind is dict or (kind is not list and isinstance(value, Mapping)):
        if not value:
            out.append("{}")
            return
        sep = "{"
        for key in _sorted_keys(value):
            out.append(sep)
            out.append(_encode_string(key))
            out.append(":")
            _write(value[key], out)
            sep = ","
        out.append("}")
    elif kind is int:
        out.append(int.__repr__(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is list or kind is tuple:
        if not value:
            out.append("[]")
            return
        sep = "["
        for item in value:
            out.append(sep)
            _write(item, out)
            sep = ","
        out.append("]")
    elif isinstance(value, float):
        out.append(format_float(value))
    elif isinstance(value, str):
        out.append(_encode_string(str(value)))
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, list | tuple):
        _write(list(value), out)
    else:
        raise CanonicalizationError(f"{type(value).__name__} has no JSON form")


def format_float(value: float) -> str:
    """Format a finite float the way ECMAScript ``Number.prototype.toString`` does.

    Raises ``CanonicalizationError`` for NaN and infinities, which JSON cannot
    represent.
    """
    if not math.isfinite(value):
        raise CanonicalizationError(f"{value!r} is not representable in JSON")
    if value == 0.0:
        return "0"  # covers -0.0 too
    text = float.__repr__(value)
    if "e" not in text:
        # Python writes 1e-4 <= |x| < 1e16 in fixed notation with the same
        # shortest digits as ECMAScript, which only drops a trailing ".0".
        return text[:-2] if text.endswith(".0") else text
    return _relayout(value)


def _relayout(value: float) -> str:
    """ECMAScript layout of a finite non-zero float, from its shortest digits."""
    sign = "-" if value < 0 else ""
    # repr() gives the shortest string that round-trips; only its layout
    # differs from ECMAScript, so take its digits and exponent and re-lay them.
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    # Position of the decimal point relative to the first significant digit.
    point = len(int_part) + (int(exp_text) if exp_text else 0)
    point -= len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    digits = digits.rstrip("0")
    k, n = len(digits), point
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        exponent = n - 1
        exp_sign = "+" if exponent >= 0 else "-"
        head = digits[0] + ("." + digits[1:] if k > 1 else "")
        body = f"{head}e{exp_sign}{abs(exponent)}"
    return sign + body
