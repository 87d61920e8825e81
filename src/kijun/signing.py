"""Ed25519 signatures on evidence bundles, and offline verification of a bundle.

The organisation makes one key pair (:func:`init_keys`, by default in ``.kijun/keys/`` of the
checkout) and gives the auditor the public key (``evidence-signing.pub``, PEM) out of band. A
run signs the exact bytes of ``manifest.json``; ``manifest.sig`` beside it holds::

    {"algorithm": "ed25519", "public_key": "<base64 raw key>",
     "fingerprint": "<sha256 hex of the raw key>", "signature": "<base64>"}

:func:`verify_bundle` checks a bundle directory or its ``.tar.gz``: the signature (against the
embedded key, and against the auditor's trusted key when given) and every file against the
manifest. Without kijun, OpenSSL 3 checks the signature with the trusted key::

    python3 -c 'import json,base64,sys; sys.stdout.buffer.write(base64.b64decode(
        json.load(open("manifest.sig"))["signature"]))' > sig.bin
    openssl pkeyutl -verify -pubin -inkey evidence-signing.pub -rawin \\
        -in manifest.json -sigfile sig.bin
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kijun.evidence import (
    MANIFEST,
    SCHEMA,
    SIGNATURE,
    EvidenceError,
    Signer,
    check_relpath,
    sha256_hex,
)
from kijun.paths import state_dir, write_error_text

ALGORITHM = "ed25519"
PRIVATE_KEY_NAME = "evidence-signing.key"
PUBLIC_KEY_NAME = "evidence-signing.pub"


class SigningError(RuntimeError):
    """A key cannot be made or read (exists, wrong mode, not an Ed25519 key)."""


def default_key_dir() -> Path:
    return state_dir() / "keys"


# -- keys ----------------------------------------------------------------------------------------


def init_keys(key_dir: Path | None = None, *, force: bool = False) -> Path:
    """Make a key pair in ``key_dir`` (private key mode 0600, the directory 0700); the public
    key's path. Concurrent callers are serialised (a lock file in ``key_dir``): one makes the
    key, the others find it made."""
    key_dir = key_dir if key_dir is not None else default_key_dir()
    try:
        with _key_dir_lock(key_dir):
            return _init_keys(key_dir, force)
    except OSError as exc:
        raise SigningError(
            f"cannot make the signing key in {key_dir}: {write_error_text(exc)}"
        ) from None


def ensure_key(key_dir: Path | None = None) -> Path | None:
    """Make the key pair unless ``key_dir`` has one; the new public key's path, or None."""
    key_dir = key_dir if key_dir is not None else default_key_dir()
    if (key_dir / PRIVATE_KEY_NAME).exists():
        return None
    try:
        return init_keys(key_dir)
    except SigningError:
        if (key_dir / PRIVATE_KEY_NAME).exists():  # another run made it meanwhile
            return None
        raise


