"""The baseline on the lab: apply to every host, apply again without change, audit, and catch
every drift case of every role (the cases in molecule/<role>/drift_cases.yml)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kijun import lab, roletest

from .conftest import ROOT, VENV_BIN, Applied, kijun_apply, run_kijun
from .test_tags import listed, role_tasks

pytestmark = pytest.mark.lab

CASES = [
    (role_dir.name, case)
    for role_dir in sorted((ROOT / "molecule").iterdir())
    for case in roletest.load_drift_cases(role_dir / "drift_cases.yml")
]


# Where a drift case without a group is tried in the lab: a host of each zone would do; the
# LGWAN application server is the plainest.
DEFAULT_TARGET = "lg-app01"


def audit(hosts: str = "all") -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        proc = subprocess.run(
            [str(VENV_BIN / "pytest"), "-p", "no:cacheprovider", "-q", "--rootdir", "audits",
             "--hosts=" + ",".join(f"ansible://{h}" for h in hosts.split(",")),
             "--ansible-inventory=inventories/lab",
             f"--kijun-results={out}", "audits"],
            cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert out.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
        records: list[dict[str, Any]] = json.loads(out.read_text())["checks"]
    return records


def test_baseline_applies_to_every_host(applied_lab: Applied) -> None:
    # kijun apply on fresh hosts: a recap per host and area, every host converged
    hosts = applied_lab.summary["hosts"]
    assert set(hosts) == {h.name for h in lab.default_spec().hosts}
    assert {h: v["state"] for h, v in hosts.items() if v["state"] != "ok"} == {}
    for name, host in hosts.items():
        assert {"password", "time", "logging", "wireless", "firewall", "(run)"} <= set(
            host["areas"]
        ), name
        assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in host["areas"].values())
    assert {h for h, v in hosts.items() if "mail" in v["areas"]} == {"lg-mail01", "in-mail01"}
    assert "TS-04" in applied_lab.summary["changes_by_control"]
    assert "recap per host and area" in applied_lab.printed
    assert "what changed, per control" in applied_lab.printed
    # the run is kept as evidence: Ansible's events and output, signed
    events = (applied_lab.bundle / "ansible" / "events.jsonl").read_text().splitlines()
    assert any(json.loads(e)["event"] == "playbook_on_stats" for e in events)
    assert "lockout guard" in (applied_lab.bundle / "ansible" / "stdout.txt").read_text()
    verified = run_kijun("verify", str(applied_lab.bundle))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_second_apply_changes_nothing(applied_lab: Applied) -> None:
    second = kijun_apply()
    assert second.proc.returncode == 0, second.proc.stdout[-5000:]
    assert second.summary["changes_by_control"] == {}, second.proc.stdout[-5000:]
    assert "nothing changed" in second.printed


# Check mode is proven where it says something a second apply does not: on a fresh host, where
# `kijun apply --check` lists per control what would change and changes nothing
# (tests/test_apply_schedule_live.py), and per role after converge and after drift, where it
# must report zero changes and then exactly the drifted tasks (molecule verify, kijun.roletest).


def test_full_audit_passes(applied_lab: Applied) -> None:
    records = audit()
    assert records, "no audit check ran"
    assert roletest.failing(records) == {}
    hosts = {r["host"] for r in records if r["outcome"] == "pass"}
    assert hosts == {h.name for h in lab.default_spec().hosts}


# Hosts a drift case without a group may be tried on: plain members of each zone, not the
# lab's NTP server or log collector (drift there would show on their clients as well).
PLAIN_HOSTS = ["lg-app01", "in-web01", "lg-mail01", "in-mail01", "lg-ap01", "gw01"]


def lab_groups() -> dict[str, list[str]]:
    """The lab inventory's groups and their hosts, as `kijun lab up` writes them."""
    inv = lab.render_inventory(lab.default_spec())["all"]["children"]
    return {g: sorted(v.get("hosts", {})) for g, v in inv.items()}


