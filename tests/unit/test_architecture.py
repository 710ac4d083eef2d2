"""The layering the README promises, and packages that stand on their own.

* ``lint-imports`` checks the import-linter contracts in the root
  ``pyproject.toml`` (services independent, libraries never import services,
  pure statistics and ledger core, pure service domains).
* Every workspace member is installed alone, with only the dependencies it
  declares, into its own environment, and each of its modules is imported:
  a missing declaration (hidden in the workspace's shared environment) fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(found).exists():
        pytest.fail("uv is needed to install each package alone (make venv installs it)")
    return found


def _members() -> list[Path]:
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    found: list[Path] = []
    for pattern in workspace:
        found += [p for p in sorted(ROOT.glob(pattern)) if (p / "pyproject.toml").exists()]
    return found


def _modules(member: Path) -> list[str]:
    src = member / "src"
    names = []
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


MEMBERS = _members()


def test_lock_file_matches_every_declared_dependency() -> None:
    """The per-package check below installs from ``uv.lock``, so the lock must say what the pyprojects say."""
    result = subprocess.run([_uv(), "lock", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_every_member_is_checked() -> None:
    names = {m.name for m in MEMBERS}
    assert {"contracts", "runtime", "stats", "ledger", "client", "cli", "devstack", "demo"} <= names
    assert {"registry", "rollout", "monitor", "retrain-scheduler", "audit"} <= names


@pytest.mark.parametrize("member", MEMBERS, ids=[m.name for m in MEMBERS])
def test_package_imports_with_only_its_declared_dependencies(member: Path) -> None:
    project = tomllib.loads((member / "pyproject.toml").read_text())["project"]["name"]
    env_dir = ROOT / ".cache" / "package-envs" / project
    sync = subprocess.run(
        [_uv(), "sync", "--frozen", "--no-dev", "--package", project, "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(env_dir)},
    )
    assert sync.returncode == 0, sync.stderr[-3000:]
    modules = _modules(member)
    assert modules, f"{member} has no modules"
    script = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    run = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", script, *modules],
        cwd=env_dir, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, f"{project} alone cannot import its modules:\n{run.stderr[-3000:]}"


#: The files every service has, with the same role in each (the root README's layout table).
SERVICE_ROLES = ("settings.py", "main.py", "api.py", "handlers.py", "service.py", "domain/__init__.py", "store.py",
                 "migrations/__init__.py")
SERVICES = sorted(p for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists())


def test_there_are_five_services_to_check() -> None:
    assert [p.name for p in SERVICES] == ["audit", "monitor", "registry", "retrain-scheduler", "rollout"]


@pytest.mark.parametrize("service", SERVICES, ids=[p.name for p in SERVICES])
def test_every_service_has_the_same_file_roles(service: Path) -> None:
    (package,) = [p for p in (service / "src" / "mloop").iterdir() if p.is_dir() and p.name != "__pycache__"]
    missing = [role for role in SERVICE_ROLES if not (package / role).exists()]
    assert not missing, f"{service.name} lacks {missing}"
    assert not (package / "domain.py").exists(), "decisions live in the domain/ package"
    assert list((package / "migrations").glob("0001_*.sql")), "migrations are numbered SQL files"
    readme = (service / "README.md").read_text()
    named = [role.split("/")[0] for role in SERVICE_ROLES]
    unnamed = [n for n in named if f"`{n}" not in readme]
    assert not unnamed, f"{service.name}/README.md does not name {unnamed}"
