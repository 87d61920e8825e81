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
