"""The distribution as a deployment gets it: a wheel built from pyproject.toml, installed by path.

``installed_distribution`` builds the wheel from a copy of the files the build reads (pyproject.toml, README.md,
plugins/), so the working tree gets no build/ or *.egg-info, and installs it with ``pip install --no-deps
--target``: the project venv is not changed (other runs share it). A process given ``PYTHONPATH=<target>``
sees the package and its ``apache_airflow_provider`` entry point exactly as after ``pip install .``; its
dependencies are the venv's, which is the lock (``pip check`` runs in ``make venv``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "deployment: starts a real Airflow deployment (PostgreSQL, and Redis for "
        "CeleryExecutor); `make test` runs it, `-m 'not deployment'` leaves it out",
    )


@dataclass(frozen=True)
class InstalledDistribution:
    wheel: Path
    target: Path  # on PYTHONPATH: the package and its .dist-info (entry points)
    plugins: Path  # an empty plugins folder, so the repo's plugins/ is not what is imported

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["PYTHONPATH"] = str(self.target)
        env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(self.plugins)
        return env

    def names(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return archive.namelist()


def copy_build_sources(destination: Path) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, destination / name)
    shutil.copytree(
        ROOT / "plugins", destination / "plugins", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    )
    return destination


@pytest.fixture(scope="session")
def installed_distribution(tmp_path_factory: pytest.TempPathFactory) -> InstalledDistribution:
    base = tmp_path_factory.mktemp("distribution")
    source = copy_build_sources(base / "source")
    wheels = base / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, f"building the wheel failed:\n{built.stdout}\n{built.stderr}"
    (wheel,) = wheels.glob("zoho_store_sync-*.whl")
    target = base / "site"
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "--no-compile", "--quiet", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, f"installing the wheel failed:\n{installed.stdout}\n{installed.stderr}"
    plugins = base / "empty_plugins"
    plugins.mkdir()
    return InstalledDistribution(wheel=wheel, target=target, plugins=plugins)
