"""Gate evaluation: a plan's gates against the evidence, candidate versus baseline.

Pure: evidence and the sequential tests' previous p-values in, a
:class:`Verdict` out. The always-valid p-values are running minima over every
analysis of the rollout, so the caller keeps them (in the rollout state) and
passes them back at the next look.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mloop.contracts.payloads import GateResult
from mloop.rollout.domain.evidence import Evidence, VersionStats, latency_histograms, prediction_distance
from mloop.rollout.domain.plan import Gate
from mloop.stats.sequential import MSPRT, SequentialResult, quantile_exceedance

__all__ = ["Outcome", "Verdict", "evaluate", "evaluate_gate"]

Outcome = Literal["pass", "fail", "inconclusive"]

_QUANTILE = {"latency-p50": 0.5, "latency-p95": 0.95, "latency-p99": 0.99}


@dataclass(frozen=True)
class GateCheck:
    """One gate at one analysis."""

    result: GateResult
    decisive: bool = False
    """The candidate was proven worse by the sequential test: roll back now."""
    p_value: float | None = None
    sequential: SequentialResult | None = None


@dataclass(frozen=True)
class Verdict:
    """All gates at one analysis."""

    checks: tuple[GateCheck, ...]
    required: frozenset[str] = field(default_factory=frozenset)

    @property
    def results(self) -> list[GateResult]:
        return [c.result for c in self.checks]

    @property
    def failed(self) -> list[str]:
        return [c.result.name for c in self.checks if c.result.outcome == "fail"]

    @property
    def decisive(self) -> list[str]:
        return [c.result.name for c in self.checks if c.decisive]

    @property
    def inconclusive(self) -> list[str]:
        """Required gates that could not conclude."""
        return [
            c.result.name for c in self.checks if c.result.outcome == "inconclusive" and c.result.name in self.required
        ]

    @property
    def outcome(self) -> Outcome:
        if self.failed:
            return "fail"
        if self.inconclusive:
            return "inconclusive"
        return "pass"

    @property
    def p_values(self) -> dict[str, float]:
        return {c.result.name: c.p_value for c in self.checks if c.p_value is not None}

    def evidence(self) -> list[dict[str, Any]]:
        """Per gate: the result and, for sequential gates, the test's statistics."""
        out: list[dict[str, Any]] = []
        for c in self.checks:
            item: dict[str, Any] = c.result.model_dump(mode="json")
            if c.sequential is not None:
                item["sequential"] = c.sequential.as_dict()
            out.append(item)
        return out


def evaluate(
    gates: list[Gate],
    evidence: Evidence,
    previous_p: Mapping[str, float] | None = None,
    alphas: Mapping[str, float] | None = None,
) -> Verdict:
    """Check every gate; ``previous_p`` holds each sequential gate's running p-value.

    ``alphas`` maps a sequential gate's name to the level it tests at (a
    plan's :meth:`~mloop.rollout.domain.plan.RolloutPlan.gate_alphas`); a gate not
    in it tests at its own ``alpha``.
    """
    prev = previous_p or {}
    levels = alphas or {}
    checks = tuple(evaluate_gate(g, evidence, prev.get(g.name, 1.0), levels.get(g.name)) for g in gates)
    return Verdict(checks=checks, required=frozenset(g.name for g in gates if g.required))


def _metric(gate: Gate, s: VersionStats) -> tuple[float | None, int]:
    """The gate's value for one version and how many observations back it."""
    if gate.metric == "error-rate":
        return s.error_rate, s.requests
    if gate.metric == "accuracy":
        return s.accuracy, s.labelled
    if gate.metric in _QUANTILE:
        return s.latency_quantile(_QUANTILE[gate.metric]), s.latency_count
    raise AssertionError(gate.metric)  # pragma: no cover - distance handled by the caller


