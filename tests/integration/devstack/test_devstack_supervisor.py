"""The service supervisor and up/down/status/clean, with real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from mloop.devstack import (
    ServiceError,
    ServiceSpec,
    StackConfig,
    StackPaths,
    clean,
    down,
    find_free_ports,
    start_services,
    status,
    stop_services,
    up,
)
from mloop.devstack._paths import process_alive
from mloop.devstack.services import probe_ready, service_pid

DUMMY = textwrap.dedent(
    """
    import json, os, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    mode = os.environ.get("DUMMY_MODE", "ok")
    if mode == "crash":
        print("dummy: config is broken, giving up", flush=True)
        sys.exit(3)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/readyz" and mode == "never-ready":
                self.send_response(503)
                self.end_headers()
                return
            body = json.dumps(dict(os.environ)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    time.sleep(0.3)  # pretend to initialise
    print("dummy: serving", flush=True)
    HTTPServer(("127.0.0.1", int(os.environ["MLOOP_HTTP_PORT"])), Handler).serve_forever()
    """
)


@pytest.fixture
def dummy_env(tmp_path: Path) -> dict[str, str]:
    pkg = tmp_path / "pylib"
    pkg.mkdir()
    (pkg / "dummy_service.py").write_text(DUMMY)
    return {"PYTHONPATH": str(pkg), "DATABASE_URL": "postgresql://x@127.0.0.1:1/y"}


def _specs(n: int) -> list[ServiceSpec]:
    return [ServiceSpec(f"dummy{i}", "dummy_service", port) for i, port in enumerate(find_free_ports(n))]


def test_supervisor_starts_waits_and_stops(tmp_path: Path, dummy_env: dict[str, str]) -> None:
    paths = StackPaths(tmp_path / "stack")
    specs = _specs(2)
    pids = start_services(paths, dummy_env, specs, timeout=20)
    try:
        assert set(pids) == {"dummy0", "dummy1"}
        for spec in specs:
            assert probe_ready(spec)
            assert service_pid(paths, spec) == pids[spec.name]
            with urllib.request.urlopen(f"{spec.url}/env", timeout=5) as resp:
                child_env = json.loads(resp.read())
            assert child_env["MLOOP_HTTP_PORT"] == str(spec.port)
            assert child_env["DATABASE_URL"] == dummy_env["DATABASE_URL"]
            assert child_env["MLOOP_DUMMY1_URL"] == specs[1].url
            assert "dummy: serving" in paths.service_log(spec.name).read_text()
        # Starting again leaves the running processes alone.
        assert start_services(paths, dummy_env, specs, timeout=20) == pids
    finally:
        stopped = stop_services(paths, specs)
    assert sorted(stopped) == ["dummy0", "dummy1"]
    for pid in pids.values():
        assert not process_alive(pid)
    assert not any(paths.pids_dir.glob("*.pid"))


def test_supervisor_reports_crash_with_log_tail(tmp_path: Path, dummy_env: dict[str, str]) -> None:
    paths = StackPaths(tmp_path / "stack")
    specs = _specs(1)
    with pytest.raises(ServiceError, match="exited during startup") as info:
        start_services(paths, {**dummy_env, "DUMMY_MODE": "crash"}, specs, timeout=20)
    assert "config is broken, giving up" in str(info.value)


def test_supervisor_times_out_with_log_tail(tmp_path: Path, dummy_env: dict[str, str]) -> None:
    paths = StackPaths(tmp_path / "stack")
    specs = _specs(1)
    try:
        with pytest.raises(ServiceError, match="not ready") as info:
            start_services(paths, {**dummy_env, "DUMMY_MODE": "never-ready"}, specs, timeout=3)
        assert "dummy: serving" in str(info.value)
    finally:
        stop_services(paths, specs)


def test_supervisor_refuses_taken_port(tmp_path: Path, dummy_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        spec = ServiceSpec("busy", "dummy_service", s.getsockname()[1])
        with pytest.raises(ServiceError, match="already taken"):
            start_services(StackPaths(tmp_path / "stack"), dummy_env, [spec])


@pytest.mark.integration
def test_up_status_down_clean_without_services() -> None:
    # Not under pytest's tmp_path: pytest resets its base folder to 0700 whenever another
    # run starts, and the Postgres account must be able to reach its data folder.
    paths = StackPaths(Path(tempfile.mkdtemp(prefix="mloop-up-")) / "stack")
    kafka_port, controller_port, pg_port = find_free_ports(3)
    config = StackConfig(kafka_port, controller_port, pg_port)
    messages: list[str] = []
    try:
        st = up(services=False, paths=paths, config=config, log=messages.append)
        assert st["kafka"]["running"] and st["postgres"]["running"]
        assert st["env"]["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{kafka_port}"
        assert st["env"]["DATABASE_URL"] == f"postgresql://postgres@127.0.0.1:{pg_port}/mloop"
        assert not any(s["running"] for s in st["services"].values())
        secret = st["env"]["MLOOP_JWT_SECRET"]
        assert any("topics:" in m for m in messages)

        # The command line reads the same stack back, and its output is valid shell.
        out = subprocess.run(
            [sys.executable, "-m", "mloop.devstack", "status", "--root", str(paths.root)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        env = subprocess.run(
            ["bash", "-c", out + 'echo "$KAFKA_BOOTSTRAP_SERVERS $MLOOP_JWT_SECRET"'],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert env == [f"127.0.0.1:{kafka_port}", secret]

        # A second up is a no-op that keeps the same processes and secret.
        again = up(services=False, paths=paths, log=messages.append)
        assert again["kafka"]["pid"] == st["kafka"]["pid"]
        assert again["postgres"]["pid"] == st["postgres"]["pid"]
        assert again["env"]["MLOOP_JWT_SECRET"] == secret

        down(paths, log=messages.append)
        st = status(paths)
        assert not st["kafka"]["running"] and not st["postgres"]["running"]
        assert not process_alive(again["kafka"]["pid"])
        assert (paths.pg_data / "PG_VERSION").is_file()
        assert (paths.kafka_data / "meta.properties").is_file()
    finally:
        clean(paths, log=messages.append)
        paths.root.parent.rmdir()
    assert not paths.root.exists()


@pytest.mark.integration
def test_ephemeral_stack_reuses_running_stack_when_asked(local_stack: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from mloop.devstack.testing import EphemeralStack

    assert isinstance(local_stack, EphemeralStack)
    monkeypatch.setenv("MLOOP_TEST_USE_RUNNING_STACK", "1")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", local_stack.bootstrap_servers)
    monkeypatch.setenv("DATABASE_URL", local_stack.database_url)
    with EphemeralStack() as reused:
        assert reused.kafka is None and reused.postgres is None
        assert reused.bootstrap_servers == local_stack.bootstrap_servers
        url = reused.new_database("devstack_reused")
        assert url.endswith("/devstack_reused")
    # The running stack is untouched.
    assert local_stack.kafka is not None and local_stack.kafka.is_running()
    assert local_stack.postgres is not None and local_stack.postgres.is_running()


@pytest.mark.integration
def test_ephemeral_stack_cleans_up_after_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOOP_TEST_USE_RUNNING_STACK", raising=False)
    from mloop.devstack.testing import EphemeralStack

    with EphemeralStack() as stack:
        assert stack.startup_seconds is not None and stack.startup_seconds < 60
        assert stack.kafka is not None and stack.postgres is not None and stack.paths
        kafka_pid, pg_pid, root = stack.kafka.pid, stack.postgres.pid, stack.paths.root
        assert kafka_pid and pg_pid and root.is_dir()
    assert not process_alive(kafka_pid)
    assert not process_alive(pg_pid)
    assert not root.exists()


@pytest.mark.integration
def test_ephemeral_stack_torn_down_when_owner_is_killed() -> None:
    script = textwrap.dedent(
        """
        import json, time
        from mloop.devstack.testing import EphemeralStack
        s = EphemeralStack().start()
        print(json.dumps([str(s.paths.root), s.kafka.pid, s.postgres.pid]), flush=True)
        time.sleep(600)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "MLOOP_TEST_USE_RUNNING_STACK"}
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert owner.stdout is not None
        root, kafka_pid, pg_pid = json.loads(owner.stdout.readline())
        assert process_alive(kafka_pid) and process_alive(pg_pid)
    finally:
        owner.kill()  # no chance to clean up
        owner.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (process_alive(kafka_pid) or process_alive(pg_pid) or Path(root).exists()):
        time.sleep(0.2)
    assert not process_alive(kafka_pid)
    assert not process_alive(pg_pid)
    assert not Path(root).exists()
