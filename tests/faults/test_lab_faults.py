"""Faults and hostile content on the built-in lab (docs/reliability.md): a host that stops in
the middle of an audit, the log collector down while hosts log, an apply killed in the middle
of a role, hostile files on a host, and secrets planted on hosts that must reach no output.

Every test leaves the lab as it found it: what it changes on a host it undoes, and it proves
that with an audit of the host that passes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kijun import lab, podman

from ..conftest import ROOT, VENV_BIN, Applied, kijun_apply, playbook, run_kijun

pytestmark = pytest.mark.lab


def pexec(host: str, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A root shell on a lab host through podman (not through the SSH the faults disturb)."""
    proc = podman.run(["exec", f"kijun-{host}", "/bin/sh", "-c", script], check=False, timeout=300)
    if check:
        assert proc.returncode == 0, f"{host}: {script}\n{proc.stdout}\n{proc.stderr}"
    return proc


def audit(out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    """``kijun audit --out OUT ARGS``: the process, results.json and the new bundle."""
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.iterdir())
    proc = run_kijun("audit", "--out", str(out), *args, timeout=600)
    new = [p for p in set(out.iterdir()) - before if p.is_dir() and not p.name.startswith(".")]
    assert len(new) == 1, proc.stdout[-4000:] + proc.stderr[-3000:]
    return proc, json.loads((new[0] / "results.json").read_text()), new[0]


def assert_host_passes(host: str, out: Path) -> None:
    """The host is back to the baseline: its audit passes (else it is restored, then must)."""
    proc, doc, _ = audit(out, "--limit", host)
    if proc.returncode != 0:
        restored = playbook("--limit", host)
        assert restored.returncode == 0, restored.stdout[-3000:]
        proc, doc, _ = audit(out, "--limit", host)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert [h["host"] for h in doc["hosts"] if h["assessed"]] == [host]


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.5)


# --- a host stops in the middle of an audit ---------------------------------------------------

# chronyc (read by the time module's collection) waits on the host until the test has stopped
# it: the audit is then in the middle of reading that host, deterministically.
HOLD_CHRONYC = """
set -e
[ -e /usr/bin/chronyc.kijun-fault ] || mv /usr/bin/chronyc /usr/bin/chronyc.kijun-fault
cat > /usr/bin/chronyc <<'EOF'
#!/bin/sh
touch /run/kijun-fault-reading
sleep 300
exec /usr/bin/chronyc.kijun-fault "$@"
EOF
chmod 0755 /usr/bin/chronyc
rm -f /run/kijun-fault-reading
"""
RELEASE_CHRONYC = (
    "[ ! -e /usr/bin/chronyc.kijun-fault ] || mv -f /usr/bin/chronyc.kijun-fault /usr/bin/chronyc"
)


