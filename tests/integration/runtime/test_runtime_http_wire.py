"""The runtime's HTTP behaviour on a real socket, in the uvicorn configuration services run with.

An error answer (4xx or 500) leaves the keep-alive connection usable; made-up
HTTP methods do not add metric label values; a request head that never
finishes, or a connection that never speaks, is closed after the header deadline.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from mloop.runtime.testing import auth_headers, serving

from .probe import ProbeSettings, create_probe_app

pytestmark = pytest.mark.integration


def _client_port(r: httpx.Response) -> int:
    """The local port of the connection that carried ``r``: the same port means the same connection."""
    stream = r.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


async def test_error_answers_keep_the_keep_alive_connection_usable(infra: Any) -> None:
    settings = ProbeSettings(**infra.settings_kwargs())
    headers = auth_headers(settings, "olga", "operator")
    async with serving(create_probe_app(settings), settings) as base, httpx.AsyncClient(
        base_url=base, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1), timeout=30
    ) as client:
        first = await client.get("/healthz")
        port = _client_port(first)
        crafted = [
            ("GET", "/boom", None, 500),                                    # a bug in a route
            ("POST", "/aliases", b"{not json", 422),                        # a body that is not JSON
            ("POST", "/aliases", b'{"model": "UPPER", "alias": "a", "version": "1"}', 422),
            ("POST", "/aliases", b"x" * (settings.max_body_bytes + 1), 413),   # over the body limit
            ("GET", "/nowhere", None, 404),
            ("DELETE", "/healthz", None, 405),
            ("GET", "/healthz?made_up=1", None, 422),                       # a parameter it does not take
        ]
        for method, path, body, status in crafted:
            r = await client.request(method, path, content=body, headers=headers)
            assert r.status_code == status, (method, path, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json", (method, path)
            assert r.json()["status"] == status
            assert r.headers.get("connection", "").lower() != "close", (method, path)
            after = await client.get("/healthz")
            assert after.status_code == 200, (method, path)
            assert _client_port(after) == port, f"{method} {path} -> {status} dropped the connection"
        assert (await client.get("/boom")).json()["detail"] == "an unexpected error occurred; it has been logged"


def _method_series(metrics: str) -> set[str]:
    return set(re.findall(r'mloop_http_requests_total\{method="([^"]+)"', metrics))


async def test_made_up_methods_share_one_metrics_label(infra: Any) -> None:
    settings = ProbeSettings(**infra.settings_kwargs())
    async with serving(create_probe_app(settings), settings) as base, httpx.AsyncClient(
        base_url=base, timeout=30
    ) as client:
        for i in range(5):
            r = await client.request(f"PROBEX{i}", "/healthz")
            assert r.status_code == 405
            assert r.headers["content-type"] == "application/problem+json"
        await client.get("/metrics")  # a request is counted after its answer: this one shows in the next
        before = (await client.get("/metrics")).text
        for i in range(5, 40):
            await client.request(f"PROBEX{i}", "/healthz")
        after = (await client.get("/metrics")).text
    assert _method_series(before) == _method_series(after) == {"GET", "OTHER"}
    def http_lines(text: str) -> int:  # other families (consumer lag per partition) may appear meanwhile
        return sum(1 for line in text.splitlines() if line.startswith("mloop_http_"))

    assert http_lines(after) == http_lines(before), "made-up methods grew /metrics"
    counted = re.search(r'mloop_http_requests_total\{method="OTHER",route="[^"]*",status="405"\} (\S+)', after)
    assert counted is not None and float(counted.group(1)) == 40.0


async def _read_until_closed(reader: asyncio.StreamReader, limit_s: float) -> bytes:
    data = b""
    async with asyncio.timeout(limit_s):
        while chunk := await reader.read(4096):
            data += chunk
    return data


async def test_a_request_head_that_never_finishes_is_cut_at_the_header_deadline(infra: Any) -> None:
    settings = ProbeSettings(**infra.settings_kwargs(http_header_timeout_s=1.0))
    async with serving(create_probe_app(settings), settings) as base:
        host, port = base.removeprefix("http://").split(":")
        loop = asyncio.get_running_loop()
        # Half a request head, then silence.
        reader, writer = await asyncio.open_connection(host, int(port))
        began = loop.time()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await writer.drain()
        answer = await _read_until_closed(reader, 20)
        waited = loop.time() - began
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"connection: close" in answer.lower()
        assert waited >= 0.9, "closed before the deadline"
        # A connection that never sends a byte is closed too.
        reader, writer = await asyncio.open_connection(host, int(port))
        assert await _read_until_closed(reader, 20) == b""
        writer.close()
        # A whole request on a fresh connection is answered as usual.
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("/healthz")).status_code == 200
