"""kijun apply, the scheduled audit, the AWX job playbook and the collection, on real hosts.

Two systemd containers from the lab image on a network of their own (``kijun-apply``,
198.19.220.0/24; the built-in lab is not touched): ``kijun-apply-target`` gets the baseline,
``kijun-apply-audit`` acts as the audit node, running this checkout (mounted read-only at the
same path, with its .venv) from a systemd timer. The tests run in file order and share the
hosts; everything is removed at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kijun import lab, podman

from .conftest import ROOT, VENV_BIN, run_kijun

pytestmark = pytest.mark.lab

NETWORK = "kijun-apply"
SUBNET = "198.19.220.0/24"
GATEWAY = "198.19.220.1"
TARGET = "kijun-apply-target"
TARGET_IP = "198.19.220.11"
AUDIT = "kijun-apply-audit"
AUDIT_IP = "198.19.220.10"
LABEL = "io.kijun.apply-test=1"
IMAGE = "localhost/kijun-lab:latest"

# The target is its own time server and log collector: nothing outside this network is used.
TARGET_VARS = {
    "password_policy_ageing_exclude": ["labadmin"],
    "log_retention_collector_host": TARGET_IP,
    "log_retention_collector_allowed_senders": [SUBNET],
    "time_sync_servers": [],
    "time_sync_local_stratum": 10,
    "time_sync_allow_networks": [SUBNET],
    "time_sync_internal_networks": ["198.18.0.0/15"],
    "time_sync_container_lab": True,  # LAB ONLY: chronyd without clock control
    "time_sync_wait_seconds": 30,
}


# The zone policy of the test's inventory (inventories/ZONES.md): the target is an LGWAN host on
# a network of its own; it is administered over the test network, from the control node (the
# network's gateway) and the audit node. It is its own time server and log collector.
ZONES = {
    "zones": {"lgwan": {"title": "LGWAN接続系", "networks": ["198.19.221.0/24"]}},
    "management": {"networks": [SUBNET], "admin_hosts": [GATEWAY, AUDIT_IP]},
    "services": [
        {"name": "ntp", "on": ["ntp_servers"], "proto": "udp", "port": 123},
        {"name": "syslog", "on": ["log_collectors"], "proto": "tcp", "port": 514},
    ],
    "flows": [],
}


def pexec(container: str, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = podman.run(["exec", container, "/bin/sh", "-c", script], check=False, timeout=600)
    if check:
        assert proc.returncode == 0, f"{container}: {script}\n{proc.stdout}\n{proc.stderr}"
    return proc


def remove_everything() -> None:
    podman.run(["rm", "-f", "-t", "0", TARGET, AUDIT], check=False)
    podman.run(["network", "rm", "-f", NETWORK], check=False)


def start(name: str, address: str, *extra: str) -> None:
    podman.run(
        ["run", "-d", "--name", name, "--hostname", name.removeprefix("kijun-"),
         "--label", LABEL, "--systemd=always", "--cap-add", "NET_ADMIN",
         "--network", f"{NETWORK}:ip={address}", *extra, IMAGE, "/sbin/init"]
    )  # fmt: skip


def prepare(name: str) -> str:
    """Wait for sshd, authorise the lab key for labadmin; return the host's public key."""
    pubkey = Path(str(lab.key_path()) + ".pub").read_text().strip()
    return pexec(
        name,
        "end=$(( $(date +%s) + 240 )); "
        "until [ -s /etc/ssh/ssh_host_ed25519_key.pub ] && systemctl is-active -q ssh; do "
        '  [ "$(date +%s)" -lt "$end" ] || exit 1; sleep 0.2; done; '
        "install -d -m 0700 -o labadmin -g labadmin /home/labadmin/.ssh && "
        f"printf '%s\\n' '{pubkey}' > /home/labadmin/.ssh/authorized_keys && "
        "chown labadmin:labadmin /home/labadmin/.ssh/authorized_keys && "
        "chmod 0600 /home/labadmin/.ssh/authorized_keys && "
        "cat /etc/ssh/ssh_host_ed25519_key.pub",
    ).stdout.split()[1]


