"""The app is assembled without connecting to anything and documents its API."""

from __future__ import annotations

from mloop.retrain_scheduler.main import create_app
from mloop.retrain_scheduler.settings import RetrainSchedulerSettings


def test_the_app_builds_without_connecting_and_documents_its_api() -> None:
    app = create_app(RetrainSchedulerSettings(environment="test"))
    paths = app.openapi()["paths"]
    for path in (
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/confirm",
        "/jobs/{job_id}/cancel",
        "/jobs/{job_id}/status",
        "/default-policy",
        "/models/{model}/policy",
        "/models/{model}/cycle-time",
        "/signals",
    ):
        assert path in paths


def test_the_scheduler_listens_on_8104_by_default() -> None:
    assert RetrainSchedulerSettings(environment="test").http_port == 8104
