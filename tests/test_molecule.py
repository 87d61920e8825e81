"""Every role's molecule scenario: create, converge, idempotence, verify (check mode with zero
changes, the audits/ modules, the drift step, admin access), destroy."""

from __future__ import annotations

import re

import pytest

from kijun import roletest

from . import molecule_runs
from .conftest import ROOT

SCENARIOS = sorted(
    p.parent.name
    for p in (ROOT / "molecule").glob("*/molecule.yml")
    if not p.parent.name.startswith("_")
)

pytestmark = pytest.mark.lab


# Roles that apply no control (the catalog names none), with the test that runs them instead.
NOT_CONTROL_ROLES = {"audit_schedule": "tests/test_apply_schedule_live.py"}


def test_every_role_has_a_scenario() -> None:
    roles = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
    control_roles = set(roles) - set(NOT_CONTROL_ROLES)
    assert control_roles <= set(SCENARIOS), (
        f"roles without a molecule scenario: {control_roles - set(SCENARIOS)}"
    )
    for role, test in NOT_CONTROL_ROLES.items():
        assert role in roles and (ROOT / test).is_file(), (role, test)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str) -> None:
    # Started in the background when the session began (tests/molecule_runs.py).
    run = molecule_runs.outcome(scenario)
    output = run.output + f"\n(molecule test -s {scenario}: {run.seconds:.0f} s)"
    assert run.returncode == 0, output[-6000:]
    # molecule words its progress as "time_sync ➜ verify: Executed: Successful" on a terminal and
    # as "[time_sync > verify] Executed: Successful" when CI is set: the verify step must have run.
    verified = re.compile(rf"\[?{re.escape(scenario)} (?:➜|>) verify\]?:? Executed: Successful")
    assert verified.search(run.output), output[-6000:]
    # The further drift cases ran here, or were left to the lab's drift tests of this session.
    cases = roletest.load_drift_cases(ROOT / "molecule" / scenario / "drift_cases.yml")
    for case in cases:
        if run.cases_on_lab:
            assert "run on the lab in this run" in run.output, output[-6000:]
        else:
            assert f"drift case {case.name!r} is reported against" in run.output, output[-6000:]
