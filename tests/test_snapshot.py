"""The collection step: one script, commands run together, outputs parsed back exactly."""

from __future__ import annotations

import subprocess
import time

import pytest

from kijun import snapshot


def _run(commands: dict[str, str]) -> dict[str, snapshot.Output]:
    line, marker = snapshot.remote_command(commands)
    proc = subprocess.run(
        ["sh", "-c", line], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL
    )
    return snapshot.parse(proc.stdout, marker, sorted(commands))


def test_outputs_and_exit_statuses_come_back_exactly() -> None:
    out = _run(
        {
            "t/plain": "echo hello",
            "t/status": "echo partial; exit 3",
            "t/no-newline": "printf 'a\\nb'",
            "t/empty": "true",
            "t/stderr-dropped": "echo visible; echo hidden >&2",
            "t/quotes": "printf '%s\\n' \"it's \\$HOME\"",
        }
    )
    assert out["t/plain"] == snapshot.Output("hello\n", 0)
    assert out["t/status"] == snapshot.Output("partial\n", 3)
    assert out["t/no-newline"] == snapshot.Output("a\nb", 0)
    assert out["t/empty"] == snapshot.Output("", 0)
    assert out["t/stderr-dropped"].stdout == "visible\n"
    assert out["t/quotes"].stdout == "it's $HOME\n"


def test_a_command_that_reopens_stdout_keeps_its_frame() -> None:
    # rsyslogd -N1 -o /dev/stdout opens /dev/stdout afresh, which truncates the file behind it.
    out = _run(
        {"t/a": "echo first", "t/reopen": "printf 'config\\n' > /dev/stdout", "t/z": "echo z"}
    )
    assert out["t/reopen"] == snapshot.Output("config\n", 0)
    assert out["t/a"].stdout == "first\n" and out["t/z"].stdout == "z\n"


def test_commands_run_concurrently() -> None:
    started = time.monotonic()
    out = _run({f"t/sleep{i}": "sleep 1; echo done" for i in range(6)})
    assert all(o.stdout == "done\n" for o in out.values())
    assert time.monotonic() - started < 4.0  # six one-second commands together, not 6 s


def test_a_missing_output_is_an_error() -> None:
    with pytest.raises(snapshot.SnapshotError, match="t/b"):
        snapshot.parse("", "@@x", ["t/b"])


def test_keys_are_checked() -> None:
    with pytest.raises(ValueError, match="area/name"):
        snapshot.build_script({"bad key": "true"}, "@@x")


def test_unit_states_come_from_one_systemctl_show() -> None:
    command = snapshot.units_command({"rsyslog.service", "chrony.service", "ntp.service"})
    assert command.count("systemctl") == 1
    output = (
        "units chrony.service ntp.service rsyslog.service\n"
        "LoadState=loaded\nActiveState=failed\nUnitFileState=disabled\n\n"
        "LoadState=not-found\nActiveState=inactive\nUnitFileState=\n\n"
        "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n"
    )
    snap = snapshot.Snapshot("h", {snapshot.UNITS_KEY: snapshot.Output(output, 0)})
    assert snap.unit("chrony.service") == snapshot.Unit(
        "chrony.service", "loaded", "failed", "disabled"
    )
    assert snap.unit("ntp.service").load == "not-found"
    assert snap.unit("rsyslog.service").active == "active"
    with pytest.raises(snapshot.SnapshotError, match="add it to UNITS"):
        snap.unit("sshd.service")


def test_unit_states_that_do_not_match_the_request_are_refused() -> None:
    truncated = "units a.service b.service\nLoadState=loaded\nActiveState=active\n"
    snap = snapshot.Snapshot("h", {snapshot.UNITS_KEY: snapshot.Output(truncated, 0)})
    with pytest.raises(snapshot.SnapshotError, match="1 unit"):
        snap.unit("a.service")
    with pytest.raises(ValueError, match="not a systemd unit"):
        snapshot.units_command({"rsyslog; reboot"})


def test_a_check_adds_its_own_evidence_once() -> None:
    snap = snapshot.Snapshot("h1", {"t/collected": snapshot.Output("x", 0)})
    snap.add("mail/smtp_outside", "S: 220 relay ESMTP\n", 0)
    assert snap["mail/smtp_outside"] == snapshot.Output("S: 220 relay ESMTP\n", 0)
    with pytest.raises(ValueError, match="already"):
        snap.add("t/collected", "replaced")
    with pytest.raises(ValueError, match="area/name"):
        snap.add("no-area", "x")


def test_evidence_a_check_adds_counts_as_read() -> None:
    from kijun.audit_plugin import TrackedSnapshot

    tracked = TrackedSnapshot(snapshot.Snapshot("h1", {}))
    assert "mail/smtp_size" not in tracked
    tracked.add("mail/smtp_size", "S: 552 5.3.4\n", 1)
    assert "mail/smtp_size" in tracked
    assert tracked.read == ["mail/smtp_size"]


def test_a_host_error_loses_the_collection_command_and_stays_short() -> None:
    from kijun.audit_plugin import ERROR_CHARS, _short_error

    line, _ = snapshot.remote_command({"time/x": "chronyc tracking", "time/y": "cat /etc/timezone"})
    exc = RuntimeError(
        f"CommandExecutionError: sudo /bin/sh -c '{line}' failed: ssh: connect to host "
        "198.18.0.31 port 22: Connection timed out " + "x-" * 1000
    )
    short = _short_error(exc, line)
    assert short.startswith("RuntimeError: CommandExecutionError: sudo /bin/sh -c")
    assert "<kijun collection command>" in short and "Connection timed out" in short
    assert line not in short and len(short) == ERROR_CHARS
    # an encoded blob quoted differently is cut out as well
    blob = line.split()[1]
    assert "<encoded>" in _short_error(RuntimeError(f"failed: {blob!r}"), line)


def test_a_huge_output_is_cut_and_says_so() -> None:
    commands = {"t/huge": "yes kijun | head -c 3000000; exit 3", "t/small": "echo fine"}
    line, marker = snapshot.remote_command(commands)
    out = subprocess.run(
        ["/bin/sh", "-c", line],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    parsed = snapshot.parse(out.stdout, marker, sorted(commands))
    huge = parsed["t/huge"]
    assert huge.rc == 3 and huge.stdout.endswith("[kijun: output cut to its first 1048576 bytes]")
    assert len(huge.stdout) < snapshot.OUTPUT_LIMIT + 100
    assert parsed["t/small"].stdout == "fine\n" and parsed["t/small"].rc == 0