def write_inventory(
    directory: Path, hosts: dict[str, dict[str, Any]], key: str, known_hosts: str
) -> Path:
    """An inventory like an organisation's: hosts.yml, group_vars/all.yml, kijun.yml, zones.yml."""
    (directory / "group_vars").mkdir(parents=True, exist_ok=True)
    groups: dict[str, Any] = {}
    for name, hv in hosts.items():
        for group in hv.pop("groups", []):
            groups.setdefault(group, {"hosts": {}})["hosts"][name] = None
    inventory = {
        "all": {
            "vars": {
                "ansible_user": "labadmin",
                "ansible_become": True,
                "ansible_ssh_private_key_file": key,
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"
                ),
            },
            "hosts": hosts,
            "children": groups,
        }
    }
    (directory / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    (directory / "group_vars" / "all.yml").write_text(yaml.safe_dump(TARGET_VARS))
    (directory / "kijun.yml").write_text("profile: generic\n")
    (directory / "zones.yml").write_text(yaml.safe_dump(ZONES, allow_unicode=True))
    return directory


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    remove_everything()
    lab.ensure_credentials()
    podman.run(
        ["network", "create", "--label", LABEL, "--subnet", SUBNET, "--gateway", GATEWAY, NETWORK]
    )
    # The audit node runs this checkout from the same path, read-only, with its .venv; the
    # venv's interpreter comes along when it is not the system's own (Debian's /usr is there).
    python_home = Path(sys.base_prefix)
    mounts = ["-v", f"{ROOT}:{ROOT}:ro"]
    if python_home != Path("/usr"):
        mounts += ["-v", f"{python_home}:{python_home}:ro"]
    try:
        start(TARGET, TARGET_IP)
        start(AUDIT, AUDIT_IP, *mounts)
        target_key = prepare(TARGET)
        prepare(AUDIT)
        audit_key = pexec(AUDIT, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]
        tmp = tmp_path_factory.mktemp("apply-live")
        known = tmp / "known_hosts"
        known.write_text(
            f"{TARGET_IP} ssh-ed25519 {target_key}\n{AUDIT_IP} ssh-ed25519 {audit_key}\n"
        )
        target = {
            "ansible_host": TARGET_IP,
            "groups": ["zone_lgwan", "ntp_servers", "log_collectors"],
        }
        inventory = write_inventory(
            tmp / "inventory", {"apply-target": dict(target)}, str(lab.key_path()), str(known)
        )
        audit_nodes = write_inventory(
            tmp / "audit-nodes",
            {"apply-audit": {"ansible_host": AUDIT_IP, "groups": ["audit_nodes"]}},
            str(lab.key_path()),
            str(known),
        )
        # What the audit node itself reads: its own inventory of the target, key and known_hosts.
        node_inv = tmp / "node-inventory"
        write_inventory(
            node_inv, {"apply-target": dict(target)}, "/etc/kijun/ssh/id_ed25519",
            "/etc/kijun/ssh/known_hosts",
        )  # fmt: skip
        pexec(AUDIT, "install -d -m 0755 /etc/kijun/inventory/group_vars /etc/kijun/ssh")
        for rel in ("hosts.yml", "kijun.yml", "zones.yml", "group_vars/all.yml"):
            podman.run(["cp", str(node_inv / rel), f"{AUDIT}:/etc/kijun/inventory/{rel}"])
        podman.run(["cp", str(lab.key_path()), f"{AUDIT}:/etc/kijun/ssh/id_ed25519"])
        pexec(
            AUDIT,
            "chown root:root /etc/kijun/ssh/id_ed25519 && chmod 0600 /etc/kijun/ssh/id_ed25519 && "
            f"echo '{TARGET_IP} ssh-ed25519 {target_key}' > /etc/kijun/ssh/known_hosts",
        )
        # The audit node's local MTA: postfix delivering to local mailboxes only.
        pexec(
            AUDIT,
            "postconf -e 'inet_interfaces = loopback-only' 'mydestination = localhost, "
            "$myhostname' 'relayhost =' && systemctl start postfix",
        )
        yield {"inventory": inventory, "audit_nodes": audit_nodes, "tmp": tmp}
    finally:
        remove_everything()


def apply(
    env: dict[str, Path], *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = env["tmp"] / "applies"
    proc = run_kijun("apply", "-i", str(env["inventory"]), "--out", str(out), *args, timeout=1500)
    bundles = sorted(out.glob("apply-*/summary.json"), key=lambda p: p.stat().st_mtime)
    assert bundles, proc.stdout + proc.stderr
    return proc, json.loads(bundles[-1].read_text())


def text(proc: subprocess.CompletedProcess[str]) -> str:
    """What the command printed, with its line breaks (rich wraps at 80 columns) as spaces."""
    return " ".join(proc.stdout.split())


def timezone_of_target() -> str:
    return pexec(TARGET, "cat /etc/timezone").stdout.strip()


def test_check_mode_on_a_fresh_host_lists_per_control_what_would_change(
    env: dict[str, Path],
) -> None:
    before = timezone_of_target()
    proc, summary = apply(env, "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "check mode: nothing was changed" in text(proc)
    assert "what would change, per control" in text(proc)
    changes = summary["changes_by_control"]
    assert summary["check_mode"] is True and "TS-04" in changes, changes.keys()
    assert changes["TS-04"]["title"]["en"] == "Time zone"
    assert {c["host"] for c in changes["TS-04"]["changes"]} == {"apply-target"}
    assert timezone_of_target() == before != "Asia/Tokyo"  # check mode changed nothing


def test_apply_converges_the_host_with_a_recap_per_host_and_area(env: dict[str, Path]) -> None:
    proc, summary = apply(env)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    host = summary["hosts"]["apply-target"]
    assert host["state"] == "ok" and host["lockout_guard"] is None
    assert {"password", "time", "logging", "(run)"} <= set(host["areas"])
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in host["areas"].values())
    assert host["areas"]["time"]["changed"] > 0
    assert timezone_of_target() == "Asia/Tokyo"
    for area in ("password", "time", "logging"):
        assert area in proc.stdout
    bundle = Path(proc.stdout.split("artifacts: ", 1)[1].split()[0])
    events = (bundle / "ansible" / "events.jsonl").read_text().splitlines()
    assert any(json.loads(e)["event"] == "playbook_on_stats" for e in events)
    assert "lockout guard" in (bundle / "ansible" / "stdout.txt").read_text()
    verified = run_kijun("verify", str(bundle))
    assert verified.returncode == 0, verified.stdout


def test_an_area_or_a_control_is_applied_alone(env: dict[str, Path]) -> None:
    # two drifts behind the baseline's back: the time zone (TS-04) and the idle timeout (PW-09)
    pexec(
        TARGET, "echo Etc/UTC > /etc/timezone && ln -sf /usr/share/zoneinfo/Etc/UTC /etc/localtime"
    )
    pexec(TARGET, "rm -f /etc/profile.d/kijun-tmout.sh /etc/profile.d/*tmout*")
    proc, summary = apply(env, "--area", "time")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert set(summary["changes_by_control"]) == {"TS-04"}
    assert set(summary["hosts"]["apply-target"]["areas"]) == {"time", "(run)"}
    # the other drift was left alone by the area: the control alone changes it, and only it
    proc, summary = apply(env, "--control", "PW-09")
    assert proc.returncode == 0 and set(summary["changes_by_control"]) == {"PW-09"}
    assert pexec(TARGET, "test -s /etc/profile.d/kijun-tmout.sh", check=False).returncode == 0


TRAP = """
cat > /etc/systemd/system/kijun-apply-trap.path <<'EOF'
[Path]
PathChanged=/etc/timezone
Unit=kijun-apply-trap.service
EOF
cat > /etc/systemd/system/kijun-apply-trap.service <<'EOF'
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "DenyUsers labadmin" > /etc/ssh/sshd_config.d/00-apply-trap.conf'
ExecStart=/bin/systemctl reload ssh
EOF
systemctl daemon-reload && systemctl start kijun-apply-trap.path
"""
UNTRAP = (
    "systemctl stop kijun-apply-trap.path; rm -f /etc/systemd/system/kijun-apply-trap.* "
    "/etc/ssh/sshd_config.d/00-apply-trap.conf; systemctl daemon-reload; systemctl reload ssh"
)


def test_the_lockout_guard_stops_a_host_the_admin_can_no_longer_log_in_to(
    env: dict[str, Path],
) -> None:
    # A change of the time zone now locks the admin out of new sessions (as a broken sshd or
    # PAM setting would); the session Ansible holds stays open.
    pexec(
        TARGET, "echo Etc/UTC > /etc/timezone && ln -sf /usr/share/zoneinfo/Etc/UTC /etc/localtime"
    )
    pexec(TARGET, TRAP)
    try:
        proc, summary = apply(env, "--area", "time", "--area", "logging")
    finally:
        pexec(TARGET, UNTRAP)
    assert proc.returncode == 1, proc.stdout[-4000:]
    host = summary["hosts"]["apply-target"]
    assert host["state"] == "stopped by the lockout guard"
    assert "LOCKOUT GUARD: after time_sync" in host["lockout_guard"]
    assert "apply-target: stopped by the lockout guard" in text(proc)
    assert "logging" not in host["areas"]  # nothing after time_sync was applied to the host
    proc, summary = apply(env, "--area", "logging")  # the admin logs in again: it goes on
    assert proc.returncode == 0 and summary["hosts"]["apply-target"]["state"] == "ok"


def node(script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return pexec(AUDIT, script, check)


SCHEDULE_VARS = {
    "audit_schedule_kijun_home": str(ROOT),
    "audit_schedule_inventory": "/etc/kijun/inventory",
    "audit_schedule_on_calendar": "*-*-* 02:30:00",
    "audit_schedule_randomized_delay_sec": 0,
    "audit_schedule_keep": 2,
    "audit_schedule_mail_to": ["root@localhost"],
    "audit_schedule_webhook_command": [
        "/bin/sh", "-c", 'cat > "/var/tmp/kijun-hook-$KIJUN_RUN_ID.json"',
    ],
}  # fmt: skip


def schedule_playbook(env: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    extra = env["tmp"] / "schedule-vars.yml"
    extra.write_text(yaml.safe_dump(SCHEDULE_VARS))
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(env["audit_nodes"]),
         "playbooks/schedule_audit.yml", "-e", f"@{extra}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def bundles_on_node() -> list[str]:
    out = node("ls /var/lib/kijun/evidence").stdout.split()
    return sorted(n for n in out if not n.endswith(".tar.gz"))


def trigger(expected: str = "success") -> None:
    """Start the service as the timer would and wait for it; its result must be ``expected``."""
    node("systemctl start kijun-audit.service", check=False)
    result = node("systemctl show -p Result --value kijun-audit.service").stdout.strip()
    journal = node("journalctl -u kijun-audit.service --no-pager -n 60", check=False).stdout
    assert result == expected, journal


def test_schedule_audit_installs_an_active_timer_idempotently(env: dict[str, Path]) -> None:
    first = schedule_playbook(env)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    second = schedule_playbook(env)
    assert second.returncode == 0 and "changed=0" in second.stdout, second.stdout[-3000:]
    assert node("systemctl is-active kijun-audit.timer").stdout.strip() == "active"
    assert node("systemctl is-enabled kijun-audit.timer").stdout.strip() == "enabled"
    timer = node("systemctl show -p TimersCalendar --value kijun-audit.timer").stdout
    assert "02:30:00" in timer
    node("systemd-analyze verify /etc/systemd/system/kijun-audit.service")


def test_the_triggered_service_writes_a_bundle_that_verifies(env: dict[str, Path]) -> None:
    trigger("success")
    (bundle,) = bundles_on_node()
    verify = node(
        f"KIJUN_STATE_DIR=/var/lib/kijun {ROOT}/.venv/bin/kijun verify "
        f"/var/lib/kijun/evidence/{bundle} "
        "--trusted-key /var/lib/kijun/keys/evidence-signing.pub",
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    journal = node("journalctl -t kijun-audit --no-pager -o cat").stdout
    assert f"audit {bundle}: ok" in journal and "verified" in journal
    assert node("ls /var/tmp").stdout.count("kijun-hook-") == 0  # no drift: nobody notified


def test_a_drifted_host_triggers_the_notification(env: dict[str, Path]) -> None:
    pexec(
        TARGET, "echo Etc/UTC > /etc/timezone && ln -sf /usr/share/zoneinfo/Etc/UTC /etc/localtime"
    )
    trigger("success")  # drift is a result (exit 1), not a failed service
    newest = bundles_on_node()[-1]
    hook = json.loads(node(f"cat /var/tmp/kijun-hook-{newest}.json").stdout)
    assert hook["status"] == "drift" and hook["verified"] is True
    assert {(p["host"], p["control"]) for p in hook["problems"]} == {("apply-target", "TS-04")}
    journal = node("journalctl -t kijun-audit --no-pager -o cat -p warning").stdout
    assert "apply-target TS-04: fail" in journal
    # the local MTA took the mail: delivered to root's mailbox, or still in postfix's queue
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        mail = node("cat /var/mail/root 2>/dev/null; find /var/spool/postfix -type f "
                    "-newer /etc/kijun/scheduled-audit.yml -exec cat {} + 2>/dev/null",
                    check=False).stdout  # fmt: skip
        if "[kijun] drift: inventory" in mail:
            break
        time.sleep(1)
    assert "[kijun] drift: inventory" in mail and "apply-target TS-04 fail" in mail


def test_retention_keeps_exactly_the_declared_number(env: dict[str, Path]) -> None:
    before = bundles_on_node()
    assert len(before) == 2
    trigger("success")
    after = bundles_on_node()
    assert len(after) == 2 and after[0] == before[1] and before[0] not in after
    archives = node("ls /var/lib/kijun/evidence").stdout.split()
    assert sorted(a for a in archives if a.endswith(".tar.gz")) == [f"{b}.tar.gz" for b in after]
    journal = node("journalctl -t kijun-audit --no-pager -o cat").stdout
    assert f"removed: {before[0]}" in journal


def test_the_awx_job_playbook_returns_the_summary_as_job_statistics(env: dict[str, Path]) -> None:
    pdd = env["tmp"] / "runner"
    (pdd / "env").mkdir(parents=True)
    inventory = pdd / "inventory"
    subprocess.run(
        ["cp", "-r", str(env["inventory"]), str(inventory)], check=True, stdin=subprocess.DEVNULL
    )
    out = env["tmp"] / "awx-evidence"
    (pdd / "env" / "extravars").write_text(yaml.safe_dump({"kijun_audit_out": str(out)}))
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-runner"), "run", str(pdd), "--project-dir", str(ROOT),
         "-p", "playbooks/audit.yml", "-i", "job1"],
        capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    events = [
        json.loads(p.read_text())
        for p in (pdd / "artifacts" / "job1" / "job_events").glob("*.json")
    ]
    stats = [e for e in events if e["event"] == "playbook_on_stats"]
    assert len(stats) == 1
    summary = stats[0]["event_data"]["artifact_data"]["kijun_audit"]
    # the target drifted in the schedule test (TS-04): the job reports it
    assert summary["status"] == "drift" and summary["exit_code"] == 1
    assert [(p["host"], p["control"]) for p in summary["problems"]] == [("apply-target", "TS-04")]
    assert Path(summary["bundle"]).parent == out
    assert run_kijun("verify", summary["bundle"]).returncode == 0


def test_a_role_runs_by_its_fully_qualified_name_from_the_installed_collection(
    env: dict[str, Path],
) -> None:
    tmp = env["tmp"] / "collection"
    tmp.mkdir()
    subprocess.run([str(VENV_BIN / "kijun"), "collection", "build", "--output-path",
                    str(tmp)], cwd=ROOT, check=True, capture_output=True,
                    stdin=subprocess.DEVNULL)  # fmt: skip
    (tarball,) = tmp.glob("kijun-baseline-*.tar.gz")
    collections = tmp / "collections"
    # --force: a collection of the same version elsewhere on Ansible's paths (molecule installs
    # the project's own) would make the install a no-op
    subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--force", "-p",
                    str(collections), str(tarball)], check=True, capture_output=True,
                    stdin=subprocess.DEVNULL)  # fmt: skip
    (tmp / "play.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  roles:\n    - role: kijun.baseline.time_sync\n"
    )
    (tmp / "ansible.cfg").write_text("[defaults]\ninterpreter_python = auto_silent\n")
    run_env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(tmp / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_ROLES_PATH": str(tmp / "no-roles"),
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
    }
    played = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(env["inventory"]), "play.yml"],
        cwd=tmp, env=run_env, capture_output=True, text=True, timeout=600, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert played.returncode == 0, played.stdout[-4000:] + played.stderr[-2000:]
    assert "kijun.baseline.time_sync : Ensure the time zone is the organisation's (TS-04)" in (
        played.stdout
    )
    assert timezone_of_target() == "Asia/Tokyo"  # the role from the collection repaired TS-04
