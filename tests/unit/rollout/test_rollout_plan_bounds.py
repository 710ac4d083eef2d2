"""Plan numbers are bounded when the plan is parsed, before any steps are built."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from mloop.rollout.domain.plan import MAX_STEPS, RolloutPlan


@pytest.mark.parametrize("fields", [
    {"step_weight": 5e-324}, {"step_weight": 1e-5}, {"step_weight": 0.001},
    {"steps": [i / 1000 for i in range(1, 1000)]},
    {"failure_threshold": 10**30}, {"failure_threshold": 1001},
    {"step_min_samples": 10**20}, {"progress_deadline_s": 1e300}, {"inconclusive_timeout_s": float("inf")},
    {"step_min_duration_s": float("nan")}, {"analysis_interval_s": 1e-9}, {"shadow_duration_s": 1e12},
    {"gates": [{"metric": "error-rate", "min_samples": 10**12}]},
])
def test_out_of_bounds_plans_are_refused_naming_the_field(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        RolloutPlan.model_validate({"strategy": "canary", **fields})
    assert next(iter(fields)) in str(info.value)


def test_the_smallest_step_weight_gives_at_most_max_steps() -> None:
    plan = RolloutPlan.model_validate({"strategy": "canary", "step_weight": 1 / MAX_STEPS, "max_weight": 1.0})
    assert 0 < len(plan.traffic_steps) <= MAX_STEPS
    assert RolloutPlan.model_validate({"strategy": "canary", "failure_threshold": 1000}).failure_threshold == 1000
