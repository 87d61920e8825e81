"""The control node under faults, through the real `kijun` command in subprocesses: an audit
interrupted (SIGINT, SIGTERM), two audits at once, a full disk while the bundle is written,
every way to tamper with a bundle (one table, :data:`TAMPERING`), and the signing key kept to
its owner and out of every bundle.

Each test has a state directory of its own (``KIJUN_STATE_DIR``: signing key, history, locks,
caches). The audited inventory has one host, 198.18.255.254, that nothing answers; its SSH goes
through a ``ProxyCommand`` that sends nothing anywhere: ``false`` (the host is not assessed at
once) or ``sleep N`` (not assessed after N seconds: time for a signal or a second run to come).
So the whole pipeline runs (plan, collection, roll-up, bundle, signature, history) with no lab;
one area (time) keeps the bundle small. Such a run exits 2 (nothing could be assessed).
"""

from __future__ import annotations

import base64
import errno
import gzip
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from kijun import signing
from kijun.evidence import MANIFEST, SIGNATURE, manifest_bytes, sha256_hex

from .. import test_signing as signing_tests
from ..conftest import ROOT, VENV_BIN
from ..test_signing import flip, pack

KIJUN = VENV_BIN / "kijun"
HOST_ADDRESS = "198.18.255.254"
AREA = ("--area", "time")
SLOW = 3  # seconds the slow inventory's host takes to fail
NOT_ASSESSED = 2  # the exit code of a run that assessed nothing (its only host did not answer)


def make_inventory(directory: Path, proxy: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "hosts.yml").write_text(
        "all:\n"
        "  hosts:\n"
        "    ghost01:\n"
        f"      ansible_host: {HOST_ADDRESS}\n"
        "  vars:\n"
        f'    ansible_ssh_common_args: -o ProxyCommand="{proxy}"\n'
    )
    (directory / "kijun.yml").write_text("profile: generic\n")
    return directory


@dataclass
class Inventories:
    fast: Path  # the host is not assessed at once
    slow: Path  # ... after SLOW seconds
    other: Path  # another inventory, as slow


@pytest.fixture(scope="module")
def inventories(tmp_path_factory: pytest.TempPathFactory) -> Inventories:
    base = tmp_path_factory.mktemp("inventories")
    return Inventories(
        make_inventory(base / "fast", "false"),
        make_inventory(base / "slow", f"sleep {SLOW}"),
        make_inventory(base / "other", f"sleep {SLOW}"),
    )


def text(proc: subprocess.CompletedProcess[str] | Started) -> str:
    """What a run printed, its line breaks (rich wraps tables at 80 columns) as spaces."""
    return " ".join((proc.stdout + proc.stderr).split())


@dataclass
class Started:
    """A `kijun` command started in the background; its output goes to files."""

    proc: subprocess.Popen[bytes]
    logs: Path
    stdout: str = ""
    stderr: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout)
        self.stdout = (self.logs / "stdout").read_text()
        self.stderr = (self.logs / "stderr").read_text()
        return code


