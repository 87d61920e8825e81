"""Every process kijun or its tests start gets its own standard input.

Started by a scheduler or a wrapper, kijun's (or the test session's) standard input may be a
descriptor shared with other processes and set non-blocking; Ansible then refuses to start
("requires blocking IO on stdin/stdout/stderr. Non-blocking file handles detected: <stdin>"),
inside molecule, ansible-runner or ansible-playbook alike. So every child gets ``/dev/null``
(or the input it is given): this is checked in the source, call by call, and shown with a real
Ansible command started under a non-blocking standard input.
"""

from __future__ import annotations

import ast
import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, VENV_BIN

STARTERS = {"run", "Popen", "check_output", "check_call", "call"}
SOURCES = [ROOT / "src", ROOT / "tests", ROOT / "audits", ROOT / "molecule", ROOT / "roles"]


def _calls_without_stdin(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if not (
            isinstance(func, ast.Attribute)
            and func.attr in STARTERS
            and isinstance(func.value, ast.Name)
            and func.value.id == "subprocess"
        ):
            continue
        names = {k.arg for k in node.keywords}
        if not names & {"stdin", "input"}:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_child_process_gets_its_own_standard_input() -> None:
    files = [p for d in SOURCES for p in sorted(d.rglob("*.py")) if ".venv" not in p.parts]
    assert len(files) > 20
    missing = [where for path in files for where in _calls_without_stdin(path)]
    assert missing == [], "subprocess calls without stdin= (use subprocess.DEVNULL): " + ", ".join(
        missing
    )


def test_the_scheduled_service_reads_no_standard_input() -> None:
    unit = (ROOT / "roles/audit_schedule/templates/kijun-audit.service.j2").read_text()
    assert "StandardInput=null" in unit


@pytest.fixture
def nonblocking_stdin() -> Iterator[int]:
    """A pipe's read end set non-blocking, as a wrapper may leave a shared standard input."""
    read, write = os.pipe()
    flags = fcntl.fcntl(read, fcntl.F_GETFL)
    fcntl.fcntl(read, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    yield read
    os.close(read)
    os.close(write)


def test_ansible_refuses_a_nonblocking_stdin_and_runs_with_its_own(nonblocking_stdin: int) -> None:
    """What the rule guards against, shown with the command molecule starts first."""
    command = [str(VENV_BIN / "ansible-config"), "dump", "--only-changed"]
    shared = subprocess.run(
        command, stdin=nonblocking_stdin, capture_output=True, text=True, timeout=120,
        check=False, cwd=ROOT,
    )  # fmt: skip
    assert shared.returncode != 0
    assert "Non-blocking file handles detected" in shared.stdout + shared.stderr
    own = subprocess.run(
        command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        check=False, cwd=ROOT,
    )  # fmt: skip
    assert own.returncode == 0, own.stderr