def drift_candidates(case: roletest.DriftCase, groups: dict[str, list[str]]) -> list[str]:
    """The hosts a case may drift, best first: a plain host, or a plain host of the case's
    group (a service host of the group only when it has no plain one: drift on the collector
    or the time server shows on their clients too)."""
    members = PLAIN_HOSTS if case.group is None else groups[case.group]
    plain = [h for h in members if h in PLAIN_HOSTS]
    return plain or members


def drift_rounds(
    cases: list[tuple[str, roletest.DriftCase]], groups: dict[str, list[str]]
) -> list[list[tuple[str, roletest.DriftCase, list[str]]]]:
    """Cases grouped into rounds whose target hosts do not overlap, so that a round's cases can
    be applied at once, audited in one run and restored in one playbook run (with the tags of
    the cases' controls). Each case drifts one host (:func:`drift_candidates`). The cases with
    the fewest candidates are placed first, so that a plain case never takes the only host of
    a group whose cases then need a round more."""
    rounds: list[list[tuple[str, roletest.DriftCase, list[str]]]] = []
    used: list[set[str]] = []
    for role, case in sorted(cases, key=lambda rc: len(drift_candidates(rc[1], groups))):
        candidates = drift_candidates(case, groups)
        for i in range(len(rounds) + 1):
            if i == len(rounds):
                rounds.append([])
                used.append(set())
            free = [h for h in candidates if h not in used[i]]
            if not free:
                continue  # no free host in this round: the next one
            rounds[i].append((role, case, free[:1]))
            used[i].add(free[0])
            break
    return rounds


@dataclass
class Outcome:
    """A drift case on the lab: per target host, the failing controls after the drift and
    after restoring the role, and the drifted hosts' audit records."""

    drifted: dict[str, dict[str, list[str]]]
    restored: dict[str, dict[str, list[str]]]
    records: list[dict[str, Any]]
    restore: Applied  # the `kijun apply --control ID --limit HOSTS` that restored the round
    # a competing-file case: per target host, what the check of the restored file found
    # (roletest.competing_check: "" when the file's line was neutralised and backed up)
    competing: dict[str, str]


@pytest.fixture(scope="module")
def drift_outcomes(applied_lab: Applied) -> dict[str, Outcome]:
    """Every drift case applied on the lab, a round at a time."""
    spec = lab.default_spec()
    outcomes: dict[str, Outcome] = {}
    for batch in drift_rounds(CASES, lab_groups()):
        hosts = sorted({h for _, _, targets in batch for h in targets})
        try:
            for _, case, targets in batch:
                for name in targets:
                    proc = lab.exec_on(spec.host(name), f"sudo sh -c {_quote(case.command)}")
                    assert proc.returncode == 0, f"{case.name} on {name}: {proc.stderr}"
            records = audit(",".join(hosts))
            drifted = _failing_by_host(records)
        finally:
            # restored as an admin restores what the audit reported: `kijun apply` with the
            # drifted controls alone (their tags, roles/README.md "Tags"), which proves that
            # `--control ID` clears what drifted from ID
            controls = sorted({c for _, case, _ in batch for c in case.controls})
            selection = [arg for c in controls for arg in ("--control", c)]
            restore = kijun_apply("--limit", ",".join(hosts), *selection)
        restored = _failing_by_host(audit(",".join(hosts)))
        left: dict[tuple[str, str], str] = {}
        for _, case, targets in batch:
            for name in targets if case.competing else []:
                check = roletest.competing_check(case.competing or "")
                proc = lab.exec_on(spec.host(name), f"sudo sh -c {_quote(check)}")
                left[(case.name, name)] = "" if proc.returncode == 0 else proc.stdout.strip()
        for role, case, targets in batch:
            outcomes[f"{role}:{case.name}"] = Outcome(
                {h: drifted.get(h, {}) for h in targets},
                {h: restored.get(h, {}) for h in targets},
                [r for r in records if r["host"] in targets],
                restore,
                {h: left[(case.name, h)] for h in targets if (case.name, h) in left},
            )
    return outcomes