@contextmanager
def _key_dir_lock(key_dir: Path) -> Iterator[None]:
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    status = key_dir.stat()
    if status.st_mode & 0o077 and status.st_uid == os.geteuid():
        key_dir.chmod(0o700)  # made beforehand, readable by others: only its owner looks in
    fd = os.open(key_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _init_keys(key_dir: Path, force: bool) -> Path:
    private_path, public_path = key_dir / PRIVATE_KEY_NAME, key_dir / PUBLIC_KEY_NAME
    existing = [str(p) for p in (private_path, public_path) if p.exists()]
    if existing and not force:
        raise SigningError(
            f"{' and '.join(existing)} already exist: refusing to replace the signing key "
            "(bundles signed with it verify only with its public key; keep that if you force)"
        )
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        _replace(private_path, private_pem, 0o600)
        _replace(public_path, public_pem, 0o644)
    except OSError:
        if not existing:  # no half pair (a private key without its public key) stays behind
            private_path.unlink(missing_ok=True)
            public_path.unlink(missing_ok=True)
        raise
    return public_path


def _replace(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_private_key(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SigningError(f"{path} is readable by others (mode {mode:o}): chmod 600 {path}")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SigningError(f"cannot read {path} as a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"{path} is not an Ed25519 public key")
    return key


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """sha256 hex of the raw 32-byte public key."""
    return sha256_hex(_raw(key))


# -- signing -------------------------------------------------------------------------------------


def sign(manifest: bytes, private_key: Ed25519PrivateKey) -> dict[str, str]:
    """The content of ``manifest.sig`` for the exact bytes of ``manifest.json``."""
    public = private_key.public_key()
    return {
        "algorithm": ALGORITHM,
        "public_key": base64.b64encode(_raw(public)).decode(),
        "fingerprint": fingerprint(public),
        "signature": base64.b64encode(private_key.sign(manifest)).decode(),
    }


def signer(private_key_path: Path | None = None) -> Signer:
    """A signer for :class:`kijun.evidence.BundleWriter` (default: the checkout's key)."""
    path = private_key_path or default_key_dir() / PRIVATE_KEY_NAME
    if not path.exists():
        raise SigningError(f"no signing key at {path}: make one with init_keys (kijun keys init)")
    key = load_private_key(path)

    def sign_with(data: bytes) -> dict[str, str]:
        return sign(data, key)

    return sign_with


# -- verification --------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    bundle: Path
    run_id: str | None = None
    fingerprint: str | None = None  # of the key that signed the manifest
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)  # present, not in the manifest
    removed: list[str] = field(default_factory=list)  # in the manifest, missing
    problems: list[str] = field(default_factory=list)  # each starts with the file it is about
    notes: list[str] = field(default_factory=list)  # worth knowing, not failures

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        verdict = "OK" if self.ok else f"FAILED ({len(self.problems)} problems)"
        lines = [f"{self.bundle}: {verdict}"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def verify_bundle(path: Path, trusted_public_key: Path | None = None) -> VerifyReport:
    """Check a bundle (directory or ``.tar.gz``) against its manifest and signature. Offline."""
    report = VerifyReport(bundle=path)
    if path.is_dir():
        files = _read_directory(path, report)
    elif path.is_file():
        files = _read_archive(path, report)
    else:
        report.problems.append(f"{path}: no such bundle directory or archive")
        return report
    manifest_data = files.pop(MANIFEST, None)
    signature_data = files.pop(SIGNATURE, None)
    if manifest_data is None:
        report.problems.append(f"{MANIFEST}: missing, so nothing in the bundle can be verified")
        return report
    _check_signature(report, manifest_data, signature_data, trusted_public_key)
    try:
        manifest = json.loads(manifest_data)
    except ValueError as exc:
        report.problems.append(f"{MANIFEST}: not valid JSON ({exc})")
        return report
    if not (
        isinstance(manifest, dict)
        and manifest.get("schema") == SCHEMA
        and isinstance(manifest.get("files"), dict)
    ):
        report.problems.append(f"{MANIFEST}: not a {SCHEMA} manifest")
        return report
    report.run_id = manifest.get("run_id")
    listed: dict[str, Any] = manifest["files"]
    for rel, entry in sorted(listed.items()):
        try:
            check_relpath(rel)
        except EvidenceError:
            report.problems.append(f"{MANIFEST}: lists {rel!r}, which is not a bundle path")
            continue
        data = files.get(rel)
        if data is None:
            report.removed.append(rel)
            report.problems.append(f"{rel}: listed in the manifest but missing")
        elif not isinstance(entry, dict) or (entry.get("sha256"), entry.get("size")) != (
            sha256_hex(data),
            len(data),
        ):
            report.changed.append(rel)
            report.problems.append(f"{rel}: content differs from the manifest (sha256, size)")
    for rel in sorted(set(files) - set(listed)):
        report.added.append(rel)
        report.problems.append(f"{rel}: present but not listed in the manifest")
    return report


def _b64(value: Any) -> bytes:
    """Decode canonical base64 only, so that no edit of manifest.sig goes unnoticed."""
    if not isinstance(value, str):
        raise ValueError("not a base64 string")
    data = base64.b64decode(value, validate=True)
    if base64.b64encode(data).decode() != value:
        raise ValueError("not canonical base64")
    return data


def _check_signature(
    report: VerifyReport, manifest: bytes, signature: bytes | None, trusted: Path | None
) -> None:
    if signature is None:
        report.problems.append(f"{SIGNATURE}: missing, so the bundle is not signed")
        return
    try:
        doc = json.loads(signature)
        if not isinstance(doc, dict) or doc.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm is not {ALGORITHM}")
        key = Ed25519PublicKey.from_public_bytes(_b64(doc.get("public_key")))
        raw_signature = _b64(doc.get("signature"))
    except ValueError as exc:
        report.problems.append(f"{SIGNATURE}: unreadable ({exc})")
        return
    report.fingerprint = fingerprint(key)
    if doc.get("fingerprint") != report.fingerprint:
        report.problems.append(f"{SIGNATURE}: its fingerprint is not that of its public key")
    try:
        key.verify(raw_signature, manifest)
    except InvalidSignature:
        report.problems.append(
            f"{MANIFEST}: does not match the signature in {SIGNATURE} "
            "(one of them was changed after signing)"
        )
    if trusted is None:
        report.notes.append(
            f"signed by key {report.fingerprint}; no trusted public key was given, so who "
            "signed was not checked"
        )
        return
    trusted_key = load_public_key(trusted)
    if _raw(trusted_key) != _raw(key):
        report.problems.append(
            f"{SIGNATURE}: signed by key {report.fingerprint}, not by the trusted key "
            f"{fingerprint(trusted_key)} ({trusted})"
        )


def _read_directory(root: Path, report: VerifyReport) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                report.problems.append(f"{rel}: not a regular file or directory")
            elif path.is_file():
                files[rel] = path.read_bytes()
    return files


def _read_archive(archive: Path, report: VerifyReport) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    tops: set[str] = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                top, _, rel = member.name.strip("/").partition("/")
                tops.add(top)
                if member.isdir():
                    continue
                if not member.isfile():
                    report.problems.append(f"{rel or member.name}: not a regular file")
                    continue
                try:
                    check_relpath(rel)
                except EvidenceError:
                    report.problems.append(f"{member.name}: not inside the bundle's directory")
                    continue
                extracted = tar.extractfile(member)
                if extracted is None or rel in files:
                    report.problems.append(f"{rel}: unreadable or twice in the archive")
                    continue
                files[rel] = extracted.read()
            # Read the compressed stream to its end and checksum: a cut or a changed byte in
            # tar's end-of-archive padding, after the last member, must not pass either.
            stream = tar.fileobj
            while stream is not None and stream.read(1 << 16):
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        report.problems.append(f"{archive.name}: not a readable .tar.gz ({exc})")
    if len(tops) > 1:
        report.problems.append(
            f"{archive.name}: holds {', '.join(sorted(tops))}, not one bundle directory"
        )
    return files
