"""The molecule scenarios, run in the background while the other tests run.

Each scenario takes minutes and uses only its own containers and networks, so the session
starts them at once (tests/conftest.py, ``pytest_collection_finish``), one after another in a
worker thread, and ``tests/test_molecule.py`` waits for each one's outcome. Run without that
start (under xdist, or called directly), :func:`outcome` runs the scenario there and then.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from kijun import roletest

from .conftest import ROOT, VENV_BIN, timeline

TIMEOUT = 1200  # seconds per scenario


@dataclass(frozen=True)
class Outcome:
    scenario: str
    returncode: int
    output: str  # stdout and stderr together
    seconds: float
    cases_on_lab: bool = False  # the further drift cases were left to the lab's drift tests


_lock = threading.Lock()
_runs: dict[str, Future[Outcome]] = {}
_running: list[subprocess.Popen[str]] = []
_pool: ThreadPoolExecutor | None = None
_stopped = threading.Event()


def run(scenario: str, cases_on_lab: bool = False) -> Outcome:
    """`molecule test -s SCENARIO` as a user runs it (no colours, so the output can be read).
    ``cases_on_lab``: the session runs the scenario's further drift cases on the lab, so its
    verify step leaves them (kijun.roletest)."""
    started = time.monotonic()
    env = {**os.environ, "PY_COLORS": "0", "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1"}
    if cases_on_lab:
        env[roletest.CASES_ON_LAB] = "1"
    if _stopped.is_set():
        return Outcome(scenario, -1, "not run: the test session ended first", 0.0, cases_on_lab)
    timeline(f"start molecule {scenario}")
    proc = subprocess.Popen(
        [str(VENV_BIN / "molecule"), "test", "-s", scenario],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    with _lock:
        _running.append(proc)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        output += f"\n(molecule test -s {scenario} killed after {TIMEOUT} s)"
    finally:
        with _lock:
            _running.remove(proc)
    timeline(f"end molecule {scenario}")
    return Outcome(scenario, proc.returncode, output, time.monotonic() - started, cases_on_lab)


def start(scenarios: Iterable[str], cases_on_lab: bool = False) -> None:
    """Start the scenarios in the background, in the given order, one at a time
    (``cases_on_lab``: see :func:`run`)."""
    global _pool
    todo = [s for s in scenarios if s not in _runs]
    if not todo:
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="molecule")
    for scenario in todo:
        _runs[scenario] = _pool.submit(run, scenario, cases_on_lab)


def outcome(scenario: str) -> Outcome:
    """The scenario's outcome: waited for when it was started in the background."""
    future = _runs.get(scenario)
    return future.result() if future is not None else run(scenario)


def finished() -> list[Outcome]:
    """The scenarios that ran to their end in the background, in the order they started."""
    return [f.result() for f in _runs.values() if f.done() and not f.cancelled()]


def stop() -> None:
    """End of the session: scenarios not yet started never start, a running one is stopped
    (its next run begins with molecule's destroy step)."""
    _stopped.set()
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
    with _lock:
        for proc in _running:
            proc.terminate()
