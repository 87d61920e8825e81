"""``kijun audit``: drift audits across the inventory, one status per control per host.

The run: resolve the inventory's hosts and their expected values, select hosts (``--limit``)
and audit modules (``--area``, ``--control``), run the ``audits/`` modules with pytest and
testinfra in-process (every host collected in parallel, one round trip each), roll the checks
up to one status per control per host, apply the deviation register, compare with the previous
run, and write the evidence bundle.

One audit of an inventory at a time: a run holds a lock (flock) on a file in the state
directory named after the inventory's resolved path, from before it starts until it is
recorded. Another run of the same inventory is refused (:class:`AuditLockedError`, naming the
inventory, the lock file and the PID holding it) or, with ``wait``, waits for it to end. Runs of
different inventories go on side by side.

An interrupted run (SIGINT: Ctrl-C; SIGTERM: ``kill``, ``systemctl stop``) stops where it is,
writes no bundle and records nothing: :class:`Interrupted` is raised, after the working files
and the bundle's partial files are removed. A signal that arrives once the bundle is complete
and is being made durable, renamed and recorded (well under a second) is held until that is
done: the run then ends as it would have, and :attr:`Outcome.late_signal` says so.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kijun import __version__, paths, results, targets, variables
from kijun import catalog as catalog_mod
from kijun import exceptions as exceptions_mod
from kijun.results import JST, CheckResult, Clause, ControlResult, HostResult, Status

EXIT_OK = 0  # every assessed control passes or is waived, every host assessed
EXIT_DRIFT = 1  # a control fails or errs, or a host could not be assessed
EXIT_UNUSABLE = 2  # nothing could be assessed, or the command was used wrongly


class UsageError(ValueError):
    """The command was used wrongly; the message says what to do."""


class AuditRunError(RuntimeError):
    """The audit modules themselves could not run (nothing was assessed)."""


class AuditLockedError(RuntimeError):
    """Another run of the same inventory holds its lock; the message says which and what to do."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT: Ctrl-C; SIGTERM: kill, systemctl stop)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


@dataclass
class AuditOptions:
    inventory: Path
    limit: str | None = None
    profile: str | None = None  # overrides the inventory's kijun.yml
    areas: list[str] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)
    out: Path | None = None
    today: dt.date | None = None  # for exception validity; default: today in JST
    wait: bool = False  # another run of the inventory holds its lock: wait for it (else refuse)


@dataclass
class Progress:
    """Callbacks for a progress display (all optional)."""

    start: Callable[[int, int], None] = lambda hosts, checks: None
    collected: Callable[[str, str | None], None] = lambda host, error: None
    checked: Callable[[dict[str, Any]], None] = lambda record: None
    waiting: Callable[[str], None] = lambda message: None  # for another run of the inventory


@dataclass
class Plan:
    catalog: catalog_mod.Catalog
    profile: catalog_mod.Profile | None
    hosts: dict[str, variables.HostVars]
    selected: list[str]
    modules: list[Path]
    controls: list[catalog_mod.Control]  # controls audited by the selected modules
    register: exceptions_mod.Register


def plan(options: AuditOptions) -> Plan:
    """Everything decided before a host is contacted; bad input raises with what to do."""
    from kijun import tailoring

    if not options.inventory.exists():
        raise UsageError(f"inventory {options.inventory} does not exist; pass -i INVENTORY")
    cat = catalog_mod.load_catalog_cached()
    hosts = variables.load_cached(options.inventory)
    settings = tailoring.read_settings(options.inventory)
    profile_name = options.profile or settings.profile
    profile = catalog_mod.load_profile_cached(profile_name, cat) if profile_name else None
    try:
        selected = targets.select(hosts, options.limit)
    except targets.SelectionError as exc:
        raise UsageError(str(exc)) from exc

    audits_dir = paths.repo_root() / "audits"
    controls = list(cat.controls.values())
    if options.areas:
        unknown = sorted(set(options.areas) - set(cat.areas))
        if unknown:
            raise UsageError(f"unknown area(s) {', '.join(unknown)}; areas: {', '.join(cat.areas)}")
        controls = [c for c in controls if c.area in options.areas]
    if options.controls:
        unknown = sorted(set(options.controls) - set(cat.controls))
        if unknown:
            raise UsageError(
                f"unknown control(s) {', '.join(unknown)}; see `kijun controls` for the ids"
            )
        controls = [c for c in controls if c.id in options.controls]
    controls = [c for c in controls if (audits_dir / f"test_{c.audit.module}.py").is_file()]
    if not controls:
        raise UsageError("no audit module covers the selected areas or controls yet")
    modules = sorted({audits_dir / f"test_{c.audit.module}.py" for c in controls})
    register = exceptions_mod.load_register_cached(
        options.inventory, cat, {n: set(hv.groups) for n, hv in hosts.items()}
    )
    return Plan(cat, profile, hosts, selected, modules, controls, register)


