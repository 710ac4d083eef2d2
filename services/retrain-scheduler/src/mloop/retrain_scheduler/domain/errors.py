"""The scheduler's errors.

Errors::

    RetrainSchedulerError
    ├── IllegalTransition   a job cannot move from its state to the target
    ├── JobLimitReached     a model already has its maximum of active jobs
    └── JobNotFound         no job with that id (raised by the store)
"""

from __future__ import annotations

__all__ = ["IllegalTransition", "JobLimitReached", "JobNotFound", "RetrainSchedulerError"]


# --------------------------------------------------------------------------- errors


class RetrainSchedulerError(Exception):
    """Base of every error this package raises on purpose."""


class IllegalTransition(RetrainSchedulerError):
    """A job cannot move from ``current`` to ``target`` (an HTTP 409)."""

    def __init__(self, job_id: str, current: str, target: str) -> None:
        super().__init__(f"job {job_id} is {current}; it cannot become {target}")
        self.job_id = job_id
        self.current = current
        self.target = target


class JobLimitReached(RetrainSchedulerError):
    """A job was asked for while the model has its maximum of active jobs (an HTTP 409)."""


class JobNotFound(RetrainSchedulerError):
    """No job with this id (an HTTP 404)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no retrain job {job_id!r}")
        self.job_id = job_id
