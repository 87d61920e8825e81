"""Shared fixtures: the checkout, kijun's podman configuration, and the `kijun` command."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

os.environ.setdefault("CONTAINERS_CONF", str(ROOT / ".kijun" / "containers.conf"))
os.environ.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def run_kijun(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed `kijun` console script as a user would (``env``: its environment,
    default this one)."""
    return subprocess.run(
        [str(VENV_BIN / "kijun"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


COMMON = ROOT / "roles" / "kijun_common"  # the module the roles share


def run_module(
    name: str, args: dict[str, Any], *flags: str, library: Path = COMMON / "library"
) -> dict[str, Any]:
    """A module of a role's ``library/`` run by Ansible on this machine (``ansible localhost
    -m NAME``); its JSON result."""
    proc = subprocess.run(
        [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
         "-M", str(library), "-m", name, "-a", json.dumps(args),
         "-e", f"ansible_python_interpreter={sys.executable}", *flags],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
        env={**os.environ, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
             "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
    )  # fmt: skip
    [task] = json.loads(proc.stdout)["plays"][0]["tasks"]
    return dict(task["hosts"]["localhost"])


def import_module_file(path: Path) -> ModuleType:
    """A role's module imported for its functions."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def playbook(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    """ansible-playbook playbooks/site.yml on the lab inventory."""
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "playbooks/site.yml", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class Applied:
    """A ``kijun apply`` run: what it printed, its summary.json and its bundle."""

    proc: subprocess.CompletedProcess[str]
    summary: dict[str, Any]
    bundle: Path

    @property
    def printed(self) -> str:
        """What the command printed, its line breaks (rich wraps at 80 columns) as spaces."""
        return " ".join(self.proc.stdout.split())


def kijun_apply(*args: str, timeout: float = 1500) -> Applied:
    """``kijun apply`` on the lab inventory, its bundle in a directory of its own."""
    out = Path(tempfile.mkdtemp(prefix="kijun-apply-"))
    proc = run_kijun("apply", "--out", str(out), *args, timeout=timeout)
    summaries = sorted(out.glob("apply-*/summary.json"))
    assert len(summaries) == 1, proc.stdout[-5000:] + proc.stderr[-3000:]
    return Applied(proc, json.loads(summaries[0].read_text()), summaries[0].parent)


@pytest.fixture(scope="session")
def applied_lab() -> Applied:
    """Fresh lab hosts with the baseline applied once (``kijun apply``, as an admin would).

    The lab is recreated first: after ``make demo`` (the README's first command) its hosts are
    already applied, and the first apply must be one on fresh hosts whatever ran before."""
    down = run_kijun("lab", "down")
    assert down.returncode == 0, down.stderr
    proc = run_kijun("lab", "up", timeout=900)
    assert proc.returncode == 0, proc.stderr
    first = kijun_apply()
    assert first.proc.returncode == 0, first.proc.stdout[-5000:] + first.proc.stderr[-3000:]
    return first


# The order the lab tests run in. The molecule scenarios take both CPUs in the background for
# the first ~20 minutes: the lab work that mostly waits (hosts stopped and started, drift rounds
# of audits and small restores) runs beside them; the work that keeps both CPUs busy on its own
# (the second apply to every host, the live applies) after them. The lab cycle (tests/test_lab.py)
# brings the lab down and up from nothing: it comes after every test of the applied lab. Then
# the tests without the lab, in file order. Each entry: a file, or a file and a test's name.
LAB_ORDER = [
    ("tests/faults/test_lab_faults.py", None),  # the first apply (applied_lab), then faults
    ("tests/test_baseline_lab.py", None),  # but the second apply: below
    ("tests/test_audit_lab.py", None),
    ("tests/test_apply_schedule_live.py", None),
    ("tests/test_baseline_lab.py", "test_second_apply_changes_nothing"),
    ("tests/test_lab.py", None),
]


def _lab_rank(item: pytest.Item) -> int:
    path = item.path.relative_to(ROOT).as_posix()
    name = getattr(item, "originalname", item.name)
    ranks = [i for i, (p, n) in enumerate(LAB_ORDER) if p == path and n in (None, name)]
    return max(ranks) if ranks else len(LAB_ORDER)  # the most specific entry wins


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Lab tests first, in LAB_ORDER; the rest after them in file order (a stable sort)."""
    items.sort(key=_lab_rank)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The selected molecule scenarios start at once, one after another in the background,
    beside the tests on the built-in lab (their own containers and networks)."""
    if session.config.option.collectonly or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    from . import molecule_runs

    # When the lab's drift tests run, they prove every case of molecule/*/drift_cases.yml on
    # the lab; the scenarios then leave those cases to them (each case once per run).
    cases_on_lab = any(
        item.originalname == "test_drift_is_reported_against_its_own_control"
        for item in session.items
        if isinstance(item, pytest.Function)
    )
    molecule_runs.start(
        (
            item.callspec.params["scenario"]
            for item in session.items
            if item.path.name == "test_molecule.py" and hasattr(item, "callspec")
        ),
        cases_on_lab,
    )


def timeline(event: str) -> None:
    """With KIJUN_TEST_TIMELINE=FILE, a line per event with its wall-clock time, to see what
    ran beside what (the background molecule scenarios, the lab tests)."""
    path = os.environ.get("KIJUN_TEST_TIMELINE")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {event}\n")


def pytest_runtest_logstart(nodeid: str) -> None:
    timeline(f"start {nodeid}")


def pytest_runtest_logfinish(nodeid: str) -> None:
    timeline(f"end {nodeid}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How long each background molecule scenario took (pytest's durations show only the wait
    for it)."""
    from . import molecule_runs

    runs = molecule_runs.finished()
    if runs:
        terminalreporter.section("molecule scenarios (background)")
        for run in runs:
            state = "passed" if run.returncode == 0 else f"exit {run.returncode}"
            terminalreporter.write_line(f"{run.seconds:7.1f}s  {run.scenario}  {state}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    from . import molecule_runs

    molecule_runs.stop()