@dataclass
class Node:
    """A control node: kijun's state directory, and `kijun` run with it."""

    state: Path
    logs: Path  # where what a command started in the background prints goes
    started: list[Started] = field(default_factory=list)

    @property
    def public_key(self) -> Path:
        return self.state / "keys" / signing.PUBLIC_KEY_NAME

    def env(self) -> dict[str, str]:
        return {**os.environ, "KIJUN_STATE_DIR": str(self.state)}

    def kijun(
        self, *args: str | Path, umask: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KIJUN), *map(str, args)], cwd=ROOT, env=self.env(), capture_output=True,
            text=True, timeout=180, check=False,
            preexec_fn=None if umask is None else (lambda: os.umask(umask)),
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self, *args: str | Path) -> Started:
        logs = self.logs / f"{len(self.started)}"
        logs.mkdir(parents=True)
        with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
            # The child gets the default disposition of the signals the tests send it, whatever
            # this session inherited (started as a background job of a non-interactive shell,
            # it has SIGINT ignored, and an exec'd child would keep ignoring it).
            proc = subprocess.Popen(
                ["env", "--default-signal=INT,TERM", str(KIJUN), *map(str, args)], cwd=ROOT,
                env=self.env(), stdout=out, stderr=err, start_new_session=True,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.started.append(Started(proc, logs))
        return self.started[-1]

    def audit_args(self, inventory: Path, out: Path | None, *extra: str) -> list[str]:
        """The arguments of `kijun audit` of ``inventory`` into ``out`` (None: the default)."""
        return ["audit", "-i", str(inventory), *AREA, *(["--out", str(out)] if out else []), *extra]

    def verify(self, path: Path, trusted: bool = True) -> subprocess.CompletedProcess[str]:
        return self.kijun("verify", path, *(["--trusted-key", self.public_key] if trusted else []))

    def history(self) -> list[str]:
        """The run ids recorded, once ``PRAGMA integrity_check`` finds the database sound and
        every result belongs to a recorded run."""
        path = self.state / "history.sqlite"
        if not path.exists():
            return []
        with closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            orphans = "SELECT COUNT(*) FROM results WHERE run_id NOT IN (SELECT run_id FROM runs)"
            assert db.execute(orphans).fetchone() == (0,)
            return sorted(row[0] for row in db.execute("SELECT run_id FROM runs"))


def seeded(state: Path, made: Made, logs: Path) -> Node:
    """A node whose state directory has only the caches of an earlier run (no key, no history):
    its first audit does not spend seconds loading the catalog anew."""
    shutil.copytree(made.node.state / "cache", state / "cache")
    return Node(state, logs)


@pytest.fixture
def node(tmp_path: Path, made: Made) -> Iterator[Node]:
    fresh = seeded(tmp_path / "state", made, tmp_path / "logs")
    yield fresh
    for run in fresh.started:  # a test that failed half-way leaves nothing running
        if run.proc.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.proc.wait()


def entries(out: Path) -> list[str]:
    return sorted(os.listdir(out)) if out.is_dir() else []


def completed(node: Node, proc: subprocess.CompletedProcess[str] | Started, out: Path) -> str:
    """The run went to its end: the host not assessed, a bundle that verifies as a directory and
    as an archive against the node's key; its run id."""
    code = proc.returncode if isinstance(proc, subprocess.CompletedProcess) else proc.wait()
    assert code == NOT_ASSESSED, text(proc)[-3000:]
    found = re.search(r"evidence: (\S+)", text(proc))
    assert found, text(proc)[-3000:]
    bundle = Path(found[1])
    assert bundle.parent == out and bundle.is_dir()
    checks = [  # both at once
        node.start("verify", path, "--trusted-key", node.public_key)
        for path in (bundle, bundle.with_name(f"{bundle.name}.tar.gz"))
    ]
    for check in checks:
        assert check.wait() == 0 and "OK" in check.stdout.splitlines()[0], check.stdout
    return bundle.name


def run_doc(out: Path, run_id: str) -> dict[str, str]:
    return dict(json.loads((out / run_id / "results.json").read_text())["run"])


def wait_for(
    condition: Callable[[], bool],
    what: str,
    run: Started,
    timeout: float = 60,
    interval: float = 0.002,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert run.proc.poll() is None, f"kijun ended before {what}"
        assert time.monotonic() < deadline, f"no sign of {what} in {timeout} s"
        time.sleep(interval)


def descendants(pid: int) -> list[str]:
    """The command names of the processes under ``pid`` (from /proc/*/stat)."""
    parent: dict[int, int] = {}
    name: dict[int, str] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            line = stat_file.read_text()
        except OSError:  # ended meanwhile
            continue
        comm, _, rest = line.partition(" (")[2].rpartition(") ")
        child = int(stat_file.parent.name)
        parent[child], name[child] = int(rest.split()[1]), comm
    found, below = [], [pid]
    while below:
        current = below.pop()
        for child, ppid in parent.items():
            if ppid == current:
                found.append(name[child])
                below.append(child)
    return found


# -- interrupted ---------------------------------------------------------------------------------


def signal_frozen(
    node: Node,
    out: Path,
    run: Started,
    signum: int,
    when: Callable[[], bool],
    what: str,
    still: Callable[[], bool],
) -> None:
    """Freeze ``run`` (SIGSTOP) as soon as ``when`` holds; if it is ``still`` at that point,
    send it ``signum``; let it go on (SIGCONT). Frozen too late, the test fails."""
    wait_for(when, what, run)
    os.kill(run.pid, signal.SIGSTOP)
    in_time = still()
    if in_time:
        os.kill(run.pid, signum)
    os.kill(run.pid, signal.SIGCONT)
    if not in_time:
        run.wait()
        pytest.fail(f"the audit was frozen too late: it was past {what}")


def bundle_ids(out: Path) -> list[str]:
    """The run ids of the bundles in ``out`` (directories renamed to their final name)."""
    return sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


def stop_while_writing(node: Node, inventory: Path, out: Path, signum: int) -> tuple[Started, str]:
    """An audit sent ``signum`` while its bundle's files are being added (its partial directory
    exists, the last file the audit adds, assessment-results.json, is not in it yet)."""
    run = node.start(*node.audit_args(inventory, out))

    def partials() -> list[Path]:
        return list(out.glob(".*.partial"))

    signal_frozen(
        node, out, run, signum, lambda: bool(partials()), "adding the bundle's files",
        lambda: bool(partials()) and not (partials()[0] / "assessment-results.json").exists(),
    )  # fmt: skip
    return run, partials()[0].name.removeprefix(".").removesuffix(".partial") if partials() else ""


def _ignored_signals(pid: int) -> int:
    """The mask of signals a process ignores (SigIgn in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigIgn in /proc/{pid}/status")


def test_a_run_started_while_the_session_ignores_sigint_still_gets_the_default(
    node: Node, inventories: Inventories, tmp_path: Path
) -> None:
    """A test session started as a background job of a non-interactive shell (as a scheduler or
    a CI wrapper may start it) inherits SIGINT ignored; the run a test interrupts must not."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run = node.start(*node.audit_args(inventories.slow, tmp_path / "out"))
    finally:
        signal.signal(signal.SIGINT, previous)
    wait_for(lambda: "ssh" in descendants(run.pid), "its ssh to the host", run, interval=0.05)
    mask = _ignored_signals(run.pid)
    assert not mask & (1 << (signal.SIGINT - 1)), f"SigIgn {mask:#x}"
    os.kill(run.pid, signal.SIGINT)
    assert run.wait() == 128 + signal.SIGINT, text(run)[-3000:]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", ["collecting", "writing"])
def test_an_interrupted_audit_leaves_no_bundle_and_records_nothing(
    node: Node, inventories: Inventories, tmp_path: Path, signum: int, phase: str
) -> None:
    out = tmp_path / "out"
    run_id = None
    if phase == "collecting":  # while its ssh waits on the host
        run = node.start(*node.audit_args(inventories.slow, out))
        wait_for(lambda: "ssh" in descendants(run.pid), "its ssh to the host", run, interval=0.05)
        os.kill(run.pid, signum)
    else:
        run, run_id = stop_while_writing(node, inventories.fast, out, signum)
    code = run.wait()
    name = signal.Signals(signum).name
    assert code == 128 + signum, text(run)[-3000:]
    assert f"interrupted by {name}: the audit stopped; no evidence bundle was written" in text(run)
    assert "Traceback" not in run.stdout + run.stderr
    assert entries(out) == []  # no bundle, no archive, and no partial or lock either
    assert list(node.state.glob("audit-*")) == []  # the working directory is removed
    assert node.history() == []
    if run_id is not None:  # nothing under the names the bundle would have had
        for path in (out / run_id, out / f"{run_id}.tar.gz"):
            assert node.verify(path).returncode != 0

    after = node.kijun(*node.audit_args(inventories.fast, out))
    run_id = completed(node, after, out)
    assert entries(out) == [run_id, f"{run_id}.tar.gz"]
    assert node.history() == [run_id]


def test_a_signal_while_the_complete_bundle_is_finished_waits_for_it(
    node: Node, inventories: Inventories, tmp_path: Path
) -> None:
    """Once every file is in the bundle, a signal waits until the bundle is made durable,
    renamed and recorded: never a bundle under its final name that is not in the history."""
    out = tmp_path / "out"
    run = node.start(*node.audit_args(inventories.fast, out))
    signal_frozen(
        node, out, run, signal.SIGTERM,
        lambda: any(out.glob(".*.partial/manifest.json")) or any(out.glob(".*.partial.tar.gz")),
        "finishing the bundle",
        lambda: out.is_dir() and bundle_ids(out) == [],
    )  # fmt: skip
    run_id = completed(node, run, out)  # the run ends as it would have
    assert "SIGTERM came while the run was being finished: it was finished first" in text(run)
    assert entries(out) == [run_id, f"{run_id}.tar.gz"]
    assert node.history() == [run_id]


# -- two audits at once --------------------------------------------------------------------------


def lock_held_by(node: Node, pid: int) -> Path | None:
    """The lock file that names ``pid`` as its holder, if any."""
    for path in (node.state / "locks").glob("*.lock"):
        if path.read_text().split()[:1] == [str(pid)]:
            return path
    return None


def test_a_second_audit_of_the_same_inventory_is_refused_and_names_the_first(
    node: Node, inventories: Inventories, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = node.start(*node.audit_args(inventories.slow, out))
    wait_for(lambda: lock_held_by(node, first.pid) is not None, "the inventory's lock", first)
    lock = lock_held_by(node, first.pid)
    alias = tmp_path / "alias"  # the same inventory by another path
    alias.symlink_to(inventories.slow)
    second = node.kijun(*node.audit_args(alias, out))
    assert second.returncode == 2, text(second)[-3000:]
    assert (
        f"error: another kijun audit of {inventories.slow.resolve()} is running "
        f"(PID {first.pid}, lock {lock}): wait for it to end and run again, or pass --wait to "
        "wait for it"
    ) in text(second)
    assert "evidence:" not in text(second)
    run_id = completed(node, first, out)
    assert entries(out) == [run_id, f"{run_id}.tar.gz"]
    assert node.history() == [run_id]


def test_with_wait_the_second_audit_runs_once_the_first_has_ended(
    node: Node, inventories: Inventories, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = node.start(*node.audit_args(inventories.slow, out))
    wait_for(lambda: lock_held_by(node, first.pid) is not None, "the inventory's lock", first)
    lock = lock_held_by(node, first.pid)
    second = node.kijun(*node.audit_args(inventories.slow, out, "--wait"))
    assert (
        f"another kijun audit of {inventories.slow.resolve()} is running (PID {first.pid}, lock "
        f"{lock}): waiting for it to end"
    ) in text(second)
    first_id, second_id = completed(node, first, out), completed(node, second, out)
    assert run_doc(out, second_id)["started"] >= run_doc(out, first_id)["finished"]
    assert node.history() == sorted([first_id, second_id])


def test_audits_of_two_inventories_run_side_by_side_from_a_fresh_state(
    node: Node, inventories: Inventories, tmp_path: Path
) -> None:
    """Both first runs of a node: one signing key is made, not two."""
    out = tmp_path / "out"
    one = node.start(*node.audit_args(inventories.slow, out))
    other = node.start(*node.audit_args(inventories.other, out))
    ids = [completed(node, one, out), completed(node, other, out)]  # against the one key
    assert "another kijun audit" not in text(one) + text(other)
    runs = [run_doc(out, run_id) for run_id in ids]
    assert runs[0]["started"] < runs[1]["finished"] and runs[1]["started"] < runs[0]["finished"]
    assert node.history() == sorted(ids)
    assert len(list((node.state / "locks").glob("*.lock"))) == 2


# -- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small file system of its own (8 MiB), to fill."""
    if os.geteuid() != 0:
        pytest.skip("filling a disk needs a tmpfs of its own, and mounting one needs root")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        if (
            subprocess.run(["umount", str(mount)], check=False, stdin=subprocess.DEVNULL).returncode
            != 0
        ):
            subprocess.run(["umount", "--lazy", str(mount)], check=True, stdin=subprocess.DEVNULL)


def fill(mount: Path) -> Path:
    """Write to ``mount`` until it is full; the file that fills it."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, bytes(1 << 16))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    assert shutil.disk_usage(mount).free < 4096
    return filler


@pytest.mark.parametrize("full", ["out", "state"])
def test_a_full_disk_fails_the_run_clearly_and_keeps_nothing_of_it(
    tmp_path: Path, tmpfs: Path, inventories: Inventories, made: Made, full: str
) -> None:
    """``out``: the bundles' directory (--out) is full, the state directory elsewhere.
    ``state``: the state directory is full, with the bundles in it (no --out)."""
    if full == "out":
        node, out = seeded(tmp_path / "state", made, tmp_path / "logs"), tmpfs / "out"
        where = out
        args = node.audit_args(inventories.fast, out)
    else:
        node = seeded(tmpfs / "state", made, tmp_path / "logs")
        out, where = node.state / "evidence", node.state
        args = node.audit_args(inventories.fast, None)
    before = completed(node, node.kijun(*args), out)  # one run while there is room
    kept = entries(out)
    filler = fill(tmpfs)

    failed = node.kijun(*args)
    assert failed.returncode == 2, text(failed)[-3000:]
    assert "error: cannot write" in text(failed)
    assert "the disk is full (no space left on device)" in text(failed)
    assert str(where) in text(failed)
    assert "Traceback" not in failed.stdout + failed.stderr
    assert entries(out) == kept  # no bundle, no partial, no lock
    assert list(node.state.glob("audit-*")) == []

    filler.unlink()
    assert node.history() == [before]  # (SQLite opens nothing on a full disk: read it now)
    after = completed(node, node.kijun(*args), out)
    assert node.history() == sorted([before, after])
    assert node.verify(out / before).returncode == 0


# -- tampering -----------------------------------------------------------------------------------


@dataclass
class Made:
    """One audit's bundle on a node whose key directory existed, readable by all, before the
    first run made the key there (under umask 000)."""

    node: Node
    bundle: Path
    archive: Path
    other_key: Path  # a forger's own signing key


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, inventories: Inventories) -> Made:
    base = tmp_path_factory.mktemp("made")
    node = Node(base / "state", base / "logs")
    keys = node.state / "keys"
    keys.mkdir(parents=True)
    keys.chmod(0o755)
    out = base / "out"
    run_id = completed(node, node.kijun(*node.audit_args(inventories.fast, out), umask=0), out)
    signing.init_keys(base / "forger")
    return Made(
        node, out / run_id, out / f"{run_id}.tar.gz", base / "forger" / "evidence-signing.key"
    )


def forge_a_pass(bundle: Path) -> None:
    """A control not assessed becomes a pass in results.json; the file keeps its size."""
    path = bundle / "results.json"
    before = path.read_bytes()
    after = before.replace(b'"status": "not_assessed"', b'"status": "pass"' + b" " * 8, 1)
    assert after != before and len(after) == len(before)
    path.write_bytes(after)


def relist(bundle: Path, *names: str) -> None:
    """Rewrite the manifest so it lists ``names`` as they are now (the signature is not)."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    for name in names:
        data = (bundle / name).read_bytes()
        manifest["files"][name].update(sha256=sha256_hex(data), size=len(data))
    (bundle / MANIFEST).write_bytes(manifest_bytes(manifest))


def sign(bundle: Path, key: Path, *, embedded: str = "signer's") -> None:
    """Sign the manifest as it is now with ``key``; ``embedded`` says which public key and
    fingerprint manifest.sig then shows: the signer's, the original's, or the signer's key with
    the original's fingerprint."""
    original = json.loads((bundle / SIGNATURE).read_text())
    sig = signing.sign((bundle / MANIFEST).read_bytes(), signing.load_private_key(key))
    if embedded == "original":
        sig.update(public_key=original["public_key"], fingerprint=original["fingerprint"])
    elif embedded == "original fingerprint":
        sig["fingerprint"] = original["fingerprint"]
    (bundle / SIGNATURE).write_text(json.dumps(sig, indent=2, sort_keys=True) + "\n")


def rewrite_archive(archive: Path, edit: Callable[[tarfile.TarFile, str], None]) -> None:
    """Rewrite ``archive``: its members as they are, then whatever ``edit`` adds."""
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            handle = tar.extractfile(member)
            members.append((member, handle.read() if handle else None))
    top = members[0][0].name
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
        edit(tar, top)


def add_member(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data))


def drop_member(archive: Path, name: str) -> None:
    """Rewrite ``archive`` without its member ``<top>/name``."""
    kept: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.name.partition("/")[2] != name:
                handle = tar.extractfile(member)
                kept.append((member, handle.read() if handle else None))
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in kept:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)


def swap(bundle: Path, one: str, other: str) -> None:
    a, b = (bundle / one).read_bytes(), (bundle / other).read_bytes()
    (bundle / one).write_bytes(b)
    (bundle / other).write_bytes(a)


def symlink_to_copy(bundle: Path, name: str) -> None:
    copy = bundle.parent / f"{name}.copy"
    shutil.copy(bundle / name, copy)
    (bundle / name).unlink()
    (bundle / name).symlink_to(copy)


def other_signature_same_key(bundle: Path, made: Made) -> None:
    """A real signature by the bundle's own key, of another manifest (another run's)."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["metadata"]["operator"] = "someone@else"
    key = made.node.state / "keys" / signing.PRIVATE_KEY_NAME
    sig = signing.sign(manifest_bytes(manifest), signing.load_private_key(key))
    (bundle / SIGNATURE).write_text(json.dumps(sig, indent=2, sort_keys=True) + "\n")


def edit_metadata(bundle: Path) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["metadata"]["operator"] = "someone@else"
    (bundle / MANIFEST).write_bytes(manifest_bytes(manifest))


@dataclass(frozen=True)
class Tamper:
    """One way to alter a bundle, and what `kijun verify` must name when it finds it."""

    what: str
    change: Callable[[Path, Made], None]  # on a copy of the bundle directory, or of the archive
    names: tuple[str, ...]
    forms: tuple[str, ...] = ("directory", "archive")  # archive: the altered directory, packed
    trusted: bool = False  # found only against the trusted public key (--trusted-key)
    also: str = ""  # the test of tests/test_signing.py that covers it in the library too


ARCHIVE = ("archive only",)  # changes made to kijun's own .tar.gz

TAMPERING = [
    Tamper("a file edited (its size changes)",
           lambda b, m: (b / "results.json").write_text((b / "results.json").read_text() + " "),
           ("results.json: content differs",)),
    Tamper("a file edited in one byte (same size)", lambda b, m: flip(b / "checklist.csv"),
           ("checklist.csv: content differs",),
           also="test_one_changed_byte_in_any_file_fails_and_names_it"),
    Tamper("a file replaced by another of the same size (a result forged to pass)",
           lambda b, m: forge_a_pass(b), ("results.json: content differs",)),
    Tamper("a file emptied", lambda b, m: (b / "report.html").write_bytes(b""),
           ("report.html: content differs",)),
    Tamper("two files' contents swapped", lambda b, m: swap(b, "junit.xml", "checklist.csv"),
           ("junit.xml: content differs", "checklist.csv: content differs")),
    Tamper("a file added", lambda b, m: (b / "notes.txt").write_text("all pass\n"),
           ("notes.txt: present but not listed",), also="test_added_and_removed_files_are_named"),
    Tamper("a file added in a new directory",
           lambda b, m: (b / "raw" / "ghost01").mkdir(parents=True)
           or (b / "raw/ghost01/time.txt").write_text("synchronised\n"),
           ("raw/ghost01/time.txt: present but not listed",)),
    Tamper("a file removed", lambda b, m: (b / "junit.xml").unlink(),
           ("junit.xml: listed in the manifest but missing",),
           also="test_added_and_removed_files_are_named"),
    Tamper("a file renamed", lambda b, m: (b / "junit.xml").rename(b / "junit-old.xml"),
           ("junit.xml: listed in the manifest but missing",
            "junit-old.xml: present but not listed")),
    Tamper("a file replaced by a symbolic link to its copy",
           lambda b, m: symlink_to_copy(b, "report.html"), ("report.html",),
           also="test_a_symlink_in_a_bundle_is_a_problem"),
    Tamper("the manifest's metadata edited (who ran it)", lambda b, m: edit_metadata(b),
           ("manifest.json: does not match the signature",),
           also="test_every_byte_of_the_manifest_and_signature_is_covered"),
    Tamper("a file forged and the manifest rewritten to list it",
           lambda b, m: (forge_a_pass(b), relist(b, "results.json")),
           ("manifest.json: does not match the signature",)),
    Tamper("the manifest removed", lambda b, m: (b / MANIFEST).unlink(),
           ("manifest.json: missing",), also="test_a_bundle_without_manifest_does_not_verify"),
    Tamper("the signature removed", lambda b, m: (b / SIGNATURE).unlink(),
           ("manifest.sig: missing",), also="test_an_unsigned_bundle_does_not_verify"),
    Tamper("the signature edited in one byte", lambda b, m: flip(b / SIGNATURE),
           ("manifest.sig",), also="test_every_byte_of_the_manifest_and_signature_is_covered"),
    Tamper("the signature replaced by the same key's signature of another manifest",
           other_signature_same_key, ("manifest.json: does not match the signature",)),
    Tamper("a file forged, the manifest rewritten and signed by another key, the embedded "
           "public key kept",
           lambda b, m: (forge_a_pass(b), relist(b, "results.json"),
                         sign(b, m.other_key, embedded="original")),
           ("manifest.json: does not match the signature in manifest.sig",),
           also="test_a_signature_by_another_key_under_the_embedded_key_is_invalid"),
    Tamper("a file forged, the manifest rewritten and signed by another key whose public key "
           "replaces the embedded one, the fingerprint kept",
           lambda b, m: (forge_a_pass(b), relist(b, "results.json"),
                         sign(b, m.other_key, embedded="original fingerprint")),
           ("manifest.sig: its fingerprint is not that of its public key",)),
    Tamper("a file forged, the manifest rewritten and signed by another key whose public key "
           "replaces the embedded one",
           lambda b, m: (forge_a_pass(b), relist(b, "results.json"), sign(b, m.other_key)),
           ("manifest.sig: signed by key", "not by the trusted key"), trusted=True,
           also="test_a_bundle_signed_by_a_foreign_key_is_reported"),
    Tamper("the archive's compressed bytes changed in one byte", lambda a, m: flip(a),
           ("not a readable .tar.gz",), ARCHIVE),
    Tamper("the archive cut short", lambda a, m: a.write_bytes(a.read_bytes()[:-1000]),
           ("not a readable .tar.gz",), ARCHIVE, also="test_a_damaged_archive_is_reported"),
    Tamper("a member added outside the bundle's directory",
           lambda a, m: rewrite_archive(a, lambda t, top: add_member(t, "elsewhere/x.txt")),
           ("elsewhere",), ARCHIVE,
           also="test_an_archive_with_a_member_outside_the_bundle_is_reported"),
    Tamper("a file twice in the archive, the second copy different",
           lambda a, m: rewrite_archive(
               a, lambda t, top: add_member(t, f"{top}/results.json", b"{}\n")),
           ("results.json: unreadable or twice in the archive",), ARCHIVE),
    Tamper("a member replaced by a hard link to another",
           lambda a, m: (drop_member(a, "junit.xml"), rewrite_archive(
               a, lambda t, top: add_member(t, f"{top}/junit.xml", type=tarfile.LNKTYPE,
                                            linkname=f"{top}/checklist.csv"))),
           ("junit.xml: not a regular file",), ARCHIVE),
    Tamper("a member replaced by a symbolic link",
           lambda a, m: (drop_member(a, "report.html"), rewrite_archive(
               a, lambda t, top: add_member(t, f"{top}/report.html", type=tarfile.SYMTYPE,
                                            linkname="/etc/hostname"))),
           ("report.html: not a regular file",), ARCHIVE,
           also="test_an_archive_with_a_member_outside_the_bundle_is_reported"),
]  # fmt: skip

CASES = [(t, form) for t in TAMPERING for form in t.forms]


@pytest.mark.parametrize(("tamper", "form"), CASES, ids=[f"{t.what} [{form}]" for t, form in CASES])
def test_every_way_of_tampering_is_caught_and_named(
    made: Made, tmp_path: Path, tamper: Tamper, form: str
) -> None:
    if form == "archive only":
        target = tmp_path / made.archive.name
        shutil.copy(made.archive, target)
        tamper.change(target, made)
    else:
        copy = tmp_path / made.bundle.name
        shutil.copytree(made.bundle, copy, symlinks=True)
        tamper.change(copy, made)
        target = copy if form == "directory" else pack(copy, tmp_path / made.archive.name)
    report = made.node.verify(target, trusted=tamper.trusted)
    assert report.returncode == 1, report.stdout
    assert "FAILED" in report.stdout
    for name in tamper.names:
        assert name in " ".join(report.stdout.split()), f"{name!r} not named: {report.stdout}"
    if tamper.trusted:  # without the trusted key the bundle is consistent in itself, and says
        alone = made.node.verify(target, trusted=False)  # that who signed was not checked
        assert alone.returncode == 0 and "who signed was not checked" in alone.stdout


def test_the_table_counts_each_way_once_and_names_real_library_tests() -> None:
    assert len({t.what for t in TAMPERING}) == len(TAMPERING)
    for tamper in TAMPERING:
        assert not tamper.also or callable(getattr(signing_tests, tamper.also, None)), tamper.also


def test_the_untampered_bundle_verifies_in_both_forms(made: Made) -> None:
    """What the table alters verifies as made (so each failure above is the alteration's)."""
    for path in (made.bundle, made.archive):
        report = made.node.verify(path)
        assert report.returncode == 0 and report.stdout.startswith(f"{path}: OK"), report.stdout


# -- the signing key -----------------------------------------------------------------------------


def test_the_signing_key_is_its_owners_alone(made: Made) -> None:
    """Made by the first audit under umask 000, in a key directory readable by all before."""
    keys = made.node.state / "keys"
    assert stat.S_IMODE((keys / signing.PRIVATE_KEY_NAME).stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) & 0o077 == 0
    assert made.node.public_key.is_file()


def private_key_forms(path: Path) -> dict[str, bytes]:
    """The private key as it could be found written anywhere."""
    pem = path.read_bytes()
    key = signing.load_private_key(path)
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )  # fmt: skip
    body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))
    return {
        "the PEM file": pem,
        "the PEM body": body,
        "the raw key": raw,
        "the raw key in base64": base64.b64encode(raw),
        "the raw key in hex": raw.hex().encode(),
    }


