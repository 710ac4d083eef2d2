"""Webhook signing and response classification."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from mloop.retrain_scheduler.dispatch import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    classify_response,
    sign,
    signed_headers,
    verify,
)

BODY = b'{"job_id":"j-1","model":"credit-risk"}'


def test_signature_is_the_hex_hmac_sha256_of_the_body() -> None:
    expected = hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, "s3cret") == f"sha256={expected}"


def test_verify_accepts_the_right_secret_and_body_only() -> None:
    sig = sign(BODY, "s3cret")
    assert verify(BODY, sig, "s3cret")
    assert not verify(BODY, sig, "other")
    assert not verify(BODY + b" ", sig, "s3cret")
    assert not verify(BODY, None, "s3cret")


def test_headers_carry_signature_timestamp_and_the_job_id_as_idempotency_key() -> None:
    h = signed_headers(BODY, job_id="j-1", attempt=2, secret="s3cret", event_id="e-1", now=1700000000)
    assert h[SIGNATURE_HEADER] == sign(BODY, "s3cret")
    assert h[TIMESTAMP_HEADER] == "1700000000"
    assert h["Idempotency-Key"] == "j-1"
    assert h["X-Mloop-Attempt"] == "2"
    assert h["X-Mloop-Event-Id"] == "e-1"


def test_without_a_secret_nothing_is_signed() -> None:
    assert SIGNATURE_HEADER not in signed_headers(BODY, job_id="j-1", attempt=1, secret=None)


@pytest.mark.parametrize(
    ("status", "delivered", "permanent"),
    [
        (200, True, False),
        (202, True, False),
        (500, False, False),
        (503, False, False),
        (408, False, False),
        (429, False, False),
        (400, False, True),
        (401, False, True),
        (404, False, True),
    ],
)
def test_responses_are_delivered_retried_or_final(status: int, delivered: bool, permanent: bool) -> None:
    result = classify_response(status, "boom")
    assert (result.delivered, result.permanent) == (delivered, permanent)
    if not delivered:
        assert result.error.startswith(f"HTTP {status}")
