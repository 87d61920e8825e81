"""Scheduled drift audits (定期的な自己点検): what the audit node's timer runs.

``playbooks/schedule_audit.yml`` (role ``audit_schedule``) installs a systemd timer and a
service that runs ``kijun scheduled-audit --config /etc/kijun/scheduled-audit.yml``. One run:

1. audits the inventory (``kijun audit`` in-process) into the configured evidence directory;
2. verifies the new bundle (every hash and the signature, with the node's public key);
3. only then removes the oldest bundles so that exactly ``keep`` remain (a run whose bundle
   does not verify, or that wrote none, removes nothing);
4. logs one line per step to the journal (priority prefixes ``<3>`` error, ``<4>`` drift,
   ``<6>`` info when stdout is the journal);
5. on drift or error (``notify.when``) mails a summary through the local MTA (``sendmail -t``)
   and/or runs a webhook command with the summary as JSON on its standard input.

Exit status: 0 no drift, 1 drift, 2 error (nothing assessed, the bundle does not verify, or
a notification could not be sent).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml

STATUSES = ("ok", "drift", "error")
EXIT = {"ok": 0, "drift": 1, "error": 2}
BUNDLE_NAME = re.compile(r"^(?P<run_id>\d{8}T\d{6}Z-[A-Za-z0-9._-]+?)(?P<archive>\.tar\.gz)?$")


class ConfigError(ValueError):
    """The schedule's configuration file is unusable; the message names the file and key."""


@dataclass
class Config:
    inventory: Path
    out: Path
    keep: int
    limit: str | None = None
    profile: str | None = None
    areas: list[str] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)
    notify_on: list[str] = field(default_factory=lambda: ["drift", "error"])
    mail_to: list[str] = field(default_factory=list)
    mail_from: str = ""
    sendmail: str = "/usr/sbin/sendmail"
    webhook_command: list[str] = field(default_factory=list)
    webhook_timeout: int = 60