def _failing_by_host(records: list[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    by_host: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_host.setdefault(r["host"], []).append(r)
    return {h: roletest.failing(rs) for h, rs in by_host.items()}


def test_drift_rounds_keep_targets_apart() -> None:
    groups = {"zone_mynumber": ["mn-app01"], "ntp_servers": ["lg-ntp01"]}
    case = roletest.DriftCase("c", "true", frozenset({"X-01"}))
    mn = roletest.DriftCase("m", "true", frozenset({"X-02"}), "zone_mynumber")
    cases = [("r", case)] * (len(PLAIN_HOSTS) + 1) + [("r", mn), ("r", mn)]
    rounds = drift_rounds(cases, groups)
    assert len(rounds) == 2
    for batch in rounds:
        hosts = [h for _, _, targets in batch for h in targets]
        assert len(hosts) == len(set(hosts))
    assert sum(len(b) for b in rounds) == len(cases)


def test_a_group_case_drifts_one_host_the_plainest_free_one() -> None:
    groups = {"zone_lgwan": ["lg-log01", "lg-app01", "lg-mail01"]}
    plain = roletest.DriftCase("c", "true", frozenset({"X-01"}))
    lg = roletest.DriftCase("g", "true", frozenset({"X-02"}), "zone_lgwan")
    rounds = drift_rounds([("r", plain), ("r", lg), ("r", lg), ("r", lg)], groups)
    targets = [[(c.name, t) for _, c, t in batch] for batch in rounds]
    # The group's cases take its plain hosts lg-app01 and lg-mail01, then the next round's
    # lg-app01, never the collector lg-log01; the plain case takes a host they leave free.
    assert targets == [
        [("g", ["lg-app01"]), ("g", ["lg-mail01"]), ("c", ["in-web01"])],
        [("g", ["lg-app01"])],
    ]


def test_the_lab_cases_need_no_more_rounds_than_the_busiest_only_host() -> None:
    """Every round costs an audit and a restore: the lab's cases take as many rounds as the
    host that is the only candidate of the most cases needs (the access point), no more."""
    groups = lab_groups()
    only: dict[str, int] = {}
    for _, case in CASES:
        candidates = drift_candidates(case, groups)
        if len(candidates) == 1:
            only[candidates[0]] = only.get(candidates[0], 0) + 1
    rounds = drift_rounds(CASES, groups)
    assert len(rounds) == max(only.values(), default=1), [
        [(c.name, t) for _, c, t in b] for b in rounds
    ]
    assert sorted(f"{r}:{c.name}" for b in rounds for r, c, _ in b) == sorted(
        f"{r}:{c.name}" for r, c in CASES
    )


@pytest.mark.parametrize(("role", "case"), CASES, ids=[f"{r}:{c.name}" for r, c in CASES])
def test_drift_is_reported_against_its_own_control(
    drift_outcomes: dict[str, Outcome], role: str, case: roletest.DriftCase
) -> None:
    outcome = drift_outcomes[f"{role}:{case.name}"]
    # The admin kept SSH access throughout: every drifted host was assessed over SSH.
    assert outcome.records and not [r for r in outcome.records if r["outcome"] == "not_assessed"]
    for host, found in outcome.drifted.items():
        assert set(found) == set(case.controls), (host, found)
    # kijun's promise: what the audit reports, apply clears. The restore exits 0, every
    # drifted host converged without a failed or rescued task, and the next audit is clean.
    restore = outcome.restore
    assert restore.proc.returncode == 0, restore.proc.stdout[-5000:]
    states = {h: restore.summary["hosts"][h]["state"] for h in outcome.drifted}
    assert set(states.values()) == {"ok"}, (states, restore.summary["rescued"])
    assert all(found == {} for found in outcome.restored.values()), outcome.restored
    if case.competing:
        # the competing file's line was neutralised and the file backed up, and the apply said so
        assert outcome.competing == {h: "" for h in outcome.drifted}, outcome.competing
        named = {(n["host"], n["path"]) for n in restore.summary["neutralised"]}
        assert {(h, case.competing) for h in outcome.drifted} <= named, named


def _scenario_roles(scenario: str) -> set[str]:
    """The roles a molecule scenario's converge.yml applies."""
    plays = yaml.safe_load((ROOT / "molecule" / scenario / "converge.yml").read_text())
    return {
        r["role"] if isinstance(r, dict) else r for play in plays for r in play.get("roles", [])
    }


def test_every_role_has_a_competing_file_case() -> None:
    """Each role site.yml applies has a drift case in which another file competes with its own
    (the lab and the role's molecule scenario then prove the role neutralises it)."""
    from kijun import apply

    competing = {
        role for scenario, case in CASES if case.competing for role in _scenario_roles(scenario)
    }
    roles = set(apply.site_roles())
    assert roles and competing >= roles, sorted(roles - competing)


def test_gateway_drift_shows_in_the_probe_matrix(drift_outcomes: dict[str, Outcome]) -> None:
    """The gateway accepting everything from the internet zone: the probe matrix shows the
    connections from the internet zone into the LGWAN zone that should have been blocked."""
    outcome = drift_outcomes["zone_gateway:gateway accepts everything from the internet zone"]
    [probes] = [r for r in outcome.records if r["check"] == "declared_flows_effective"]
    assert probes["outcome"] == "fail"
    zone = {h.name: h.zone for h in lab.default_spec().hosts}
    through = [
        p for p in probes["observed"]["probe matrix"]
        if p["expected"] == "blocked" and p["observed"] in ("connected", "refused")
    ]  # fmt: skip
    assert through, probes["observed"]["probe matrix"]
    assert {(zone[p["from"]], zone[p["to"]]) for p in through} == {("internet", "lgwan")}
    # and nothing else changed: the declared flows still connect
    declared = [p for p in probes["observed"]["probe matrix"] if p["expected"] == "connects"]
    assert declared and all(p["observed"] in ("connected", "refused") for p in declared)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _run_playbook(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), f"playbooks/{name}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_emergency_cutoff_and_restore_on_the_lab(applied_lab: Applied) -> None:
    """直ちにインターネットとの接続を切断する: the emergency playbook cuts the internet zone off at
    gw01 (real connections from and to it fail, the individual-number zone's flows and the
    admin's access do not); the audit reports the undeclared cut-off; the restore playbook
    brings the declared state back."""
    cut = _run_playbook("zone_cutoff.yml")
    try:
        assert cut.returncode == 0, cut.stdout[-3000:]
        records = audit("gw01")
        found = roletest.failing(records)
        assert set(found) == {"FW-06", "FW-11"}, found
        [probes] = [r for r in records if r["check"] == "declared_flows_effective"]
        matrix = probes["observed"]["probe matrix"]
        zone = {h.name: h.zone for h in lab.default_spec().hosts}
        declared = [p for p in matrix if p["expected"] == "connects"]
        cut_off = [p for p in declared if "internet" in (zone[p["from"]], zone[p["to"]])]
        assert cut_off and all(p["observed"] == "blocked" for p in cut_off), cut_off
        kept = [p for p in declared if "internet" not in (zone[p["from"]], zone[p["to"]])]
        assert all(p["observed"] in ("connected", "refused") for p in kept), kept
    finally:
        restore = _run_playbook("zone_restore.yml")
        assert restore.returncode == 0, restore.stdout[-3000:]
    assert roletest.failing(audit("gw01")) == {}


def test_each_drift_case_is_restored_by_the_tags_of_its_controls() -> None:
    """Every control a drift case reports selects tasks of site.yml (its restore's tags)."""
    for role, case in CASES:
        selected = role_tasks(listed(*sorted(case.controls)))
        assert selected, f"{role}:{case.name}: --tags {','.join(sorted(case.controls))}"
