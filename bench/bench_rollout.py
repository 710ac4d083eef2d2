"""Rollout benchmarks: the sequential test's error rates and the router's speed.

* False-positive rate: a candidate identical to its baseline (2 % errors),
  canary 5 -> 25 -> 50 % with 5-minute steps at 100 req/s, the error-rate gate
  checked every analysis interval. Vectorised over the simulations.
* Rollback: a candidate with 4 % errors against 2 %, driven through the real
  state machine with the default canary plan; the share of rollouts rolled
  back within the first (5 %, 5-minute) step and the median time to rollback.
* A/A rollouts: a candidate identical to its baseline in every respect
  (errors, latency, predictions, accuracy on labelled traffic) driven through
  the state machine with the default canary plan and every default gate,
  until it is promoted or rolled back: the share rolled back is the plan's
  family-wise false-rollback rate, to be at most its ``alpha`` (0.05). Shown
  next to the same rollouts with each sequential gate spending its full
  ``alpha`` (the split switched off).
* Router: nanoseconds per routing decision.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from mloop.client.router import TrafficRouter
from mloop.contracts.payloads import Route, TrafficSplitChanged
from mloop.rollout.domain.evidence import Evidence, VersionStats, prediction_key
from mloop.rollout.domain.machine import analyse, new_rollout, start
from mloop.rollout.domain.plan import Gate, RolloutPlan
from mloop.stats.sequential import log_mixture_lr

RATE = 100.0  # requests per second
STEP_S = 300.0
T0 = datetime(2026, 11, 26, tzinfo=UTC)


def false_positive_rate(sims: int, interval_s: float, seed: int = 11) -> float:
    gate = Gate(metric="error-rate", sequential="guard")
    rng = np.random.default_rng(seed)
    x_a, n_a, x_b, n_b = (np.zeros(sims) for _ in range(4))
    rejected = np.zeros(sims, dtype=bool)
    for weight in (0.05, 0.25, 0.5):
        for _ in range(round(STEP_S / interval_s)):
            m_a = rng.poisson(RATE * (1 - weight) * interval_s, sims)
            m_b = rng.poisson(RATE * weight * interval_s, sims)
            n_a += m_a
            n_b += m_b
            x_a += rng.binomial(m_a, 0.02)
            x_b += rng.binomial(m_b, 0.02)
            worse, _, _ = log_mixture_lr(x_a, n_a, x_b, n_b, gate.tau)
            enough = (n_a >= gate.min_samples) & (n_b >= gate.min_samples)
            rejected |= (worse >= np.log(1 / gate.alpha)) & enough
    return float(rejected.mean())


# A fixed latency and score distribution shared by both versions: only errors differ.
_LAT_BUCKETS = [k for k in range(20, 80)]
_LAT_P = np.exp(-0.5 * ((np.array(_LAT_BUCKETS) - 45) / 6.0) ** 2)
_LAT_P /= _LAT_P.sum()
_PRED_KEYS = [prediction_key(v) for v in np.linspace(0.05, 0.95, 19)]
_PRED_P = np.full(len(_PRED_KEYS), 1 / len(_PRED_KEYS))


def _add_traffic(
    s: VersionStats, n: int, errors: int, rng: np.random.Generator, labelled: int = 0, correct: int = 0
) -> VersionStats:
    lat = rng.multinomial(n, _LAT_P)
    preds = rng.multinomial(n - errors, _PRED_P)
    return s.merge(
        VersionStats(
            requests=n,
            errors=errors,
            latency={b: int(c) for b, c in zip(_LAT_BUCKETS, lat, strict=True) if c},
            predictions={str(k): int(c) for k, c in zip(_PRED_KEYS, preds, strict=True) if c},
            labelled=labelled,
            correct=correct,
        )
    )


LABELLED = 0.5  # share of served requests whose label comes back during the rollout
ACCURACY = 0.85


def aa_rollback_rate(sims: int, *, split: bool = True, seed: int = 17) -> tuple[float, int]:
    """(share of A/A rollouts rolled back, gates in the plan) with every default canary gate."""
    plan = RolloutPlan() if split else RolloutPlan(alpha=0.999)
    interval = plan.analysis_interval_s
    rng = np.random.default_rng(seed)
    rolled_back = 0
    horizon = STEP_S * (len(plan.traffic_steps) + 2)

    def traffic(s: VersionStats, n: int) -> VersionStats:
        errors = int(rng.binomial(n, 0.02))
        labelled = int(rng.binomial(n - errors, LABELLED))
        return _add_traffic(s, n, errors, rng, labelled, int(rng.binomial(labelled, ACCURACY)))

    for i in range(sims):
        r = new_rollout(rollout_id=f"aa-{i}", model="m", candidate="2", baseline="1", plan=plan, now=T0)
        r = start(r, now=T0, actor="bench").rollout
        ev = Evidence()
        t = 0.0
        while t < horizon and r.phase == "progressing":
            t += interval
            n_a = int(rng.poisson(RATE * (1 - r.weight) * interval))
            n_b = int(rng.poisson(RATE * r.weight * interval))
            ev = Evidence(baseline=traffic(ev.baseline, n_a), candidate=traffic(ev.candidate, n_b))
            r = analyse(r, ev, now=T0 + timedelta(seconds=t)).rollout
        rolled_back += r.phase == "rolled-back"
    return rolled_back / sims, len(plan.gate_list)


def rollback_simulation(sims: int, seed: int = 5) -> tuple[float, float, float]:
    """(share rolled back within the first step, median seconds to rollback, analysis interval)."""
    plan = RolloutPlan()
    interval = plan.analysis_interval_s
    rng = np.random.default_rng(seed)
    times: list[float] = []
    for i in range(sims):
        r = new_rollout(rollout_id=f"sim-{i}", model="m", candidate="2", baseline="1", plan=plan, now=T0)
        r = start(r, now=T0, actor="bench").rollout
        ev = Evidence()
        t = 0.0
        while t < STEP_S:
            t += interval
            n_a = int(rng.poisson(RATE * (1 - r.weight) * interval))
            n_b = int(rng.poisson(RATE * r.weight * interval))
            ev = Evidence(
                baseline=_add_traffic(ev.baseline, n_a, int(rng.binomial(n_a, 0.02)), rng),
                candidate=_add_traffic(ev.candidate, n_b, int(rng.binomial(n_b, 0.04)), rng),
            )
            r = analyse(r, ev, now=T0 + timedelta(seconds=t)).rollout
            if r.phase == "rolled-back":
                times.append(t)
                break
            if r.step_index > 0:
                break
    detected = len(times) / sims
    return detected, float(np.median(times)) if times else float("nan"), interval


def router_ns_per_decision(n: int) -> float:
    router = TrafficRouter()
    router.apply(
        TrafficSplitChanged(
            model="m",
            seq=1,
            rollout_id="r",
            routes=[Route(version="1", weight=0.95), Route(version="2", weight=0.05)],
        )
    )
    keys = [f"user-{i}" for i in range(n)]
    route = router.route
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for k in keys:
            route("m", k)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def run(quick: bool = False) -> list[dict[str, Any]]:
    sims = 200 if quick else 1000
    fpr_10 = false_positive_rate(sims, 10.0)
    fpr_30 = false_positive_rate(sims, 30.0)
    detected, median_s, interval = rollback_simulation(sims)
    ns = router_ns_per_decision(20_000 if quick else 100_000)
    aa_sims = 100 if quick else 400
    aa_split, n_gates = aa_rollback_rate(aa_sims)
    aa_each, _ = aa_rollback_rate(aa_sims, split=False)
    canary = "100 req/s, canary 5/25/50 % x 5 min"
    return [
        {
            "name": "rollout.msprt.false_positive_rate@10s",
            "value": fpr_10,
            "unit": "ratio",
            "target": "<= 0.05",
            "detail": f"{sims} simulated good candidates (2 % errors both), {canary}, checked every 10 s",
        },
        {
            "name": "rollout.msprt.false_positive_rate@30s",
            "value": fpr_30,
            "unit": "ratio",
            "target": "<= 0.05",
            "detail": f"{sims} simulated good candidates, {canary}, checked every 30 s",
        },
        {
            "name": "rollout.rollback.detection_rate",
            "value": detected,
            "unit": "ratio",
            "target": ">= 0.95",
            "detail": (
                f"{sims} rollouts of a 4 % vs 2 % error candidate through the state machine "
                f"(default plan, analysis every {interval:g} s), rolled back within the first "
                "5 %/5-minute step"
            ),
        },
        {
            "name": "rollout.rollback.median_detection_time",
            "value": median_s,
            "unit": "s",
            "target": "< 300",
            "detail": "median time from start to the rollback of the bad candidate",
        },
        {
            "name": "rollout.aa.rollback_rate",
            "value": aa_split,
            "unit": "ratio",
            "target": "<= 0.05",
            "detail": (
                f"{aa_sims} A/A rollouts through the state machine, default canary plan with all {n_gates} "
                f"default gates, {LABELLED:.0%} of requests labelled, until promoted or rolled back; plan alpha "
                f"0.05 split over the sequential gates. Each gate spending its own alpha: {aa_each:.3f}"
            ),
        },
        {
            "name": "router.decision_time",
            "value": ns,
            "unit": "ns/decision",
            "target": "< 10000",
            "detail": "TrafficRouter.route, blake2b placement, 2 routes, best of 5 passes",
        },
    ]


if __name__ == "__main__":
    for row in run(quick=True):
        print(f"{row['name']:45s} {row['value']:>12.4g} {row['unit']:12s} {row['target']}")
