"""Evidence bundles: what a run writes for an auditor (監査), written so it can be trusted.

A bundle is a directory ``<out_dir>/<run_id>/`` and the same content as
``<out_dir>/<run_id>.tar.gz`` (one top directory, ``<run_id>/``). ``manifest.json`` lists every
other file with its sha256, size and the redactions made in it, plus the run's metadata;
``manifest.sig`` signs ``manifest.json`` (see :mod:`kijun.signing`, which also verifies bundles).
The manifest lists neither itself nor the signature.

Writing is all or nothing. :class:`BundleWriter` writes into ``<out_dir>/.<run_id>.partial/``
and only on a clean exit writes the manifest and signature, builds the archive as
``.<run_id>.partial.tar.gz`` and renames both to their final names. On an exception or Ctrl-C
the partial directory is removed; if the process dies instead, what remains is named
``.<run_id>.partial*``, never like a bundle, and the next writer in the same ``out_dir``
removes it. A writer holds a lock (``.<run_id>.lock``, flock) for its whole run, so a
concurrent run's partial is never taken for a stale one.

Text and JSON are redacted by :mod:`kijun.redact` unless the caller says otherwise; bytes are
written as given::

    with BundleWriter(out, run_id, metadata=meta, sign=signing.signer()) as bundle:
        bundle.add_json("results.json", results)
        bundle.add_text("raw/lg-app01/time/chrony.conf", text)
        bundle.metadata["finished"] = utc_now()
"""

from __future__ import annotations

import fcntl
import getpass
import gzip
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

from kijun.paths import write_error_text
from kijun.redact import redact, redact_json

SCHEMA = "kijun-manifest/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
RESERVED = frozenset({MANIFEST, SIGNATURE})

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LEFTOVER_RE = re.compile(r"^\.(?P<run_id>.+?)\.(?:partial|partial\.tar\.gz|lock)$")

Signer = Callable[[bytes], Mapping[str, str]]  # manifest bytes -> manifest.sig content


class EvidenceError(RuntimeError):
    """A bundle cannot be written as asked (bad path, bundle exists, run in progress, the disk
    is full)."""