def _expect(path: Path, key: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ConfigError(f"{path}: {key} must be {what}, not {value!r}")
    return value


def _str_list(path: Path, key: str, value: Any) -> list[str]:
    value = _expect(path, key, value, list, "a list of strings")
    if not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{path}: {key} must be a list of non-empty strings, not {value!r}")
    return list(value)


def load_config(path: Path) -> Config:
    """Read and check the YAML configuration the role writes (format in docs/schedule.md)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping with inventory, out and keep")
    known = {"inventory", "out", "keep", "audit", "notify"}
    unknown = sorted(str(k) for k in set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {sorted(known)}")
    for key in ("inventory", "out", "keep"):
        if key not in raw:
            raise ConfigError(f"{path}: {key} is missing")
    keep = _expect(path, "keep", raw["keep"], int, "a whole number of bundles")
    if keep < 1:
        raise ConfigError(f"{path}: keep must be at least 1 (the newest verified bundle)")
    config = Config(
        inventory=Path(_expect(path, "inventory", raw["inventory"], str, "a path")),
        out=Path(_expect(path, "out", raw["out"], str, "a path")),
        keep=keep,
    )
    audit = _expect(path, "audit", raw.get("audit") or {}, dict, "a mapping")
    unknown = sorted(str(k) for k in set(audit) - {"limit", "profile", "areas", "controls"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) audit.{', audit.'.join(unknown)}")
    for key in ("limit", "profile"):
        if audit.get(key) is not None:
            setattr(config, key, _expect(path, f"audit.{key}", audit[key], str, "a string"))
    config.areas = _str_list(path, "audit.areas", audit.get("areas") or [])
    config.controls = _str_list(path, "audit.controls", audit.get("controls") or [])
    notify = _expect(path, "notify", raw.get("notify") or {}, dict, "a mapping")
    unknown = sorted(str(k) for k in set(notify) - {"when", "mail", "webhook"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) notify.{', notify.'.join(unknown)}")
    if "when" in notify:
        config.notify_on = _str_list(path, "notify.when", notify["when"])
        wrong = sorted(set(config.notify_on) - set(STATUSES))
        if wrong:
            raise ConfigError(f"{path}: notify.when: {wrong} are not among {list(STATUSES)}")
    mail = _expect(path, "notify.mail", notify.get("mail") or {}, dict, "a mapping")
    unknown = sorted(str(k) for k in set(mail) - {"to", "from", "sendmail"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) notify.mail.{', notify.mail.'.join(unknown)}")
    config.mail_to = _str_list(path, "notify.mail.to", mail.get("to") or [])
    config.mail_from = str(mail.get("from") or f"kijun@{socket.getfqdn()}")
    config.sendmail = str(mail.get("sendmail") or config.sendmail)
    hook = _expect(path, "notify.webhook", notify.get("webhook") or {}, dict, "a mapping")
    unknown = sorted(str(k) for k in set(hook) - {"command", "timeout"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) notify.webhook.{unknown[0]}")
    config.webhook_command = _str_list(path, "notify.webhook.command", hook.get("command") or [])
    timeout = hook.get("timeout", config.webhook_timeout)
    config.webhook_timeout = _expect(path, "notify.webhook.timeout", timeout, int, "seconds")
    return config


# --- retention ----------------------------------------------------------------------------------


def bundles(out: Path) -> list[str]:
    """The run ids of the audit bundles in ``out`` (directory or archive), oldest first.

    Audit run ids start with their UTC start time (``20261122T053609Z-lab-1a2b``), so their
    order is the order of the runs. Other files (apply bundles, partial writes) are left alone.
    """
    found: set[str] = set()
    if out.is_dir():
        for entry in out.iterdir():
            m = BUNDLE_NAME.match(entry.name)
            if not m:
                continue
            is_archive = bool(m.group("archive"))
            if (is_archive and entry.is_file()) or (not is_archive and entry.is_dir()):
                found.add(m.group("run_id"))
    return sorted(found)


def prune(out: Path, keep: int, newest_verified: str) -> list[str]:
    """Remove the oldest bundles so that ``keep`` remain. Only bundles older than
    ``newest_verified`` (the bundle just written and verified) are candidates: it and any
    newer one (a run that started later) are never removed."""
    present = bundles(out)
    if newest_verified not in present:
        raise ValueError(f"{newest_verified} is not a bundle in {out}: nothing removed")
    older = [r for r in present if r < newest_verified]
    excess = max(0, len(present) - keep)
    removed = []
    for run_id in older[:excess]:
        shutil.rmtree(out / run_id, ignore_errors=True)
        (out / f"{run_id}.tar.gz").unlink(missing_ok=True)
        removed.append(run_id)
    return removed


# --- one scheduled run --------------------------------------------------------------------------


@dataclass
class RunReport:
    status: str  # ok | drift | error
    message: str
    run_id: str | None = None
    bundle: Path | None = None
    archive: Path | None = None
    verified: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)
    notify_errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT["error"] if self.notify_errors else EXIT[self.status]

    def summary(self, config: Config) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "node": socket.getfqdn(),
            "inventory": str(config.inventory),
            "run_id": self.run_id,
            "bundle": str(self.bundle) if self.bundle else None,
            "archive": str(self.archive) if self.archive else None,
            "verified": self.verified,
            "counts": self.counts,
            "problems": self.problems,
            "removed_bundles": self.removed,
        }


Log = Callable[[str, str], None]  # (level, message): level is info | warning | error


def journal_log(level: str, message: str) -> None:
    """One line on stdout; with a syslog priority prefix when stdout is the journal."""
    prefix = {"error": "<3>", "warning": "<4>", "info": "<6>"}[level]
    line = f"{prefix}{message}" if os.environ.get("JOURNAL_STREAM") else f"{level}: {message}"
    print(line, flush=True)


def run(config: Config, log: Log = journal_log) -> RunReport:
    """Audit, verify, prune, log and notify (see the module's docstring)."""
    from kijun import audit, signing

    log("info", f"scheduled audit of {config.inventory} into {config.out} (keep {config.keep})")
    options = audit.AuditOptions(
        inventory=config.inventory, limit=config.limit, profile=config.profile,
        areas=config.areas, controls=config.controls, out=config.out,
    )  # fmt: skip
    try:
        outcome = audit.execute(options)
    except Exception as exc:  # noqa: BLE001 - every failure of the run is reported, not raised
        report = RunReport("error", f"the audit could not run: {exc}")
        log("error", report.message)
        return _notify(config, report, log)
    finally:
        close_connections(config.inventory)
    doc = outcome.doc
    brief = audit.summary(outcome)
    status, counts, problems = brief["status"], brief["counts"], brief["problems"]
    counted = " ".join(f"{k}={v}" for k, v in counts.items())
    report = RunReport(
        status, f"audit {doc.run.run_id}: {status} ({counted})", doc.run.run_id,
        outcome.bundle, outcome.archive, counts=counts, problems=problems,
    )  # fmt: skip
    log({"ok": "info", "drift": "warning"}.get(status, "error"), report.message)
    for p in problems:
        log("warning", f"{p['host']} {p['control']}: {p['status']} {p['message']}".rstrip())
    if outcome.bundle is None:
        report.status, report.message = "error", f"{report.message}; no bundle was written"
        log("error", "no bundle was written: no older bundle removed")
        return _notify(config, report, log)
    public = signing.default_key_dir() / signing.PUBLIC_KEY_NAME
    check = signing.verify_bundle(outcome.bundle, public if public.is_file() else None)
    report.verified = check.ok
    if not check.ok:
        report.status = "error"
        report.message = f"{report.message}; the new bundle does not verify: {check.text()}"
        log("error", f"bundle {outcome.bundle} does not verify; no older bundle removed")
        return _notify(config, report, log)
    log("info", f"bundle {outcome.bundle} verified")
    report.removed = prune(config.out, config.keep, doc.run.run_id)
    kept = len(bundles(config.out))
    removed = ", ".join(report.removed) if report.removed else "none"
    log("info", f"retention: {kept} bundle(s) kept (keep {config.keep}); removed: {removed}")
    return _notify(config, report, log)


def close_connections(inventory: Path) -> list[str]:
    """End the SSH connections the audit keeps open for reuse (``ControlPersist``); return the
    hosts whose connection was closed.

    On a control node the next audit or playbook shares them; a scheduled run has nobody to
    share them with, and a master left running would outlive the service's main process (under
    systemd the service is then stopped only by killing it)."""
    import tempfile

    from kijun import targets, variables

    try:
        hosts = variables.load_cached(inventory)
    except Exception:  # noqa: BLE001 - the audit has already reported an unusable inventory
        return []
    names = sorted(
        n for n, hv in hosts.items()
        if str(hv.connection.get("ansible_connection", "ssh")).rsplit(".", 1)[-1]
        in ("ssh", "smart")
    )  # fmt: skip
    closed = []
    with tempfile.TemporaryDirectory(prefix="kijun-ssh-") as tmp:
        config = Path(tmp) / "ssh_config"
        config.write_text(targets.ssh_config(hosts, names))
        for name in names:
            proc = subprocess.run(
                ["ssh", "-F", str(config), "-O", "exit", name],
                capture_output=True, timeout=30, check=False, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if proc.returncode == 0:
                closed.append(name)
    return closed


def _notify(config: Config, report: RunReport, log: Log) -> RunReport:
    if report.status not in config.notify_on:
        return report
    summary = report.summary(config)
    if config.mail_to:
        try:
            send_mail(config, report, summary)
            report.notified.append("mail")
            log("info", f"mail sent to {', '.join(config.mail_to)} through {config.sendmail}")
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            report.notify_errors.append(f"mail: {exc}")
            log("error", f"mail to {', '.join(config.mail_to)} failed: {exc}")
    if config.webhook_command:
        try:
            run_webhook(config, summary)
            report.notified.append("webhook")
            log("info", f"webhook command {config.webhook_command[0]} called")
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            report.notify_errors.append(f"webhook: {exc}")
            log("error", f"webhook command failed: {exc}")
    return report


def mail_message(config: Config, report: RunReport, summary: dict[str, Any]) -> EmailMessage:
    msg = EmailMessage()
    name = config.inventory.name or str(config.inventory)
    msg["Subject"] = f"[kijun] {report.status}: {name} on {summary['node']} ({report.run_id})"
    msg["From"] = config.mail_from
    msg["To"] = ", ".join(config.mail_to)
    lines = [
        "kijun scheduled audit (定期的な自己点検)",
        "",
        f"status:    {report.status}",
        f"message:   {report.message}",
        f"inventory: {config.inventory}",
        f"bundle:    {report.bundle or '-'} (verified: {'yes' if report.verified else 'no'})",
        "",
    ]
    if report.problems:
        lines.append("controls that need attention:")
        lines += [
            f"  {p['host']} {p['control']} {p['status']}: {p['message']}".rstrip()
            for p in report.problems
        ]
    lines += ["", "Check the bundle offline: kijun verify BUNDLE --trusted-key KEY.pub", ""]
    msg.set_content("\n".join(lines))
    return msg


def send_mail(config: Config, report: RunReport, summary: dict[str, Any]) -> None:
    message = mail_message(config, report, summary)
    proc = subprocess.run(
        [config.sendmail, "-t", "-oi"], input=message.as_bytes(), capture_output=True,
        timeout=60, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(
            f"{config.sendmail} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"
        )


def run_webhook(config: Config, summary: dict[str, Any]) -> None:
    env = {
        **os.environ,
        "KIJUN_STATUS": str(summary["status"]),
        "KIJUN_RUN_ID": str(summary["run_id"] or ""),
        "KIJUN_BUNDLE": str(summary["bundle"] or ""),
    }
    proc = subprocess.run(
        config.webhook_command, input=json.dumps(summary, ensure_ascii=False).encode(),
        capture_output=True, timeout=config.webhook_timeout, env=env, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(
            f"{config.webhook_command[0]} exited {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )


def check_config(path: Path) -> str:
    """``kijun scheduled-audit --check-config``: the role validates the file it writes."""
    config = load_config(path)
    if not config.inventory.exists():
        raise ConfigError(f"{path}: inventory {config.inventory} does not exist")
    return f"{path}: OK (inventory {config.inventory}, keep {config.keep})"
