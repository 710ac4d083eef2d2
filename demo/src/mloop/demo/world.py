"""A synthetic but realistic credit-risk population, before and after a drift.

Fourteen applicant features (ten numeric, four categorical) and a default
label drawn from a logistic model of them. :meth:`CreditRiskWorld.sample`
draws applicants; with ``drifted=True`` the economy has changed:

* incomes are 30 % lower and revolving utilisation 0.25 higher (two shifted
  features: data drift the monitor should see);
* the label relationship changed: debt-to-income matters three times as
  much, credit score half as much, and business loans became risky
  (concept drift: a model trained before the change is now miscalibrated
  and ranks applicants worse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CATEGORIES", "CATEGORICAL", "FEATURES", "NUMERIC", "CreditRiskWorld", "Sample", "feature_schema"]

NUMERIC: tuple[str, ...] = (
    "age",
    "annual_income",
    "loan_amount",
    "term_months",
    "credit_score",
    "debt_to_income",
    "open_accounts",
    "delinquencies_2y",
    "employment_years",
    "revolving_utilization",
)
CATEGORIES: dict[str, tuple[str, ...]] = {
    "region": ("north", "south", "east", "west"),
    "home_ownership": ("rent", "mortgage", "own"),
    "purpose": ("debt_consolidation", "car", "home_improvement", "education", "medical", "business"),
    "employment_type": ("salaried", "self_employed", "contract"),
}
CATEGORICAL: tuple[str, ...] = tuple(CATEGORIES)
FEATURES: tuple[str, ...] = NUMERIC + CATEGORICAL

Columns = dict[str, npt.NDArray[Any]]


def feature_schema() -> list[dict[str, Any]]:
    """The feature schema registered with every version."""
    return [{"name": n, "type": "number"} for n in NUMERIC] + [{"name": c, "type": "category"} for c in CATEGORICAL]


@dataclass(frozen=True)
class Sample:
    """Applicants as columns, and whether each defaulted."""

    columns: Columns
    labels: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.labels.size)

    def rows(self) -> list[dict[str, Any]]:
        """The applicants as feature dicts, the way a serving system sees them."""
        n = len(self)
        out: list[dict[str, Any]] = [{} for _ in range(n)]
        for name, col in self.columns.items():
            values = col.tolist()
            for i in range(n):
                out[i][name] = values[i]
        return out


class CreditRiskWorld:
    """The population applicants come from; deterministic for a seed."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int, *, drifted: bool = False) -> Sample:
        rng = self.rng
        age = np.clip(rng.normal(41, 11, n), 21, 75).round()
        employment_years = np.clip(rng.gamma(2.0, 3.5, n), 0, age - 18).round(1)
        income = np.exp(rng.normal(10.9, 0.45, n)) * (1 + 0.01 * employment_years)
        if drifted:
            income = income * 0.7
        loan_amount = np.clip(income * rng.uniform(0.05, 0.6, n), 1000, 80000).round(-2)
        term = rng.choice([36.0, 60.0], n, p=[0.65, 0.35])
        credit_score = np.clip(rng.normal(690, 60, n), 300, 850).round()
        dti = np.clip(rng.beta(2.2, 7.0, n) * 0.9 + loan_amount / income * 0.15, 0, 1.2).round(3)
        open_accounts = rng.poisson(7, n).astype(float)
        delinquencies = rng.poisson(0.35, n).astype(float)
        utilization = np.clip(rng.beta(2.0, 3.2, n) * 1.1, 0, 1.5)
        if drifted:
            utilization = np.clip(utilization + 0.25, 0, 1.5)
        utilization = utilization.round(3)
        cats = {
            name: rng.choice(np.array(values), n, p=_mix(len(values), rng_seed=i))
            for i, (name, values) in enumerate(CATEGORIES.items())
        }

        z = (
            -2.2
            - 0.9 * (credit_score - 690) / 60 * (0.5 if drifted else 1.0)
            + 0.8 * (dti - 0.3) / 0.12 * (3.0 if drifted else 1.0)
            - 0.35 * (np.log(income) - 10.9) / 0.45
            + 0.45 * delinquencies
            + 0.7 * (utilization - 0.4) / 0.25
            + 0.25 * (term == 60.0)
            - 0.015 * (age - 41)
            - 0.04 * (employment_years - 7)
            + 0.02 * (open_accounts - 7)
            + np.select(
                [cats["purpose"] == "business", cats["purpose"] == "medical", cats["purpose"] == "education"],
                [1.6 if drifted else 0.2, 0.35, 0.2],
                0.0,
            )
            + np.where(cats["home_ownership"] == "own", -0.3, 0.0)
            + np.where(cats["employment_type"] == "contract", 0.3, 0.0)
        )
        if drifted:
            z = z - 0.9  # keep the default rate in a realistic range after the change
        p = 1.0 / (1.0 + np.exp(-z))
        labels = (rng.random(n) < p).astype(np.int64)
        columns: Columns = {
            "age": age,
            "annual_income": income.round(-1),
            "loan_amount": loan_amount,
            "term_months": term,
            "credit_score": credit_score,
            "debt_to_income": dti,
            "open_accounts": open_accounts,
            "delinquencies_2y": delinquencies,
            "employment_years": employment_years,
            "revolving_utilization": utilization,
            **{k: v.astype(object) for k, v in cats.items()},
        }
        return Sample(columns, labels)


def _mix(k: int, rng_seed: int) -> npt.NDArray[np.float64]:
    """Fixed, uneven category frequencies."""
    w = np.random.default_rng(100 + rng_seed).uniform(0.5, 2.0, k)
    return np.asarray(w / w.sum(), dtype=np.float64)
