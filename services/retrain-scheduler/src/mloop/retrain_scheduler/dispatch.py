"""Webhook dispatch to training pipelines.

The state of every delivery lives in the ``jobs`` table (``delivery``,
``attempts``, ``next_attempt_at``), so a restart neither loses nor repeats
more than the one attempt that was in flight; that attempt is repeated with
the same ``Idempotency-Key`` (the job id), so the receiver can tell.

Each attempt runs in its own task: a slow or dead endpoint of one model
never holds up another model's delivery.

A request carries::

    Content-Type: application/json
    X-Mloop-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>
    X-Mloop-Timestamp: <unix seconds when the attempt was sent>
    Idempotency-Key: <job id>
    X-Mloop-Job-Id, X-Mloop-Attempt, X-Mloop-Event-Id (the retrain-requested ce_id)

and the body is the ``retrain-requested`` payload, byte for byte the same on
every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import httpx

from mloop.retrain_scheduler import store
from mloop.retrain_scheduler.domain import RetrainPolicy
from mloop.retrain_scheduler.service import Scheduler, utcnow

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AttemptResult",
    "WebhookDispatcher",
    "classify_response",
    "sign",
    "signed_headers",
    "verify",
]

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Mloop-Signature"
TIMESTAMP_HEADER = "X-Mloop-Timestamp"
_RETRYABLE_4XX = frozenset({408, 425, 429})


def sign(body: bytes, secret: str) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str | None, secret: str) -> bool:
    """Whether ``signature`` (a header value) signs ``body`` with ``secret``; constant time."""
    return signature is not None and hmac.compare_digest(sign(body, secret), signature)


def signed_headers(
    body: bytes,
    *,
    job_id: str,
    attempt: int,
    secret: str | None,
    event_id: str | None = None,
    now: float | None = None,
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": job_id,
        "X-Mloop-Job-Id": job_id,
        "X-Mloop-Attempt": str(attempt),
        TIMESTAMP_HEADER: str(int(now if now is not None else time.time())),
        "User-Agent": "mloop-retrain-scheduler",
    }
    if event_id:
        headers["X-Mloop-Event-Id"] = event_id
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    return headers


@dataclass(frozen=True)
class AttemptResult:
    delivered: bool
    permanent: bool = False
    status: int | None = None
    error: str = ""


def classify_response(status: int, text: str = "") -> AttemptResult:
    """2xx delivered; 5xx, 408, 425 and 429 worth retrying; any other 4xx will
    not get better by retrying."""
    if 200 <= status < 300:
        return AttemptResult(True, status=status)
    snippet = text[:200].strip()
    error = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    permanent = 400 <= status < 500 and status not in _RETRYABLE_4XX
    return AttemptResult(False, permanent=permanent, status=status, error=error)


class WebhookDispatcher:
    """Releases due jobs, times out overdue ones and delivers webhooks, forever."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        scheduler: Scheduler,
        secrets: Mapping[str, str],
        *,
        poll_interval_s: float = 0.5,
        lease_margin: timedelta = timedelta(seconds=5),
        max_in_flight: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._pool = pool
        self._scheduler = scheduler
        self._secrets = dict(secrets)
        self._poll = poll_interval_s
        self._lease_margin = lease_margin
        self._max_in_flight = max_in_flight
        self._transport = transport
        self._clock = clock
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._client: httpx.AsyncClient | None = None

    async def run(self) -> None:
        """Until cancelled; in-flight attempts are cancelled with it (their
        leases expire and another run picks them up)."""
        self._client = httpx.AsyncClient(transport=self._transport, follow_redirects=False)
        try:
            while True:
                try:
                    await self.tick()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    log.exception("dispatch step failed; retrying")
                await asyncio.sleep(self._poll)
        finally:
            tasks = list(self._in_flight.values())
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await self._client.aclose()
            self._client = None

    async def tick(self) -> None:
        """One round: release, time out, give up on the exhausted, start due attempts."""
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                await self._scheduler.end_overdue_waits(conn)
            async with conn.transaction():
                await self._scheduler.release_due(conn)
            async with conn.transaction():
                await self._scheduler.time_out_overdue(conn)
            async with conn.transaction():
                await self._scheduler.give_up_exhausted(conn)
            room = self._max_in_flight - len(self._in_flight)
            if room <= 0:
                return
            async with conn.transaction():
                claimed = await store.claim_deliveries(
                    conn,
                    self._clock(),
                    limit=room,
                    lease_margin=self._lease_margin,
                    exclude=list(self._in_flight),
                )
        for d in claimed:
            task = asyncio.create_task(self._attempt(d), name=f"webhook-{d.job_id}")
            self._in_flight[d.job_id] = task
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for job_id, t in list(self._in_flight.items()):
            if t is task:
                del self._in_flight[job_id]

    async def _attempt(self, d: store.Delivery) -> None:
        try:
            result = await self._send(d)
        except Exception as exc:  # a bug must not kill the loop; the lease retries it
            log.exception("webhook attempt for job %s crashed", d.job_id)
            result = AttemptResult(False, error=f"{type(exc).__name__}: {exc}")
        metrics = self._scheduler.metrics
        if metrics is not None:
            kind = "delivered" if result.delivered else "final" if result.permanent else "failed"
            metrics.webhook_attempts.labels(result=kind).inc()
        async with self._pool.acquire() as conn, conn.transaction():
            if result.delivered:
                await self._scheduler.delivery_succeeded(conn, d.job_id, d.attempt, result.status or 0)
                log.info("webhook delivered for job %s on attempt %d", d.job_id, d.attempt)
            else:
                await self._scheduler.delivery_failed(
                    conn, d.job_id, d.attempt, result.error, permanent=result.permanent
                )
                log.warning("webhook attempt %d for job %s failed: %s", d.attempt, d.job_id, result.error)

    async def _send(self, d: store.Delivery) -> AttemptResult:
        assert self._client is not None
        policy = RetrainPolicy.model_validate(d.policy)
        webhook = policy.webhook
        if webhook is None:
            return AttemptResult(True, status=0)
        secret: str | None = None
        if webhook.secret_ref is not None:
            secret = self._secrets.get(webhook.secret_ref)
            if secret is None:
                return AttemptResult(
                    False,
                    permanent=True,
                    error=f"signing secret {webhook.secret_ref!r} is not configured",
                )
        body = d.body.encode()
        headers = signed_headers(body, job_id=d.job_id, attempt=d.attempt, secret=secret, event_id=d.request_event_id)
        timeout = policy.dispatch.request_timeout.total_seconds()
        try:
            response = await self._client.post(str(webhook.url), content=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            return AttemptResult(False, error=f"no answer within {timeout:g}s")
        except httpx.HTTPError as exc:
            return AttemptResult(False, error=f"{type(exc).__name__}: {exc}")
        return classify_response(response.status_code, response.text)
