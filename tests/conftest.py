"""Shared fixtures: the checkout, kijun's podman configuration, and the `kijun` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

os.environ.setdefault("CONTAINERS_CONF", str(ROOT / ".kijun" / "containers.conf"))
os.environ.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def run_kijun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the installed `kijun` console script as a user would."""
    return subprocess.run(
        [str(VENV_BIN / "kijun"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def playbook(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    """ansible-playbook playbooks/site.yml on the lab inventory."""
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "playbooks/site.yml", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def applied_lab() -> str:
    """The lab up with the baseline applied once; the playbook's output."""
    proc = run_kijun("lab", "up")
    assert proc.returncode == 0, proc.stderr
    first = playbook()
    assert first.returncode == 0, first.stdout[-5000:]
    return first.stdout


def pytest_collection_finish(session: pytest.Session) -> None:
    """The selected molecule scenarios start at once, one after another in the background,
    beside the tests on the built-in lab (their own containers and networks)."""
    if session.config.option.collectonly or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    from . import molecule_runs

    # When the lab's drift tests run, they prove every case of molecule/*/drift_cases.yml on
    # the lab; the scenarios then leave those cases to them (each case once per run).
    cases_on_lab = any(
        item.originalname == "test_drift_is_reported_against_its_own_control"
        for item in session.items
        if isinstance(item, pytest.Function)
    )
    molecule_runs.start(
        (
            item.callspec.params["scenario"]
            for item in session.items
            if item.path.name == "test_molecule.py" and hasattr(item, "callspec")
        ),
        cases_on_lab,
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    from . import molecule_runs

    molecule_runs.stop()
