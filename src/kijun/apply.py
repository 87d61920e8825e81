"""``kijun apply``: the baseline (``playbooks/site.yml``) through ansible-runner.

ansible-runner is the engine AWX and Automation Platform run playbooks with; ``kijun apply``
uses it on the control node so that a run there and a job there produce the same events. The
run selects tasks by tag (``--area`` is the tag ``area_<area>``, ``--control`` the control id,
see roles/README.md "Tags"), follows the events to show progress per host, and ends with a
recap per host and area and the tasks that changed (or, in check mode, would change) per
control. The lockout guard of ``site.yml`` stops a host the admin can no longer log in to;
its message is reported per host.

The run's artifacts (ansible-runner's stdout and every event, as JSON lines) and kijun's
summary are written as a signed bundle beside the audit evidence (``.kijun/evidence/apply-*``,
checked like any bundle with ``kijun verify``), so that an apply can be cited in an audit.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kijun import __version__, paths
from kijun import catalog as catalog_mod

EXIT_OK = 0  # every selected host applied without a failure
EXIT_FAILED = 1  # a host failed, was unreachable or was stopped by the lockout guard
EXIT_UNUSABLE = 2  # wrong usage, or the playbook could not run at all

CONTROL_ID = re.compile(r"\b[A-Z]{2,3}-\d{2}\b")
GUARD_STOP_TASK = "Stop this host when the admin cannot open a second session (lockout guard)"
PLAYBOOK = Path("playbooks") / "site.yml"
RUN_LEVEL = "(run)"  # the "area" of the preflight and the guard: tasks outside the roles


class UsageError(ValueError):
    """The command was used wrongly; the message says what to do."""


@dataclass
class ApplyOptions:
    inventory: Path
    limit: str | None = None
    areas: list[str] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)
    check: bool = False
    diff: bool = False
    out: Path | None = None  # where the apply bundle goes; default .kijun/evidence


@dataclass
class Counts:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0  # failed, then recovered by the block's rescue (Ansible's "rescued")
    ignored: int = 0  # failed with ignore_errors (Ansible's "ignored")


@dataclass
class Change:
    """A task that changed (or in check mode would change) a host."""

    host: str
    role: str
    task: str
    controls: list[str]
    diff: Any = None


@dataclass
class Failure:
    host: str
    task: str
    message: str
    unreachable: bool = False
    area: str = RUN_LEVEL


@dataclass
class Neutralised:
    """A competing setting a role neutralised (or in check mode would): another file's line
    that assigned a key the role owns (roles/kijun_common, module kijun_effective)."""

    host: str
    role: str
    task: str
    controls: list[str]
    path: str
    line: int
    text: str
    backup: str


# --- what site.yml applies ----------------------------------------------------------------------


def site_roles(playbook: Path | None = None) -> dict[str, str]:
    """Each role ``site.yml`` imports, with its area (the role's ``area_<area>`` tag)."""
    path = playbook or paths.repo_root() / PLAYBOOK
    plays = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    roles: dict[str, str] = {}
    for play in plays:
        entries = list(play.get("tasks", [])) + [
            {"ansible.builtin.import_role": {"name": r["role"]}, "tags": r.get("tags", [])}
            if isinstance(r, dict)
            else {"ansible.builtin.import_role": {"name": r}, "tags": []}
            for r in play.get("roles", [])
        ]
        for task in entries:
            spec = task.get("ansible.builtin.import_role") or task.get("import_role")
            if not spec:
                continue
            tags = task.get("tags", [])
            tags = [tags] if isinstance(tags, str) else list(tags)
            area = next((t.removeprefix("area_") for t in tags if t.startswith("area_")), "")
            roles[str(spec["name"])] = area
    return roles


def select_tags(
    cat: catalog_mod.Catalog, roles: Mapping[str, str], areas: list[str], controls: list[str]
) -> list[str]:
    """The ``--tags`` for the selection; a name the catalog or site.yml lacks is a UsageError."""
    tags: list[str] = []
    applied_areas = {a for a in roles.values() if a}
    for area in areas:
        if area not in cat.areas:
            raise UsageError(f"unknown area {area!r}; areas: {', '.join(cat.areas)}")
        if area not in applied_areas:
            wanted = sorted({c.role for c in cat.controls.values() if c.area == area})
            raise UsageError(
                f"area {area!r} is not applied by playbooks/site.yml yet (its role "
                f"{', '.join(wanted)} is not imported there); applied areas: "
                f"{', '.join(sorted(applied_areas))}"
            )
        tags.append(f"area_{area}")
    for control in controls:
        if control not in cat.controls:
            raise UsageError(f"unknown control {control!r}; see `kijun controls` for the ids")
        role = cat.controls[control].role
        if role not in roles:
            raise UsageError(
                f"control {control} is applied by role {role}, which playbooks/site.yml does "
                "not import yet"
            )
        tags.append(control)
    return tags


# --- following the events -----------------------------------------------------------------------


@dataclass
class Tracker:
    """The run's state, fed with ansible-runner's events one by one (see :meth:`feed`)."""

    role_areas: Mapping[str, str]
    recap: dict[str, dict[str, Counts]] = field(default_factory=dict)  # host -> area -> counts
    current: dict[str, str] = field(default_factory=dict)  # host -> "role : task" running now
    changes: list[Change] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)  # as Ansible's stats count them
    rescued: list[Failure] = field(default_factory=list)  # failed tasks a rescue recovered
    neutralised: list[Neutralised] = field(default_factory=list)
    lockout: dict[str, str] = field(default_factory=dict)  # host -> the guard's message
    stats: dict[str, dict[str, int]] = field(default_factory=dict)  # ansible's own recap
    events: int = 0

    def area_of(self, role: str) -> str:
        """The area of a role's task (site.yml's ``area_`` tag); the run's own tasks: (run)."""
        if role:
            return self.role_areas.get(role) or role
        return RUN_LEVEL

    def _counts(self, host: str, area: str) -> Counts:
        return self.recap.setdefault(host, {}).setdefault(area, Counts())

    def feed(self, event: Mapping[str, Any]) -> str | None:
        """Take one event; return the host whose state changed (for a progress display)."""
        self.events += 1
        kind = str(event.get("event", ""))
        data: Mapping[str, Any] = event.get("event_data") or {}
        if kind == "playbook_on_stats":
            for key in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored"):
                for host, n in (data.get(key) or {}).items():
                    self.stats.setdefault(host, {})[key] = int(n)
            self._follow_stats()
            return None
        host = str(data.get("host", ""))
        if not host or not kind.startswith("runner_on_"):
            return None
        role = str(data.get("role") or "")
        task = str(data.get("task") or "")
        controls = sorted(set(CONTROL_ID.findall(task)))
        label = f"{role} : {task}" if role else task
        if kind == "runner_on_start":
            self.current[host] = label
            return host
        # Ansible's check of a role's arguments runs whatever the tags (like the preflight)
        validation = str(data.get("resolved_action") or data.get("task_action") or "").endswith(
            "validate_argument_spec"
        )
        counts = self._counts(host, RUN_LEVEL if validation else self.area_of(role))
        res: Mapping[str, Any] = data.get("res") or {}
        if kind == "runner_on_ok":
            counts.ok += 1
            if res.get("changed"):
                counts.changed += 1
                self.changes.append(Change(host, role, task, controls, res.get("diff")))
            # a task's own result, or each item's of a loop
            items = [res, *[r for r in res.get("results") or [] if isinstance(r, Mapping)]]
            for n in (n for item in items for n in item.get("neutralised") or []):
                if isinstance(n, Mapping):
                    self.neutralised.append(Neutralised(
                        host, role, task, controls, str(n.get("path", "")),
                        int(n.get("line") or 0), str(n.get("text", "")), str(n.get("backup", "")),
                    ))  # fmt: skip
        elif kind == "runner_on_skipped":
            counts.skipped += 1
        elif kind == "runner_on_unreachable":
            counts.unreachable += 1
            self.failures.append(Failure(host, label, _message(res), unreachable=True))
        elif kind == "runner_on_failed":
            if data.get("ignore_errors"):
                counts.ignored += 1
            else:
                counts.failed += 1
                area = RUN_LEVEL if validation else self.area_of(role)
                self.failures.append(Failure(host, label, _message(res), area=area))
                if task == GUARD_STOP_TASK:
                    self.lockout[host] = _message(res)
        else:
            return None
        return host

    def _follow_stats(self) -> None:
        """Ansible's own per-host statistics decide what failed: a failed task whose block's
        rescue ran is counted by Ansible as rescued, not as a failure, and the host goes on.
        A host stops at its first unrescued failure, so of a host's failed tasks the last
        ``failures`` (Ansible's count) are its failures and the ones before them were rescued."""
        for host, stats in self.stats.items():
            failed = [f for f in self.failures if f.host == host and not f.unreachable]
            keep = stats.get("failures", 0)
            rescued = failed[: max(len(failed) - keep, 0)]
            for f in rescued:
                self.failures.remove(f)
                self.rescued.append(f)
                counts = self._counts(host, f.area)
                counts.failed -= 1
                counts.rescued += 1
                if f.task.endswith(GUARD_STOP_TASK):
                    self.lockout.pop(host, None)

    def hosts(self) -> list[str]:
        return sorted(set(self.recap) | set(self.stats) | set(self.current))

    def host_state(self, host: str) -> str:
        if host in self.lockout:
            return "stopped by the lockout guard"
        stats = self.stats.get(host, {})
        if stats.get("dark") or any(f.host == host and f.unreachable for f in self.failures):
            return "unreachable"
        if stats.get("failures") or any(f.host == host for f in self.failures):
            return "failed"
        if stats.get("rescued") or any(f.host == host for f in self.rescued):
            return "ok (rescued)"
        return "ok"

    def by_control(self) -> dict[str, list[Change]]:
        out: dict[str, list[Change]] = {}
        for change in self.changes:
            for control in change.controls or ["(no control)"]:
                out.setdefault(control, []).append(change)
        return dict(sorted(out.items()))


