"""The pytest plugin behind kijun's audits (``audits/conftest.py`` imports it).

Every check is a test function marked with the control it verifies::

    @pytest.mark.control("PW-01")
    def test_pwquality_minlen(snapshot, expected, audit): ...

and named after one of that control's ``audit.checks`` in the catalog (``test_<check>``) in the
module ``test_<audit.module>.py``; a mismatch stops the run before anything is checked.

Fixtures:

* ``expected`` — the host's variables as Ansible resolves them (role defaults < profile <
  group_vars < host_vars): the values the roles applied.
* ``snapshot`` — the outputs of every module's ``COLLECT`` commands, gathered from each host in
  one remote command; all hosts are collected in parallel before the first check runs. The keys
  a check reads become its evidence.
* ``audit`` — records the observed value next to the expected one and fails the check when they
  do not agree.
* ``inventory_hosts(group)`` — testinfra hosts of an inventory group, reached the way the audited
  host is. Only for a check that must see another host at the time of the check (LG-06: the
  probe message the audited host logged in its collection step arrives at the log collector);
  such a check runs read-only commands on those hosts.

A control that does not apply to the host (its zones and function groups, or the profile says
so) is skipped as ``not_applicable``. A host whose collection failed is not assessed: its checks
end as ``not_assessed``, never as a pass.

Options: ``--kijun-inventory`` (default: testinfra's ``--ansible-inventory``, else the lab),
``--kijun-results=FILE`` (one JSON record per check, plus each host's collection state),
``--kijun-control=ID`` (only that control's checks). ``kijun audit`` drives the same plugin
in-process and reads the records from :data:`STATE`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from kijun import catalog as catalog_mod
from kijun import paths, tailoring, variables
from kijun import snapshot as snap

os.environ.setdefault("ANSIBLE_CONFIG", str(paths.repo_root() / "ansible.cfg"))
PARALLEL_HOSTS = 32


@dataclass
class AuditState:
    """What one pytest session of audits found; ``kijun audit`` reads it after the session."""

    catalog: catalog_mod.Catalog | None = None
    hosts: dict[str, variables.HostVars] = field(default_factory=dict)
    profile: catalog_mod.Profile | None = None
    commands: dict[str, str] = field(default_factory=dict)
    snapshots: dict[str, snap.Snapshot] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # host -> why it was not assessed
    records: list[dict[str, Any]] = field(default_factory=list)
    on_collected: Callable[[str, str | None], None] | None = None  # progress: (host, error)
    on_record: Callable[[dict[str, Any]], None] | None = None  # progress: one check done
    preloaded: dict[str, variables.HostVars] | None = None  # hosts resolved by the caller
    preloaded_catalog: catalog_mod.Catalog | None = None
    host_spec: Callable[[str], str] | None = None  # testinfra spec of any inventory host


STATE = pytest.StashKey[AuditState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kijun")
    group.addoption("--kijun-inventory", help="inventory whose variables are expected")
    group.addoption("--kijun-results", help="write the check records to this JSON file")
    group.addoption("--kijun-control", action="append", default=[], help="only this control")


def _inventory(config: pytest.Config) -> Path:
    value = config.getoption("kijun_inventory") or config.getoption("ansible_inventory", None)
    return Path(value) if value else paths.repo_root() / "inventories" / "lab"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "control(id): the catalog control a check verifies")
    if STATE not in config.stash:
        config.stash[STATE] = AuditState()


def _check_items(cat: catalog_mod.Catalog, items: list[pytest.Item]) -> list[str]:
    problems: list[str] = []
    for item in items:
        marks = list(item.iter_markers("control"))
        where = f"{item.path.name}::{getattr(item, 'originalname', item.name)}"
        if len(marks) != 1 or len(marks[0].args) != 1:
            problems.append(f"{where}: mark the check with exactly one @pytest.mark.control(ID)")
            continue
        control = cat.controls.get(marks[0].args[0])
        if control is None:
            problems.append(f"{where}: unknown control {marks[0].args[0]!r}")
            continue
        check = getattr(item, "originalname", item.name).removeprefix("test_")
        if item.path.name != f"test_{control.audit.module}.py":
            problems.append(f"{where}: {control.id} is audited in test_{control.audit.module}.py")
        if check not in control.audit.checks:
            problems.append(
                f"{where}: {check!r} is not one of {control.id}'s checks in the catalog "
                f"({', '.join(control.audit.checks)}); add it to {control.file.name}"
            )
    return problems


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = config.stash[STATE]
    cat = state.preloaded_catalog or catalog_mod.load_catalog_cached()
    state.catalog = cat
    problems = _check_items(cat, items)
    if problems:
        raise pytest.UsageError("audit checks do not match the catalog:\n" + "\n".join(problems))
    wanted = set(config.getoption("kijun_control") or [])
    if wanted:
        unknown = sorted(wanted - set(cat.controls))
        if unknown:
            raise pytest.UsageError(f"unknown control(s): {', '.join(unknown)}")
        keep = [i for i in items if _control_id(i) in wanted]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
    units: set[str] = set()
    for item in items:
        state.commands.update(getattr(item.module, "COLLECT", {}))  # type: ignore[attr-defined]
        units.update(getattr(item.module, "UNITS", ()))  # type: ignore[attr-defined]
    if units:
        state.commands[snap.UNITS_KEY] = snap.units_command(units)
    inventory = _inventory(config)
    state.hosts = (
        state.preloaded if state.preloaded is not None else variables.load_cached(inventory)
    )
    settings = tailoring.read_settings(inventory)
    if settings.profile:
        state.profile = catalog_mod.load_profile_cached(settings.profile, cat)
    _collect_all(state, items)


def _control_id(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("control")
    return str(mark.args[0]) if mark and mark.args else None


def _testinfra_host(item: pytest.Item) -> Any:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("_testinfra_host") if callspec else None


def inventory_name(host: Any) -> str:
    """The inventory name of a testinfra host (ansible://name, ssh://name, podman://name)."""
    name = getattr(host.backend, "host", None)
    return name if isinstance(name, str) else str(host.backend.get_hostname())


_ENCODED = re.compile(r"[A-Za-z0-9+/=]{200,}")
ERROR_CHARS = 600  # of a host's error kept in every not-assessed result


def _short_error(exc: BaseException, command: str) -> str:
    """What went wrong reading a host, without the (long, encoded) collection command that
    testinfra's errors repeat, and cut to ``ERROR_CHARS``."""
    text = f"{type(exc).__name__}: {exc}".replace(command, "<kijun collection command>")
    text = " ".join(_ENCODED.sub("<encoded>", text).split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


def _collect_all(state: AuditState, items: list[pytest.Item]) -> None:
    """One collection command per host, all hosts in parallel, before any check runs."""
    hosts: dict[str, Any] = {}
    for item in items:
        host = _testinfra_host(item)
        if host is not None:
            hosts.setdefault(inventory_name(host), host)
    if not hosts or not state.commands:
        return

    def collect(name: str) -> None:
        line, marker = snap.remote_command(state.commands)
        try:
            result = hosts[name].run(line)
            # Files on a host may hold any bytes (Latin-1, broken UTF-8, NUL): what is not UTF-8
            # is read as U+FFFD, so that the host is still assessed and the evidence shows it.
            stdout = result.stdout_bytes.decode("utf-8", errors="replace")
            stderr = result.stderr_bytes.decode("utf-8", errors="replace")
            if result.rc != 0 and not stdout:
                reason = (stderr or f"exit {result.rc}").strip().splitlines()[-1:]
                raise snap.SnapshotError(reason[0] if reason else f"exit {result.rc}")
            state.snapshots[name] = snap.Snapshot(
                name, snap.parse(stdout, marker, sorted(state.commands))
            )
            error = None
        except Exception as exc:  # noqa: BLE001 - any failure means the host was not assessed
            error = _short_error(exc, line)
            state.failures[name] = error
        if state.on_collected is not None:
            state.on_collected(name, error)

    with ThreadPoolExecutor(max_workers=min(PARALLEL_HOSTS, len(hosts))) as pool:
        list(pool.map(collect, sorted(hosts)))


@pytest.fixture(scope="module")
def hostvars(host: Any, pytestconfig: pytest.Config) -> variables.HostVars:
    name = inventory_name(host)
    try:
        return pytestconfig.stash[STATE].hosts[name]
    except KeyError:
        raise pytest.UsageError(
            f"host {name!r} is not in the inventory {_inventory(pytestconfig)}"
        ) from None


@pytest.fixture(scope="module")
def expected(hostvars: variables.HostVars) -> dict[str, Any]:
    return hostvars.values


@pytest.fixture(scope="module")
def inventory_hosts(host: Any, pytestconfig: pytest.Config) -> Callable[[str], dict[str, Any]]:
    import testinfra

    opt = pytestconfig.option
    names = ("connection", "ssh_config", "ssh_identity_file", "sudo", "sudo_user")
    options = {n: getattr(opt, n, None) for n in (*names, "ansible_inventory", "force_ansible")}

    state = pytestconfig.stash[STATE]

    def spec(name: str) -> Any:
        if state.host_spec is not None:  # kijun audit knows how to reach every host
            return testinfra.get_host(state.host_spec(name))
        return testinfra.get_host(f"{host.backend.NAME}://{name}", **options)

    def hosts(group: str) -> dict[str, Any]:
        members = sorted(n for n, hv in state.hosts.items() if group in hv.groups)
        return {name: host if name == inventory_name(host) else spec(name) for name in members}

    return hosts


class TrackedSnapshot:
    """A host's snapshot that remembers which outputs a check read (its evidence)."""

    def __init__(self, inner: snap.Snapshot) -> None:
        self._inner = inner
        self.host = inner.host
        self.read: list[str] = []

    def __getitem__(self, key: str) -> snap.Output:
        out = self._inner[key]
        if key not in self.read:
            self.read.append(key)
        return out

    def text(self, key: str) -> str:
        return self[key].stdout

    def __contains__(self, key: str) -> bool:
        return key in self._inner.outputs

    def add(self, key: str, stdout: str, rc: int = 0) -> snap.Output:
        """Add a check's own evidence (see :meth:`kijun.snapshot.Snapshot.add`), read by it."""
        self._inner.add(key, stdout, rc)
        return self[key]

    def unit(self, name: str) -> snap.Unit:
        self[snap.UNITS_KEY]  # recorded as read: the unit states are this check's evidence
        return self._inner.unit(name)


NOT_ASSESSED = "not_assessed"  # the skip reason's prefix for a host whose state was not read


@pytest.fixture
def snapshot(
    request: pytest.FixtureRequest, hostvars: variables.HostVars, pytestconfig: pytest.Config
) -> TrackedSnapshot:
    state = pytestconfig.stash[STATE]
    # A skip, not an error: the check did not run, and pytest builds no traceback for it (a
    # host that cannot be reached would otherwise cost a traceback per check).
    if hostvars.name in state.failures:
        pytest.skip(f"{NOT_ASSESSED}: {hostvars.name}: {state.failures[hostvars.name]}")
    if hostvars.name not in state.snapshots:
        pytest.skip(f"{NOT_ASSESSED}: {hostvars.name}: its state was not collected")
    tracked = TrackedSnapshot(state.snapshots[hostvars.name])
    request.node.stash[_READ] = tracked.read
    return tracked


_READ = pytest.StashKey[list[str]]()


def applicability(
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

    def expect(
        self, ok: bool, *, expected: Any, observed: Any, message: str = "", source: str = ""
    ) -> None:
        """Record one comparison; ``source``: where the effective value was set (``path:line``,
        the file that won among the drop-ins and includes the service reads)."""
        entry = {"expected": expected, "observed": observed, "ok": bool(ok), "message": message}
        if source:
            entry["source"] = source
        self.item.user_properties.append(("kijun", entry))
        if not ok:
            text = f"{self.control.id} on {self.host}: expected {expected!r}, observed {observed!r}"
            pytest.fail(f"{text}. {message}".rstrip(". "), pytrace=False)

    def equal(self, observed: Any, expected: Any, message: str = "", source: str = "") -> None:
        self.expect(observed == expected, expected=expected, observed=observed, message=message,
                    source=source)  # fmt: skip

    def at_least(self, observed: Any, minimum: Any, message: str = "", source: str = "") -> None:
        self.expect(_compares(observed, minimum, 1), expected=f">= {minimum}", observed=observed,
                    message=message, source=source)  # fmt: skip

    def at_most(self, observed: Any, maximum: Any, message: str = "", source: str = "") -> None:
        self.expect(_compares(observed, maximum, -1), expected=f"<= {maximum}", observed=observed,
                    message=message, source=source)  # fmt: skip


def _compares(observed: Any, bound: Any, sign: int) -> bool:
    """observed >= bound (sign 1) or <= bound (sign -1); a missing or incomparable value fails."""
    try:
        return bool(observed >= bound) if sign > 0 else bool(observed <= bound)
    except TypeError:
        return False


@pytest.fixture
def audit(request: pytest.FixtureRequest, hostvars: variables.HostVars) -> Audit:
    state = request.config.stash[STATE]
    assert state.catalog is not None
    control = state.catalog.controls[str(_control_id(request.node))]
    why = applicability(control, hostvars, state.profile)
    if why is not None:
        pytest.skip(f"not_applicable: {why}")
    return Audit(request.node, control, hostvars.name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _record(item, report, call)
    return report


def _record(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
    read: list[str] = item.stash.get(_READ, [])
    host_param = _testinfra_host(item)
    host = inventory_name(host_param) if host_param is not None else None
    values = [cast(dict[str, Any], v) for k, v in item.user_properties if k == "kijun"]
    failing = next((v for v in values if not v["ok"]), values[-1] if values else None)
    lines = report.longreprtext.strip().splitlines() if not report.passed else []
    message = lines[-1] if lines else ""
    if report.skipped:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        reason = reason.removeprefix("Skipped: ")
        if reason.startswith(f"{NOT_ASSESSED}: "):
            outcome, message = "not_assessed", reason.removeprefix(f"{NOT_ASSESSED}: ")
        else:
            outcome = "not_applicable" if "not_applicable" in reason else "error"
            message = reason.removeprefix("not_applicable: ")
    elif report.passed:
        outcome = "pass"
    else:
        outcome = "fail" if failing and not failing["ok"] and report.when == "call" else "error"
    record = {
        "host": host,
        "control": _control_id(item),
        "check": getattr(item, "originalname", item.name).removeprefix("test_"),
        "outcome": outcome,
        "expected": failing["expected"] if failing else None,
        "observed": failing["observed"] if failing else None,
        "message": message,
        "source": (failing or {}).get("source", ""),
        "evidence": list(read),
        "time": time.time(),
    }
    state = item.config.stash[STATE]
    state.records.append(record)
    if state.on_record is not None:
        state.on_record(record)


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = session.config.getoption("kijun_results", None)
    if target:
        state = session.config.stash[STATE]
        doc = {"checks": state.records, "not_collected": state.failures}
        Path(target).write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=str))
