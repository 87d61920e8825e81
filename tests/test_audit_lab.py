"""`kijun audit` on the lab, as its users run it: a clean run, drift, a waived failure and its
expiry, a tampered bundle, the history between runs. (A host that stops, before or during an
audit: tests/faults/test_lab_faults.py.)"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kijun import lab, oscal

from .conftest import ROOT, Applied, playbook, run_kijun

pytestmark = pytest.mark.lab

# A drift every run of this module can make and undo: the time zone of lg-app01 (TS-04).
DRIFT = "ln -sf /usr/share/zoneinfo/Etc/UTC /etc/localtime"
DRIFT_HOST = "lg-app01"
DRIFT_CONTROL = "TS-04"


def audit(*args: str) -> tuple[int, dict[str, Any], Path, str]:
    """Run `kijun audit --out DIR ...`; return exit code, results.json, the bundle, output."""
    out_dir = Path(args[args.index("--out") + 1])
    before = set(out_dir.iterdir()) if out_dir.is_dir() else set()
    proc = run_kijun("audit", *args, timeout=600)
    output = proc.stdout + proc.stderr
    new = [p for p in set(out_dir.iterdir()) - before if p.is_dir()]
    assert len(new) == 1, output[-4000:]
    bundle = new[0]
    assert bundle.name in output.replace("\n", ""), "the run does not say where its evidence is"
    return proc.returncode, json.loads((bundle / "results.json").read_text()), bundle, output


def statuses(doc: dict[str, Any], host: str | None = None) -> dict[tuple[str, str], str]:
    return {
        (r["host"], r["control"]): r["status"]
        for r in doc["results"]
        if host is None or r["host"] == host
    }


@pytest.fixture
def inventory_copy(tmp_path: Path) -> Path:
    """A copy of the lab inventory (same hosts) whose exceptions.yml a test may write."""
    inv = tmp_path / "lab"
    shutil.copytree(ROOT / "inventories" / "lab", inv)
    return inv


def _drift() -> None:
    proc = lab.exec_on(lab.default_spec().host(DRIFT_HOST), f"sudo sh -c '{DRIFT}'")
    assert proc.returncode == 0, proc.stderr


def _restore(host: str = DRIFT_HOST) -> None:
    # the drifted control's tag restores it (tests/test_baseline_lab.py proves this per case)
    proc = playbook("--limit", host, "--tags", DRIFT_CONTROL)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_clean_run_exits_0_with_a_bundle_that_verifies(
    applied_lab: Applied, tmp_path: Path
) -> None:
    code, doc, bundle, out = audit("--out", str(tmp_path))
    assert code == 0, out[-4000:]
    assert doc["summary"]["pass"] > 0
    assert {h["host"] for h in doc["hosts"] if h["assessed"]} == {
        h.name for h in lab.default_spec().hosts
    }
    assert not {s for s in statuses(doc).values()} - {"pass", "not_applicable"}
    verify = run_kijun("verify", str(bundle))
    assert verify.returncode == 0, verify.stdout
    assert run_kijun("verify", str(bundle) + ".tar.gz").returncode == 0
    assessment = json.loads((bundle / "assessment-results.json").read_text())
    assert oscal.validate(assessment) == []
    csv = (bundle / "checklist.csv").read_bytes()
    assert csv.startswith(b"\xef\xbb\xbf") and DRIFT_HOST.encode() in csv
    raw = list((bundle / "raw" / DRIFT_HOST).rglob("*.txt"))
    assert raw, "no raw evidence for the host"
    # No secret leaves a host: no password hash, no private key in any bundle file.
    for path in bundle.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "$y$" not in text and "$6$" not in text, path
            assert "PRIVATE KEY-----" not in text.replace("[REDACTED", ""), path


def test_drifted_host_exits_1_and_the_report_names_control_expected_observed(
    applied_lab: Applied, tmp_path: Path
) -> None:
    _drift()
    try:
        code, doc, bundle, out = audit("--limit", DRIFT_HOST, "--out", str(tmp_path))
        assert code == 1, out[-3000:]
        failing = {c for (h, c), s in statuses(doc).items() if s == "fail"}
        assert failing == {DRIFT_CONTROL}
        result = next(r for r in doc["results"] if r["control"] == DRIFT_CONTROL)
        assert "Etc/UTC" in json.dumps(result["observed"])
        assert "Asia/Tokyo" in json.dumps(result["expected"])
        assert result["evidence"] and all((bundle / e).is_file() for e in result["evidence"])
        html = (bundle / "report.html").read_text()
        assert DRIFT_CONTROL in html and "Etc/UTC" in html and "Asia/Tokyo" in html
        assert DRIFT_CONTROL in out and "Etc/UTC" in out
        # the next run of the same inventory knows since when it fails
        code2, doc2, _, _ = audit("--limit", DRIFT_HOST, "--out", str(tmp_path))
        assert code2 == 1
        still = {(e["host"], e["control"]) for e in doc2["drift"]["still_failing"]}
        assert (DRIFT_HOST, DRIFT_CONTROL) in still
    finally:
        _restore()
    code, doc, _, _ = audit("--limit", DRIFT_HOST, "--out", str(tmp_path))
    assert code == 0
    resolved = {(e["host"], e["control"]) for e in doc["drift"]["resolved"]}
    assert (DRIFT_HOST, DRIFT_CONTROL) in resolved


def test_waived_until_the_exception_expires(
    applied_lab: Applied, inventory_copy: Path, tmp_path: Path
) -> None:
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=9))).date()

    def register(valid_until: dt.date) -> None:
        (inventory_copy / "exceptions.yml").write_text(
            "exceptions:\n"
            "  - id: EX-TEST-001\n"
            f"    control: {DRIFT_CONTROL}\n"
            f"    hosts: [{DRIFT_HOST}]\n"
            "    reason: 業務システムの都合により UTC で運用する\n"
            "    compensating_measure: ログの時刻は UTC として扱う運用手順\n"
            f"    valid_from: {today - dt.timedelta(days=30)}\n"
            f"    valid_until: {valid_until}\n"
            "    approved_by: 情報セキュリティ管理者\n"
            f"    approved_on: {today - dt.timedelta(days=31)}\n"
        )

    _drift()
    try:
        register(today + dt.timedelta(days=10))
        code, doc, bundle, out = audit("-i", str(inventory_copy), "--limit", DRIFT_HOST,
                                       "--out", str(tmp_path))  # fmt: skip
        assert code == 0, out[-3000:]
        assert statuses(doc)[(DRIFT_HOST, DRIFT_CONTROL)] == "waived"
        waived = next(r for r in doc["results"] if r["status"] == "waived")
        assert waived["waiver"]["exception_id"] == "EX-TEST-001"
        assert "UTC で運用する" in (bundle / "report.html").read_text()

        register(today - dt.timedelta(days=1))
        code, doc, _, out = audit("-i", str(inventory_copy), "--limit", DRIFT_HOST,
                                  "--out", str(tmp_path))  # fmt: skip
        assert code == 1
        result = next(r for r in doc["results"] if r["control"] == DRIFT_CONTROL)
        assert result["status"] == "fail"
        assert f"expired on {today - dt.timedelta(days=1)}" in result["message"]
    finally:
        _restore()


def test_a_malformed_exception_is_refused_with_file_and_line(inventory_copy: Path) -> None:
    (inventory_copy / "exceptions.yml").write_text(
        "exceptions:\n  - id: EX-1\n    control: PW-01\n    hosts: [lg-app01]\n"
    )
    proc = run_kijun("audit", "-i", str(inventory_copy))
    assert proc.returncode == 2
    assert "exceptions.yml:2" in proc.stderr


def test_unknown_control_and_bad_limit_exit_2_with_what_to_do(applied_lab: Applied) -> None:
    proc = run_kijun("audit", "--control", "XX-99")
    assert proc.returncode == 2 and "kijun controls" in proc.stderr
    proc = run_kijun("audit", "--limit", "no-such-host")
    assert proc.returncode == 2 and "zone_lgwan" in proc.stderr


def test_editing_one_byte_of_a_bundle_file_fails_verify(
    applied_lab: Applied, tmp_path: Path
) -> None:
    _, _, bundle, _ = audit("--limit", DRIFT_HOST, "--out", str(tmp_path))
    for name in ("results.json", "report.html"):
        path = bundle / name
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        proc = run_kijun("verify", str(bundle))
        assert proc.returncode == 1 and name in proc.stdout
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    assert run_kijun("verify", str(bundle)).returncode == 0
