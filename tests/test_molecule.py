"""Every role's molecule scenario: create, converge, idempotence, verify (check mode with zero
changes, the audits/ modules, the drift step, admin access), destroy."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from .conftest import ROOT, VENV_BIN

SCENARIOS = sorted(
    p.parent.name
    for p in (ROOT / "molecule").glob("*/molecule.yml")
    if not p.parent.name.startswith("_")
)

pytestmark = pytest.mark.lab


def test_every_role_has_a_scenario() -> None:
    roles = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
    assert set(roles) <= set(SCENARIOS), (
        f"roles without a molecule scenario: {set(roles) - set(SCENARIOS)}"
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str) -> None:
    proc = subprocess.run(
        [str(VENV_BIN / "molecule"), "test", "-s", scenario],
        cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False,
        env={**os.environ, "PY_COLORS": "0", "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    # molecule words its progress as "time_sync ➜ verify: Executed: Successful" on a terminal and
    # as "[time_sync > verify] Executed: Successful" when CI is set: the verify step must have run.
    verified = re.compile(rf"\[?{re.escape(scenario)} (?:➜|>) verify\]?:? Executed: Successful")
    assert verified.search(proc.stdout + proc.stderr), (proc.stdout + proc.stderr)[-6000:]
