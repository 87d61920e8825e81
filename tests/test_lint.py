"""The tree is lint-clean: ruff, mypy, ansible-lint (production profile) and the catalog check,
run as `make lint` runs them, from the checkout's root. ansible-lint works offline
(``.ansible-lint``: no Galaxy, no schema refresh)."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from .conftest import ROOT, VENV_BIN


def run(*command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a tool of the venv from the root, as `make lint` does; no colours in the output."""
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "KIJUN_HOME": str(ROOT),
        "NO_COLOR": "1",
        "ANSIBLE_NOCOLOR": "1",
        "PY_COLORS": "0",
    }
    env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [str(VENV_BIN / command[0]), *command[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def assert_passes(proc: subprocess.CompletedProcess[str]) -> None:
    """The command exited 0; otherwise fail showing everything it printed."""
    if proc.returncode != 0:
        command = " ".join(str(arg) for arg in proc.args)
        pytest.fail(
            f"`{command}` exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
            pytrace=False,
        )


@pytest.mark.parametrize(
    "command",
    [
        ("ruff", "check", "src", "tests", "audits"),
        ("ruff", "format", "--check", "src", "tests", "audits"),
        ("mypy",),
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_python_lint(command: tuple[str, ...]) -> None:
    assert_passes(run(*command))


def test_ansible_lint_production_profile() -> None:
    proc = run("ansible-lint", "--profile", "production", "playbooks", "roles")
    assert_passes(proc)
    assert "Profile 'production' was required, and it passed" in proc.stderr + proc.stdout


def test_ansible_lint_is_configured_offline() -> None:
    config = yaml.safe_load((ROOT / ".ansible-lint").read_text(encoding="utf-8"))
    assert config["offline"] is True  # never installs from Galaxy nor fetches schemas
    assert config["profile"] == "production"


def test_catalog_check() -> None:
    proc = run("kijun", "catalog", "check")
    assert_passes(proc)
    assert proc.stdout.startswith("catalog OK"), proc.stdout
