"""The training pipeline of a chaos run, triggered by the retrain scheduler's signed webhook.

It is the demo's trainer (:class:`mloop.demo.trainer.Trainer`) behind an HTTP
endpoint instead of a Kafka subscription, so the scheduler's webhook delivery
is part of the loop under test. A delivery is verified (HMAC of the body),
deduplicated by its ``Idempotency-Key`` (the job id: a retried delivery never
trains twice) and answered 202 while the job trains in the background. The
fault schedule can spoil the next deliveries (:class:`WebhookFaults`): a
failing receiver answers 503, a slow one answers after the scheduler's request
timeout (it still takes the job, as a real overloaded receiver would).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import socket
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mloop.chaos.faults import WebhookFaults
from mloop.contracts.payloads import RetrainRequested
from mloop.demo.trainer import Trainer

__all__ = ["WebhookReceiver"]

log = logging.getLogger(__name__)


class WebhookReceiver:
    """Serves ``POST /train`` on ``127.0.0.1:<free port>``; :attr:`url` is what the retrain policy points at."""

    def __init__(self, trainer: Trainer, secret: str, faults: WebhookFaults, *, slow_s: float) -> None:
        self.trainer = trainer
        self.secret = secret
        self.faults = faults
        self.slow_s = slow_s
        self.deliveries: list[dict[str, Any]] = []
        self.jobs: dict[str, asyncio.Task[None]] = {}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        app = Starlette(routes=[Route("/train", self._train, methods=["POST"])])
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/train"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for job in self.jobs.values():
            job.cancel()
        await asyncio.gather(*self.jobs.values(), return_exceptions=True)
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task

    async def _train(self, request: Request) -> Response:
        body = await request.body()
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("x-mloop-signature", "")):
            return JSONResponse({"title": "bad signature"}, status_code=401)
        job_id = request.headers.get("idempotency-key", "")
        mode = self.faults.next_mode()
        self.deliveries.append({"job_id": job_id, "attempt": request.headers.get("x-mloop-attempt"), "mode": mode})
        if mode == "failing":
            return JSONResponse({"title": "receiver unavailable"}, status_code=503)
        job = RetrainRequested.model_validate_json(body)
        if job_id not in self.jobs:
            self.jobs[job_id] = asyncio.create_task(self._run(job))
        if mode == "slow":
            await asyncio.sleep(self.slow_s)
        return JSONResponse({"accepted": job_id}, status_code=202)

    async def _run(self, job: RetrainRequested) -> None:
        try:
            await self.trainer.handle(job)
        except Exception:
            log.exception("training job %s crashed", job.job_id)
            raise
