"""Signing keys, signed manifests, and offline verification of bundles (directory or .tar.gz)."""

from __future__ import annotations

import io
import json
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from kijun import paths
from kijun.evidence import MANIFEST, SIGNATURE, BundleWriter
from kijun.signing import (
    PRIVATE_KEY_NAME,
    PUBLIC_KEY_NAME,
    SigningError,
    VerifyReport,
    default_key_dir,
    fingerprint,
    init_keys,
    load_private_key,
    load_public_key,
    signer,
    verify_bundle,
)

RUN_ID = "2026-01-31T0900Z-lab"
CHRONY = "server 198.18.20.10 iburst\nmakestep 1 3\n"


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """The key directory of the organisation that signs."""
    init_keys(tmp_path / "keys")
    return tmp_path / "keys"


def write_bundle(out: Path, key_dir: Path | None) -> Path:
    sign = signer(key_dir / PRIVATE_KEY_NAME) if key_dir else None
    with BundleWriter(out, RUN_ID, metadata={"operator": "admin@ctl01"}, sign=sign) as bundle:
        bundle.add_json("results.json", {"schema": "kijun-results/1", "results": []})
        bundle.add_text("raw/lg-app01/time/chrony.conf", CHRONY)
        bundle.add_text("report.md", "# 監査証跡\n判定: 適合\n")
        bundle.add_bytes("attachments/capture.bin", bytes(range(256)))
    return out / RUN_ID


@pytest.fixture
def bundle(tmp_path: Path, keys: Path) -> Path:
    return write_bundle(tmp_path / "evidence", keys)


def flip(path: Path, index: int | None = None) -> None:
    """Change one byte of ``path`` (the middle one by default)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if index is None else index] ^= 0x01
    path.write_bytes(bytes(data))


def pack(directory: Path, archive: Path) -> Path:
    """A .tar.gz of ``directory`` as kijun lays it out (one top directory)."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname=directory.name)
    return archive


def named(report: VerifyReport, name: str) -> bool:
    return any(name in problem for problem in report.problems)


# -- keys --------------------------------------------------------------------------------------


def test_init_keys_makes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    public = init_keys(tmp_path / "keys")
    private = tmp_path / "keys" / PRIVATE_KEY_NAME
    assert public == tmp_path / "keys" / PUBLIC_KEY_NAME
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert fingerprint(load_private_key(private).public_key()) == fingerprint(
        load_public_key(public)
    )


def test_init_keys_refuses_to_replace_a_key_unless_forced(keys: Path) -> None:
    before = (keys / PUBLIC_KEY_NAME).read_bytes()
    with pytest.raises(SigningError, match="already exist"):
        init_keys(keys)
    assert (keys / PUBLIC_KEY_NAME).read_bytes() == before
    init_keys(keys, force=True)
    assert (keys / PUBLIC_KEY_NAME).read_bytes() != before
    assert stat.S_IMODE((keys / PRIVATE_KEY_NAME).stat().st_mode) == 0o600


def test_the_default_key_directory_is_in_the_checkouts_state() -> None:
    assert default_key_dir() == paths.state_dir() / "keys"


def test_a_private_key_others_can_read_is_refused(keys: Path) -> None:
    (keys / PRIVATE_KEY_NAME).chmod(0o644)
    with pytest.raises(SigningError, match="chmod 600"):
        signer(keys / PRIVATE_KEY_NAME)


def test_a_missing_key_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(SigningError, match="init_keys"):
        signer(tmp_path / "nothing" / PRIVATE_KEY_NAME)


# -- verifying ---------------------------------------------------------------------------------