def contents(bundle: Path, archive: Path) -> dict[str, bytes]:
    """Every file of a bundle, every member of its archive, and the archive itself (compressed
    and not)."""
    found = {f"{p}": p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file()}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            handle = tar.extractfile(member)
            if handle is not None:
                found[f"{archive}:{member.name}"] = handle.read()
    found[str(archive)] = archive.read_bytes()
    found[f"{archive} (decompressed)"] = gzip.decompress(found[str(archive)])
    return found


def key_written(bundle: Path, archive: Path, forms: dict[str, bytes]) -> list[str]:
    return [
        f"{what} in {where}"
        for where, data in contents(bundle, archive).items()
        for what, needle in forms.items()
        if needle in data
    ]


def test_no_bundle_holds_the_private_key(made: Made, tmp_path: Path) -> None:
    forms = private_key_forms(made.node.state / "keys" / signing.PRIVATE_KEY_NAME)
    assert key_written(made.bundle, made.archive, forms) == []
    # The search finds the key where it is: a copy of the bundle with the PEM body in a file.
    copy = tmp_path / made.bundle.name
    shutil.copytree(made.bundle, copy)
    with (copy / "report.html").open("ab") as handle:
        handle.write(forms["the PEM body"])
    found = key_written(copy, pack(copy, tmp_path / made.archive.name), forms)
    assert f"the PEM body in {copy / 'report.html'}" in found
    assert f"the PEM body in {tmp_path / made.archive.name}:{copy.name}/report.html" in found
