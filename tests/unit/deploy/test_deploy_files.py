"""docker-compose.yml and the Kubernetes manifests derive from the topic registry and the settings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices

from mloop.contracts.topics import TOPICS
from mloop.runtime.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ["registry", "rollout", "monitor", "retrain-scheduler", "audit"]


def _settings_class(service: str) -> type[ServiceSettings]:
    import importlib

    module = service.replace("-", "_")
    candidates = {"registry": "RegistrySettings", "rollout": "RolloutSettings", "monitor": "MonitorSettings",
                  "retrain-scheduler": "RetrainSchedulerSettings", "audit": "AuditSettings"}
    cls: type[ServiceSettings] = getattr(importlib.import_module(f"mloop.{module}.settings"), candidates[service])
    assert issubclass(cls, ServiceSettings)
    return cls


def _settings_env_names(cls: type[ServiceSettings] = ServiceSettings) -> set[str]:
    names = set()
    for field_name, field in cls.model_fields.items():
        names.add(f"MLOOP_{field_name.upper()}")
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(a) for a in alias.choices)
    return names


def test_generated_files_are_up_to_date_with_the_topic_registry() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "deploy" / "generate.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_is_valid_and_runs_every_service_with_a_dockerfile() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(SERVICES) <= set(doc["services"])
    assert {"kafka", "postgres", "kafka-topics"} <= set(doc["services"])
    assert doc["services"]["kafka"]["image"].startswith("apache/kafka")
    for svc in SERVICES:
        build = doc["services"][svc]["build"]
        assert build["context"] == "."
        dockerfile = ROOT / build["dockerfile"]
        assert dockerfile.exists()
        text = dockerfile.read_text()
        assert f"--package mloop-{svc}" in text
        assert f"mloop.{svc.replace('-', '_')}" in text


def test_compose_services_use_the_settings_own_environment_variable_names() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for svc in SERVICES:
        known = _settings_env_names(_settings_class(svc))
        env = doc["services"][svc]["environment"]
        assert set(env) <= known, set(env) - known
        assert {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "MLOOP_JWT_SECRET"} <= set(env)


def test_topic_creation_step_creates_every_registry_topic_with_its_configuration() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    script = "\n".join(doc["services"]["kafka-topics"]["command"])
    for spec in TOPICS.values():
        m = re.search(rf"--topic {re.escape(spec.name)} --partitions (\d+)([^\n]*)", script)
        assert m, spec.name
        assert int(m.group(1)) == spec.partitions
        if spec.compacted:
            assert "cleanup.policy=compact" in m.group(2)


def test_kubernetes_topics_match_the_registry() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "topics.yaml").read_text()) if d]
    by_name = {d["metadata"]["name"]: d for d in docs}
    assert set(by_name) == set(TOPICS)
    assert by_name["traffic-split-changed"]["spec"]["config"]["cleanup.policy"] == "compact"
    assert by_name["prediction-logged"]["spec"]["partitions"] == 12


def _console_settings(env: dict[str, Any]) -> Any:
    from mloop.console.app import ConsoleSettings

    return ConsoleSettings.from_env({k: str(v) for k, v in env.items()})


def test_compose_runs_the_console_from_its_own_image_pointed_at_every_service_without_secrets() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    console = doc["services"]["console"]
    dockerfile = ROOT / console["build"]["dockerfile"]
    assert dockerfile == ROOT / "apps" / "console" / "Dockerfile"
    text = dockerfile.read_text()
    assert "--package mloop-console" in text and '"mloop.console"' in text and "EXPOSE 8100" in text
    assert set(console["depends_on"]) == set(SERVICES)
    env = console["environment"]
    # The console acts only with its users' tokens: no signing secret, no database, no Kafka.
    assert not {"MLOOP_JWT_SECRET", "DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"} & set(env)
    settings = _console_settings(env)
    for svc, url in (("registry", settings.endpoints.registry), ("rollout", settings.endpoints.rollout),
                     ("monitor", settings.endpoints.monitor), ("retrain-scheduler", settings.endpoints.retrain),
                     ("audit", settings.endpoints.audit)):
        port = doc["services"][svc]["environment"]["MLOOP_HTTP_PORT"]
        assert url == f"http://{svc}:{port}", (svc, url)
    assert settings.port == 8100 and console["ports"] == ["8100:8100"]
    assert settings.secure_cookie  # production: the session cookie is Secure


def test_kubernetes_console_reaches_each_service_by_its_service_name_and_holds_no_service_secret() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "services.yaml").read_text()) if d]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert {f"mloop-{s}" for s in [*SERVICES, "console"]} <= set(deployments)
    (container,) = deployments["mloop-console"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "mloop/console:latest"
    env = {e["name"]: e for e in container["env"]}
    assert not {"MLOOP_JWT_SECRET", "DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"} & set(env)
    # Replicas share the CSRF key, from a secret of the console's own.
    assert env["MLOOP_CONSOLE_CSRF_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "mloop-console"
    settings = _console_settings({k: e["value"] for k, e in env.items() if "value" in e})
    for url in (settings.endpoints.registry, settings.endpoints.rollout, settings.endpoints.monitor,
                settings.endpoints.retrain, settings.endpoints.audit):
        host, port = url.removeprefix("http://").split(":")
        assert services[host]["spec"]["ports"] == [{"port": int(port), "targetPort": int(port)}], url
    assert services["mloop-console"]["spec"]["ports"] == [{"port": 8100, "targetPort": 8100}]