def test_a_signed_bundle_verifies_as_a_directory_and_as_an_archive(
    bundle: Path, keys: Path
) -> None:
    sig = json.loads((bundle / SIGNATURE).read_text())
    assert set(sig) == {"algorithm", "public_key", "fingerprint", "signature"}
    assert sig["algorithm"] == "ed25519"
    for path in (bundle, bundle.with_name(f"{RUN_ID}.tar.gz")):
        report = verify_bundle(path, keys / PUBLIC_KEY_NAME)
        assert report.ok, report.text()
        assert report.run_id == RUN_ID
        assert (
            report.fingerprint
            == sig["fingerprint"]
            == fingerprint(load_public_key(keys / PUBLIC_KEY_NAME))
        )
        assert report.notes == []


def test_without_a_trusted_key_the_report_says_who_signed_was_not_checked(bundle: Path) -> None:
    report = verify_bundle(bundle)
    assert report.ok
    assert "no trusted public key" in report.notes[0]


FILES = [
    MANIFEST,
    SIGNATURE,
    "results.json",
    "raw/lg-app01/time/chrony.conf",
    "report.md",
    "attachments/capture.bin",
]


@pytest.mark.parametrize("name", FILES)
def test_one_changed_byte_in_any_file_fails_and_names_it(
    bundle: Path, keys: Path, name: str
) -> None:
    flip(bundle / name)
    report = verify_bundle(bundle, keys / PUBLIC_KEY_NAME)
    assert not report.ok
    assert named(report, name), report.text()
    if name not in (MANIFEST, SIGNATURE):
        assert report.changed == [name]
        assert len(report.problems) == 1


@pytest.mark.parametrize("name", [MANIFEST, SIGNATURE])
def test_every_byte_of_the_manifest_and_signature_is_covered(
    bundle: Path, keys: Path, name: str
) -> None:
    original = (bundle / name).read_bytes()
    for index in range(len(original)):
        flip(bundle / name, index)
        report = verify_bundle(bundle, keys / PUBLIC_KEY_NAME)
        assert not report.ok and named(report, name), f"byte {index}: {report.text()}"
        (bundle / name).write_bytes(original)


def test_added_and_removed_files_are_named(bundle: Path, keys: Path) -> None:
    (bundle / "raw/lg-app01/time/chrony.conf").unlink()
    (bundle / "raw/lg-app01/time/extra.conf").write_text("server evil.example iburst\n")
    report = verify_bundle(bundle, keys / PUBLIC_KEY_NAME)
    assert not report.ok
    assert report.removed == ["raw/lg-app01/time/chrony.conf"]
    assert report.added == ["raw/lg-app01/time/extra.conf"]
    assert report.changed == []
    assert named(report, "raw/lg-app01/time/chrony.conf")
    assert named(report, "raw/lg-app01/time/extra.conf")


def test_a_bundle_signed_by_a_foreign_key_is_reported(
    tmp_path: Path, bundle: Path, keys: Path
) -> None:
    """Someone edits a file, rewrites the manifest and signs it with a key of their own."""
    (bundle / "report.md").write_text("判定: 適合 (edited)\n")
    other = tmp_path / "other-keys"
    init_keys(other)
    (bundle / MANIFEST).unlink()
    (bundle / SIGNATURE).unlink()
    shutil.rmtree(tmp_path / "again", ignore_errors=True)
    resigned = write_bundle(tmp_path / "again", other)
    shutil.copy(resigned / MANIFEST, bundle / MANIFEST)
    shutil.copy(resigned / SIGNATURE, bundle / SIGNATURE)
    (bundle / "report.md").write_text((resigned / "report.md").read_text())
    assert verify_bundle(bundle).ok  # consistent in itself: only a trusted key tells
    report = verify_bundle(bundle, keys / PUBLIC_KEY_NAME)
    assert not report.ok
    assert report.problems == [
        f"{SIGNATURE}: signed by key {fingerprint(load_public_key(other / PUBLIC_KEY_NAME))}, "
        f"not by the trusted key {fingerprint(load_public_key(keys / PUBLIC_KEY_NAME))} "
        f"({keys / PUBLIC_KEY_NAME})"
    ]


