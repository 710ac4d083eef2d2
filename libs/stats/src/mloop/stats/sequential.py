"""Always-valid sequential tests for comparing a candidate with a baseline.

A rollout looks at its evidence every analysis interval. A fixed-horizon test
checked that often would reject a perfectly good candidate far more often than
its nominal level; the mixture sequential probability ratio test (mSPRT,
Johari, Koomen, Pekelis and Walsh, "Always valid inference", 2017/2022) does
not: its likelihood ratio is a non-negative martingale under the null, so by
Ville's inequality ``P(sup_n Λ_n ≥ 1/alpha) ≤ alpha`` however often it is inspected.

Two proportions (an error rate, an accuracy) are compared on the
variance-stabilised arcsine scale: the effect is Cohen's
``h = 2·asin(√p_candidate) - 2·asin(√p_baseline)`` (Anscombe's 3/8
correction), whose estimate ``ĥ`` is close to normal with variance
``V = 1/(n_a + ½) + 1/(n_b + ½)`` whatever the base rate. (On the raw
difference of proportions the normal approximation is skewed for rare
events and a one-sided test drifts above its level; on this scale it does
not.) The likelihood ratio of ``h`` against 0 is ``exp((h ĥ - h²/2) / V)``;
mixing ``h`` over ``N(0, τ²)`` gives the closed form::

    Λ = sqrt(V / (V + τ²)) · exp(τ² ĥ² / (2 V (V + τ²)))

Restricting the mixture to one side (a half-normal over the "worse"
direction) keeps the martingale property under the composite null
"candidate not worse" and gives ``Λ₊ = 2 Λ Φ(ĥ τ / sqrt(V (V + τ²)))``.
That one-sided ratio is what an automatic rollback needs; the two-sided
ratio ``(Λ₊ + Λ₋)/2 = Λ`` decides champion/challenger comparisons.

``τ`` is the scale (in Cohen's h) of the differences worth detecting; the
default 0.1 suits a doubling of a 1-5 % error rate (2 % → 4 % is h ≈ 0.12).

Everything here is pure numpy/scipy; the vectorised :func:`log_mixture_lr`
serves both a live rollout (scalars) and simulations (arrays).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import log_ndtr

__all__ = [
    "MSPRT",
    "Decision",
    "Direction",
    "SequentialResult",
    "Sidedness",
    "effect_size",
    "log_mixture_lr",
    "quantile_exceedance",
]

Decision = Literal["candidate-worse", "candidate-better", "continue"]
Direction = Literal["higher-is-worse", "lower-is-worse"]
Sidedness = Literal["worse", "two-sided"]

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike


def _arcsine(x: FloatArray, n: FloatArray) -> FloatArray:
    r: FloatArray = 2.0 * np.arcsin(np.sqrt((x + 0.375) / (n + 0.75)))
    return r


def _variance(n_a: FloatArray, n_b: FloatArray) -> FloatArray:
    v: FloatArray = 1.0 / (n_a + 0.5) + 1.0 / (n_b + 0.5)
    return v


def effect_size(x_a: ArrayLike, n_a: ArrayLike, x_b: ArrayLike, n_b: ArrayLike) -> FloatArray:
    """Cohen's h of candidate ``b`` against baseline ``a`` (Anscombe-corrected)."""
    return _arcsine(np.asarray(x_b, dtype=np.float64), np.asarray(n_b, dtype=np.float64)) - _arcsine(
        np.asarray(x_a, dtype=np.float64), np.asarray(n_a, dtype=np.float64)
    )


