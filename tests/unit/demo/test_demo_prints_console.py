"""``make demo`` tells the person where to watch the loop before it starts."""

from __future__ import annotations

from typing import Any

import pytest

import mloop.demo.main as demo_main
from mloop.demo.run import DemoFailed


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str) -> tuple[int, str]:
    seen: list[str] = []

    async def no_loop(*args: Any, **kwargs: Any) -> None:
        seen.append(capsys.readouterr().out)  # what was printed before the loop started
        raise DemoFailed("stopped by the test")

    monkeypatch.setattr(demo_main, "run_demo", no_loop)
    monkeypatch.delenv("MLOOP_CONSOLE_URL", raising=False)
    for key, value in {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "MLOOP_JWT_SECRET": "s" * 40, **env}.items():
        monkeypatch.setenv(key, value)
    code = demo_main.main(["--no-live", "--size", "small"])
    assert seen, "the loop was never started"
    return code, " ".join(seen[0].split())


def test_the_demo_prints_the_console_url_before_the_loop_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, before = _run(monkeypatch, capsys)
    assert code == 1
    assert "Watch the loop live in the console: http://127.0.0.1:8100" in before
    assert "mloop token" in before  # and how to get a token to sign in

    _, before = _run(monkeypatch, capsys, MLOOP_CONSOLE_URL="https://console.example.com")
    assert "Watch the loop live in the console: https://console.example.com" in before