def test_a_signature_by_another_key_under_the_embedded_key_is_invalid(
    tmp_path: Path, bundle: Path
) -> None:
    other = tmp_path / "other-keys"
    init_keys(other)
    forged = signer(other / PRIVATE_KEY_NAME)((bundle / MANIFEST).read_bytes())
    sig = json.loads((bundle / SIGNATURE).read_text())
    sig["signature"] = forged["signature"]
    (bundle / SIGNATURE).write_text(json.dumps(sig))
    report = verify_bundle(bundle)
    assert not report.ok
    assert named(report, SIGNATURE) and named(report, MANIFEST)


def test_an_unsigned_bundle_does_not_verify(tmp_path: Path) -> None:
    report = verify_bundle(write_bundle(tmp_path, None))
    assert not report.ok
    assert report.problems == [f"{SIGNATURE}: missing, so the bundle is not signed"]


def test_a_bundle_without_manifest_does_not_verify(bundle: Path) -> None:
    (bundle / MANIFEST).unlink()
    report = verify_bundle(bundle)
    assert not report.ok and named(report, MANIFEST)


def test_a_symlink_in_a_bundle_is_a_problem(bundle: Path, keys: Path) -> None:
    (bundle / "raw/lg-app01/time/chrony.conf").unlink()
    (bundle / "raw/lg-app01/time/chrony.conf").symlink_to("/etc/hostname")
    report = verify_bundle(bundle, keys / PUBLIC_KEY_NAME)
    assert not report.ok and named(report, "raw/lg-app01/time/chrony.conf")


@pytest.mark.parametrize("name", FILES)
def test_an_archive_reports_what_its_directory_reports(
    tmp_path: Path, bundle: Path, keys: Path, name: str
) -> None:
    flip(bundle / name)
    (bundle / "added.txt").write_text("x\n")
    archive = pack(bundle, tmp_path / "tampered.tar.gz")
    from_dir = verify_bundle(bundle, keys / PUBLIC_KEY_NAME)
    from_archive = verify_bundle(archive, keys / PUBLIC_KEY_NAME)
    assert not from_archive.ok
    assert named(from_archive, name) and named(from_archive, "added.txt") != (name == MANIFEST)
    assert (from_archive.problems, from_archive.changed, from_archive.added) == (
        from_dir.problems,
        from_dir.changed,
        from_dir.added,
    )


@pytest.mark.parametrize("cut", [1, 8, 40])  # the gzip trailer, and into tar's end padding
def test_a_damaged_archive_is_reported(tmp_path: Path, bundle: Path, keys: Path, cut: int) -> None:
    archive = bundle.with_name(f"{RUN_ID}.tar.gz")
    archive.write_bytes(archive.read_bytes()[:-cut])
    report = verify_bundle(archive, keys / PUBLIC_KEY_NAME)
    assert not report.ok and named(report, archive.name)


def test_an_archive_with_a_member_outside_the_bundle_is_reported(
    tmp_path: Path, bundle: Path, keys: Path
) -> None:
    stray = tmp_path / "stray.tar.gz"
    with tarfile.open(stray, "w:gz") as tar:
        tar.add(bundle, arcname=bundle.name)
        link = tarfile.TarInfo(f"{RUN_ID}/raw/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(link)
        tar.addfile(tarfile.TarInfo("elsewhere/x.txt"), io.BytesIO(b""))
    report = verify_bundle(stray, keys / PUBLIC_KEY_NAME)
    assert not report.ok
    assert named(report, "raw/link")
    assert named(report, "elsewhere")


def test_a_path_that_is_no_bundle_is_reported(tmp_path: Path) -> None:
    report = verify_bundle(tmp_path / "nothing")
    assert not report.ok and named(report, "nothing")


def test_a_trusted_key_that_cannot_be_read_is_an_error(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(SigningError, match="cannot read"):
        verify_bundle(bundle, tmp_path / "auditor.pub")
