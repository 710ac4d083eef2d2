"""The registry's decisions, as pure functions of data.

* **Validation gates** (:func:`validate`): lineage completeness, each declared
  metric against the champion's (direction-aware, with a tolerance), segment
  and fairness bounds, and feature-schema compatibility with the champion.
  The policy that drives them is data (:class:`Policy`): a default plus a
  per-model override (:func:`effective_policy`).
* **Promotion rules** (:func:`check_promotable`, :func:`review`,
  :func:`auto_approver`): only a validated version may be requested; four
  eyes; a rejection needs a comment; a model's explicit auto-approval policy
  is recorded as the approving actor ``policy:<name>``.
* **Rollout outcomes** (:func:`champion_moves`): a completed rollout makes
  its version ``champion`` and keeps the former one as ``previous-champion``.
* **Aliases** (:func:`check_alias_by_hand`, :func:`check_alias_target`):
  ``champion`` and ``previous-champion`` move only with a completed rollout,
  never by hand; other aliases point only at versions that passed validation
  and are not archived.
* **Lifecycle** (:func:`check_archivable`, :func:`check_deletable`): a
  version that ever served traffic or carried an alias is archived, never
  deleted.
* **Fixed tags** (:func:`check_tag_change`): tags that carry lineage or
  metrics into the gates (``mloop.lineage.*``, ``mloop.metric.*``) are set
  at registration and never changed afterwards.

Nothing here does I/O. ``policy.py`` (policies), ``validation.py`` (the gates),
``promotion.py`` (requests and reviews), ``lifecycle.py`` (versions, aliases, tags).
"""

from mloop.registry.domain.lifecycle import (
    CHAMPION,
    FIXED_TAG_PREFIXES,
    PREVIOUS_CHAMPION,
    SYSTEM_ALIASES,
    AliasMove,
    VersionState,
    VersionStatus,
    champion_moves,
    check_alias_by_hand,
    check_alias_target,
    check_archivable,
    check_deletable,
    check_tag_change,
)
from mloop.registry.domain.policy import (
    HIGHER_IS_BETTER,
    LINEAGE_FIELDS,
    LOWER_IS_BETTER,
    POLICY_EXAMPLE,
    MetricRule,
    Policy,
    SegmentBound,
    effective_policy,
)
from mloop.registry.domain.promotion import (
    Decision,
    PromotionState,
    ReviewOutcome,
    auto_approver,
    check_promotable,
    review,
)
from mloop.registry.domain.validation import (
    Champion,
    ValidationResult,
    check_feature_schema,
    check_lineage,
    check_metrics,
    check_segments,
    metric_direction,
    validate,
)

__all__ = [
    "CHAMPION",
    "FIXED_TAG_PREFIXES",
    "HIGHER_IS_BETTER",
    "LINEAGE_FIELDS",
    "LOWER_IS_BETTER",
    "POLICY_EXAMPLE",
    "PREVIOUS_CHAMPION",
    "SYSTEM_ALIASES",
    "AliasMove",
    "Champion",
    "Decision",
    "MetricRule",
    "Policy",
    "PromotionState",
    "ReviewOutcome",
    "SegmentBound",
    "ValidationResult",
    "VersionState",
    "VersionStatus",
    "auto_approver",
    "champion_moves",
    "check_alias_by_hand",
    "check_alias_target",
    "check_archivable",
    "check_deletable",
    "check_feature_schema",
    "check_lineage",
    "check_metrics",
    "check_promotable",
    "check_segments",
    "check_tag_change",
    "effective_policy",
    "metric_direction",
    "review",
    "validate",
]