def check_relpath(relpath: str) -> str:
    """``relpath`` as a bundle path (``a/b.txt``), or EvidenceError saying what is wrong."""
    path = PurePosixPath(relpath)
    if (
        not relpath
        or "\\" in relpath
        or "\0" in relpath
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in relpath.split("/"))
    ):
        raise EvidenceError(
            f"bundle path {relpath!r} must be relative, with '/' between names and no '.' or '..'"
        )
    return relpath


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The exact bytes of manifest.json (what the signature covers)."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _write_file(path: Path, data: bytes, *, exclusive: bool = True, sync: bool = True) -> None:
    try:
        with path.open("xb" if exclusive else "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
    except OSError as exc:
        if exc.filename is None:  # a failed write names no file: say which
            exc.filename = str(path)
        raise


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove_leftovers(out_dir: Path, run_id: str) -> None:
    shutil.rmtree(out_dir / f".{run_id}.partial", ignore_errors=True)
    (out_dir / f".{run_id}.partial.tar.gz").unlink(missing_ok=True)


def clean_stale_partials(out_dir: Path, *, keep: str | None = None) -> list[str]:
    """Remove what crashed runs left in ``out_dir``; the run ids cleaned.

    A leftover is stale when no process holds its run's lock. ``keep`` is the caller's own run.
    """
    if not out_dir.is_dir():
        return []
    run_ids = {m["run_id"] for p in out_dir.iterdir() if (m := _LEFTOVER_RE.match(p.name))}
    cleaned = []
    for run_id in sorted(run_ids - {keep}):
        lock_path = out_dir / f".{run_id}.lock"
        fd = _try_lock(lock_path)
        if fd is None:
            continue  # that run is still writing
        try:
            _remove_leftovers(out_dir, run_id)
            lock_path.unlink(missing_ok=True)
            cleaned.append(run_id)
        finally:
            os.close(fd)
    return cleaned


class BundleWriter:
    """Write one bundle atomically; use as a context manager (see the module's docstring)."""

    def __init__(
        self,
        out_dir: Path,
        run_id: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        sign: Signer | None = None,
    ) -> None:
        if not RUN_ID_RE.match(run_id) or run_id.endswith(".partial"):
            raise EvidenceError(
                f"run id {run_id!r} must be letters, digits, '.', '_' or '-', starting with a "
                "letter or digit"
            )
        self.out_dir = out_dir
        self.run_id = run_id
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.bundle_dir = out_dir / run_id
        self.archive = out_dir / f"{run_id}.tar.gz"
        self._sign = sign
        self._partial = out_dir / f".{run_id}.partial"
        self._partial_archive = out_dir / f".{run_id}.partial.tar.gz"
        self._lock_path = out_dir / f".{run_id}.lock"
        self._lock: int | None = None
        self._files: dict[str, dict[str, Any]] = {}

    def _write_failed(self, exc: OSError) -> EvidenceError:
        return EvidenceError(
            f"cannot write the evidence bundle {self.run_id} in {self.out_dir}: "
            f"{write_error_text(exc)}; nothing of it was kept"
        )

    def __enter__(self) -> BundleWriter:
        for final in (self.bundle_dir, self.archive):
            if final.exists():
                raise EvidenceError(f"{final} already exists: a bundle is never overwritten")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._lock = _try_lock(self._lock_path)
        except OSError as exc:
            raise self._write_failed(exc) from None
        if self._lock is None:
            raise EvidenceError(
                f"another run with id {self.run_id!r} is writing to {self.out_dir} "
                f"(it holds {self._lock_path})"
            )
        try:
            clean_stale_partials(self.out_dir, keep=self.run_id)
            _remove_leftovers(self.out_dir, self.run_id)  # ours, from a crashed run with this id
            self._partial.mkdir()
        except OSError as exc:
            self._unlock()
            raise self._write_failed(exc) from None
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            _remove_leftovers(self.out_dir, self.run_id)  # no-op after a clean finish
            self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock_path.unlink(missing_ok=True)
            os.close(self._lock)
            self._lock = None

    # -- adding files --------------------------------------------------------------------------

    def add_bytes(
        self, relpath: str, data: bytes, *, redactions: Mapping[str, int] | None = None
    ) -> None:
        """Add a file as given (no redaction); ``redactions`` records what the caller did."""
        if self._lock is None:
            raise EvidenceError("add files inside 'with BundleWriter(...)'")
        check_relpath(relpath)
        if relpath in RESERVED:
            raise EvidenceError(f"{relpath} is written by the bundle itself")
        clash = [p for p in self._files if p == relpath or relpath.startswith(p + "/")]
        clash += [p for p in self._files if p.startswith(relpath + "/")]
        if clash:
            raise EvidenceError(f"{relpath} clashes with {clash[0]}, already in the bundle")
        target = self._partial / relpath
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_file(target, data, sync=False)  # made durable together in _finish
        except OSError as exc:
            raise self._write_failed(exc) from None
        self._files[relpath] = {
            "sha256": sha256_hex(data),
            "size": len(data),
            "redactions": dict(sorted((redactions or {}).items())),
        }

    def add_text(self, relpath: str, text: str, *, redact_secrets: bool = True) -> None:
        """Add UTF-8 text, redacted by :func:`kijun.redact.redact` unless told otherwise."""
        fired: list[str] = []
        if redact_secrets:
            text, fired = redact(text)
        self.add_bytes(relpath, text.encode(), redactions=Counter(fired))

    def add_json(self, relpath: str, obj: Any, *, redact_secrets: bool = True) -> None:
        """Add a JSON document (every string redacted unless told otherwise)."""
        fired: list[str] = []
        if redact_secrets:
            obj, fired = redact_json(obj)
        text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
        self.add_bytes(relpath, text.encode(), redactions=Counter(fired))

    # -- closing -------------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "metadata": self.metadata,
            "files": dict(sorted(self._files.items())),
        }

    def _finish(self) -> None:
        try:
            self._finish_writing()
        except OSError as exc:
            raise self._write_failed(exc) from None

    def _finish_writing(self) -> None:
        # The evidence files reach the disk before the manifest that lists them is written. A
        # bundle has hundreds of small files: they are synced together, in parallel (one after
        # the other, the fsyncs cost a large part of a run).
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(_fsync_path, [self._partial / rel for rel in self._files]))
        data = manifest_bytes(self.manifest())
        _write_file(self._partial / MANIFEST, data)
        if self._sign is not None:
            signature = json.dumps(dict(self._sign(data)), indent=2, sort_keys=True) + "\n"
            _write_file(self._partial / SIGNATURE, signature.encode())
        _fsync_dir(self._partial)
        self._write_archive()
        os.rename(self._partial, self.bundle_dir)
        os.rename(self._partial_archive, self.archive)
        _fsync_dir(self.out_dir)

    def _write_archive(self) -> None:
        def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            return info

        try:
            with self._partial_archive.open("xb") as raw:
                with (
                    gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
                    tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
                ):
                    tar.add(self._partial, arcname=self.run_id, recursive=False, filter=normalise)
                    for path in sorted(p for p in self._partial.rglob("*")):
                        arcname = f"{self.run_id}/{path.relative_to(self._partial).as_posix()}"
                        tar.add(path, arcname=arcname, recursive=False, filter=normalise)
                raw.flush()
                os.fsync(raw.fileno())
        except OSError as exc:
            if exc.filename is None:
                exc.filename = str(self._partial_archive)
            raise


