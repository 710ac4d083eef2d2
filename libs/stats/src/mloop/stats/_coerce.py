"""Turning loosely typed columns (lists from JSON, numpy arrays) into clean arrays.

Input to the monitor comes from serving systems we do not control, so
conversion never raises on bad *values*: anything that is not a finite
number in a numeric column, or ``None``/NaN in a categorical one, becomes
"missing". Only bad *shapes* raise :class:`InvalidInputError`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from numbers import Real
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from mloop.stats._exceptions import InvalidInputError

__all__ = [
    "Column",
    "FloatArray",
    "IntArray",
    "Kind",
    "StrArray",
    "as_1d",
    "as_float_array",
    "category_counts",
    "category_name",
    "category_names",
    "category_strings",
    "infer_kind",
]

Kind = Literal["numeric", "categorical"]
Column: TypeAlias = Sequence[Any] | npt.NDArray[Any]
"""A 1-D column: a list (e.g. decoded from JSON, ``None`` for missing) or a numpy array."""
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]


def as_1d(values: Column, what: str = "values") -> npt.NDArray[Any]:
    """Return ``values`` as a 1-D numpy array; raise InvalidInputError otherwise."""
    if isinstance(values, np.ndarray):
        arr = values
    else:
        try:
            arr = np.asarray(values)
        except ValueError:
            # Ragged nested sequences: keep the elements as objects.
            seq: list[Any] = list(values)
            arr = np.empty(len(seq), dtype=object)
            arr[:] = seq
    if arr.ndim == 0:
        raise InvalidInputError(f"{what} must be a 1-D sequence, got a scalar")
    if arr.ndim != 1:
        raise InvalidInputError(f"{what} must be 1-D, got shape {arr.shape}")
    return arr


def _to_float(value: object) -> float:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


def as_float_array(values: Column, what: str = "values") -> FloatArray:
    """Return ``values`` as a 1-D float64 array; unparseable entries become NaN."""
    arr = as_1d(values, what)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64, copy=False)
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError):
        return np.fromiter((_to_float(v) for v in arr), dtype=np.float64, count=arr.size)


def category_name(value: object, *, bools_as_ints: bool = False) -> str | None:
    """The category a value stands for, or ``None`` if it is missing.

    ``None`` and NaN are missing; integral floats are written as integers so
    that ``1`` and ``1.0`` from different producers are the same category;
    booleans are ``"True"``/``"False"`` (``"1"``/``"0"`` with ``bools_as_ints``,
    as labels); anything else is ``str(value)``.
    """
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        if bools_as_ints:
            return "1" if value else "0"
        return "True" if value else "False"
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
        return str(float(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _items(values: Column, what: str) -> list[Any]:
    """The column as a list of Python objects.

    Lists are not passed through numpy, which would turn a mixed list such as
    ``[1.0, "a"]`` into the strings ``"1.0"`` and ``"a"``.
    """
    if isinstance(values, list | tuple):
        return list(values)
    return as_1d(values, what).tolist()  # type: ignore[no-any-return]


def _needs_per_row_names(items: list[Any]) -> bool:
    # Python hashes True like 1 and False like 0, so counting by value would merge them
    # under whichever came first; columns holding booleans are named row by row instead.
    types = set(map(type, items))
    return bool in types or np.bool_ in types


def category_counts(values: Column, what: str = "values") -> tuple[dict[str, int], int]:
    """Count a column's categories (see :func:`category_name`); return them and the missing count.

    Counting runs in C over the Python objects and names only the distinct
    values, which is several times faster than sorting strings in numpy.
    """
    items = _items(values, what)
    if _needs_per_row_names(items):
        raw: Counter[Any] = Counter(map(category_name, items))
    else:
        try:
            raw = Counter(items)
        except TypeError:  # unhashable values (lists, dicts): count their text
            raw = Counter(str(v) for v in items)
    counts: dict[str, int] = {}
    missing = 0
    for value, n in raw.items():
        name = category_name(value)
        if name is None:
            missing += n
        else:
            counts[name] = counts.get(name, 0) + n
    return counts, missing


def category_names(values: Column, what: str = "values", *, bools_as_ints: bool = False) -> list[str | None]:
    """Each row's category name, ``None`` where missing (see :func:`category_name`)."""
    items = _items(values, what)
    if not _needs_per_row_names(items):
        try:
            names = {v: category_name(v) for v in set(items)}
            return [names[v] for v in items]
        except TypeError:
            items = [str(v) for v in items]
    return [category_name(v, bools_as_ints=bools_as_ints) for v in items]


def category_strings(values: Column, what: str = "values") -> tuple[StrArray, int]:
    """Return the non-missing values as category names (in order), and how many were missing."""
    named = category_names(values, what)
    present = [n for n in named if n is not None]
    return np.asarray(present, dtype=np.str_).reshape(-1), len(named) - len(present)


def infer_kind(values: Column, what: str = "values") -> Kind:
    """Guess whether a column is numeric or categorical from its dtype/contents.

    Numbers (but not booleans) are numeric; strings, booleans and mixed
    content are categorical. An all-missing column is numeric.
    """
    arr = as_1d(values, what)
    kind = arr.dtype.kind
    if kind in "fiu":
        return "numeric"
    if kind != "O":
        return "categorical"
    types = set(map(type, arr.tolist())) - {type(None)}
    if all(issubclass(t, Real) and not issubclass(t, bool | np.bool_) for t in types):
        return "numeric"
    return "categorical"
