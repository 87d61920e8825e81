"""The verify step of every role's molecule scenario (``python -m kijun.roletest``).

After molecule has created the instances, converged them and checked idempotence, this proves
the rest of what a kijun role promises, against the real instances:

1. the admin still logs in over SSH and can use sudo (a baseline must never lock them out);
2. check mode on the converged instances reports zero changes;
3. the role's audits (``audits/test_<module>.py``) pass, reading the scenario's inventory;
   then each ``verify_*.yml`` playbook of the scenario runs (in name order) and must not fail:
   a role proves there what only a real action shows (e.g. a wrong password is counted);
4. drift: ``drift.yml`` changes settings behind the role's back; the audits then fail exactly
   the controls it names (``kijun_drift_controls``) and no other, check mode reports
   exactly the role tasks it names (``kijun_drift_changes``) as changed, and applying the role
   with the tags of those controls converges without a failed or rescued task and leaves the
   audits clean (:func:`restore`: what the audit reports, apply clears);
5. each further case of ``drift_cases.yml`` (the lab's drift tests read the same file): the
   case's shell command drifts the instances, the audits fail exactly the case's controls,
   and applying the role with their tags clears them (:func:`restore`). When the test session
   runs the same cases on the lab (``KIJUN_DRIFT_CASES_ON_LAB=1``, set by ``make test``), they
   are left to the lab;
6. the admin still logs in after the drift.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kijun import lab, paths, podman

# Set to 1 by the test session when the lab's drift tests run drift_cases.yml on the lab.
CASES_ON_LAB = "KIJUN_DRIFT_CASES_ON_LAB"


class RoleTestFailure(AssertionError):
    """A promise of the role does not hold; the message says which and shows the evidence."""


@dataclass(frozen=True)
class DriftCase:
    name: str
    command: str  # run as root on each target host
    controls: frozenset[str]
    group: str | None = None  # only hosts of this inventory group (None: every host)
    # the file the case writes beside the role's own to compete with it: after the restore its
    # competing line is neutralised (or the file gone) and a copy is in kijun's backups
    competing: str | None = None


# After a restore, on a host: the competing file no longer assigns anything active that the
# role's marker does not name, and kijun's backup directory holds a copy of it.
COMPETING_CHECK = (
    'f={path}; b=$(find /var/backups/kijun -path "*$f" -type f 2>/dev/null | head -n 1); '
    '[ -n "$b" ] || {{ echo "no backup of $f under /var/backups/kijun"; exit 1; }}; '
    '[ ! -e "$f" ] || grep -q "^# kijun(.*) neutralised: " "$f" '
    '|| {{ echo "$f holds no neutralised line"; exit 1; }}'
)


def competing_check(path: str) -> str:
    """The shell command that checks, on a host, what a competing case's restore left."""
    return COMPETING_CHECK.format(path=shlex.quote(path))


def load_drift_cases(path: Path) -> list[DriftCase]:
    """Drift cases: ``[{name, command, controls: [ID...], group?}]``."""
    if not path.is_file():
        return []
    raw = yaml.safe_load(path.read_text()) or []
    cases = []
    for i, entry in enumerate(raw):
        unknown = set(entry) - {"name", "command", "controls", "group", "competing"}
        if unknown or not {"name", "command", "controls"} <= set(entry):
            raise RoleTestFailure(
                f"{path}: case {i + 1} needs name, command and controls (optional group, "
                f"competing); unknown keys: {sorted(unknown)}"
            )
        cases.append(
            DriftCase(
                entry["name"], entry["command"], frozenset(entry["controls"]), entry.get("group"),
                entry.get("competing"),
            )
        )  # fmt: skip
    return cases


@dataclass(frozen=True)
class Scenario:
    directory: Path
    inventory: Path
    audit_modules: tuple[str, ...]
    drift_controls: frozenset[str]
    drift_changes: frozenset[str]
    cases: tuple[DriftCase, ...] = ()

    @property
    def hosts(self) -> list[str]:
        inv = yaml.safe_load(next(self.inventory.glob("ansible_inventory.yml")).read_text())
        return sorted(inv["all"]["hosts"])


def load_scenario(directory: Path, inventory: Path) -> Scenario:
    drift_file = directory / "drift.yml"
    plays = yaml.safe_load(drift_file.read_text())
    play_vars: dict[str, Any] = plays[0].get("vars", {})
    try:
        modules = tuple(play_vars["kijun_audit_modules"])
        controls = frozenset(play_vars["kijun_drift_controls"])
        changes = frozenset(play_vars["kijun_drift_changes"])
    except KeyError as exc:
        raise RoleTestFailure(
            f"{drift_file}: the first play must set vars kijun_audit_modules, "
            f"kijun_drift_controls and kijun_drift_changes (missing {exc})"
        ) from None
    cases = tuple(load_drift_cases(directory / "drift_cases.yml"))
    return Scenario(directory, inventory, modules, controls, changes, cases)