# -- metadata for the manifest -----------------------------------------------------------------


def utc_now() -> str:
    """The current UTC time as ISO 8601 (``2026-01-31T09:30:00Z``)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _run(argv: list[str], cwd: Path | None = None) -> tuple[int, str, str]:
    """rc, stdout, stderr of a short local command; rc 127 if it is not installed."""
    if shutil.which(argv[0]) is None:
        return 127, "", f"{argv[0]} is not installed"
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 126, "", str(exc)
    return proc.returncode, proc.stdout, proc.stderr


def git_state(repo: Path) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the baseline checkout; both None (and ``error``) if unknown.

    Dirty means any change to tracked files or any untracked file that git does not ignore.
    """
    rc, commit, err = _run(["git", "rev-parse", "--verify", "HEAD"], cwd=repo)
    if rc != 0:
        return {"commit": None, "dirty": None, "error": err.strip() or f"git exited {rc}"}
    rc, status, err = _run(["git", "status", "--porcelain", "--untracked-files=normal"], repo)
    if rc != 0:
        return {"commit": commit.strip(), "dirty": None, "error": err.strip()}
    return {"commit": commit.strip(), "dirty": bool(status.strip())}


def tree_hash(paths: Iterable[Path], *, base: Path | None = None) -> str:
    """sha256 over the files under ``paths`` (files or directories), by relative path.

    Names are relative to ``base``, by default to each path's parent (``catalog/controls/x.yml``
    for ``catalog``), so the hash does not depend on where the checkout is. The hash is that of
    a ``sha256sum``-style listing (``<sha256>  <name>\\n`` per file, names sorted), so an
    auditor can recompute it: ``find catalog -type f | LC_ALL=C sort | xargs sha256sum |
    sha256sum``.
    """
    entries: dict[str, str] = {}
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: nothing to hash")
        root = base if base is not None else path.parent
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            entries[file.relative_to(root).as_posix()] = sha256_hex(file.read_bytes())
    listing = "".join(f"{digest}  {name}\n" for name, digest in sorted(entries.items()))
    return sha256_hex(listing.encode())


def operator() -> str:
    """Who ran kijun: ``user@host``, with the sudo caller when run through sudo."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.geteuid()}"
    who = f"{user}@{socket.gethostname()}"
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user and sudo_user != user:
        who += f" (sudo from {sudo_user})"
    return who


def _key_values(text: str, sep: str) -> dict[str, str]:
    pairs = (line.split(sep, 1) for line in text.splitlines() if sep in line)
    return {key.strip(): value.strip() for key, value in pairs}


def parse_timedatectl(text: str) -> dict[str, Any]:
    values = _key_values(text, "=")
    return {
        "ntp_synchronized": values.get("NTPSynchronized") == "yes",
        "ntp_service": values.get("NTP") == "yes",
        "timezone": values.get("Timezone"),
    }


def parse_chronyc_tracking(text: str) -> dict[str, Any]:
    values = _key_values(text, ":")
    return {
        "reference": values.get("Reference ID"),
        "stratum": values.get("Stratum"),
        "system_time": values.get("System time"),
        "leap_status": values.get("Leap status"),
    }


def control_node_time_sync() -> dict[str, Any]:
    """The control node's own clock: is it synchronised, according to what.

    Asks ``timedatectl show`` and ``chronyc tracking``; either may be absent or fail (a
    container without systemd, no chrony), which is recorded as found, never raised.
    ``synchronized`` is True or False when a tool could say, None when none could.
    """
    result: dict[str, Any] = {"checked_at": utc_now()}
    verdicts: list[bool] = []
    rc, out, err = _run(["timedatectl", "show"])
    if rc == 0:
        result["timedatectl"] = {"found": True, **parse_timedatectl(out)}
        verdicts.append(result["timedatectl"]["ntp_synchronized"])
    else:
        result["timedatectl"] = {"found": False, "reason": _reason(rc, err)}
    rc, out, err = _run(["chronyc", "-n", "tracking"])
    if rc == 0:
        tracking = parse_chronyc_tracking(out)
        result["chronyc"] = {"found": True, **tracking}
        status = tracking["leap_status"]
        if status is not None:
            verdicts.append(status != "Not synchronised")
    else:
        result["chronyc"] = {"found": False, "reason": _reason(rc, err)}
    result["synchronized"] = any(verdicts) if verdicts else None
    return result


def _reason(rc: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    return lines[0].strip() if lines else f"exited {rc}"