def _message(res: Mapping[str, Any]) -> str:
    msg = res.get("msg") or res.get("stderr") or res.get("module_stderr") or ""
    return " ".join(str(msg).split())


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    run_id: str
    check: bool
    tags: list[str]
    rc: int  # ansible-playbook's exit status
    status: str  # ansible-runner's: successful, failed, timeout, canceled
    tracker: Tracker
    bundle: Path | None
    archive: Path | None
    code: int
    stdout_tail: str = ""

    def summary(self, cat: catalog_mod.Catalog | None = None) -> dict[str, Any]:
        """The bundle's summary.json (and what ``--json`` prints)."""
        t = self.tracker
        return {
            "run_id": self.run_id,
            "check_mode": self.check,
            "tags": self.tags,
            "ansible_rc": self.rc,
            "runner_status": self.status,
            "exit_code": self.code,
            "hosts": {
                h: {
                    "state": t.host_state(h),
                    "areas": {a: asdict(c) for a, c in sorted(t.recap.get(h, {}).items())},
                    "ansible_stats": t.stats.get(h, {}),
                    "lockout_guard": t.lockout.get(h),
                }
                for h in t.hosts()
            },
            "changes_by_control": {
                control: {
                    "title": cat.controls[control].title.as_dict()
                    if cat is not None and control in cat.controls
                    else None,
                    "changes": [
                        {"host": c.host, "role": c.role, "task": c.task, "diff": c.diff}
                        for c in changes
                    ],
                }
                for control, changes in t.by_control().items()
            },
            "failures": [asdict(f) for f in t.failures],
            "rescued": [asdict(f) for f in t.rescued],
            "neutralised": [asdict(n) for n in t.neutralised],
        }


