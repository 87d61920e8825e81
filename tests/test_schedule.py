"""Scheduled audits without hosts: the settings file, retention (only after a newer bundle
verified), and the notification hooks, around real bundles signed with a real key.
(tests/test_apply_schedule_live.py runs the timer on a container acting as the audit node.)"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from kijun import audit, evidence, schedule, signing
from kijun.results import Status

from .conftest import run_kijun
from .rundocs import run_doc

DRIFT = {("lg-app01", "PW-01"): Status.FAIL, ("lg-app01", "TS-01"): Status.PASS}
CLEAN = {("lg-app01", "PW-01"): Status.PASS, ("lg-app01", "TS-01"): Status.PASS}


@pytest.fixture()
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv("KIJUN_STATE_DIR", str(directory))
    signing.init_keys(directory / "keys")
    return directory


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scheduled-audit.yml"
    path.write_text(text)
    return path


def test_settings_are_read_with_their_defaults(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        "inventory: /etc/kijun/inventory\nout: /var/lib/kijun/evidence\nkeep: 7\n"
        "audit: {limit: zone_lgwan, areas: [time]}\n"
        "notify:\n  mail: {to: [isec@example.lg.jp]}\n"
        "  webhook: {command: [curl, -fsS, --data-binary, '@-', 'https://hook.example/x']}\n",
    )
    config = schedule.load_config(path)
    assert config.inventory == Path("/etc/kijun/inventory") and config.keep == 7
    assert config.limit == "zone_lgwan" and config.areas == ["time"]
    assert config.notify_on == ["drift", "error"]
    assert config.mail_to == ["isec@example.lg.jp"] and config.sendmail == "/usr/sbin/sendmail"
    assert config.webhook_command[0] == "curl" and config.webhook_timeout == 60


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("inventory: x\nout: y\n", "keep is missing"),
        ("inventory: x\nout: y\nkeep: 0\n", "keep must be at least 1"),
        ("inventory: x\nout: y\nkeep: true\n", "keep must be a whole number"),
        ("inventory: x\nout: y\nkeep: 3\nretain: 3\n", "unknown key(s) retain"),
        ("inventory: x\nout: y\nkeep: 3\nnotify: {when: [fail]}\n", "['fail'] are not among"),
        ("inventory: x\nout: y\nkeep: 3\nnotify: {mail: {to: root}}\n", "notify.mail.to must"),
        ("inventory: x\nout: y\nkeep: 3\naudit: {hosts: a}\n", "unknown key(s) audit.hosts"),
    ],
)
def test_wrong_settings_are_refused_naming_the_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = config_file(tmp_path, text)
    with pytest.raises(schedule.ConfigError) as err:
        schedule.load_config(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_the_command_checks_a_settings_file(tmp_path: Path) -> None:
    good = config_file(tmp_path, f"inventory: {tmp_path}\nout: {tmp_path / 'ev'}\nkeep: 2\n")
    proc = run_kijun("scheduled-audit", "--config", str(good), "--check-config")
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr
    missing = config_file(tmp_path, f"inventory: {tmp_path / 'nope'}\nout: x\nkeep: 2\n")
    proc = run_kijun("scheduled-audit", "--config", str(missing), "--check-config")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def write_bundle(out: Path, run_id: str) -> tuple[Path, Path]:
    with evidence.BundleWriter(out, run_id, metadata={}, sign=signing.signer()) as bundle:
        bundle.add_json("results.json", {"run_id": run_id})
    return bundle.bundle_dir, bundle.archive


def test_retention_removes_only_bundles_older_than_the_verified_one(
    tmp_path: Path, state: Path
) -> None:
    out = tmp_path / "evidence"
    ids = [f"2026112{d}T020000Z-lab-000{d}" for d in range(1, 6)]
    for run_id in ids:
        write_bundle(out, run_id)
    (out / "apply-20261120T010000Z-lab-aaaa").mkdir()  # not an audit bundle: left alone
    assert schedule.bundles(out) == ids
    # ids[3] just verified; ids[4] started later (a concurrent run) and is never removed
    assert schedule.prune(out, 2, ids[3]) == ids[:3]
    assert schedule.bundles(out) == ids[3:]
    assert not (out / f"{ids[0]}.tar.gz").exists() and (out / f"{ids[3]}.tar.gz").is_file()
    assert (out / "apply-20261120T010000Z-lab-aaaa").is_dir()
    assert schedule.prune(out, 1, ids[3]) == []  # only older bundles are candidates


def fake_audit(out: Path, statuses: dict[tuple[str, str], Status], run_id: str) -> Any:
    def execute(options: audit.AuditOptions, progress: Any = None) -> audit.Outcome:
        assert options.out == out
        doc = run_doc(statuses, run_id=run_id)
        directory, archive = write_bundle(out, run_id)
        return audit.Outcome(doc, directory, archive, audit.exit_code(doc), [])

    return execute


def hook_config(tmp_path: Path, keep: int) -> schedule.Config:
    sendmail = tmp_path / "sendmail"  # stands for the local MTA: keeps what it is given
    sendmail.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/mail.args\ncat > {tmp_path}/mail\n')
    sendmail.chmod(sendmail.stat().st_mode | stat.S_IXUSR)
    return schedule.Config(
        inventory=tmp_path / "inventory", out=tmp_path / "evidence", keep=keep,
        mail_to=["isec@example.lg.jp"], mail_from="kijun@audit01", sendmail=str(sendmail),
        webhook_command=["/bin/sh", "-c", f'cat > {tmp_path}/hook.json; env > {tmp_path}/hook.env'],
    )  # fmt: skip


def test_a_drifted_run_keeps_the_declared_count_and_notifies_by_mail_and_webhook(
    tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = hook_config(tmp_path, keep=2)
    old = [write_bundle(config.out, f"2026112{d}T020000Z-lab-000{d}")[0].name for d in (1, 2)]
    run_id = "20261123T020000Z-lab-0003"
    monkeypatch.setattr(audit, "execute", fake_audit(config.out, DRIFT, run_id))
    lines: list[tuple[str, str]] = []
    report = schedule.run(config, lambda level, msg: lines.append((level, msg)))
    assert report.status == "drift" and report.exit_code == 1 and report.verified
    assert report.removed == old[:1] and schedule.bundles(config.out) == [old[1], run_id]
    assert report.notified == ["mail", "webhook"]
    mail = (tmp_path / "mail").read_text()
    assert "To: isec@example.lg.jp" in mail and "Subject: [kijun] drift: inventory" in mail
    assert "lg-app01 PW-01 fail" in mail
    assert (tmp_path / "mail.args").read_text().split() == ["-t", "-oi"]
    hook = json.loads((tmp_path / "hook.json").read_text())
    assert hook["status"] == "drift" and hook["run_id"] == run_id and hook["verified"] is True
    assert hook["problems"] == [
        {"host": "lg-app01", "control": "PW-01", "status": "fail", "message": ""}
    ]
    assert "KIJUN_STATUS=drift" in (tmp_path / "hook.env").read_text()
    assert ("warning", "lg-app01 PW-01: fail") in lines
    assert any(level == "info" and "verified" in msg for level, msg in lines)


def test_a_clean_run_is_not_notified_unless_asked(
    tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = hook_config(tmp_path, keep=3)
    monkeypatch.setattr(audit, "execute", fake_audit(config.out, CLEAN, "20261123T020000Z-lab-1"))
    report = schedule.run(config, lambda level, msg: None)
    assert report.status == "ok" and report.exit_code == 0 and report.notified == []
    assert not (tmp_path / "mail").exists() and not (tmp_path / "hook.json").exists()


def test_a_bundle_that_does_not_verify_removes_nothing_and_is_an_error(
    tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = hook_config(tmp_path, keep=1)
    old = write_bundle(config.out, "20261121T020000Z-lab-0001")[0].name
    run_id = "20261123T020000Z-lab-0003"
    execute = fake_audit(config.out, CLEAN, run_id)

    def tampered(options: audit.AuditOptions, progress: Any = None) -> audit.Outcome:
        outcome = execute(options)
        assert outcome.bundle
        (outcome.bundle / "results.json").write_text('{"run_id": "edited"}\n')
        return outcome

    monkeypatch.setattr(audit, "execute", tampered)
    report = schedule.run(config, lambda level, msg: None)
    assert report.status == "error" and report.exit_code == 2 and not report.verified
    assert report.removed == [] and schedule.bundles(config.out) == [old, run_id]
    assert json.loads((tmp_path / "hook.json").read_text())["status"] == "error"


def test_an_audit_that_cannot_run_is_reported_and_a_failed_hook_makes_it_an_error(
    tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = hook_config(tmp_path, keep=1)
    config.webhook_command = ["/bin/sh", "-c", "echo refused >&2; exit 7"]

    def broken(options: audit.AuditOptions, progress: Any = None) -> audit.Outcome:
        raise audit.UsageError(f"inventory {options.inventory} does not exist")

    monkeypatch.setattr(audit, "execute", broken)
    lines: list[tuple[str, str]] = []
    report = schedule.run(config, lambda level, msg: lines.append((level, msg)))
    assert report.status == "error" and "does not exist" in report.message
    assert report.notified == ["mail"] and report.notify_errors
    assert "exited 7: refused" in report.notify_errors[0]
    assert (
        "error",
        f"the audit could not run: inventory {config.inventory} does not exist",
    ) in lines


def test_journal_lines_carry_a_priority_only_when_stdout_is_the_journal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    schedule.journal_log("warning", "drift")
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    schedule.journal_log("error", "broken")
    assert capsys.readouterr().out.splitlines() == ["warning: drift", "<3>broken"]
    assert os.environ["JOURNAL_STREAM"] == "8:1234"
