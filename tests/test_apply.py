"""kijun apply without hosts: what site.yml applies, the tags a selection becomes, and how
ansible-runner's events become the recap per host and area, the changes per control and the
lockout guard's stops. (tests/test_apply_live.py runs it against a real host.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kijun import apply, catalog

from .conftest import ROOT, run_kijun


@pytest.fixture(scope="module")
def cat() -> catalog.Catalog:
    return catalog.load_catalog()


def test_site_roles_are_read_from_the_playbook_with_their_area() -> None:
    roles = apply.site_roles(ROOT / "playbooks" / "site.yml")
    assert roles == {
        "password_policy": "password", "time_sync": "time", "log_retention": "logging",
        "mail_relay": "mail", "wireless": "wireless", "zone_firewall": "firewall",
    }  # fmt: skip


def test_site_roles_also_reads_a_roles_section(tmp_path: Path) -> None:
    playbook = tmp_path / "site.yml"
    playbook.write_text(
        "- hosts: all\n  roles:\n"
        "    - role: zone_firewall\n      tags: [zone_firewall, area_firewall]\n"
        "    - wireless\n"
    )
    assert apply.site_roles(playbook) == {"zone_firewall": "firewall", "wireless": ""}


def test_a_selection_becomes_area_and_control_tags(cat: catalog.Catalog) -> None:
    roles = apply.site_roles()
    assert apply.select_tags(cat, roles, ["time"], ["PW-01", "LG-06"]) == [
        "area_time", "PW-01", "LG-06",
    ]  # fmt: skip
    assert apply.select_tags(cat, roles, [], []) == []


@pytest.mark.parametrize(
    ("areas", "controls", "message"),
    [
        (["tiem"], [], "unknown area 'tiem'; areas: "),
        (["malware"], [], "area 'malware' is not applied by playbooks/site.yml yet (its role "
                          "malware_protection"),
        ([], ["TS-99"], "unknown control 'TS-99'"),
        ([], ["AV-01"], "control AV-01 is applied by role malware_protection, which "
                        "playbooks/site.yml"),
    ],
)  # fmt: skip
def test_a_selection_site_yml_cannot_apply_is_refused(
    cat: catalog.Catalog, areas: list[str], controls: list[str], message: str
) -> None:
    with pytest.raises(apply.UsageError) as err:
        apply.select_tags(cat, apply.site_roles(), areas, controls)
    assert message in str(err.value)


def test_the_command_refuses_an_unknown_area_before_contacting_any_host(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    lg-app01: {ansible_host: 198.18.0.21}\n")
    proc = run_kijun("apply", "-i", str(inventory), "--area", "tiem", "--check")
    assert proc.returncode == 2
    assert "unknown area 'tiem'" in proc.stderr
    proc = run_kijun("apply", "-i", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def event(kind: str, host: str = "", role: str = "", task: str = "", **data: Any) -> dict[str, Any]:
    return {"event": kind, "event_data": {"host": host, "role": role, "task": task, **data}}


def test_events_become_a_recap_per_host_and_area_and_changes_per_control() -> None:
    t = apply.Tracker({"time_sync": "time", "log_retention": "logging"})
    tz = "Ensure the time zone is the organisation's (TS-04)"
    feed = [
        event("runner_on_start", "lg-app01", "", "Check privilege escalation to root works"),
        event("runner_on_ok", "lg-app01", "", "Check privilege escalation to root works",
              res={"changed": False}),
        event("runner_on_start", "lg-app01", "time_sync", tz),
        event("runner_on_ok", "lg-app01", "time_sync", tz,
              res={"changed": True, "diff": {"before": "UTC", "after": "Asia/Tokyo"}}),
        event("runner_on_ok", "mn-app01", "time_sync", tz, res={"changed": False}),
        event("runner_on_ok", "mn-app01", "log_retention", "Validating arguments against arg spec",
              task_action="ansible.builtin.validate_argument_spec", res={"changed": False}),
        event("runner_on_skipped", "mn-app01", "log_retention", "Ensure x (LG-07)"),
        event("runner_on_failed", "mn-app01", "log_retention", "Ensure y (LG-06)",
              res={"msg": "rsyslogd -N1 failed"}),
        event("runner_on_failed", "mn-app01", "log_retention", "Probe (LG-02)",
              ignore_errors=True, res={"msg": "ignored"}),
        event("runner_on_unreachable", "in-web01", "", "Gathering Facts",
              res={"msg": "ssh: connect to host 198.18.0.31 port 22: No route to host"}),
        {"event": "playbook_on_stats", "event_data": {
            "ok": {"lg-app01": 2, "mn-app01": 2}, "changed": {"lg-app01": 1},
            "failures": {"mn-app01": 1}, "dark": {"in-web01": 1}}},
    ]  # fmt: skip
    hosts = [t.feed(e) for e in feed]
    assert hosts[:3] == ["lg-app01"] * 3 and hosts[-1] is None
    assert t.current["lg-app01"] == f"time_sync : {tz}"
    lg = t.recap["lg-app01"]
    assert lg[apply.RUN_LEVEL] == apply.Counts(ok=1)
    assert lg["time"] == apply.Counts(ok=1, changed=1)
    mn = t.recap["mn-app01"]
    assert mn["logging"] == apply.Counts(failed=1, skipped=1, ignored=1)
    assert mn[apply.RUN_LEVEL] == apply.Counts(ok=1)  # the role's argument check runs always
    assert t.recap["in-web01"][apply.RUN_LEVEL] == apply.Counts(unreachable=1)
    assert t.by_control() == {
        "TS-04": [apply.Change("lg-app01", "time_sync", tz, ["TS-04"],
                               {"before": "UTC", "after": "Asia/Tokyo"})],
    }  # fmt: skip
    assert [t.host_state(h) for h in t.hosts()] == ["unreachable", "ok", "failed"]
    assert t.stats["mn-app01"] == {"ok": 2, "failures": 1}
    assert apply._exit_code(2, t) == apply.EXIT_FAILED
    assert not t.lockout


def test_the_lockout_guard_stopping_a_host_is_reported_as_such() -> None:
    t = apply.Tracker({"time_sync": "time"})
    message = "LOCKOUT GUARD: after time_sync, a new SSH session to 198.18.0.21 failed"
    t.feed(event("runner_on_failed", "lg-app01", "", apply.GUARD_STOP_TASK, res={"msg": message}))
    t.feed({"event": "playbook_on_stats", "event_data": {"failures": {"lg-app01": 1}}})
    assert t.lockout == {"lg-app01": message}
    assert t.host_state("lg-app01") == "stopped by the lockout guard"
    assert apply._exit_code(2, t) == apply.EXIT_FAILED


def test_a_run_that_never_reached_a_host_is_unusable_not_drift() -> None:
    t = apply.Tracker({})
    assert apply._exit_code(0, t) == apply.EXIT_OK
    assert apply._exit_code(4, t) == apply.EXIT_UNUSABLE  # no stats: the playbook did not run
    assert apply._exit_code(1, t) == apply.EXIT_UNUSABLE  # a playbook error (syntax, options)


def test_the_guard_task_name_is_the_one_in_the_playbook() -> None:
    text = (ROOT / "playbooks" / "tasks" / "lockout_guard.yml").read_text()
    assert f"- name: {apply.GUARD_STOP_TASK}\n" in text


def test_a_run_goes_through_ansible_runner_and_is_kept_as_a_signed_bundle(tmp_path: Path) -> None:
    # An inventory without hosts: the playbook runs (nothing to do) and contacts nobody.
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts: {}\n")
    out = tmp_path / "applies"
    proc = run_kijun("apply", "-i", str(inventory), "--out", str(out), "--area", "time")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing changed" in proc.stdout
    (bundle,) = [p for p in out.iterdir() if p.is_dir()]
    assert bundle.name.startswith("apply-") and (out / f"{bundle.name}.tar.gz").is_file()
    command = (bundle / "ansible" / "command").read_text()
    assert "playbooks/site.yml" in command and "--tags" in command and "area_time" in command
    events = [json.loads(line) for line in (bundle / "ansible" / "events.jsonl").open()]
    kinds = [e["event"] for e in events]
    assert "playbook_on_start" in kinds and kinds[-1] == "playbook_on_stats"
    summary = json.loads((bundle / "summary.json").read_text())
    assert summary["tags"] == ["area_time"] and summary["ansible_rc"] == 0
    assert run_kijun("verify", str(bundle)).returncode == 0


def test_events_are_kept_as_json_lines_with_secrets_redacted(tmp_path: Path) -> None:
    events = tmp_path / "job_events"
    events.mkdir()
    secret = {"event": "runner_on_ok", "counter": 2, "event_data": {"res": {
        "msg": "wrote wpa_passphrase=Tokyo-2026-secret to hostapd.conf",
        "ansible_become_password": "hunter2-secret"}}}  # fmt: skip
    (events / "2-b.json").write_text(json.dumps(secret))
    (events / "1-a.json").write_text(json.dumps({"event": "playbook_on_start", "counter": 1}))
    data, fired = apply._events_jsonl(events)
    lines = [json.loads(line) for line in data.decode().splitlines()]  # every line is JSON
    assert [e["event"] for e in lines] == ["playbook_on_start", "runner_on_ok"]
    assert b"Tokyo-2026-secret" not in data and b"hunter2-secret" not in data
    assert sum(fired.values()) >= 2


RELAY_CHECK = "Check the relay greets on its SMTP port (ML-01)"


def test_a_rescued_failure_follows_ansibles_stats_the_host_converged() -> None:
    """A task that failed inside a block whose rescue recovered is counted by Ansible as rescued,
    not as a failure: the host converged, the run exits 0, and the recap shows it as rescued."""
    t = apply.Tracker({"mail_relay": "mail"})
    feed = [
        event("runner_on_failed", "lg-mail01", "mail_relay", RELAY_CHECK,
              res={"msg": "Timeout when waiting for 127.0.0.1:25"}),
        event("runner_on_ok", "lg-mail01", "mail_relay", "Restart Postfix (ML-01)",
              res={"changed": True}),
        event("runner_on_ok", "lg-mail01", "mail_relay", RELAY_CHECK, res={"changed": False}),
        event("runner_on_ok", "in-mail01", "mail_relay", RELAY_CHECK, res={"changed": False}),
        {"event": "playbook_on_stats", "event_data": {
            "ok": {"lg-mail01": 2, "in-mail01": 1}, "changed": {"lg-mail01": 1},
            "rescued": {"lg-mail01": 1}}},
    ]  # fmt: skip
    for e in feed:
        t.feed(e)
    assert t.failures == []
    assert [(f.host, f.task) for f in t.rescued] == [("lg-mail01", f"mail_relay : {RELAY_CHECK}")]
    assert t.recap["lg-mail01"]["mail"] == apply.Counts(ok=2, changed=1, rescued=1)
    assert t.host_state("lg-mail01") == "ok (rescued)"
    assert t.host_state("in-mail01") == "ok"
    assert apply._exit_code(0, t) == apply.EXIT_OK


def test_a_failure_after_a_rescued_one_is_still_a_failure() -> None:
    t = apply.Tracker({"mail_relay": "mail"})
    for e in [
        event("runner_on_failed", "lg-mail01", "mail_relay", RELAY_CHECK, res={"msg": "first"}),
        event("runner_on_failed", "lg-mail01", "mail_relay", RELAY_CHECK, res={"msg": "again"}),
        {"event": "playbook_on_stats", "event_data": {
            "failures": {"lg-mail01": 1}, "rescued": {"lg-mail01": 1}}},
    ]:  # fmt: skip
        t.feed(e)
    assert [f.message for f in t.failures] == ["again"]
    assert [f.message for f in t.rescued] == ["first"]
    assert t.recap["lg-mail01"]["mail"] == apply.Counts(failed=1, rescued=1)
    assert t.host_state("lg-mail01") == "failed"
    assert apply._exit_code(2, t) == apply.EXIT_FAILED


def test_competing_settings_a_role_neutralised_are_kept_per_host_and_control() -> None:
    t = apply.Tracker({"log_retention": "logging"})
    task = "Ensure no other journald drop-in overrides the retention settings (LG-01)"
    n = {
        "path": "/etc/systemd/journald.conf.d/99-local.conf",
        "line": 2,
        "key": "Storage",
        "text": "Storage=volatile",
        "backup": "/var/backups/kijun/20261207T000000/etc/systemd/journald.conf.d/99-local.conf",
    }
    t.feed(event("runner_on_ok", "lg-app01", "log_retention", task,
                 res={"changed": True, "neutralised": [n]}))  # fmt: skip
    assert t.neutralised == [
        apply.Neutralised("lg-app01", "log_retention", task, ["LG-01"], n["path"], 2,
                          "Storage=volatile", n["backup"])
    ]  # fmt: skip
    outcome = apply.Outcome("apply-x", False, [], 0, "successful", t, None, None, 0)
    assert outcome.summary()["neutralised"][0]["path"] == n["path"]
    # a task with a loop: each item's result
    looped = {"changed": True, "results": [{"neutralised": [n]}, {"neutralised": []}]}
    t.feed(event("runner_on_ok", "lg-app01", "log_retention", task, res=looped))
    assert len(t.neutralised) == 2
