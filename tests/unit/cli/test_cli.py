"""The mloop command line: token issuing, argument parsing, output modes and error handling."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import jwt
import pytest
from typer.testing import CliRunner

from mloop.cli import _context
from mloop.cli.main import app

SECRET = "a-local-secret-that-is-long-enough-for-hs256"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOOP_JWT_SECRET", SECRET)
    monkeypatch.delenv("MLOOP_TOKEN", raising=False)
    monkeypatch.setenv("MLOOP_REGISTRY_URL", "http://registry.test")
    monkeypatch.setenv("MLOOP_ROLLOUT_URL", "http://rollout.test")


class FakeApi:
    """Records requests and answers from ``routes`` (404 otherwise)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: dict[tuple[str, str], httpx.Response] = {}

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.routes.get((request.method, request.url.path), httpx.Response(404, json={"title": "Not Found"}))


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    fake = FakeApi()
    monkeypatch.setattr(_context, "transport", httpx.MockTransport(fake.handle))
    yield fake


def _claims(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, SECRET, algorithms=["HS256"], audience="mloop"))


def test_token_prints_a_jwt_naming_the_subject_and_roles() -> None:
    result = runner.invoke(app, ["token", "--sub", "alice", "--role", "reviewer", "--role", "operator"])
    assert result.exit_code == 0, result.output
    claims = _claims(result.stdout.strip())
    assert claims["sub"] == "alice"
    assert claims["roles"] == ["reviewer", "operator"]


def test_token_refuses_an_unknown_role() -> None:
    result = runner.invoke(app, ["token", "--sub", "alice", "--role", "wizard"])
    assert result.exit_code == 2
    assert "unknown roles" in result.output


def test_token_needs_a_signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOOP_JWT_SECRET")
    monkeypatch.setattr("mloop.cli.main.local_jwt_secret", lambda: None)
    result = runner.invoke(app, ["token", "--sub", "alice", "--role", "viewer"])
    assert result.exit_code == 2
    assert "no signing secret" in result.output


def test_token_requires_sub_and_a_role() -> None:
    assert runner.invoke(app, ["token", "--role", "viewer"]).exit_code == 2
    assert runner.invoke(app, ["token", "--sub", "alice"]).exit_code == 2


def test_models_list_prints_a_table_and_sends_a_bearer_token(api: FakeApi) -> None:
    api.routes[("GET", "/models")] = httpx.Response(
        200,
        json={
            "items": [{"name": "credit-risk", "latest_version": "2", "aliases": {"champion": "1"}}],
            "next_page_token": None,
        },
    )
    result = runner.invoke(app, ["--as", "carol", "models", "list"])
    assert result.exit_code == 0, result.output
    assert "credit-risk" in result.stdout
    token = api.requests[0].headers["authorization"].removeprefix("Bearer ")
    assert _claims(token)["sub"] == "carol"


def test_json_output_is_machine_readable_and_follows_pages(api: FakeApi) -> None:
    api.routes[("GET", "/models/credit-risk/versions")] = httpx.Response(
        200, json={"items": [{"version": "1", "status": "registered"}], "next_page_token": None}
    )
    result = runner.invoke(app, ["versions", "list", "credit-risk", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"version": "1", "status": "registered"}]


def test_an_explicit_token_is_sent_as_is(api: FakeApi) -> None:
    api.routes[("GET", "/models/m")] = httpx.Response(200, json={"name": "m"})
    result = runner.invoke(app, ["--token", "tok-123", "models", "show", "m"])
    assert result.exit_code == 0, result.output
    assert api.requests[0].headers["authorization"] == "Bearer tok-123"


def test_a_problem_document_becomes_a_message_and_exit_code_1(api: FakeApi) -> None:
    api.routes[("POST", "/promotion-requests/p-1/approve")] = httpx.Response(
        403, json={"title": "Forbidden", "status": 403, "detail": "the requester cannot approve their own request"}
    )
    result = runner.invoke(app, ["promotion", "approve", "p-1"])
    assert result.exit_code == 1
    assert "cannot approve their own request" in result.output


def test_validation_errors_name_the_field(api: FakeApi) -> None:
    api.routes[("POST", "/promotion-requests/p-1/reject")] = httpx.Response(
        422,
        json={
            "title": "Unprocessable Entity",
            "detail": "body.comment: required",
            "errors": [{"field": "body.comment", "message": "Field required"}],
        },
    )
    result = runner.invoke(app, ["promotion", "reject", "p-1", "--comment", ""])
    assert result.exit_code == 1
    assert "body.comment" in result.output


def test_reject_requires_a_comment_option() -> None:
    result = runner.invoke(app, ["promotion", "reject", "p-1"])
    assert result.exit_code == 2


def test_an_unreachable_service_exits_2_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(_context, "transport", httpx.MockTransport(refuse))
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 2
    assert "mloop dev status" in result.output


def test_rollout_actions_accept_a_model_name_for_its_latest_rollout(api: FakeApi) -> None:
    api.routes[("GET", "/rollouts")] = httpx.Response(
        200, json={"items": [{"id": "ro-9", "model": "credit-risk"}], "next_page_token": None}
    )
    api.routes[("POST", "/rollouts/ro-9/pause")] = httpx.Response(200, json={"id": "ro-9", "phase": "paused"})
    result = runner.invoke(app, ["rollout", "pause", "credit-risk", "--reason", "investigating"])
    assert result.exit_code == 0, result.output
    post = api.requests[-1]
    assert post.url.path == "/rollouts/ro-9/pause"
    assert json.loads(post.content) == {"reason": "investigating"}
    assert post.headers.get("idempotency-key")


def test_promote_full_maps_to_the_promote_full_action(api: FakeApi) -> None:
    api.routes[("GET", "/rollouts")] = httpx.Response(200, json={"items": [], "next_page_token": None})
    api.routes[("POST", "/rollouts/ro-1/promote-full")] = httpx.Response(200, json={"id": "ro-1", "phase": "promoting"})
    result = runner.invoke(app, ["rollout", "promote", "ro-1", "--full"])
    assert result.exit_code == 0, result.output
    assert api.requests[-1].url.path == "/rollouts/ro-1/promote-full"