def run_checks(
    p: Plan, options: AuditOptions, progress: Progress, workdir: Path
) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, Any], int]:
    """Run the audit modules in-process; return records, uncollected hosts, snapshots, exit."""
    import pytest

    from kijun import audit_plugin

    config_path = workdir / "ssh_config"
    # Every inventory host is in the config: a check may need to read another host (the log
    # collector); only the selected ones are audited.
    try:
        targets.write_ssh_config(config_path, p.hosts, sorted(p.hosts))
    except OSError as exc:
        raise AuditRunError(
            f"cannot write the audit's SSH configuration {config_path}: "
            f"{paths.write_error_text(exc)}"
        ) from None
    specs = targets.host_specs(p.hosts, p.selected, config_path)
    every = dict(zip(sorted(p.hosts), targets.host_specs(p.hosts, sorted(p.hosts), config_path),
                     strict=True))  # fmt: skip
    state = audit_plugin.AuditState(
        on_collected=progress.collected,
        on_record=progress.checked,
        preloaded=p.hosts,
        preloaded_catalog=p.catalog,
        host_spec=every.__getitem__,
    )

    class _Runner:
        @pytest.hookimpl(tryfirst=True)
        def pytest_configure(self, config: pytest.Config) -> None:
            config.stash[audit_plugin.STATE] = state

        def pytest_collection_finish(self, session: pytest.Session) -> None:
            progress.start(len(p.selected), len(session.items))

        def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
            if isinstance(excinfo.value, KeyboardInterrupt):  # not pytest.exit()
                interrupts.append(excinfo.value)

    interrupts: list[KeyboardInterrupt] = []

    args = [
        "-p", "no:cacheprovider", "-p", "no:terminal",
        "--rootdir", str(paths.repo_root() / "audits"),
        "-c", str(paths.repo_root() / "audits" / "pytest.ini"),
        f"--hosts={','.join(specs)}",
        f"--kijun-inventory={options.inventory}",
        *[f"--kijun-control={c}" for c in options.controls],
        *[str(m) for m in p.modules],
    ]  # fmt: skip
    os.environ.setdefault("ANSIBLE_CONFIG", str(paths.repo_root() / "ansible.cfg"))
    # Only the plugins the audits use: not every pytest plugin installed beside kijun.
    autoload = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        code = int(pytest.main(["-p", "testinfra.plugin", *args], plugins=[_Runner()]))
    finally:
        if autoload is None:
            os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        else:
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = autoload
    if interrupts:  # pytest stopped on Ctrl-C or SIGTERM: so does the run
        raise interrupts[0]
    if code in (
        pytest.ExitCode.INTERRUPTED,  # without a signal: collection errors, pytest.exit()
        pytest.ExitCode.INTERNAL_ERROR,
        pytest.ExitCode.USAGE_ERROR,
    ):
        raise AuditRunError(
            f"the audit modules could not run (pytest exit {code}); run "
            f"`pytest {' '.join(str(m) for m in p.modules)}` to see why"
        )
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        raise UsageError("no audit check matches the selection")
    return state.records, dict(state.failures), dict(state.snapshots), code


