"""Pure parts of mloop.devstack: config rendering, env output, paths, secrets."""

from __future__ import annotations

import base64
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mloop.devstack import ENV_KEYS, SERVICES, StackConfig, StackPaths, find_free_ports
from mloop.devstack._paths import process_alive, read_pid, tail
from mloop.devstack.kafka import new_cluster_id, render_server_properties
from mloop.devstack.postgres import admin_url, create_database, database_url
from mloop.devstack.services import SECRET_KEYS
from mloop.devstack.stack import ensure_jwt_secret, format_status, read_jwt_secret, stack_env


def _parse_properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_server_properties_single_combined_node(tmp_path: Path) -> None:
    props = _parse_properties(render_server_properties(port=19092, controller_port=19093, data_dir=tmp_path / "d"))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["log.dirs"] == str(tmp_path / "d")
    assert props["auto.create.topics.enable"] == "false"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["message.max.bytes"] == "16777216"
    assert props["num.partitions"] == "1"


def test_cluster_id_is_unpadded_base64url_of_16_bytes() -> None:
    ids = {new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    for cid in ids:
        assert len(cid) == 22 and "=" not in cid
        assert not cid.startswith("-")  # kafka-storage would take it for an option
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_stack_paths_layout(tmp_path: Path) -> None:
    p = StackPaths(tmp_path)
    for path in (p.kafka_data, p.kafka_log, p.kafka_pid, p.pg_data, p.pg_log, p.secrets_file):
        assert tmp_path in path.parents
    assert p.service_log("audit") == tmp_path / "logs" / "audit.log"
    assert p.service_pid("audit").parent == p.pids_dir


def test_default_stack_lives_in_ignored_local_folder() -> None:
    root = StackPaths.default().root
    assert root.parts[-2:] == (".local", "stack")
    assert (root.parent.parent / "deploy" / "local" / "kafka" / "pom.xml").is_file()


def test_services_ports_and_env_keys() -> None:
    assert [s.module for s in SERVICES] == [
        "mloop.registry",
        "mloop.rollout",
        "mloop.monitor",
        "mloop.retrain_scheduler",
        "mloop.audit",
        "mloop.console",
    ]
    assert [s.port for s in SERVICES] == [8101, 8102, 8103, 8104, 8105, 8100]
    # The console acts only with its users' tokens: it is never handed the stack's secrets.
    assert [s.name for s in SERVICES if not s.trusted] == ["console"]
    assert set(SECRET_KEYS) == {"MLOOP_JWT_SECRET", "DATABASE_URL"}
    assert SERVICES[3].env_key == "MLOOP_RETRAIN_SCHEDULER_URL"
    assert ENV_KEYS == (
        "KAFKA_BOOTSTRAP_SERVERS",
        "DATABASE_URL",
        "MLOOP_REGISTRY_URL",
        "MLOOP_ROLLOUT_URL",
        "MLOOP_MONITOR_URL",
        "MLOOP_RETRAIN_SCHEDULER_URL",
        "MLOOP_AUDIT_URL",
        "MLOOP_CONSOLE_URL",
        "MLOOP_JWT_SECRET",
    )


def test_jwt_secret_created_once_private(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path / "stack")
    assert read_jwt_secret(paths) is None
    first = ensure_jwt_secret(paths)
    assert len(first) >= 40
    assert ensure_jwt_secret(paths) == first
    assert read_jwt_secret(paths) == first
    assert stat.S_IMODE(paths.secrets_file.stat().st_mode) == 0o600


def test_stack_config_round_trip(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path)
    assert StackConfig.load(paths) == StackConfig(9092, 9093, 5433)
    StackConfig(19092, 19093, 15433).save(paths)
    assert StackConfig.load(paths) == StackConfig(19092, 19093, 15433)
    env = stack_env(paths)
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19092"
    assert env["DATABASE_URL"] == "postgresql://postgres@127.0.0.1:15433/mloop"


def _fake_status(root: Path, secret: str | None) -> dict:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:5433/mloop",
        **{s.env_key: s.url for s in SERVICES},
    }
    if secret is not None:
        env["MLOOP_JWT_SECRET"] = secret
    return {
        "root": str(root),
        "kafka": {"running": True, "pid": 42, "bootstrap_servers": "127.0.0.1:9092"},
        "postgres": {"running": False, "pid": None, "url": env["DATABASE_URL"]},
        "services": {
            s.name: {"running": i == 0, "ready": i == 0, "pid": 100 + i, "url": s.url} for i, s in enumerate(SERVICES)
        },
        "env": env,
    }


