"""The retrying transport rides out a restarting service, and nothing else."""

from __future__ import annotations

import httpx
import pytest

from mloop.client import ConflictError, RegistryClient, ServerError, TransportError
from mloop.demo.resilient import RetryingTransport


def _flaky(answers: list[int | Exception], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0) if answers else 200
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={"version": "3", "validation": {"passed": True}})

    return httpx.MockTransport(handler)


async def test_a_write_is_sent_again_with_the_same_idempotency_key_until_the_service_is_back() -> None:
    seen: list[httpx.Request] = []
    answers: list[int | Exception] = [httpx.ConnectError("refused"), 503, 502, 201]
    transport = RetryingTransport(10, first_pause_s=0.01, inner=_flaky(answers, seen))
    async with RegistryClient("http://registry", "t", transport=transport) as registry:
        out = await registry.register_version("m", artifact_uri="file:///a", lineage={}, idempotency_key="job-1")
    assert out["version"] == "3"
    assert len(seen) == 4 and transport.retries == 3
    assert {r.headers["Idempotency-Key"] for r in seen} == {"job-1"}
    assert len({r.content for r in seen}) == 1


async def test_an_error_that_is_not_about_availability_is_not_retried() -> None:
    seen: list[httpx.Request] = []
    transport = RetryingTransport(10, first_pause_s=0.01, inner=_flaky([500, 200], seen))
    async with RegistryClient("http://registry", "t", transport=transport) as registry:
        with pytest.raises(ServerError):
            await registry.get_version("m", "1")
    assert len(seen) == 1 and transport.retries == 0


async def test_it_gives_up_after_its_time_with_the_last_error() -> None:
    seen: list[httpx.Request] = []
    transport = RetryingTransport(0.05, first_pause_s=0.02, inner=_flaky([httpx.ConnectError("refused")] * 50, seen))
    async with RegistryClient("http://registry", "t", transport=transport) as registry:
        with pytest.raises(TransportError, match="refused"):
            await registry.get_version("m", "1")
    assert 1 <= len(seen) < 50


async def test_a_write_whose_first_attempt_still_holds_its_key_is_sent_again_once_released() -> None:
    seen: list[httpx.Request] = []
    in_progress = {"type": "https://mloop.dev/problems/idempotency-in-progress", "status": 409}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) < 3:
            return httpx.Response(409, json=in_progress)
        return httpx.Response(201, json={"version": "3", "validation": {"passed": True}})

    transport = RetryingTransport(10, first_pause_s=0.01, inner=httpx.MockTransport(handler))
    async with RegistryClient("http://registry", "t", transport=transport) as registry:
        out = await registry.register_version("m", artifact_uri="file:///a", lineage={}, idempotency_key="job-1")
    assert out["version"] == "3" and len(seen) == 3 and transport.retries == 2
    assert {r.headers["Idempotency-Key"] for r in seen} == {"job-1"}


async def test_a_conflict_about_state_is_not_retried() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(409, json={"type": "https://mloop.dev/problems/conflict", "status": 409})

    transport = RetryingTransport(10, first_pause_s=0.01, inner=httpx.MockTransport(handler))
    async with RegistryClient("http://registry", "t", transport=transport) as registry:
        with pytest.raises(ConflictError):
            await registry.register_version("m", artifact_uri="file:///a", lineage={})
    assert len(seen) == 1 and transport.retries == 0


async def test_once_its_time_is_up_the_last_answer_is_passed_on() -> None:
    seen: list[httpx.Request] = []
    transport = RetryingTransport(0.05, first_pause_s=0.01, inner=_flaky([503] * 50, seen))
    async with RegistryClient("http://registry", "t", transport=transport) as registry:
        with pytest.raises(ServerError) as raised:
            await registry.get_version("m", "1")
    assert raised.value.status == 503
    assert 2 <= len(seen) < 50 and transport.retries == len(seen) - 1
