"""docker-compose.yml and the Kubernetes manifests derive from the topic registry and the settings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
