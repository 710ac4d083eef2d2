"""Training-data profiles for trainers to attach to a version's registration.

The monitor compares live traffic against the profile registered with a
version: its reference. Build it from the training table with the same
library the monitor uses, so bins and categories line up::

    profile = build_training_profile({"age": ages, "region": regions},
                                     kinds={"region": "categorical"},
                                     prediction=train_scores)
    registry.register_version("credit-risk", ..., training_profile=profile)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mloop.stats.profile import Kind, ReferenceProfile, columns_from_rows

Column = Sequence[Any] | np.ndarray[Any, Any]

__all__ = ["ReferenceProfile", "build_training_profile", "profile_from_rows"]


def build_training_profile(
    columns: Mapping[str, Column],
    kinds: Mapping[str, Kind] | None = None,
    *,
    prediction: Column | None = None,
    seed: int = 0,
    **options: Any,
) -> dict[str, Any]:
    """The JSON-safe reference profile of a training table (``training_profile`` of a registration).

    ``columns`` maps feature name to a 1-D column; ``kinds`` may force
    ``"numeric"`` or ``"categorical"`` per feature (inferred otherwise);
    ``prediction`` profiles the model's outputs on the training data, the
    reference for prediction drift. ``options`` go to
    :meth:`mloop.stats.profile.ReferenceProfile.from_columns` (``n_bins``,
    ``top_k``, ``reservoir_size``). Raises ``mloop.stats`` input errors
    (``ValueError`` subclasses) for columns of different lengths.
    """
    profile = ReferenceProfile.from_columns(columns, kinds, prediction=prediction, seed=seed, **options)
    return profile.to_dict()


def profile_from_rows(
    rows: Iterable[Mapping[str, Any]],
    kinds: Mapping[str, Kind] | None = None,
    *,
    prediction: Column | None = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`build_training_profile` for records (``[{"age": 41, "region": "north"}, ...]``)."""
    return build_training_profile(columns_from_rows(rows), kinds, prediction=prediction, **options)
