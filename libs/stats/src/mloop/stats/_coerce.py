"""Turning loosely typed columns (lists from JSON, numpy arrays) into clean arrays.

Input to the monitor comes from serving systems we do not control, so
conversion never raises on bad *values*: anything that is not a finite
number in a numeric column, or ``None``/NaN in a categorical one, becomes
"missing". Only bad *shapes* raise :class:`InvalidInputError`.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mloop.stats._exceptions import InvalidInputError

__all__ = [
    "FloatArray",
    "IntArray",
    "Kind",
    "StrArray",
    "as_1d",
    "as_float_array",
    "category_strings",
    "infer_kind",
]

Kind = Literal["numeric", "categorical"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]


def as_1d(values: npt.ArrayLike, what: str = "values") -> npt.NDArray[Any]:
    """Return ``values`` as a 1-D numpy array; raise InvalidInputError otherwise."""
    if isinstance(values, np.ndarray):
        arr = values
    else:
        try:
            arr = np.asarray(values)
        except ValueError:
            # Ragged nested sequences: keep the elements as objects.
            seq: list[Any] = list(values)  # type: ignore[arg-type]
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


def as_float_array(values: npt.ArrayLike, what: str = "values") -> FloatArray:
    """Return ``values`` as a 1-D float64 array; unparseable entries become NaN."""
    arr = as_1d(values, what)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64, copy=False)
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError):
        return np.fromiter((_to_float(v) for v in arr), dtype=np.float64, count=arr.size)


def category_strings(values: npt.ArrayLike, what: str = "values") -> tuple[StrArray, int]:
    """Return the non-missing values as strings, and how many were missing.

    ``None`` and NaN are missing. Integral floats are written as integers so
    that ``1`` and ``1.0`` from different producers are the same category.
    """
    arr = as_1d(values, what)
    kind = arr.dtype.kind
    if kind in "US":
        return arr.astype(np.str_), 0
    if kind in "iub":
        return arr.astype(np.str_), 0
    if kind == "f":
        finite = np.isfinite(arr)
        present = arr[finite]
        out = present.astype(np.str_)
        integral = present == np.round(present)
        if integral.any():
            out = out.astype(object)
            out[integral] = present[integral].astype(np.int64).astype(np.str_)
            out = out.astype(np.str_)
        return out, int(arr.size - present.size)
    if kind == "O":
        try:
            # Elementwise on objects: `is None` via equality, NaN as the value unequal to itself.
            is_none = np.asarray(arr == None, dtype=np.bool_)  # noqa: E711
            missing = is_none | np.asarray(arr != arr, dtype=np.bool_)
        except (TypeError, ValueError):
            missing = np.fromiter(
                (v is None or (isinstance(v, float) and math.isnan(v)) for v in arr),
                dtype=bool,
                count=arr.size,
            )
        present_obj = arr[~missing]
        if float not in set(map(type, present_obj)):
            return present_obj.astype(np.str_), int(missing.sum())
        floats = np.fromiter(
            (isinstance(v, float) and v.is_integer() for v in present_obj),
            dtype=bool,
            count=present_obj.size,
        )
        if floats.any():
            present_obj = present_obj.copy()
            present_obj[floats] = [str(int(v)) for v in present_obj[floats]]
        return present_obj.astype(np.str_), int(missing.sum())
    return arr.astype(np.str_), 0


def infer_kind(values: npt.ArrayLike, what: str = "values") -> Kind:
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
    for v in arr:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, bool | np.bool_) or not isinstance(v, Real):
            return "categorical"
    return "numeric"