def test_format_status_human_lines_then_key_values(tmp_path: Path) -> None:
    text = format_status(_fake_status(tmp_path, "s3cr-et_X"))
    lines = text.splitlines()
    human = [line for line in lines if line.startswith("#")]
    pairs = [line for line in lines if not line.startswith("#")]
    assert lines[: len(human)] == human  # all human lines come first
    assert [p.split("=", 1)[0] for p in pairs] == list(ENV_KEYS)
    assert "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092" in pairs
    assert "DATABASE_URL=postgresql://postgres@127.0.0.1:5433/mloop" in pairs
    assert "MLOOP_AUDIT_URL=http://127.0.0.1:8105" in pairs
    assert "MLOOP_JWT_SECRET=s3cr-et_X" in pairs
    kafka_line = next(line for line in human if " kafka " in line)
    assert "running" in kafka_line and "pid 42" in kafka_line
    assert "stopped" in next(line for line in human if " postgres " in line)
    assert "ready" in next(line for line in human if " registry " in line)


def test_format_status_is_evaluable_by_the_shell(tmp_path: Path) -> None:
    text = format_status(_fake_status(tmp_path, "a'b c"))  # hostile secret stays one value
    script = text + 'printf "%s|%s|%s" "$DATABASE_URL" "$MLOOP_JWT_SECRET" "$MLOOP_ROLLOUT_URL"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout == "postgresql://postgres@127.0.0.1:5433/mloop|a'b c|http://127.0.0.1:8102"


def test_format_status_without_secret_omits_it(tmp_path: Path) -> None:
    text = format_status(_fake_status(tmp_path, None))
    assert "MLOOP_JWT_SECRET=" not in text
    assert "make up" in text


def test_database_urls() -> None:
    assert database_url(5433) == "postgresql://postgres@127.0.0.1:5433/mloop"
    assert admin_url("postgresql://postgres@127.0.0.1:5433/mloop") == ("postgresql://postgres@127.0.0.1:5433/postgres")


@pytest.mark.parametrize("bad", ["", "1abc", "a-b", 'x"; DROP', "a" * 64])
def test_database_names_are_validated(bad: str) -> None:
    with pytest.raises(ValueError):
        create_database("postgresql://postgres@127.0.0.1:1/mloop", bad)


def test_find_free_ports_are_distinct_and_bindable() -> None:
    ports = find_free_ports(5)
    assert len(set(ports)) == 5
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_process_helpers(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "marker-xyz"])
    try:
        pid_file = tmp_path / "p.pid"
        pid_file.write_text(f"{proc.pid}\n")
        assert read_pid(pid_file) == proc.pid
        assert process_alive(proc.pid, "marker-xyz")
        assert not process_alive(proc.pid, "something-else")
    finally:
        proc.kill()
    # until reaped it is a zombie, which must not count as running
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    assert not process_alive(proc.pid)
    proc.wait()
    assert read_pid(tmp_path / "missing.pid") is None


def test_tail(tmp_path: Path) -> None:
    f = tmp_path / "x.log"
    f.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(f, 3) == "line 97\nline 98\nline 99"
    assert tail(tmp_path / "nope.log") == ""


def test_just_launched_child_counts_as_alive() -> None:
    # Popen can return while the kernel is still finishing the exec, when the child's
    # /proc/<pid>/cmdline is briefly empty; that must not read as "exited".
    for _ in range(100):
        proc = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(5)", "marker-launch"],
            start_new_session=True,
        )
        try:
            assert process_alive(proc.pid, "marker-launch")
        finally:
            proc.kill()
            proc.wait()


def test_class_archive_is_keyed_by_jvm_and_jars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mloop.devstack.kafka import _cds_archive

    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "kafka_2.13-4.1.1.jar").touch()
    first = _cds_archive("/usr/bin/java", libs)
    assert first is not None and first.parent == tmp_path / "cds"
    assert _cds_archive("/usr/bin/java", libs) == first
    (libs / "extra-1.0.jar").touch()
    assert _cds_archive("/usr/bin/java", libs) != first
    monkeypatch.setenv("MLOOP_KAFKA_CDS", "0")
    assert _cds_archive("/usr/bin/java", libs) is None


def test_the_output_of_up_leaves_the_jwt_secret_out() -> None:
    from mloop.devstack.stack import format_status

    st = {
        "root": "/x",
        "kafka": {"state": "running", "pid": 1, "bootstrap_servers": "127.0.0.1:9092"},
        "postgres": {"state": "running", "pid": 2, "url": "postgresql://postgres@127.0.0.1:5433/mloop"},
        "services": {},
        "env": {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "MLOOP_JWT_SECRET": "s3cr-et_X"},
    }
    assert "s3cr-et_X" in format_status(st)
    hidden = format_status(st, include_secret=False)
    assert "s3cr-et_X" not in hidden and "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092" in hidden
