"""Plans validate as data; evidence aggregates and merges; gates read it."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from mloop.rollout.domain.evidence import Evidence, VersionStats, is_correct, prediction_distance
from mloop.rollout.domain.gates import evaluate
from mloop.rollout.domain.plan import Gate, RolloutPlan, ThresholdRange


def test_plan_steps_accept_numbers_and_drop_the_final_full_step() -> None:
    plan = RolloutPlan.model_validate({"steps": [0.05, 0.25, 0.5, 1.0]})
    assert [s.weight for s in plan.traffic_steps] == [0.05, 0.25, 0.5]


def test_plan_generates_steps_from_step_and_max_weight() -> None:
    plan = RolloutPlan(step_weight=0.1, max_weight=0.3)
    assert [s.weight for s in plan.traffic_steps] == [0.1, 0.2, 0.3]
    assert RolloutPlan.model_validate_json(plan.model_dump_json()) == plan


def test_per_step_overrides_fall_back_to_plan_defaults() -> None:
    plan = RolloutPlan.model_validate(
        {"steps": [{"weight": 0.1, "min_duration_s": 30}, 0.5], "step_min_duration_s": 120}
    )
    assert plan.step_duration(0) == 30 and plan.step_duration(1) == 120


@pytest.mark.parametrize(
    "bad",
    [
        {"steps": [0.5, 0.25]},
        {"steps": [0.0]},
        {"steps": [1.5]},
        {"strategy": "canary", "steps": [1.0]},
        {"strategy": "shadow"},
        {"strategy": "binary", "steps": [0.5]},
        {"steps": [0.1], "step_weight": 0.1},
        {"failure_threshold": 0},
        {"analysis_interval_s": 0},
        {"strategy": "blue-green"},
        {"unknown": 1},
        {"gates": [{"metric": "error-rate"}, {"metric": "error-rate"}]},
        {"gates": [{"metric": "prediction-distance", "sequential": "guard"}]},
        {"gates": [{"metric": "latency-p95", "sequential": "decide"}]},
        {"gates": [{"metric": "error-rate", "threshold": {"min": 0.5, "max": 0.1}}]},
    ],
)
def test_invalid_plans_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        RolloutPlan.model_validate(bad)


def test_version_stats_merge_like_one_stream() -> None:
    rng = np.random.default_rng(1)
    whole, a, b = VersionStats(), VersionStats(), VersionStats()
    for i in range(2_000):
        kw = dict(
            error=bool(rng.random() < 0.05), latency_ms=float(rng.lognormal(2, 0.5)), prediction=float(rng.random())
        )
        whole.record_prediction(**kw)  # type: ignore[arg-type]
        (a if i % 3 else b).record_prediction(**kw)  # type: ignore[arg-type]
    assert a.merge(b) == whole


def test_latency_quantiles_are_within_two_percent() -> None:
    rng = np.random.default_rng(2)
    values = rng.lognormal(2, 0.6, 20_000)
    s = VersionStats()
    for v in values:
        s.record_prediction(error=False, latency_ms=float(v))
    for q in (0.5, 0.95, 0.99):
        estimate = s.latency_quantile(q)
        assert estimate is not None
        assert abs(estimate / float(np.quantile(values, q)) - 1) < 0.03


def test_prediction_distance_separates_shifted_distributions() -> None:
    rng = np.random.default_rng(3)
    same_a, same_b, shifted = VersionStats(), VersionStats(), VersionStats()
    for _ in range(3_000):
        same_a.record_prediction(error=False, prediction=float(rng.beta(2, 5)))
        same_b.record_prediction(error=False, prediction=float(rng.beta(2, 5)))
        shifted.record_prediction(error=False, prediction=float(rng.beta(5, 2)))
    near = prediction_distance(same_a, same_b)
    far = prediction_distance(same_a, shifted)
    assert near is not None and far is not None
    assert near < 0.1 < 0.5 < far


def test_class_labels_and_probability_vectors_are_compared_as_classes() -> None:
    a, b = VersionStats(), VersionStats()
    for i in range(1_000):
        a.record_prediction(error=False, prediction="approve" if i % 4 else "deny")
        b.record_prediction(error=False, prediction="deny")
    d = prediction_distance(a, b)
    assert d is not None and d > 0.5
    assert is_correct([0.1, 0.9], 1) is True
    assert is_correct("deny", "deny") is True
    assert is_correct(0.8, 0) is False
    assert is_correct(123.4, 120.0) is None


def test_gates_report_values_baselines_and_reasons() -> None:
    base, cand = VersionStats(), VersionStats()
    for i in range(10_000):
        base.record_prediction(error=i % 50 == 0, latency_ms=10.0, prediction=0.3)
    for i in range(1_000):
        cand.record_prediction(error=i % 10 == 0, latency_ms=30.0, prediction=0.3)
    gates = [
        Gate(metric="error-rate", sequential="guard"),
        Gate(metric="latency-p95", relative=ThresholdRange(max=1.5)),
        Gate(metric="accuracy", required=False),
    ]
    verdict = evaluate(gates, Evidence(baseline=base, candidate=cand))
    by_name = {r.name: r for r in verdict.results}
    assert by_name["error-rate"].outcome == "fail"
    assert by_name["error-rate"].value == pytest.approx(0.1)
    assert by_name["error-rate"].baseline == pytest.approx(0.02)
    assert verdict.decisive == ["error-rate"]
    assert by_name["latency-p95"].outcome == "fail" and "ratio" in by_name["latency-p95"].detail
    assert by_name["accuracy"].outcome == "inconclusive"
    assert verdict.inconclusive == []  # not required
    assert verdict.outcome == "fail"
    assert verdict.p_values["error-rate"] < 0.05


def test_a_plans_alpha_is_split_over_its_sequential_gates() -> None:
    plan = RolloutPlan()
    alphas = plan.gate_alphas()
    sequential = [g for g in plan.gate_list if g.sequential != "off"]
    assert set(alphas) == {g.name for g in sequential} and len(sequential) == 2
    assert sum(alphas.values()) == pytest.approx(plan.alpha)
    assert all(a == pytest.approx(0.025) for a in alphas.values())
    # A plan whose gates already spend less than its level keeps their own levels.
    loose = RolloutPlan(alpha=0.2)
    assert loose.gate_alphas() == {g.name: g.alpha for g in sequential}
    # Unequal gate levels keep their proportions.
    custom = RolloutPlan(gates=[Gate(metric="error-rate", sequential="guard", alpha=0.06),
                                Gate(metric="accuracy", sequential="guard", alpha=0.02)])
    split = custom.gate_alphas()
    assert split[custom.gate_list[0].name] == pytest.approx(0.0375)
    assert split[custom.gate_list[1].name] == pytest.approx(0.0125)


def test_a_gate_tests_at_the_level_the_plan_gives_it() -> None:
    gate = Gate(metric="error-rate", sequential="guard")
    base = VersionStats(requests=20_000, errors=400)
    # Worse, with an always-valid p-value between the split level and the gate's own.
    cand = VersionStats(requests=2_000, errors=62)
    own = evaluate([gate], Evidence(baseline=base, candidate=cand))
    p = own.p_values[gate.name]
    assert 0.0 < p < 1.0
    strict = evaluate([gate], Evidence(baseline=base, candidate=cand), alphas={gate.name: p / 2})
    lenient = evaluate([gate], Evidence(baseline=base, candidate=cand), alphas={gate.name: min(2 * p, 0.99)})
    assert strict.decisive == [] and lenient.decisive == [gate.name]
    assert f"alpha {p / 2:g}" in strict.checks[0].result.detail
