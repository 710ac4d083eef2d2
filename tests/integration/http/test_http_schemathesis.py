"""Each service's live OpenAPI document, checked by a contract tester against the running service.

Schemathesis reads ``/openapi.json`` from the service running in uvicorn on a
real socket and, for every operation, sends requests that fit the schema
(positive) and requests that break it (negative), once with an admin token and
once with a viewer token. Every response must pass three checks:

- ``not_a_server_error``: no 5xx;
- ``status_code_conformance``: the status is one the operation documents;
- ``response_schema_conformance``: the body matches the documented schema for that status.

The run is bounded (a fixed number of examples per operation, mode and token,
no shrinking, derandomized so a failure reproduces) to keep it to a couple of
minutes for all five services; the failures are collected, not stopped at the first.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from mloop.runtime.testing import auth_headers, serving

from .live import SERVICE_IDS, SERVICES, build

pytestmark = pytest.mark.integration

#: Examples per operation, generation mode and token (more for a deeper run: MLOOP_FUZZ_EXAMPLES=50).
MAX_EXAMPLES = int(os.environ.get("MLOOP_FUZZ_EXAMPLES", "5"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def _fuzz(base_url: str, tokens: dict[str, dict[str, str]]) -> tuple[int, list[str]]:
    """Run every operation; the number of requests sent and one line per distinct failure."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: dict[str, str] = {}
    calls = 0
    session = requests.Session()  # one keep-alive connection: a dropped connection shows up too
    def runner(operation: Any, mode: GenerationMode, who: str, headers: dict[str, str]) -> Any:
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            try:
                case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=CHECKS)
            except (Exception, BaseExceptionGroup) as exc:  # a FailureGroup is a BaseExceptionGroup
                names = sorted({type(e).__name__ for e in getattr(exc, "exceptions", [exc])})
                key = f"{operation.label} [{mode.value}, {who}] {', '.join(names)}"
                if key not in failures:
                    failures[key] = f"{key}\n{str(exc)[:1500]}"
                    print(failures[key], flush=True)

        return run

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for who, headers in tokens.items():
                try:
                    runner(operation, mode, who, headers)()
                except Unsatisfiable:
                    # Nothing to break: an operation without parameters or body has no negative input.
                    assert mode is GenerationMode.NEGATIVE, operation.label
    session.close()
    return calls, list(failures.values())


@pytest.mark.timeout(900)  # the registry has about 40 operations; a loaded machine is slow
@pytest.mark.parametrize(("main_mod", "settings_mod", "settings_cls"), SERVICES, ids=SERVICE_IDS)
async def test_the_live_openapi_document_holds_for_crafted_requests_with_admin_and_viewer_tokens(
    infra: Any, main_mod: str, settings_mod: str, settings_cls: str
) -> None:
    app, settings_ = build(main_mod, settings_mod, settings_cls, infra)
    tokens = {"admin": auth_headers(settings_, "fuzz-admin", "admin"),
              "viewer": auth_headers(settings_, "fuzz-viewer", "viewer")}
    async with serving(app, settings_) as base_url:
        began = time.perf_counter()
        calls, failures = await asyncio.to_thread(_fuzz, base_url, tokens)
        took = time.perf_counter() - began
    print(f"{main_mod}: {calls} requests in {took:.1f}s")
    operations = len([1 for ops in app.openapi()["paths"].values() for _ in ops])
    assert calls >= operations * 2 * 2, "every operation ran in both modes with both tokens"
    assert not failures, f"{len(failures)} failing operations:\n\n" + "\n\n".join(failures)
