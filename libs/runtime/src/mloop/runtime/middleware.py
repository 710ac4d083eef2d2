"""ASGI middleware: body size limit, ``Idempotency-Key`` replay, HTTP metrics.

Idempotency: a write (POST, PUT, PATCH, DELETE) carrying ``Idempotency-Key``
is recorded per caller and key. A retry with the same body returns the first
response (with ``Idempotency-Replayed: true``); the same key with another body
is a 422; a retry while the first is still running is a 409 (a first attempt
that never finished is abandoned after a minute). Responses with a 5xx status
are not kept, so the caller may retry them.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import asyncpg
import jwt
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RequestGuard"]

_WRITE = {"POST", "PUT", "PATCH", "DELETE"}
#: Methods that keep their own metrics label; any other (``PROBEX1``...) is counted as ``OTHER``,
#: so made-up methods cannot add label values without limit.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: After this long, a write still marked in progress is taken to have died.
IN_PROGRESS_TIMEOUT_S = 60.0
MEDIA = b"application/problem+json"


async def _send_problem(
    send: Send, status: int, title: str, detail: str, slug: str, *, retry_after_s: int | None = None, **ext: Any,
) -> None:
    body = json.dumps(
        {"type": f"https://mloop.dev/problems/{slug}", "title": title, "status": status, "detail": detail, **ext}
    ).encode()
    headers = [(b"content-type", MEDIA), (b"content-length", str(len(body)).encode())]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        settings = state.settings
        metrics = getattr(state, "metrics", None)
        method = scope["method"]
        label = method if method in _KNOWN_METHODS else "OTHER"
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            if method in _WRITE:
                await self._write(scope, receive, send_wrapped, settings, state)
            else:
                await self.app(scope, receive, send_wrapped)
        finally:
            if metrics is not None:
                route = scope.get("route")
                path = getattr(route, "path", "unmatched")
                metrics.http_requests.labels(method=label, route=path, status=str(status_holder["status"])).inc()
                metrics.http_latency.labels(method=label, route=path).observe(time.perf_counter() - started)

    async def _write(self, scope: Scope, receive: Receive, send: Send, settings: Any, state: Any) -> None:
        limit = int(settings.max_body_bytes)
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in scope["headers"]}
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_problem(send, 413, "Payload Too Large", f"the body exceeds {limit} bytes", "payload-too-large")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_problem(send, 413, "Payload Too Large", f"the body exceeds {limit} bytes",
                                    "payload-too-large")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        key = headers.get("idempotency-key")
        pool: asyncpg.Pool | None = getattr(state, "pool", None)
        if not key or pool is None:
            await self.app(scope, replay, send)
            return
        if len(key) > 255:
            await _send_problem(send, 400, "Bad Request", "Idempotency-Key is longer than 255 characters",
                                "bad-request", errors=[{"field": "header.Idempotency-Key", "message": "too long"}])
            return
        principal = self._principal(headers.get("authorization", ""), settings)
        path = scope["path"]
        method = scope["method"]
        req_hash = hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()
        async with pool.acquire() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO idempotency_keys (principal, key, method, path, request_hash) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
                principal, key, method, path, req_hash,
            )
            if not inserted:
                # A first attempt that never finished (its process died, or the
                # database went away mid-request) is abandoned after a while.
                inserted = await conn.fetchval(
                    "UPDATE idempotency_keys SET created_at = now() WHERE principal = $1 AND key = $2 "
                    "AND request_hash = $3 AND status IS NULL AND created_at < now() - make_interval(secs => $4) "
                    "RETURNING true",
                    principal, key, req_hash, IN_PROGRESS_TIMEOUT_S,
                )
            if not inserted:
                row = await conn.fetchrow(
                    "SELECT request_hash, status, content_type, body FROM idempotency_keys "
                    "WHERE principal = $1 AND key = $2", principal, key,
                )
        if not inserted:
            assert row is not None
            if row["request_hash"] != req_hash:
                await _send_problem(send, 422, "Unprocessable Entity",
                                    "this Idempotency-Key was used with a different request", "idempotency-mismatch",
                                    errors=[{"field": "header.Idempotency-Key", "message": "reused with another body"}])
                return
            if row["status"] is None:
                # Sent again later, the request is answered from the first attempt's record, or
                # runs itself once that attempt is taken to have died.
                await _send_problem(send, 409, "Conflict", "a request with this Idempotency-Key is in progress",
                                    "idempotency-in-progress", retry_after_s=1)
                return
            stored = bytes(row["body"] or b"")
            await send({"type": "http.response.start", "status": row["status"], "headers": [
                (b"content-type", (row["content_type"] or "application/json").encode()),
                (b"content-length", str(len(stored)).encode()),
                (b"idempotency-replayed", b"true"),
            ]})
            await send({"type": "http.response.body", "body": stored})
            return

        captured: dict[str, Any] = {"status": 500, "content_type": None, "body": []}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                for k, v in message.get("headers", []):
                    if k.lower() == b"content-type":
                        captured["content_type"] = v.decode()
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay, capture)
        finally:
            async with pool.acquire() as conn:
                if captured["status"] < 500:
                    await conn.execute(
                        "UPDATE idempotency_keys SET status = $3, content_type = $4, body = $5 "
                        "WHERE principal = $1 AND key = $2",
                        principal, key, captured["status"], captured["content_type"], b"".join(captured["body"]),
                    )
                else:
                    await conn.execute("DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2", principal, key)

    @staticmethod
    def _principal(authorization: str, settings: Any) -> str:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "anonymous"
        try:
            claims = jwt.decode(token.strip(), settings.jwt_secret.get_secret_value(), algorithms=["HS256"],
                                audience=settings.jwt_audience, issuer=settings.jwt_issuer)
            return str(claims.get("sub", "anonymous"))
        except jwt.InvalidTokenError:
            return "anonymous"
