"""Pure pieces of the runtime: settings, tokens, cursors."""

from __future__ import annotations

import pytest

from mloop.runtime.auth import decode_token, issue_token
from mloop.runtime.errors import ConfigurationError
from mloop.runtime.pagination import decode_cursor, encode_cursor, fetch_page, key_after, key_token
from mloop.runtime.problems import BadRequest, Unauthorized
from mloop.runtime.settings import ServiceSettings

SECRET = "a-test-secret-that-is-long-enough-0123456789"


def test_placeholder_secrets_are_refused_outside_development() -> None:
    with pytest.raises(ConfigurationError, match="MLOOP_JWT_SECRET"):
        ServiceSettings(service_name="x", environment="production")
    with pytest.raises(ConfigurationError):
        ServiceSettings(service_name="x", environment="production", jwt_secret="changeme")
    ok = ServiceSettings(service_name="x", environment="production", jwt_secret=SECRET)
    assert ok.jwt_secret.get_secret_value() == SECRET
    assert SECRET not in repr(ok) and SECRET not in str(ok.model_dump())
    assert ServiceSettings(service_name="x").environment == "development"


def test_settings_read_the_shared_endpoint_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("MLOOP_HTTP_PORT", "8111")
    s = ServiceSettings(service_name="retrain-scheduler")
    assert s.kafka_bootstrap_servers == "k:1"
    assert s.database_url.get_secret_value() == "postgresql://u@h/db"
    assert s.http_port == 8111
    assert s.schema_name == "retrain_scheduler"
    assert s.group_id == "mloop-retrain-scheduler"


def test_tokens_carry_subject_and_roles_and_are_checked() -> None:
    token = issue_token(SECRET, "rita", ["reviewer"])
    p = decode_token(token, SECRET)
    assert p.sub == "rita" and p.roles == frozenset({"reviewer"}) and p.actor == "user:rita"
    assert p.has("reviewer") and not p.has("operator")
    with pytest.raises(Unauthorized):
        decode_token(token, SECRET + "x")
    with pytest.raises(Unauthorized, match="expired"):
        decode_token(issue_token(SECRET, "rita", ["reviewer"], ttl_s=-10), SECRET)
    with pytest.raises(ValueError, match="unknown roles"):
        issue_token(SECRET, "x", ["superuser"])
    svc = decode_token(issue_token(SECRET, "trainer", ["service"]), SECRET)
    assert svc.actor == "service:trainer"
    assert decode_token(issue_token(SECRET, "a", ["admin"]), SECRET).has("operator")


def test_cursors_round_trip_and_garbage_is_a_bad_request_naming_page_token() -> None:
    c = encode_cursor({"created_at": "2026-11-26T00:00:00Z", "id": 42})
    assert decode_cursor(c) == {"created_at": "2026-11-26T00:00:00Z", "id": 42}
    assert decode_cursor(None) is None
    with pytest.raises(BadRequest) as info:
        decode_cursor("!!!not-a-cursor")
    assert info.value.errors and info.value.errors[0]["field"] == "query.page_token"


async def test_a_page_asks_for_one_row_more_and_its_token_leads_to_the_rows_after_its_last() -> None:
    rows = [{"name": f"m{i:02d}"} for i in range(7)]
    asked: list[int] = []

    async def fetch_after(after: str | None, limit: int) -> list[dict[str, str]]:
        asked.append(limit)
        return [r for r in rows if after is None or r["name"] > after][:limit]

    seen, token, pages = [], None, 0
    while True:
        after = key_after(token, "n", str)
        page, token = await fetch_page(lambda limit: fetch_after(after, limit), 3,  # noqa: B023
                                       lambda last: key_token("n", last["name"]))
        seen += page
        pages += 1
        if token is None:
            break
    assert seen == rows and pages == 3 and asked == [4, 4, 4]
    exact, none_after = await fetch_page(lambda limit: fetch_after("m03", limit), 3, lambda last: "unused")
    assert exact == rows[4:] and none_after is None  # a full last page has no next token
    with pytest.raises(BadRequest):
        key_after(key_token("n", 5), "n", str)  # a key of the wrong type is not a token this API issued
