"""Sessions and CSRF tokens of the console (pure functions)."""

from __future__ import annotations

import time

from mloop.console.app import ConsoleSettings
from mloop.console.auth import claims_of, csrf_token, csrf_valid, origin_allowed, session_of
from mloop.runtime.auth import issue_token

SECRET = "a-test-secret-that-is-long-enough-for-hs256-0123"


def test_a_session_carries_the_tokens_subject_and_roles() -> None:
    token = issue_token(SECRET, "rita", ["reviewer"])
    s = session_of(token)
    assert s is not None
    assert (s.sub, s.roles, s.actor) == ("rita", frozenset({"reviewer"}), "user:rita")
    assert s.may("review") and not s.may("rollout") and not s.may("retrain")


def test_admin_may_press_every_button_and_a_viewer_none() -> None:
    admin = session_of(issue_token(SECRET, "ada", ["admin"]))
    viewer = session_of(issue_token(SECRET, "vera", ["viewer"]))
    assert admin is not None and viewer is not None
    assert all(admin.may(a) for a in ("review", "rollout", "retrain"))
    assert not any(viewer.may(a) for a in ("review", "rollout", "retrain", "anything"))


def test_missing_malformed_and_expired_tokens_give_no_session() -> None:
    assert session_of(None) is None
    assert session_of("") is None
    assert session_of("not-a-jwt") is None
    assert session_of("a.b.c") is None
    assert claims_of("a.!!!.c") is None
    expired = issue_token(SECRET, "old", ["viewer"], ttl_s=1)
    assert session_of(expired, now=time.time() + 5) is None


def test_csrf_tokens_are_bound_to_one_session_and_one_key() -> None:
    key, other_key = b"k" * 32, b"o" * 32
    a, b = issue_token(SECRET, "a", ["viewer"]), issue_token(SECRET, "b", ["viewer"])
    token = csrf_token(key, a)
    assert csrf_valid(key, a, token)
    assert not csrf_valid(key, b, token)
    assert not csrf_valid(other_key, a, token)
    assert not csrf_valid(key, a, None)
    assert not csrf_valid(key, a, "")
    assert not csrf_valid(key, a, token[:-1] + ("0" if token[-1] != "0" else "1"))


def test_only_the_consoles_own_origin_may_post() -> None:
    own = "http://127.0.0.1:8100"
    assert origin_allowed(None, own)
    assert origin_allowed("http://127.0.0.1:8100", own)
    assert not origin_allowed("https://evil.example", own)
    assert not origin_allowed("null", own)
    assert not origin_allowed("http://127.0.0.1:8101", own)


def test_the_session_cookie_is_secure_outside_development() -> None:
    assert ConsoleSettings(environment="development").secure_cookie is False
    assert ConsoleSettings(environment="production").secure_cookie is True
    env = ConsoleSettings.from_env({"MLOOP_ENVIRONMENT": "staging", "MLOOP_REGISTRY_URL": "http://r:1"})
    assert env.secure_cookie is True and env.endpoints.registry == "http://r:1" and env.port == 8100
