"""An HTTP transport that rides out a service restart.

A serving system or a training pipeline must not fail because a platform
service restarts for a few seconds. :class:`RetryingTransport` sends a request
again when the service cannot be reached or answers 502/503/504, with a
growing pause, until ``give_up_after_s`` has passed; and a 409 saying that a
request with the same ``Idempotency-Key`` is still in progress (the first
attempt's process died mid-write; the service releases that claim after a
while), since only waiting tells whether that write landed. The request is sent again
unchanged, with its ``Idempotency-Key`` (the SDK sets one on every write), so a
write that did land before the connection broke is answered from the
service's idempotency record instead of being applied twice.
"""

from __future__ import annotations

import logging

import httpx
import stamina

__all__ = ["IN_PROGRESS_PROBLEM", "RETRYABLE_STATUS", "RetryingTransport"]

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({502, 503, 504})
#: The problem type of a 409 answered while an earlier attempt with the same key holds it.
IN_PROGRESS_PROBLEM = "idempotency-in-progress"


async def _retryable(response: httpx.Response) -> bool:
    if response.status_code in RETRYABLE_STATUS:
        return True
    if response.status_code != 409:
        return False
    await response.aread()
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and str(body.get("type", "")).endswith("/" + IN_PROGRESS_PROBLEM)


class _Again(Exception):
    """An answer worth asking again for (carried so the last one can be passed on)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class RetryingTransport(httpx.AsyncBaseTransport):
    """Retries unreachable services, 502/503/504 answers and in-progress 409s for up to ``give_up_after_s`` seconds.

    The pauses grow exponentially with jitter (stamina), so clients restarted
    together do not retry in lockstep. The last error (or answer) is passed
    on once the time is up.
    """

    def __init__(
        self,
        give_up_after_s: float = 120.0,
        *,
        first_pause_s: float = 0.2,
        max_pause_s: float = 2.0,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.give_up_after_s = give_up_after_s
        self.first_pause_s = first_pause_s
        self.max_pause_s = max_pause_s
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.retries = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            async for attempt in stamina.retry_context(
                on=(httpx.TransportError, _Again), attempts=None, timeout=self.give_up_after_s,
                wait_initial=self.first_pause_s, wait_max=self.max_pause_s, wait_jitter=self.first_pause_s,
            ):
                with attempt:
                    if attempt.num > 1:
                        self.retries += 1
                    try:
                        response = await self.inner.handle_async_request(request)
                    except httpx.TransportError as exc:
                        log.info("%s %s: %r; retrying", request.method, request.url, exc)
                        raise
                    if await _retryable(response):
                        await response.aread()
                        await response.aclose()
                        log.info("%s %s: %d; retrying", request.method, request.url, response.status_code)
                        raise _Again(response)
                    return response
        except _Again as last:
            answer = last.response
            return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content,
                                  request=request)
        raise AssertionError("unreachable: the retry context either returns or raises")

    async def aclose(self) -> None:
        await self.inner.aclose()