def _clauses(control: catalog_mod.Control, profile: catalog_mod.Profile | None) -> list[Clause]:
    out: list[Clause] = []
    if profile is not None and control.id in profile.controls:
        out += [Clause(c, profile.name) for c in profile.controls[control.id].clauses]
    out += [Clause(r.clause, r.seed, r.quote) for r in control.references]
    return out


def evidence_path(host: str, key: str) -> str:
    return f"raw/{host}/{key}.txt"


def roll_up(
    p: Plan, records: list[dict[str, Any]], uncollected: dict[str, str]
) -> tuple[list[HostResult], list[ControlResult]]:
    from kijun.audit_plugin import applicability

    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        by_pair.setdefault((r["host"], r["control"]), []).append(r)
    host_results = []
    out: list[ControlResult] = []
    for name in p.selected:
        hv = p.hosts[name]
        reason = uncollected.get(name, "")
        host_results.append(
            HostResult(name, sorted(hv.zones), sorted(hv.groups - {"all"}), not reason, reason)
        )
        for control in p.controls:
            checks = by_pair.get((name, control.id), [])
            base = ControlResult(
                host=name,
                control=control.id,
                area=control.area,
                title=control.title.as_dict(),
                status=Status.NOT_APPLICABLE,
                references=_clauses(control, p.profile),
            )
            if not checks:
                why = applicability(control, hv, p.profile)
                if why is not None:
                    base.message = why
                else:
                    base.status = Status.NOT_ASSESSED
                    base.message = reason or "no check of this control ran on this host"
                out.append(base)
                continue
            base.checks = [
                CheckResult(
                    c["check"],
                    c["outcome"],
                    c["expected"],
                    c["observed"],
                    c["message"],
                    tuple(c.get("evidence", [])),
                    str(c.get("source") or ""),
                )  # fmt: skip
                for c in checks
            ]
            base.status = _status([c["outcome"] for c in checks])
            decisive = next(
                (c for c in checks if c["outcome"] in ("fail", "error", "not_assessed")), None
            ) or next((c for c in checks if c["outcome"] == "pass"), checks[0])
            base.expected, base.observed = decisive["expected"], decisive["observed"]
            base.message = decisive["message"]
            keys = sorted({k for c in checks for k in c.get("evidence", [])})
            base.evidence = [evidence_path(name, k) for k in keys]
            out.append(base)
    return host_results, out


def _status(outcomes: list[str]) -> Status:
    mapped = []
    for o in outcomes:
        if o == "not_assessed":
            mapped.append(Status.NOT_ASSESSED)
        elif o == "error":
            mapped.append(Status.ERROR)
        elif o == "fail":
            mapped.append(Status.FAIL)
        elif o == "pass":
            mapped.append(Status.PASS)
    return results.worst(mapped) if mapped else Status.NOT_APPLICABLE


def exit_code(doc: results.RunDocument) -> int:
    statuses = {r.status for r in doc.results}
    assessed = [h for h in doc.hosts if h.assessed]
    if not assessed or not statuses - {Status.NOT_ASSESSED, Status.NOT_APPLICABLE}:
        return EXIT_UNUSABLE
    if statuses & {Status.FAIL, Status.ERROR, Status.NOT_ASSESSED}:
        return EXIT_DRIFT
    return EXIT_OK


def new_run_id(inventory: Path, now: dt.datetime) -> str:
    name = inventory.resolve().name if inventory.is_dir() else inventory.resolve().parent.name
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{name}-{secrets.token_hex(2)}"