def test_a_host_that_stops_during_the_audit_is_not_assessed_and_the_rest_completes(
    applied_lab: Applied, tmp_path: Path
) -> None:
    host = "in-web01"
    others = {h.name for h in lab.default_spec().hosts} - {host}
    pexec(host, HOLD_CHRONYC)
    out = tmp_path / "evidence"
    out.mkdir()
    proc = subprocess.Popen(
        [str(VENV_BIN / "kijun"), "audit", "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(
            lambda: pexec(host, "test -e /run/kijun-fault-reading", check=False).returncode == 0,
            120,
            f"the audit to read {host}",
        )
        podman.run(["stop", "-t", "0", f"kijun-{host}"])
        printed, _ = proc.communicate(timeout=600)
        # with the host still down, an audit of that host alone assessed nothing: exit 2
        alone = run_kijun("audit", "--limit", host, "--out", str(tmp_path / "alone"))
        assert alone.returncode == 2, alone.stdout[-3000:] + alone.stderr[-2000:]
        assert "not assessed" in alone.stdout + alone.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
        # the host comes back as it was, like a server after a power cut (not recreated)
        podman.run(["start", f"kijun-{host}"])
        spec_host = lab.default_spec().host(host)
        wait_for(lambda: lab.ssh_answers(spec_host), 180, f"{host} to answer SSH again")
        pexec(host, RELEASE_CHRONYC)
    assert proc.returncode == 1, printed[-4000:]  # drift: a host was not assessed
    [bundle] = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    doc = json.loads((bundle / "results.json").read_text())
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert not hosts[host]["assessed"] and hosts[host]["reason"], hosts[host]
    assert {h for h, v in hosts.items() if v["assessed"]} == others
    mine = {r["status"] for r in doc["results"] if r["host"] == host}
    assert "not_assessed" in mine and mine <= {"not_assessed", "not_applicable"}, mine
    # the others completed and pass, but for live probes that need the stopped host (the mail
    # relay's inside client; the gateway's probe of a declared flow to it): those could not
    # run (error) or found the flow not connecting (fail); nothing else
    theirs = [r for r in doc["results"] if r["host"] != host]
    assert {r["status"] for r in theirs} <= {"pass", "not_applicable", "error", "fail"}
    probes = [(r["host"], r["control"]) for r in theirs if r["status"] in ("error", "fail")]
    assert set(probes) <= {("in-mail01", "ML-01"), ("gw01", "FW-06"), ("gw01", "FW-12")}, probes
    assert f"{host}" in printed and "not assessed" in printed
    # the bundle is complete and says so: it verifies, and its report names the host
    verified = run_kijun("verify", str(bundle))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = (bundle / "report.html").read_text()
    assert host in report and ("not assessed" in report or "未評価" in report)
    assert_host_passes(host, tmp_path / "after")


# --- the log collector down while hosts log -----------------------------------------------------

SENDERS = ["lg-app01", "mn-app01", "in-web01"]
MESSAGES = 200  # per sender


def test_messages_logged_while_the_collector_is_down_all_arrive_when_it_returns(
    applied_lab: Applied,
) -> None:
    marker = f"kijun-fault-{time.time_ns()}"
    collector = "lg-log01"
    # Plain TCP has no acknowledgement: the one message written into the connection the
    # collector has just closed can be lost (rsyslog issues #3929, #4257); a primer per sender,
    # not counted, takes that place.
    pexec(collector, "systemctl stop syslog.socket rsyslog.service")
    try:
        for sender in SENDERS:
            pexec(sender, f"logger -t kijun-fault {marker}-primer; sleep 1")
        for sender in SENDERS:
            pexec(
                sender,
                f"for i in $(seq 1 {MESSAGES}); do logger -t kijun-fault {marker}-{sender}-$i; "
                "done",
            )
        # one sender's rsyslog restarts during the outage: its queue outlives the process
        pexec(SENDERS[0], "systemctl restart rsyslog.service")
        # the restarted sender's messages wait on disk (the others' in memory, spilling to
        # disk when the queue fills)
        spooled = pexec(SENDERS[0], "find /var/spool/rsyslog -name 'kijun_forward*'").stdout
        assert spooled.strip(), f"{SENDERS[0]}: nothing waits in the disk-assisted queue"
    finally:
        pexec(collector, "systemctl start syslog.socket rsyslog.service")

    def arrived() -> int:
        found = pexec(
            collector,
            f"grep -rhoE '{marker}-[a-z0-9-]+-[0-9]+' /var/log/remote | sort -u | wc -l",
            check=False,
        )
        return int(found.stdout.strip() or 0)

    sent = MESSAGES * len(SENDERS)
    deadline = time.monotonic() + 120
    while arrived() < sent and time.monotonic() < deadline:
        time.sleep(1)
    assert arrived() == sent, f"{arrived()} of {sent} messages arrived"


# --- an apply killed in the middle of a role ----------------------------------------------------


def test_an_apply_killed_in_the_middle_of_a_role_converges_on_the_next_run(
    applied_lab: Applied, tmp_path: Path
) -> None:
    host = "lg-app01"
    early = "/etc/security/pwquality.conf.d/50-kijun-pw01-length.conf"  # early in password_policy
    late = "/etc/profile.d/kijun-tmout.sh"  # late in password_policy
    assert pexec(host, f"test -e {late}", check=False).returncode == 0, f"{late} is not the role's"
    pexec(host, f"rm -f {early} {late}")
    out = tmp_path / "killed"
    killed = subprocess.Popen(
        [str(VENV_BIN / "kijun"), "apply", "--limit", host, "--area", "password", "--out",
         str(out)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(
            lambda: pexec(host, f"test -e {early}", check=False).returncode == 0,
            300,
            "the password policy role to start changing the host",
        )
        os.killpg(killed.pid, signal.SIGKILL)  # the control node dies in the middle of the role
        killed.wait(timeout=60)
    finally:
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)
    # the killed run left no run record that looks complete
    assert not list(out.glob("apply-*.tar.gz")) and not list(out.glob("apply-*/manifest.sig"))
    # the admin runs the interrupted command again
    again = kijun_apply("--limit", host, "--area", "password")
    assert again.proc.returncode == 0, again.proc.stdout[-5000:]
    state = again.summary["hosts"][host]
    assert state["state"] == "ok" and state["lockout_guard"] is None  # the admin logs in
    assert pexec(host, f"test -e {early} && test -e {late}", check=False).returncode == 0
    login = lab.exec_on(lab.default_spec().host(host), "sudo -n true && echo in")
    assert login.returncode == 0 and login.stdout.strip() == "in", login.stderr
    assert_host_passes(host, tmp_path / "after")


# --- hostile content on a host ------------------------------------------------------------------

HOSTILE = r"""
set -e
# odd encodings: Latin-1, invalid UTF-8 and a NUL byte in files the audit reads
printf '# caf\351 \377\376 \000 kijun-fault\n' >> /etc/login.defs
printf '# \377\376 kijun-fault\n' > /etc/chrony/conf.d/zz-kijun-fault-encoding.conf
# a huge file where the audit reads every file (32 MiB of comments)
yes '# kijun-fault huge file line' | head -c 33554432 > /etc/rsyslog.d/zz-kijun-fault-huge.conf
# a symlink to another place: the shadow file
ln -sfn /etc/shadow /etc/chrony/sources.d/zz-kijun-fault-link.sources
# shell metacharacters in file names and in values (were any run, a KIJUNPWNED file appears)
touch '/etc/logrotate.d/zz-kijun-fault-$(touch KIJUNPWNED1)`touch KIJUNPWNED2`;x'
printf '"; touch /tmp/KIJUNPWNED3; echo "\n' > '/etc/profile.d/zz kijun fault;$(id).sh'
printf 'server $(touch /tmp/KIJUNPWNED4) iburst\n' \
  > '/etc/chrony/sources.d/zz-kijun-fault-`touch KIJUNPWNED5`.sources'
"""
UNHOSTILE = r"""
sed -i '/kijun-fault/d' /etc/login.defs
rm -f /etc/chrony/conf.d/zz-kijun-fault-* /etc/rsyslog.d/zz-kijun-fault-* \
  /etc/chrony/sources.d/zz-kijun-fault-* /etc/logrotate.d/zz-kijun-fault-* \
  /etc/profile.d/zz\ kijun\ fault*
"""
PWNED = "find / -xdev -name 'KIJUNPWNED*' 2>/dev/null"


@pytest.fixture
def hostile_host() -> Iterator[str]:
    host = "lg-app01"
    try:
        pexec(host, HOSTILE)
        yield host
    finally:
        pexec(host, UNHOSTILE)


def test_hostile_files_on_a_host_are_read_safely_and_reported(
    applied_lab: Applied, hostile_host: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    proc, doc, bundle = audit(tmp_path / "hostile", "--limit", hostile_host)
    took = time.monotonic() - started
    printed = proc.stdout + proc.stderr
    assert "Traceback" not in printed, printed[-4000:]
    assert proc.returncode == 1, printed[-4000:]  # drift reported, not an error of kijun
    [host] = doc["hosts"]
    assert host["assessed"], host
    statuses = {r["status"] for r in doc["results"]}
    assert "error" not in statuses, [r for r in doc["results"] if r["status"] == "error"]
    assert "fail" in statuses
    # nothing in a name or a value was run, on the host or here
    assert pexec(hostile_host, PWNED, check=False).stdout == ""
    here = subprocess.run(
        ["find", str(ROOT), "/tmp", str(Path.home()), "-name", "KIJUNPWNED*"],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert here.stdout == ""
    # the huge file did not make the bundle huge, nor the audit slow
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    assert size < 8 * 1024 * 1024, f"bundle of {size} bytes"
    assert took < 120, f"the audit took {took:.0f} s"
    # the symlink to /etc/shadow was not followed into the evidence
    shadow = pexec(hostile_host, "cut -d: -f1 /etc/shadow").stdout.split()
    evidence = (bundle / "results.json").read_text()
    assert not any(f"{user}:" in evidence and f"{user}:$" in evidence for user in shadow)
    verified = run_kijun("verify", str(bundle))
    assert verified.returncode == 0, verified.stdout + verified.stderr


# --- planted secrets reach no output ------------------------------------------------------------

PLANTED_PASSWORD = "Kijun-Fault-Planted-Passw0rd!"
PLANTED_SASL = "kijun-fault-planted-smtp-credential"
PLANTED_RADIUS = "kijun-fault-planted-radius-secret"


def _outputs(paths: list[Path]) -> Iterator[tuple[str, bytes]]:
    """Every file under the paths, and every member of every .tar.gz among them."""
    for root in paths:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            yield str(path), data
            if path.name.endswith(".tar.gz"):
                with tarfile.open(path) as tar:
                    for member in tar.getmembers():
                        extracted = tar.extractfile(member)
                        if extracted is not None:
                            yield f"{path}:{member.name}", extracted.read()


def _key_body(pem: str) -> list[str]:
    """The base64 lines of a PEM private key (each long enough to be unmistakable)."""
    return [ln for ln in pem.splitlines() if ln and not ln.startswith("-----") and len(ln) >= 40]


@pytest.fixture
def planted_secrets() -> Iterator[dict[str, str]]:
    """Known secrets on lab hosts, as a real organisation's hosts hold them."""
    # a local account with a known password (its hash is in /etc/shadow)
    pexec(
        "lg-app01",
        "id kijunfault >/dev/null 2>&1 || useradd -m kijunfault; "
        f"echo 'kijunfault:{PLANTED_PASSWORD}' | chpasswd",
    )
    shadow_hash = pexec("lg-app01", "getent shadow kijunfault | cut -d: -f2").stdout.strip()
    # SMTP credentials for the upstream relay
    pexec(
        "lg-mail01",
        f"printf '[in-mail01]:25 relayuser:{PLANTED_SASL}\\n' > /etc/postfix/sasl_passwd && "
        "chmod 0600 /etc/postfix/sasl_passwd",
    )
    # the access point's RADIUS secret drifts to another known one: the apply that restores it
    # shows a difference of two secrets
    pexec(
        "lg-ap01",
        f"sed -i 's/^auth_server_shared_secret=.*/auth_server_shared_secret={PLANTED_RADIUS}/' "
        "/etc/hostapd/hostapd.conf",
    )
    secrets = {
        "password": PLANTED_PASSWORD,
        "password hash": shadow_hash,
        "SMTP credential": PLANTED_SASL,
        "RADIUS secret (drifted)": PLANTED_RADIUS,
    }
    group_vars = (ROOT / "inventories" / "lab" / "group_vars" / "access_points.yml").read_text()
    for line in group_vars.splitlines():
        key, _, value = line.partition(":")
        if key in ("wireless_radius_secret", "wireless_guest_sae_password"):
            secrets[key] = value.strip().strip("'\"")
    host_key = pexec("lg-app01", "cat /etc/ssh/ssh_host_ed25519_key").stdout
    for i, line in enumerate(_key_body(host_key)):
        secrets[f"host private key line {i}"] = line
    for name, path in (
        ("lab admin key", lab.key_path()),
        ("evidence signing key", ROOT / ".kijun" / "keys" / "evidence-signing.key"),
    ):
        if path.is_file():
            for i, line in enumerate(_key_body(path.read_text())):
                secrets[f"{name} line {i}"] = line
    try:
        yield secrets
    finally:
        pexec("lg-app01", "userdel -r kijunfault 2>/dev/null || true")
        pexec("lg-mail01", "rm -f /etc/postfix/sasl_passwd")


def test_planted_secrets_reach_no_evidence_log_or_terminal(
    applied_lab: Applied, planted_secrets: dict[str, str], tmp_path: Path
) -> None:
    assert len(planted_secrets["password hash"]) > 20
    hosts = "lg-app01,lg-mail01,lg-ap01"
    history_before = (ROOT / ".kijun" / "history.sqlite").stat().st_size
    audited, _, _ = audit(tmp_path / "audit", "--limit", hosts)
    assert audited.returncode == 1  # the drifted RADIUS secret is found (WL-02)
    applied = kijun_apply("--limit", "lg-ap01", "--area", "wireless", "--diff")
    assert applied.proc.returncode == 0, applied.proc.stdout[-4000:]
    assert applied.summary["changes_by_control"], "the apply restored nothing"
    printed = {
        "kijun audit (terminal)": (audited.stdout + audited.stderr).encode(),
        "kijun apply (terminal)": (applied.proc.stdout + applied.proc.stderr).encode(),
    }
    files = dict(_outputs([tmp_path / "audit", applied.bundle.parent]))
    history = {
        f"history database ({path.name})": path.read_bytes()
        for path in (ROOT / ".kijun").glob("history.sqlite*")
    }
    assert sum(len(data) for data in history.values()) >= history_before
    searched = {**printed, **files, **history}
    found = [
        f"{what} in {where}"
        for where, data in searched.items()
        for what, secret in planted_secrets.items()
        if secret.encode() in data
    ]
    assert found == [], found
    # and the search would have found them: the hostapd configuration holds the secret
    conf = pexec("lg-ap01", "cat /etc/hostapd/hostapd.conf").stdout
    assert planted_secrets["wireless_radius_secret"] in conf
    assert len(files) > 10 and any("events.jsonl" in f for f in files)
