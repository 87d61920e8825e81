"""Tags of playbooks/site.yml: every role task carries the ids of the controls it implements,
every role its name and its area (``area_<area>``), and each tag selects exactly its tasks
(what ``ansible-playbook --list-tasks --tags X`` lists, as ``kijun apply`` uses them)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from kijun import catalog

from .conftest import ROOT, VENV_BIN

ID = re.compile(r"\b[A-Z]{2,3}-\d{2}\b")
RANGE = re.compile(r"\b([A-Z]{2,3})-(\d{2})\.\.\1-(\d{2})\b")


def named_ids(name: str) -> set[str]:
    """The control ids a task's name gives: ``(TS-01, TS-04)`` or a range ``(FW-01..FW-12)``."""
    ids = set(ID.findall(RANGE.sub("", name)))
    for m in RANGE.finditer(name):
        first, last = int(m.group(2)), int(m.group(3))
        assert first < last, f"{name}: the range {m.group(0)} is empty"
        ids |= {f"{m.group(1)}-{i:02d}" for i in range(first, last + 1)}
    return ids


INVENTORY = "all:\n  hosts:\n    lg-app01: {ansible_host: 198.18.0.21}\n"


@dataclass(frozen=True)
class Listed:
    role: str | None  # None: a task of the playbook itself (preflight, lockout guard)
    name: str
    tags: frozenset[str]

    @property
    def controls(self) -> set[str]:
        return {t for t in self.tags if ID.fullmatch(t)}


@cache
def _inventory() -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="kijun-tags-")) / "hosts.yml"
    path.write_text(INVENTORY)
    return path


@cache
def list_tasks_cli(*tags: str) -> tuple[Listed, ...]:
    """The tasks ``ansible-playbook --list-tasks`` prints for playbooks/site.yml."""
    args = ["--tags", ",".join(tags)] if tags else []
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(_inventory()), "playbooks/site.yml",
         "--list-tasks", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = []
    for line in proc.stdout.splitlines():
        m = re.match(r"^\s{6}(.+?)\tTAGS: \[(.*)\]$", line)
        if not m:
            continue
        role, sep, name = m.group(1).partition(" : ")
        tags = frozenset(t.strip() for t in m.group(2).split(",") if t.strip())
        out.append(Listed(role if sep else None, name if sep else role, tags))
    assert out, proc.stdout
    return tuple(out)


_LISTINGS: dict[tuple[str, ...], tuple[Listed, ...]] = {}


def _list_in_one_process(selections: list[tuple[str, ...]]) -> None:
    """What --list-tasks lists for each selection, computed by tests/list_tasks.py in one
    process (one ansible-playbook per selection took a second each)."""
    proc = subprocess.run(
        [str(VENV_BIN / "python"), str(ROOT / "tests" / "list_tasks.py"), str(_inventory()),
         "playbooks/site.yml"],
        input=json.dumps([list(s) for s in selections]),
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for selection, tasks in zip(selections, json.loads(proc.stdout), strict=True):
        _LISTINGS[selection] = tuple(Listed(r, n, frozenset(t)) for r, n, t in tasks)


def listed(*tags: str) -> tuple[Listed, ...]:
    """The tasks ``ansible-playbook --list-tasks [--tags TAGS]`` lists for playbooks/site.yml.
    The first selection asked for brings every control's and area's selection along."""
    if tags not in _LISTINGS:
        wanted = {tags}
        if tags:
            cat = _catalog()
            wanted |= {(c,) for c in cat.controls} | {(f"area_{a}",) for a in cat.areas}
        _list_in_one_process(sorted(wanted - set(_LISTINGS)))
    return _LISTINGS[tags]


def role_tasks(tasks: tuple[Listed, ...]) -> list[Listed]:
    """Tasks of the roles, without the argument validation Ansible adds to every role."""
    return [t for t in tasks if t.role and not t.name.startswith("Validating arguments")]


@cache
def _catalog() -> catalog.Catalog:
    return catalog.load_catalog()


def applied_controls() -> list[str]:
    return sorted({c for t in role_tasks(listed()) for c in t.controls})


def applied_areas() -> list[str]:
    cat = _catalog()
    return sorted({cat.controls[c].area for c in applied_controls()})


def test_every_role_task_carries_exactly_the_control_ids_its_name_gives() -> None:
    cat = _catalog()
    tasks = role_tasks(listed())
    assert {t.role for t in tasks} == {
        "password_policy",
        "time_sync",
        "log_retention",
        "mail_relay",
        "wireless",
        "zone_firewall",
    }
    for t in tasks:
        named = named_ids(t.name)
        assert named, f"{t.role} : {t.name} names no control id"
        assert t.controls == named, f"{t.role} : {t.name} is tagged {sorted(t.controls)}"
        for control in named:
            assert control in cat.controls, f"{t.name}: {control} is not in the catalog"
            assert cat.controls[control].role == t.role, (
                f"{t.role} : {t.name}: {control} belongs to role {cat.controls[control].role}"
            )
        areas = {cat.controls[c].area for c in named}
        assert {t.role, *(f"area_{a}" for a in areas)} <= t.tags, t


def test_every_task_outside_the_roles_runs_always() -> None:
    # the preflight and the lockout guard: whatever is selected, they run
    others = [t for t in listed() if not t.role or t.name.startswith("Validating arguments")]
    assert others and all("always" in t.tags for t in others), others
    assert any("lockout guard" in t.name for t in others)


@pytest.mark.parametrize("control", applied_controls())
def test_a_control_tag_selects_exactly_the_tasks_of_that_control(control: str) -> None:
    selected = role_tasks(listed(control))
    expected = [t for t in role_tasks(listed()) if control in named_ids(t.name)]
    assert selected == expected
    assert selected, f"--tags {control} selects no task"


@pytest.mark.parametrize("area", applied_areas())
def test_an_area_tag_selects_exactly_the_tasks_of_that_areas_controls(area: str) -> None:
    cat = _catalog()
    selected = role_tasks(listed(f"area_{area}"))
    expected = [
        t for t in role_tasks(listed()) if any(cat.controls[c].area == area for c in t.controls)
    ]
    assert selected == expected and selected
    # and nothing of another area comes along
    assert all(cat.controls[c].area == area for t in selected for c in t.controls)


def test_a_control_of_another_role_selects_no_task_of_this_one() -> None:
    ts04 = role_tasks(listed("TS-04"))
    assert {t.role for t in ts04} == {"time_sync"}
    assert [t.name for t in ts04] == [
        "Assert the role's inputs are usable (TS-01, TS-02, TS-04, TS-06)",
        "Ensure /etc/timezone names the organisation's time zone (TS-04)",
        "Ensure the time zone is the organisation's (TS-04)",
    ]


@pytest.mark.parametrize("tags", [(), ("TS-04",), ("area_firewall",), ("mail_relay",)])
def test_the_one_process_listing_is_what_ansible_playbook_lists(tags: tuple[str, ...]) -> None:
    # tests/list_tasks.py stands in for `ansible-playbook --list-tasks` above: it must agree
    assert listed(*tags) == list_tasks_cli(*tags)