def log_mixture_lr(
    x_a: ArrayLike,
    n_a: ArrayLike,
    x_b: ArrayLike,
    n_b: ArrayLike,
    tau: float,
    *,
    direction: Direction = "higher-is-worse",
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Log mixture likelihood ratios for ``n_b``/``x_b`` (candidate) against ``n_a``/``x_a``.

    Returns ``(log_lr_worse, log_lr_better, log_lr_two_sided)`` with the shape
    of the broadcast inputs. Where either arm has no observations the ratios
    are 1 (log 0): no evidence either way.
    """
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    xa = np.asarray(x_a, dtype=np.float64)
    na = np.asarray(n_a, dtype=np.float64)
    xb = np.asarray(x_b, dtype=np.float64)
    nb = np.asarray(n_b, dtype=np.float64)
    valid = (na > 0) & (nb > 0)
    safe_na = np.where(valid, na, 1.0)
    safe_nb = np.where(valid, nb, 1.0)
    theta = _arcsine(xb, safe_nb) - _arcsine(xa, safe_na)
    if direction == "lower-is-worse":
        theta = -theta
    v = _variance(safe_na, safe_nb)
    t2 = tau * tau
    log_two_sided = 0.5 * np.log(v / (v + t2)) + t2 * theta * theta / (2.0 * v * (v + t2))
    c = theta * tau / np.sqrt(v * (v + t2))
    log_worse = log_two_sided + math.log(2.0) + log_ndtr(c)
    log_better = log_two_sided + math.log(2.0) + log_ndtr(-c)
    zero = np.zeros_like(log_two_sided)
    return (
        np.where(valid, log_worse, zero),
        np.where(valid, log_better, zero),
        np.where(valid, log_two_sided, zero),
    )


@dataclass(frozen=True)
class SequentialResult:
    """One look at the evidence.

    ``statistic`` is the mixture likelihood ratio the decision uses (one-sided
    "worse" or two-sided); ``always_valid_p`` is the running minimum of its
    reciprocal over every look so far, valid whenever it is read.
    ``estimate`` is ``rate_b - rate_a``; ``effect`` is Cohen's h of the
    candidate against the baseline (positive = higher rate) and
    ``interval`` its always-valid (1 - alpha) confidence interval at this look.
    """

    statistic: float
    always_valid_p: float
    decision: Decision
    estimate: float
    effect: float
    rate_a: float
    rate_b: float
    n_a: int
    n_b: int
    interval: tuple[float, float]
    lr_worse: float
    lr_better: float
    looks: int

    def as_dict(self) -> dict[str, object]:
        return {
            "statistic": self.statistic,
            "always_valid_p": self.always_valid_p,
            "decision": self.decision,
            "estimate": self.estimate,
            "effect": self.effect,
            "rate_a": self.rate_a,
            "rate_b": self.rate_b,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "interval": list(self.interval),
            "lr_worse": self.lr_worse,
            "lr_better": self.lr_better,
            "looks": self.looks,
        }


def _exp_capped(x: float) -> float:
    return math.exp(min(x, 700.0))


@dataclass
class MSPRT:
    """Mixture SPRT comparing the proportion of candidate ``b`` with baseline ``a``.

    ``alpha`` is the type-I error over the whole (unbounded) sequence of looks.
    ``tau`` is the standard deviation of the normal mixing distribution on the
    difference of proportions. ``sided="worse"`` only ever concludes
    ``candidate-worse`` (the rollback question); ``"two-sided"`` can conclude
    either way. ``direction`` says which way is worse: ``higher-is-worse`` for
    error rates, ``lower-is-worse`` for accuracy. No decision is taken before
    each arm has ``min_samples`` observations.

    :meth:`test` is pure (pass the previous p-value to keep it always valid);
    :meth:`update` keeps that running minimum on the instance.
    """

    alpha: float = 0.05
    tau: float = 0.1
    sided: Sidedness = "worse"
    direction: Direction = "higher-is-worse"
    min_samples: int = 0
    _p: float = field(default=1.0, init=False, repr=False)
    _looks: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not self.tau > 0.0:
            raise ValueError(f"tau must be positive, got {self.tau}")

    @property
    def threshold(self) -> float:
        """The likelihood ratio at which the test rejects: ``1/alpha``."""
        return 1.0 / self.alpha

    def test(
        self,
        successes_a: int,
        n_a: int,
        successes_b: int,
        n_b: int,
        *,
        previous_p: float = 1.0,
        looks: int = 1,
    ) -> SequentialResult:
        """The result of one look at cumulative counts (pure).

        Raises ``ValueError`` for negative counts or more successes than trials.
        """
        for name, x, n in (("a", successes_a, n_a), ("b", successes_b, n_b)):
            if n < 0 or x < 0 or x > n:
                raise ValueError(f"arm {name}: need 0 <= successes <= n, got {x}/{n}")
        lw, lb, l2 = log_mixture_lr(successes_a, n_a, successes_b, n_b, self.tau, direction=self.direction)
        log_worse, log_better, log_two = float(lw), float(lb), float(l2)
        log_stat = log_worse if self.sided == "worse" else log_two
        enough = n_a >= max(self.min_samples, 1) and n_b >= max(self.min_samples, 1)
        p = min(previous_p, 1.0, _exp_capped(-log_stat)) if enough else min(previous_p, 1.0)
        rate_a = successes_a / n_a if n_a else 0.0
        rate_b = successes_b / n_b if n_b else 0.0
        estimate = rate_b - rate_a
        effect = float(effect_size(successes_a, n_a, successes_b, n_b)) if n_a and n_b else 0.0
        decision: Decision = "continue"
        if p <= self.alpha:
            if self.sided == "worse":
                decision = "candidate-worse"
            else:
                worse_sign = 1.0 if self.direction == "higher-is-worse" else -1.0
                decision = "candidate-worse" if effect * worse_sign > 0 else "candidate-better"
        return SequentialResult(
            statistic=_exp_capped(log_stat),
            always_valid_p=p,
            decision=decision,
            estimate=estimate,
            effect=effect,
            rate_a=rate_a,
            rate_b=rate_b,
            n_a=n_a,
            n_b=n_b,
            interval=self._interval(n_a, n_b, effect),
            lr_worse=_exp_capped(log_worse),
            lr_better=_exp_capped(log_better),
            looks=looks,
        )

    def update(self, successes_a: int, n_a: int, successes_b: int, n_b: int) -> SequentialResult:
        """Look at the latest cumulative counts, keeping the p-value's running minimum."""
        self._looks += 1
        result = self.test(successes_a, n_a, successes_b, n_b, previous_p=self._p, looks=self._looks)
        self._p = result.always_valid_p
        return result

    def reset(self) -> None:
        self._p = 1.0
        self._looks = 0

    def _interval(self, n_a: int, n_b: int, effect: float) -> tuple[float, float]:
        # Johari et al., the normal-mixture confidence sequence {h : Λ(h) < 1/alpha}.
        if n_a <= 0 or n_b <= 0:
            return (-math.pi, math.pi)
        v = 1.0 / (n_a + 0.5) + 1.0 / (n_b + 0.5)
        t2 = self.tau * self.tau
        half = math.sqrt(v * (v + t2) / t2 * (2.0 * math.log(1.0 / self.alpha) - math.log(v / (v + t2))))
        return (effect - half, effect + half)


def quantile_exceedance(counts_a: ArrayLike, counts_b: ArrayLike, q: float) -> tuple[int, int, int, int]:
    """Turn a latency-percentile comparison into two proportions.

    ``counts_a`` (baseline) and ``counts_b`` (candidate) are histograms over
    the same ordered bins. The cut is the first bin edge at or above the
    baseline's ``q``-quantile; the result ``(exceed_a, n_a, exceed_b, n_b)``
    counts how many observations of each arm lie beyond it. A candidate whose
    ``q``-quantile is worse exceeds the cut more often than the baseline, which
    :class:`MSPRT` (higher-is-worse) can test sequentially.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    a = np.asarray(counts_a, dtype=np.int64)
    b = np.asarray(counts_b, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("histograms must be one-dimensional over the same bins")
    n_a, n_b = int(a.sum()), int(b.sum())
    if n_a == 0:
        return (0, 0, 0, n_b)
    cum = np.cumsum(a)
    cut = int(np.searchsorted(cum, q * n_a, side="left"))
    exceed_a = int(a[cut + 1 :].sum())
    exceed_b = int(b[cut + 1 :].sum())
    return (exceed_a, n_a, exceed_b, n_b)