def new_run_id(inventory: Path, now: dt.datetime) -> str:
    name = inventory.resolve().name if inventory.is_dir() else inventory.resolve().parent.name
    return f"apply-{now.strftime('%Y%m%dT%H%M%SZ')}-{name}-{secrets.token_hex(2)}"


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def execute(
    options: ApplyOptions,
    on_event: Callable[[Tracker, str], None] | None = None,
) -> Outcome:
    """Apply the baseline; return the outcome with the bundle written. UsageError for bad input."""
    import ansible_runner

    from kijun import evidence, signing

    if not options.inventory.exists():
        raise UsageError(f"inventory {options.inventory} does not exist; pass -i INVENTORY")
    root = paths.repo_root()
    cat = catalog_mod.load_catalog_cached()
    roles = site_roles(root / PLAYBOOK)
    tags = select_tags(cat, roles, options.areas, options.controls)
    started = dt.datetime.now(dt.UTC)
    run_id = new_run_id(options.inventory, started)
    tracker = Tracker(roles)

    def handler(event: dict[str, Any]) -> bool:
        host = tracker.feed(event)
        if host and on_event is not None:
            on_event(tracker, host)
        return True  # ansible-runner keeps the event in its artifacts

    cmdline = [*(["--check"] if options.check else []), *(["--diff"] if options.diff else [])]
    state = paths.state_dir()
    state.mkdir(parents=True, exist_ok=True)
    Path("~/.ansible/cp").expanduser().mkdir(mode=0o700, parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="apply-", dir=state))
    try:
        # ansible-runner starts `ansible-playbook` from PATH: kijun's own (its venv) comes first.
        env = {
            "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
            "PATH": f"{_venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
            "ANSIBLE_NOCOLOR": "1",
        }
        if os.environ.get("KIJUN_HOME"):
            env["KIJUN_HOME"] = os.environ["KIJUN_HOME"]
        runner = ansible_runner.run(
            private_data_dir=str(workdir),
            project_dir=str(root),
            playbook=str(root / PLAYBOOK),
            inventory=str(options.inventory.resolve()),
            limit=options.limit,
            tags=",".join(tags) if tags else None,
            cmdline=" ".join(cmdline) if cmdline else None,
            envvars=env,
            ident="run",
            event_handler=handler,
            quiet=True,
        )
        artifacts = workdir / "artifacts" / "run"
        stdout = (artifacts / "stdout").read_text(errors="replace") if artifacts.is_dir() else ""
        rc = int(runner.rc if runner.rc is not None else 255)
        status = str(runner.status)
        if not tracker.stats and runner.stats:
            tracker.feed({"event": "playbook_on_stats", "event_data": runner.stats})
        code = _exit_code(rc, tracker)
        outcome = Outcome(run_id, options.check, tags, rc, status, tracker, None, None, code)
        if code == EXIT_UNUSABLE:
            outcome.stdout_tail = stdout[-4000:]
        out_dir = options.out or state / "evidence"
        key_dir = signing.default_key_dir()
        if not (key_dir / signing.PRIVATE_KEY_NAME).exists():
            signing.init_keys(key_dir)
        meta = {
            "kind": "apply",
            "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "finished": evidence.utc_now(),
            "kijun_version": __version__,
            "git": evidence.git_state(root),
            "operator": evidence.operator(),
            "inventory": str(options.inventory),
            "selection": {
                "limit": options.limit,
                "areas": options.areas,
                "controls": options.controls,
                "tags": tags,
                "check": options.check,
                "diff": options.diff,
            },
            "hashes": {
                "roles": evidence.tree_hash([root / "roles"]),
                "playbooks": evidence.tree_hash([root / "playbooks"]),
                "inventory": evidence.tree_hash([options.inventory]),
            },
        }
        with evidence.BundleWriter(out_dir, run_id, metadata=meta, sign=signing.signer()) as b:
            b.add_json("summary.json", outcome.summary(cat))
            b.add_text("ansible/stdout.txt", stdout)
            events, redactions = _events_jsonl(artifacts / "job_events")
            b.add_bytes("ansible/events.jsonl", events, redactions=redactions)
            for name in ("command", "rc", "status"):
                if (artifacts / name).is_file():
                    b.add_text(f"ansible/{name}", (artifacts / name).read_text(errors="replace"))
        outcome.bundle, outcome.archive = b.bundle_dir, b.archive
        return outcome
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _events_jsonl(directory: Path) -> tuple[bytes, Counter[str]]:
    """ansible-runner's events (one JSON file each) as JSON lines, in the order they happened,
    every string redacted like any evidence (event by event, so each line stays JSON); and the
    redaction rules that fired."""
    from kijun.redact import redact_json

    fired: Counter[str] = Counter()
    if not directory.is_dir():
        return b"", fired
    events = []
    for path in directory.glob("*.json"):
        try:
            events.append(json.loads(path.read_text(errors="replace")))
        except json.JSONDecodeError:
            continue
    events.sort(key=lambda e: int(e.get("counter", 0)))
    lines = []
    for event in events:
        clean, rules = redact_json(event)
        fired.update(rules)
        lines.append(json.dumps(clean, ensure_ascii=False, sort_keys=True) + "\n")
    return "".join(lines).encode(), fired


def _exit_code(rc: int, tracker: Tracker) -> int:
    if rc == 0 and not tracker.failures:
        return EXIT_OK
    # ansible-playbook: 2 a host failed, 4 a host was unreachable; the run itself went through
    if rc in (0, 2, 4) and tracker.stats:
        return EXIT_FAILED
    return EXIT_UNUSABLE