def _group_hosts(scenario: Scenario, group: str | None) -> list[str]:
    if group is None:
        return scenario.hosts
    from kijun import variables

    hosts = variables.load(scenario.inventory)
    return sorted(h for h, hv in hosts.items() if group in hv.groups)


def _env() -> dict[str, str]:
    env = podman.environ()
    env["ANSIBLE_CONFIG"] = str(paths.repo_root() / "ansible.cfg")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=_env(),
        cwd=paths.repo_root(),
        check=False,
        **kwargs,
        stdin=subprocess.DEVNULL,
    )


def playbook(scenario: Scenario, name: str, *extra: str) -> dict[str, Any]:
    """Run a scenario playbook with the JSON callback; return the parsed result."""
    env_cb = {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i", str(scenario.inventory),
            str(scenario.directory / name),
            *extra,
        ],
        capture_output=True, text=True, check=False, cwd=paths.repo_root(),
        env={**_env(), **env_cb, "ANSIBLE_ROLES_PATH": str(paths.repo_root() / "roles")},
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise RoleTestFailure(
            f"{name} {' '.join(extra)} did not run (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        ) from None
    failed = {h: s for h, s in result["stats"].items() if s.get("failures") or s.get("unreachable")}
    if failed:
        raise RoleTestFailure(f"{name} {' '.join(extra)} failed on {failed}: {_failures(result)}")
    return result


def _failures(result: dict[str, Any]) -> list[str]:
    out = []
    for play in result.get("plays", []):
        for task in play.get("tasks", []):
            for host, res in task.get("hosts", {}).items():
                if res.get("failed") or res.get("unreachable"):
                    out.append(f"{host}: {task['task']['name']}: {res.get('msg', '')}")
    return out


def neutralised(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(host, entry) for each competing setting a task neutralised (or would, in check mode)."""
    return [
        (host, entry)
        for play in result.get("plays", [])
        for task in play.get("tasks", [])
        for host, res in task.get("hosts", {}).items()
        for entry in res.get("neutralised") or []
    ]


def changed_tasks(result: dict[str, Any]) -> dict[str, set[str]]:
    changed: dict[str, set[str]] = {}
    for play in result.get("plays", []):
        for task in play.get("tasks", []):
            for host, res in task.get("hosts", {}).items():
                if res.get("changed"):
                    # "role : task name" -> "task name"
                    name = str(task["task"]["name"]).split(" : ", 1)[-1]
                    changed.setdefault(host, set()).add(name)
    return changed


def audit(scenario: Scenario) -> list[dict[str, Any]]:
    """Run the scenario's audit modules against its instances; return the per-check records."""
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.json"
        modules = [
            str(paths.repo_root() / "audits" / f"test_{m}.py") for m in scenario.audit_modules
        ]
        hosts = ",".join(f"podman://{h}" for h in scenario.hosts)
        proc = _run(
            [
                sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                "--rootdir", str(paths.repo_root() / "audits"),
                f"--hosts={hosts}", f"--kijun-inventory={scenario.inventory}",
                f"--kijun-results={results}", *modules,
            ]
        )  # fmt: skip
        if not results.is_file():
            raise RoleTestFailure(f"the audits did not run:\n{proc.stdout[-3000:]}{proc.stderr}")
        records: list[dict[str, Any]] = json.loads(results.read_text())["checks"]
    if proc.returncode not in (0, 1) or not records:
        raise RoleTestFailure(f"the audits did not run cleanly:\n{proc.stdout[-3000:]}")
    return records


def failing(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each control with a check that neither passed nor was not applicable, and why."""
    out: dict[str, list[str]] = {}
    for r in records:
        if r["outcome"] not in ("pass", "not_applicable"):
            out.setdefault(r["control"], []).append(
                f"{r['host']} {r['check']}: {r['outcome']} {r['message']}"
            )
    return out


def admin_can_log_in(host: str) -> None:
    """The lab admin logs in over SSH with the lab key and runs sudo on the instance."""
    info = podman.run_json(["inspect", host])
    addresses = [n["IPAddress"] for n in info[0]["NetworkSettings"]["Networks"].values()]
    if not addresses:
        raise RoleTestFailure(f"{host}: no network address to log in to")
    proc = _run(
        [
            "ssh", "-i", str(lab.key_path()),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
            f"{lab.ADMIN_USER}@{addresses[0]}", "sudo -n id -u",
        ],
        timeout=60,
    )  # fmt: skip
    if proc.returncode != 0 or proc.stdout.strip() != "0":
        raise RoleTestFailure(
            f"{host}: the admin can no longer log in over SSH and use sudo: {proc.stderr.strip()}"
        )


def restore(scenario: Scenario, controls: frozenset[str], what: str) -> None:
    """kijun's promise, "what the audit reports, apply clears": the role applied with the tags
    of the reported controls alone (as ``kijun apply --control ID`` does) converges without a
    failed or rescued task, and the next audit of the instances is clean."""
    tags = ",".join(sorted(controls))
    result = playbook(scenario, "converge.yml", "--tags", tags)
    rescued = {h: s["rescued"] for h, s in result["stats"].items() if s.get("rescued")}
    if rescued:
        raise RoleTestFailure(
            f"{what}: applying --tags {tags} took a rescue path on {rescued}: {_failures(result)}"
        )
    found = failing(audit(scenario))
    if found:
        raise RoleTestFailure(f"{what}: after applying --tags {tags} the audits still fail {found}")


def verify(scenario: Scenario, say: Any = print) -> None:
    for host in scenario.hosts:
        admin_can_log_in(host)
    say("admin logs in over SSH and uses sudo on every instance")

    result = playbook(scenario, "converge.yml", "--check", "--diff")
    changed = changed_tasks(result)
    if changed:
        raise RoleTestFailure(f"check mode on the converged instances reports changes: {changed}")
    say("check mode after converge: zero changes")

    found = failing(audit(scenario))
    if found:
        raise RoleTestFailure(f"the audits fail on the converged instances: {found}")
    say(f"audits {', '.join(scenario.audit_modules)} pass")

    for extra in sorted(scenario.directory.glob("verify_*.yml")):
        playbook(scenario, extra.name)
        say(f"{extra.name} passes")

    playbook(scenario, "drift.yml")
    found = failing(audit(scenario))
    if set(found) != scenario.drift_controls:
        raise RoleTestFailure(
            f"after drift the audits should fail exactly {sorted(scenario.drift_controls)}, "
            f"they fail {sorted(found)}: {found}"
        )
    say(f"drift is reported against {', '.join(sorted(found))} and no other control")

    changed = changed_tasks(playbook(scenario, "converge.yml", "--check", "--diff"))
    reported = set().union(*changed.values()) if changed else set()
    if reported != scenario.drift_changes:
        raise RoleTestFailure(
            f"check mode on the drifted instances should report {sorted(scenario.drift_changes)}, "
            f"it reports {changed}"
        )
    say(f"check mode on the drifted instances reports exactly: {', '.join(sorted(reported))}")
    restore(scenario, scenario.drift_controls, "drift.yml")
    say(f"applying --tags {','.join(sorted(scenario.drift_controls))} clears it: the audits pass")

    if scenario.cases and os.environ.get(CASES_ON_LAB) == "1":
        # `make test` sets this when the lab's drift tests run the same cases on the lab
        # (tests/test_baseline_lab.py): each case is then proven once per test run, there.
        say(f"drift cases of drift_cases.yml: {len(scenario.cases)}, run on the lab in this run")
        cases: tuple[DriftCase, ...] = ()
    else:
        cases = scenario.cases
    for case in cases:
        # each case starts from instances the previous restore left clean (audited)
        targets = _group_hosts(scenario, case.group)
        if not targets:
            raise RoleTestFailure(f"drift case {case.name!r}: no instance in group {case.group}")
        for host in targets:
            proc = podman.run(["exec", host, "/bin/sh", "-c", case.command], check=False)
            if proc.returncode != 0:
                raise RoleTestFailure(
                    f"drift case {case.name!r}: the command failed on {host}: {proc.stderr}"
                )
        found = failing(audit(scenario))
        if set(found) != case.controls:
            raise RoleTestFailure(
                f"drift case {case.name!r} should fail exactly {sorted(case.controls)}, "
                f"the audits fail {sorted(found)}: {found}"
            )
        say(f"drift case {case.name!r} is reported against {', '.join(sorted(found))}")
        if case.competing:
            # check mode names the competing file it would neutralise, and changes nothing
            checked = playbook(scenario, "converge.yml", "--check", "--tags",
                               ",".join(sorted(case.controls)))  # fmt: skip
            named = {(h, n["path"]) for h, n in neutralised(checked)}
            if not {(h, case.competing) for h in targets} <= named:
                raise RoleTestFailure(
                    f"drift case {case.name!r}: check mode does not name {case.competing} as "
                    f"to be neutralised on {targets}; it names {sorted(named)}"
                )
            say(f"drift case {case.name!r}: check mode would neutralise {case.competing}")
        restore(scenario, case.controls, f"drift case {case.name!r}")
        if case.competing:
            for host in targets:
                proc = podman.run(
                    ["exec", host, "/bin/sh", "-c", competing_check(case.competing)], check=False
                )
                if proc.returncode != 0:
                    raise RoleTestFailure(
                        f"drift case {case.name!r} on {host}: {proc.stdout.strip()}"
                    )
        say(f"drift case {case.name!r} is cleared by applying --tags {','.join(sorted(found))}")
    for host in scenario.hosts:
        admin_can_log_in(host)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kijun.roletest", description=__doc__)
    parser.add_argument("--scenario", type=Path, required=True, help="molecule scenario directory")
    parser.add_argument("--inventory", type=Path, required=True, help="molecule's inventory dir")
    args = parser.parse_args(argv)
    try:
        verify(load_scenario(args.scenario, args.inventory))
    except RoleTestFailure as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print("role verified")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
