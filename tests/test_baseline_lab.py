"""The baseline on the lab: apply to every host, apply again without change, audit, and catch
every drift case of every role (the cases in molecule/<role>/drift_cases.yml)."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from kijun import lab, roletest

from .conftest import ROOT, VENV_BIN, playbook

pytestmark = pytest.mark.lab

CASES = [
    (role_dir.name, case)
    for role_dir in sorted((ROOT / "molecule").iterdir())
    for case in roletest.load_drift_cases(role_dir / "drift_cases.yml")
]
# Where a drift case without a group is tried in the lab: a host of each zone would do; the
# LGWAN application server is the plainest.
DEFAULT_TARGET = "lg-app01"


def _recap(stdout: str) -> dict[str, dict[str, int]]:
    recap = {}
    for m in re.finditer(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                         stdout, re.M):  # fmt: skip
        recap[m.group(1)] = {
            "ok": int(m.group(2)), "changed": int(m.group(3)),
            "unreachable": int(m.group(4)), "failed": int(m.group(5)),
        }  # fmt: skip
    return recap


def audit(hosts: str = "all") -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        proc = subprocess.run(
            [str(VENV_BIN / "pytest"), "-p", "no:cacheprovider", "-q", "--rootdir", "audits",
             f"--hosts=ansible://{hosts}", "--ansible-inventory=inventories/lab",
             f"--kijun-results={out}", "audits"],
            cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert out.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
        records: list[dict[str, Any]] = json.loads(out.read_text())["checks"]
    return records


def test_baseline_applies_to_every_host(applied_lab: str) -> None:
    recap = _recap(applied_lab)
    assert set(recap) == {h.name for h in lab.default_spec().hosts}
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values())


def test_second_apply_changes_nothing(applied_lab: str) -> None:
    second = playbook()
    assert second.returncode == 0, second.stdout[-5000:]
    changed = {h: r["changed"] for h, r in _recap(second.stdout).items() if r["changed"]}
    assert changed == {}, second.stdout[-5000:]


def test_check_mode_reports_no_change(applied_lab: str) -> None:
    check = playbook("--check", "--diff")
    assert check.returncode == 0, check.stdout[-5000:]
    changed = {h: r["changed"] for h, r in _recap(check.stdout).items() if r["changed"]}
    assert changed == {}, check.stdout[-5000:]


def test_full_audit_passes(applied_lab: str) -> None:
    records = audit()
    assert records, "no audit check ran"
    assert roletest.failing(records) == {}
    hosts = {r["host"] for r in records if r["outcome"] == "pass"}
    assert hosts == {h.name for h in lab.default_spec().hosts}


@pytest.mark.parametrize(("role", "case"), CASES, ids=[f"{r}:{c.name}" for r, c in CASES])
def test_drift_is_reported_against_its_own_control(
    applied_lab: str, role: str, case: roletest.DriftCase
) -> None:
    spec = lab.default_spec()
    if case.group is None:
        targets = [DEFAULT_TARGET]
    else:
        inv = lab.render_inventory(spec)["all"]["children"]
        targets = sorted(inv[case.group]["hosts"])
    try:
        for name in targets:
            proc = lab.exec_on(spec.host(name), f"sudo sh -c {_quote(case.command)}")
            assert proc.returncode == 0, proc.stderr
        found = roletest.failing(audit(",".join(targets)))
        assert set(found) == set(case.controls), found
    finally:
        restore = playbook("--limit", ",".join(targets))
        assert restore.returncode == 0, restore.stdout[-3000:]
    assert roletest.failing(audit(",".join(targets))) == {}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
