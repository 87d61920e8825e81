"""kijun audits: testinfra checks of a host's state against the values its roles applied.

Every check is a test function marked with the control it verifies::

    @pytest.mark.control("PW-01")
    def test_pwquality_minlen(snapshot, expected, audit): ...

and named after one of that control's ``audit.checks`` in the catalog (``test_<check>``) in the
module ``test_<audit.module>.py``; a mismatch stops the run before anything is checked.

Fixtures:
* ``expected`` — the host's variables as Ansible resolves them (role defaults < profile <
  group_vars < host_vars): the values the roles applied.
* ``snapshot`` — the outputs of every module's ``COLLECT`` commands, gathered from the host in
  one remote command (see kijun/snapshot.py).
* ``audit`` — records the observed value next to the expected one and fails the check when they
  do not agree.
A control that does not apply to the host (its zones and function groups, or the profile says
so) is skipped with the reason ``not_applicable``.

Run: ``pytest audits --hosts=ansible://all --ansible-inventory=inventories/lab`` (or by
``kijun audit``); ``--kijun-results=FILE`` writes one JSON record per check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kijun import catalog as catalog_mod
from kijun import paths, tailoring, variables
from kijun import snapshot as snap

ROOT = paths.repo_root()
os.environ.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))

_CATALOG = pytest.StashKey[catalog_mod.Catalog]()
_HOSTS = pytest.StashKey[dict[str, variables.HostVars]]()
_PROFILE = pytest.StashKey["catalog_mod.Profile | None"]()
_COLLECT = pytest.StashKey[dict[str, str]]()
_SNAPSHOTS = pytest.StashKey[dict[str, "snap.Snapshot | Exception"]]()
_RECORDS = pytest.StashKey[list[dict[str, Any]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kijun")
    group.addoption("--kijun-inventory", help="inventory whose variables are expected")
    group.addoption("--kijun-results", help="write one JSON record per check to this file")


def _inventory(config: pytest.Config) -> Path:
    value = config.getoption("kijun_inventory") or config.getoption("ansible_inventory", None)
    return Path(value) if value else ROOT / "inventories" / "lab"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "control(id): the catalog control a check verifies")
    config.stash[_RECORDS] = []
    config.stash[_SNAPSHOTS] = {}


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    cat = catalog_mod.load_catalog()
    config.stash[_CATALOG] = cat
    problems: list[str] = []
    commands: dict[str, str] = {}
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        module = item.module
        commands.update(getattr(module, "COLLECT", {}))
        marks = list(item.iter_markers("control"))
        where = f"{item.path.name}::{item.originalname}"
        if len(marks) != 1 or len(marks[0].args) != 1:
            problems.append(f"{where}: mark the check with exactly one @pytest.mark.control(ID)")
            continue
        control = cat.controls.get(marks[0].args[0])
        if control is None:
            problems.append(f"{where}: unknown control {marks[0].args[0]!r}")
            continue
        check = item.originalname.removeprefix("test_")
        if item.path.name != f"test_{control.audit.module}.py":
            problems.append(f"{where}: {control.id} is audited in test_{control.audit.module}.py")
        if check not in control.audit.checks:
            problems.append(
                f"{where}: {check!r} is not one of {control.id}'s checks in the catalog "
                f"({', '.join(control.audit.checks)}); add it to {control.file.name}"
            )
    if problems:
        raise pytest.UsageError("audit checks do not match the catalog:\n" + "\n".join(problems))
    config.stash[_COLLECT] = commands
    inventory = _inventory(config)
    config.stash[_HOSTS] = variables.load(inventory)
    settings = tailoring.read_settings(inventory)
    config.stash[_PROFILE] = (
        catalog_mod.load_profile(settings.profile, cat) if settings.profile else None
    )


def inventory_name(host: Any) -> str:
    """The inventory name of a testinfra host (ansible://name, podman://name, ssh://name)."""
    backend = host.backend
    return str(getattr(backend, "host", None) or backend.get_hostname())


@pytest.fixture(scope="module")
def hostvars(host: Any, pytestconfig: pytest.Config) -> variables.HostVars:
    name = inventory_name(host)
    try:
        return pytestconfig.stash[_HOSTS][name]
    except KeyError:
        raise pytest.UsageError(
            f"host {name!r} is not in the inventory {_inventory(pytestconfig)}"
        ) from None


@pytest.fixture(scope="module")
def expected(hostvars: variables.HostVars) -> dict[str, Any]:
    return hostvars.values


@pytest.fixture(scope="module")
def snapshot(host: Any, hostvars: variables.HostVars, pytestconfig: pytest.Config) -> snap.Snapshot:
    cache = pytestconfig.stash[_SNAPSHOTS]
    if hostvars.name not in cache:
        commands = pytestconfig.stash[_COLLECT]
        line, marker = snap.remote_command(commands)
        try:
            result = host.run(line)
            cache[hostvars.name] = snap.Snapshot(
                hostvars.name, snap.parse(result.stdout, marker, sorted(commands))
            )
        except Exception as exc:  # noqa: BLE001 - any failure means the host was not assessed
            cache[hostvars.name] = exc
    value = cache[hostvars.name]
    if isinstance(value, Exception):
        raise snap.SnapshotError(f"{hostvars.name}: collection failed: {value}")
    return value


def _applicability(
    control: catalog_mod.Control, hv: variables.HostVars, profile: catalog_mod.Profile | None
) -> str | None:
    """Why the control does not apply to the host, or None when it does."""
    if profile is not None:
        pc = profile.controls.get(control.id)
        if pc is not None and not pc.applicable:
            reason = pc.reason.en if pc.reason else "excluded by the profile"
            return f"profile {profile.name}: {reason}"
    if control.functions is not None and not hv.groups & set(control.functions):
        return f"only for {', '.join(control.functions)}"
    # A host in no zone group (the zone gateway) has a leg in every zone.
    if hv.zones and not hv.zones & set(control.zones):
        return f"only in zone(s) {', '.join(control.zones)}"
    return None


class Audit:
    """Records expected and observed values for one check and fails it when they disagree."""

    def __init__(self, item: pytest.Item, control: catalog_mod.Control, host: str) -> None:
        self.item = item
        self.control = control
        self.host = host

    def expect(self, ok: bool, *, expected: Any, observed: Any, message: str = "") -> None:
        self.item.user_properties.append(
            (
                "kijun",
                {"expected": expected, "observed": observed, "ok": bool(ok), "message": message},
            )
        )
        if not ok:
            text = f"{self.control.id} on {self.host}: expected {expected!r}, observed {observed!r}"
            pytest.fail(f"{text}. {message}".rstrip(". "), pytrace=False)

    def equal(self, observed: Any, expected: Any, message: str = "") -> None:
        self.expect(observed == expected, expected=expected, observed=observed, message=message)

    def at_least(self, observed: Any, minimum: Any, message: str = "") -> None:
        ok = observed is not None and observed >= minimum
        self.expect(ok, expected=f">= {minimum}", observed=observed, message=message)

    def at_most(self, observed: Any, maximum: Any, message: str = "") -> None:
        ok = observed is not None and observed <= maximum
        self.expect(ok, expected=f"<= {maximum}", observed=observed, message=message)


@pytest.fixture
def audit(request: pytest.FixtureRequest, hostvars: variables.HostVars) -> Audit:
    cat = request.config.stash[_CATALOG]
    control = cat.controls[request.node.get_closest_marker("control").args[0]]
    why = _applicability(control, hostvars, request.config.stash[_PROFILE])
    if why is not None:
        pytest.skip(f"not_applicable: {why}")
    return Audit(request.node, control, hostvars.name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _record(item, report)
    return report


def _record(item: pytest.Item, report: pytest.TestReport) -> None:
    mark = item.get_closest_marker("control")
    callspec = getattr(item, "callspec", None)
    host_param = callspec.params.get("_testinfra_host") if callspec else None
    host = inventory_name(host_param) if host_param is not None else None
    values = [v for k, v in item.user_properties if k == "kijun"]
    failing = next((v for v in values if not v["ok"]), values[-1] if values else None)
    if report.skipped:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        outcome = "not_applicable" if "not_applicable" in reason else "skipped"
        message = reason.removeprefix("Skipped: ")
    elif report.when == "setup":
        outcome, message = "error", report.longreprtext.strip().splitlines()[-1:]
        message = message[0] if message else ""
    else:
        outcome = (
            "pass" if report.passed else ("fail" if failing and not failing["ok"] else "error")
        )
        message = "" if report.passed else report.longreprtext.strip().splitlines()[-1]
    item.config.stash[_RECORDS].append(
        {
            "host": host,
            "control": mark.args[0] if mark else None,
            "check": getattr(item, "originalname", item.name).removeprefix("test_"),
            "outcome": outcome,
            "expected": failing["expected"] if failing else None,
            "observed": failing["observed"] if failing else None,
            "message": message,
        }
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = session.config.getoption("kijun_results", None)
    if target:
        Path(target).write_text(
            json.dumps(session.config.stash[_RECORDS], ensure_ascii=False, indent=2, default=str)
        )