def utc_iso(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lock_path(inventory: Path) -> Path:
    """The lock file of an inventory's audits, in the state directory (named after a hash of the
    inventory's resolved path: the same inventory by any path is one lock)."""
    key = hashlib.sha256(str(inventory.resolve()).encode()).hexdigest()[:16]
    return paths.state_dir() / "locks" / f"audit-{key}.lock"


@contextmanager
def inventory_lock(inventory: Path, wait: bool, waiting: Callable[[str], None]) -> Iterator[Path]:
    """Hold the inventory's audit lock (see the module's documentation); yield its path."""
    path = lock_path(inventory)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise AuditRunError(
            f"cannot make the lock file {path}: {paths.write_error_text(exc)}"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").split()
            pid = f"PID {holder[0]}" if holder else "PID unknown"
            busy = f"another kijun audit of {inventory.resolve()} is running ({pid}, lock {path})"
            if not wait:
                raise AuditLockedError(
                    f"{busy}: wait for it to end and run again, or pass --wait to wait for it"
                ) from None
            waiting(f"{busy}: waiting for it to end (Ctrl-C stops waiting)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # who holds the lock, for the message of a run that finds it taken
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {inventory.resolve()}\n".encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, its holder is then unknown
        yield path
    finally:
        os.close(fd)


class _Signals:
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread; while ``holding``, a
    signal is kept in ``held`` instead (the run is finishing and must not be cut)."""

    def __init__(self) -> None:
        self.holding = False
        self.held: int | None = None

    def handle(self, signum: int, frame: Any) -> None:
        if self.holding:
            self.held = self.held or signum
            return
        raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[_Signals]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` for the block (main thread only;
    elsewhere signals stay as they are)."""
    signals = _Signals()
    if threading.current_thread() is not threading.main_thread():
        yield signals
        return
    previous = {
        s: signal.signal(s, signals.handle)
        for s in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(s) is not signal.SIG_IGN  # a background job keeps ignoring SIGINT
    }
    try:
        yield signals
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass
class Outcome:
    doc: results.RunDocument
    bundle: Path | None
    archive: Path | None
    code: int
    not_covered: list[str]  # selected controls no audit module checks yet
    new_key: Path | None = None  # a signing key made for this first run
    late_signal: str | None = None  # SIGINT or SIGTERM came while the run was being finished


def metadata(p: Plan, options: AuditOptions, run: results.RunInfo) -> dict[str, Any]:
    from kijun import evidence

    root = paths.repo_root()
    inv_dir = options.inventory if options.inventory.is_dir() else options.inventory.parent
    register = inv_dir / "exceptions.yml"
    profile_file = p.profile.file if p.profile else None
    return {
        "started": run.started,
        "kijun_version": __version__,
        "git": run.git,
        "hashes": {
            "catalog": evidence.tree_hash(
                [root / "catalog" / "controls", root / "catalog" / "seeds.yml"]
            ),
            "profile": evidence.tree_hash([profile_file]) if profile_file else None,
            "inventory": evidence.tree_hash([inv_dir]),
            "exceptions": evidence.tree_hash([register]) if register.is_file() else None,
            "audits": evidence.tree_hash([root / "audits"]),
            "roles": evidence.tree_hash([root / "roles"]),
        },
        "operator": run.operator,
        "control_node_time": evidence.control_node_time_sync(),
        "selection": run.selection,
    }


def execute(options: AuditOptions, progress: Progress | None = None) -> Outcome:
    """Run an audit and write its evidence bundle. Raises UsageError for bad input,
    AuditLockedError when another run of the inventory holds its lock (and ``wait`` is off), and
    Interrupted on SIGINT or SIGTERM (nothing written, nothing recorded)."""
    progress = progress or Progress()
    with interruptible() as signals:
        p = plan(options)
        with inventory_lock(options.inventory, options.wait, progress.waiting):
            return _execute(options, progress, p, signals)


def _execute(options: AuditOptions, progress: Progress, p: Plan, signals: _Signals) -> Outcome:
    import tempfile

    from kijun import evidence, history, report, signing

    started = dt.datetime.now(dt.UTC)
    root = paths.repo_root()
    run = results.RunInfo(
        run_id=new_run_id(options.inventory, started),
        started=utc_iso(started),
        finished="",
        kijun_version=__version__,
        inventory=str(options.inventory),
        inventory_id=str(options.inventory.resolve()),
        profile=(
            {
                "name": p.profile.name,
                "title": p.profile.title.as_dict(),
                "organisation": p.profile.organisation.as_dict(),
            }
            if p.profile
            else {}
        ),
        operator=evidence.operator(),
        git=evidence.git_state(root),
        selection={
            "limit": options.limit,
            "areas": options.areas,
            "controls": options.controls,
            "hosts": p.selected,
        },
    )
    state_dir = paths.state_dir()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        workdir = tempfile.TemporaryDirectory(prefix="audit-", dir=state_dir)
    except OSError as exc:
        raise AuditRunError(
            f"cannot make the audit's working directory in {state_dir}: "
            f"{paths.write_error_text(exc)}"
        ) from None
    with workdir as tmp:
        records, uncollected, snapshots, _ = run_checks(p, options, progress, Path(tmp))
    hosts, control_results = roll_up(p, records, uncollected)
    today = options.today or dt.datetime.now(JST).date()
    control_results, unused = p.register.apply(control_results, today)
    run.finished = utc_iso(dt.datetime.now(dt.UTC))
    doc = results.RunDocument(
        run,
        hosts,
        control_results,
        unused_exceptions=[
            {
                "id": u.exception.id,
                "file": str(u.exception.file),
                "line": u.exception.line,
                "reason": u.reason,
            }
            for u in unused
        ],  # fmt: skip
    )
    db = history.History()
    doc.drift = db.drift(doc)

    out_dir = options.out or state_dir / "evidence"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise evidence.EvidenceError(
            f"cannot make the evidence directory {out_dir}: {paths.write_error_text(exc)}"
        ) from None
    key_dir = signing.default_key_dir()
    new_key = signing.ensure_key(key_dir)
    meta = metadata(p, options, run)
    with evidence.BundleWriter(out_dir, run.run_id, metadata=meta, sign=signing.signer()) as bundle:
        for host, snapshot in sorted(snapshots.items()):
            for key, output in sorted(snapshot.outputs.items()):
                bundle.add_text(evidence_path(host, key), output.stdout)
        data = doc.as_dict()
        bundle.add_json("results.json", data)
        bundle.add_text("report.html", report.render_html(doc, p.catalog))
        bundle.add_bytes("checklist.csv", report.render_checklist_csv(doc, p.catalog))
        bundle.add_bytes("junit.xml", report.render_junit(doc))
        probes = report.render_probe_matrix_csv(doc)
        if probes is not None:  # the connections the zone separation audits tried
            bundle.add_bytes("probe-matrix.csv", probes)
        bundle.add_json("assessment-results.json", _oscal(doc, p.catalog))
        bundle.metadata["finished"] = run.finished
        # Complete: from here until it is recorded, a signal waits (see the module's docs).
        signals.holding = True
    try:
        db.record(doc, bundle.bundle_dir)
    finally:
        db.close()
    not_covered = sorted(
        c.id
        for c in p.catalog.controls.values()
        if (not options.areas or c.area in options.areas)
        and (not options.controls or c.id in options.controls)
        and c not in p.controls
    )
    outcome = Outcome(doc, bundle.bundle_dir, bundle.archive, exit_code(doc), not_covered, new_key)
    if signals.held is not None:
        outcome.late_signal = signal.Signals(signals.held).name
    return outcome


def summary(outcome: Outcome) -> dict[str, Any]:
    """The run in a few lines (``kijun audit --summary-json``, AWX job statistics)."""
    doc = outcome.doc
    status = {EXIT_OK: "ok", EXIT_DRIFT: "drift"}.get(outcome.code, "error")
    return {
        "status": status,
        "exit_code": outcome.code,
        "run_id": doc.run.run_id,
        "inventory": doc.run.inventory,
        "hosts": len(doc.hosts),
        "hosts_not_assessed": [h.host for h in doc.hosts if not h.assessed],
        "counts": {k: v for k, v in doc.counts().items() if v},
        "problems": [
            {"host": r.host, "control": r.control, "status": str(r.status), "message": r.message}
            for r in doc.results
            if r.status in (Status.FAIL, Status.ERROR, Status.NOT_ASSESSED)
        ],
        "bundle": str(outcome.bundle) if outcome.bundle else None,
        "archive": str(outcome.archive) if outcome.archive else None,
        "report": str(outcome.bundle / "report.html") if outcome.bundle else None,
    }


def _oscal(doc: results.RunDocument, cat: catalog_mod.Catalog) -> dict[str, Any]:
    from kijun import oscal

    return oscal.assessment_results(doc, cat)