def _counts(gate: Gate, ev: Evidence) -> tuple[int, int, int, int]:
    a, b = ev.baseline, ev.candidate
    if gate.metric == "error-rate":
        return a.errors, a.requests, b.errors, b.requests
    if gate.metric == "accuracy":
        return a.correct, a.labelled, b.correct, b.labelled
    ha, hb = latency_histograms(a, b)
    if not ha:
        return 0, 0, 0, 0
    return quantile_exceedance(ha, hb, _QUANTILE[gate.metric])


def evaluate_gate(gate: Gate, ev: Evidence, previous_p: float = 1.0, alpha: float | None = None) -> GateCheck:
    """One gate against the evidence (pure); a sequential gate tests at ``alpha`` (default: its own)."""
    level = gate.alpha if alpha is None else alpha
    if gate.metric == "prediction-distance":
        return _distance(gate, ev)
    value, n = _metric(gate, ev.candidate)
    baseline, _ = _metric(gate, ev.baseline)
    bound = gate.threshold.bound
    if value is None or n < gate.min_samples:
        return GateCheck(
            GateResult(
                name=gate.name,
                outcome="inconclusive",
                value=value,
                baseline=baseline,
                threshold=bound,
                detail=f"{n} of {gate.min_samples} candidate samples",
            ),
            p_value=previous_p if gate.sequential != "off" else None,
        )
    notes: list[str] = []
    outcome: Outcome = "pass"
    if not gate.threshold.contains(value):
        outcome = "fail"
        notes.append(f"{value:.6g} outside {gate.threshold.describe()}")
    if gate.relative is not None:
        if baseline:
            ratio = value / baseline
            if not gate.relative.contains(ratio):
                outcome = "fail"
                notes.append(f"ratio to baseline {ratio:.3g} outside {gate.relative.describe()}")
            else:
                notes.append(f"ratio to baseline {ratio:.3g}")
        else:
            notes.append("no baseline value for the relative range")
    decisive = False
    seq: SequentialResult | None = None
    p_value: float | None = None
    if gate.sequential != "off":
        test = MSPRT(
            alpha=level,
            tau=gate.tau,
            sided="worse" if gate.sequential == "guard" else "two-sided",
            direction="lower-is-worse" if gate.metric == "accuracy" else "higher-is-worse",
            min_samples=gate.min_samples,
        )
        seq = test.test(*_counts(gate, ev), previous_p=previous_p)
        p_value = seq.always_valid_p
        notes.append(
            f"mSPRT {seq.decision}: always-valid p={seq.always_valid_p:.3g} "
            f"(alpha {level:g}), effect h={seq.effect:+.3f}, "
            f"n={seq.n_b} vs {seq.n_a}"
        )
        if seq.decision == "candidate-worse":
            outcome, decisive = "fail", True
        elif seq.decision == "continue" and gate.sequential == "decide" and outcome == "pass":
            outcome = "inconclusive"
    return GateCheck(
        GateResult(
            name=gate.name,
            outcome=outcome,
            value=value,
            baseline=baseline,
            threshold=bound,
            detail="; ".join(notes),
        ),
        decisive=decisive,
        p_value=p_value,
        sequential=seq,
    )


def _distance(gate: Gate, ev: Evidence) -> GateCheck:
    n_b = sum(ev.candidate.predictions.values())
    n_a = sum(ev.baseline.predictions.values())
    value = prediction_distance(ev.baseline, ev.candidate)
    bound = gate.threshold.bound
    if value is None or n_b < gate.min_samples or n_a < gate.min_samples:
        return GateCheck(
            GateResult(
                name=gate.name,
                outcome="inconclusive",
                value=value,
                threshold=bound,
                detail=f"{n_b} candidate and {n_a} baseline predictions, {gate.min_samples} needed",
            )
        )
    ok = gate.threshold.contains(value)
    return GateCheck(
        GateResult(
            name=gate.name,
            outcome="pass" if ok else "fail",
            value=value,
            threshold=bound,
            detail=f"Jensen-Shannon distance {value:.4f}, range {gate.threshold.describe()}",
        )
    )
