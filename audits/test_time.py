"""Time synchronisation (TS-01..TS-06): chrony, the organisation's time sources, the time zone.

What is read (one collection per host, see ``COLLECT``); the outputs a check reads are its
evidence, so the checks parse chronyc's own output, as an auditor would read it:

* chrony's configuration as chronyd reads it: ``chronyd -p`` (chrony.conf with its ``confdir``
  drop-ins expanded, in reading order), the ``*.sources`` files of every ``sourcedir``, and the
  raw chrony.conf and drop-ins;
* the running daemon: ``chronyc -n sources`` (addresses), ``chronyc -N sources`` (the sources'
  names as configured), ``chronyc tracking``, ``chronyc accheck`` for documentation addresses
  (TEST-NET-1/2/3, 2001:db8::), ``chronyc serverstats``, the NTP port (UDP 123) and chronyd's
  command line;
* systemd's view of chrony and of other time daemons, other time daemons' processes;
* the time zone (/etc/localtime, /etc/timezone).

Where the configuration and the running daemon can disagree (sources, ``allow``), both are
compared with the expected values. When chronyd does not answer, the controls about the running
daemon (TS-03 active, TS-05 synchronised) fail; TS-01, TS-02 and TS-06's ``allow`` checks then
judge the configuration alone and say so in their message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

import pytest

from kijun import chrony

# chrony.conf and every file it reads through confdir (every directory) and include, nested up to
# three deep, each as "### PATH" and its text (awk 1: a last line without a newline is ended), so
# that the reader (kijun.chrony) can name the file and line of each directive.
_CONFIG_FILES = (
    "seen=; todo=/etc/chrony/chrony.conf; for pass in 1 2 3; do next=; for f in $todo; do "
    '[ -f "$f" ] || continue; case " $seen " in *" $f "*) continue;; esac; seen="$seen $f"; '
    'echo "### $f"; awk 1 "$f"; next="$next $(awk \'tolower($1) == "confdir" '
    '{for (i = 2; i <= NF; i++) print $i "/*.conf"} tolower($1) == "include" {print $2}\' '
    '"$f")"; done; todo=$next; done'
)
_SOURCE_FILES = (
    "for d in $(chronyd -p | awk 'tolower($1) == \"sourcedir\" {print $2}'); do "
    'for f in "$d"/*.sources; do [ -f "$f" ] && { echo "### $f"; awk 1 "$f"; }; done; done'
)
# Every name or address in a server/pool/peer line, with the addresses it resolves to.
_SOURCE_NAMES = (
    "{ chronyd -p; " + _SOURCE_FILES + "; } | "
    'awk \'$1 == "server" || $1 == "pool" || $1 == "peer" {print $2}\' | sort -u | '
    'while read -r n; do echo "$n $(getent ahosts "$n" | awk \'{print $1}\' | sort -u | '
    "tr '\\n' ' ')\"; done"
)
# Documentation addresses (RFC 5737, RFC 3849): no organisation serves them, so chronyd must
# deny them unless it allows everyone.
PROBES = ("192.0.2.1", "198.51.100.1", "203.0.113.1", "2001:db8::1")
# Other time daemons: systemd units and process names (comm is cut at 15 characters).
OTHER_UNITS = tuple(
    f"{u}.service" for u in ("systemd-timesyncd", "ntp", "ntpsec", "openntpd", "ntpd")
)
UNITS = ("chrony.service", *OTHER_UNITS)  # read together in one systemctl call per host
OTHER_PROCESSES = ("ntpd", "openntpd", "systemd-timesyn")

COLLECT = {
    "time/chrony_config": "chronyd -p",
    "time/chrony_conf_files": _CONFIG_FILES,
    "time/chrony_source_files": _SOURCE_FILES,
    "time/chrony_source_addresses": _SOURCE_NAMES,
    "time/chronyc_sources": "chronyc -n sources",
    "time/chronyc_sources_names": "chronyc -N sources",
    "time/chronyc_tracking": "chronyc tracking",
    "time/chronyc_serverstats": "chronyc serverstats",
    "time/chronyc_accheck": (
        f"for a in {' '.join(PROBES)}; do "
        "echo \"$a $(chronyc accheck \"$a\" 2>&1 | tr '\\n' ' ')\"; done"
    ),
    "time/ntp_port": "ss -H -uln 'sport = :123'",
    "time/chronyd_cmdline": "tr '\\0' ' ' < /proc/$(cat /run/chrony/chronyd.pid)/cmdline",
    "time/other_time_daemons": (
        'for c in /proc/[0-9]*/comm; do read -r n < "$c" && echo "process $n"; done '
        f"2>/dev/null | sort -u | grep -Ex 'process ({'|'.join(OTHER_PROCESSES)})' || true"
    ),
    "time/timezone": "readlink -f /etc/localtime",
    "time/timezone_file": "cat /etc/timezone",
}

LOCAL_REFERENCE_ID = "7F7F0101"  # chrony's reference id when it serves its own clock (local)
NOT_ANSWERING = "chronyd does not answer (not running)"
_COMMENT = ("#", "%", ";", "!", "*")


# --- chrony's configuration, as read --------------------------------------------------------


def config(snapshot: Any) -> chrony.ChronyConfig:
    """chrony's configuration as chronyd reads it, each directive traced to its file and line."""
    return chrony.read(
        snapshot.text("time/chrony_conf_files"),
        snapshot.text("time/chrony_config"),
        snapshot.text("time/chrony_source_files"),
    )


def traced(conf: chrony.ChronyConfig, found: list[chrony.Directive]) -> str:
    """The ``source`` of a check: where the directives came from (or why that is unknown)."""
    if not conf.traced:
        return f"not traced: {conf.why}"
    return chrony.sources_of(found) or "no file sets it"


def effective(snapshot: Any, name: str) -> tuple[chrony.Directive | None, list[str], str]:
    """The directive chronyd uses (the last one read), every occurrence with its file, and the
    file:line of the one in force."""
    conf = config(snapshot)
    found = conf.all(name)
    last = found[-1] if found else None
    shown = [f"{d.text} ({d.source})" if d.source else d.text for d in found]
    return last, shown, traced(conf, [last] if last else [])


def expected_sources(expected: dict[str, Any]) -> list[str]:
    return sorted(
        " ".join(["server", str(s["host"]), *(str(o) for o in s.get("options") or [])])
        for s in expected["time_sync_servers"]
    )


def network(text: str) -> str:
    """A chrony allow/deny argument in canonical form (``192.168`` is ``192.168.0.0/16``)."""
    if text.lower() == "all":
        return "all"
    base, _, bits = text.partition("/")
    if not bits and re.fullmatch(r"\d+(\.\d+){0,2}", base):
        parts = base.split(".")
        base, bits = ".".join(parts + ["0"] * (4 - len(parts))), str(8 * len(parts))
    try:
        return str(ipaddress.ip_network(f"{base}/{bits}" if bits else base, strict=False))
    except ValueError:
        return text


def allow_network(directive: chrony.Directive) -> str:
    """The network of an ``allow`` directive ("all" for a bare ``allow`` or ``allow all``)."""
    args = [a for a in directive.args if a.lower() != "all"]
    return network(args[0]) if args else "all"


def allows(snapshot: Any) -> list[str]:
    """The networks of the ``allow`` directives as read."""
    return sorted(allow_network(d) for d in config(snapshot).all("allow"))


def wide(net: str) -> bool:
    return net == "all" or net.endswith("/0")


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def inside(address: str, networks: Iterable[str]) -> bool:
    if not is_address(address):
        return False
    ip = ipaddress.ip_address(address)
    for net in networks:
        try:
            if ip in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            continue
    return False


# --- chronyc's output -----------------------------------------------------------------------


def sources(snapshot: Any, key: str) -> list[dict[str, str]] | None:
    """The rows of ``chronyc sources`` (mode, state, name, reach), or None if chronyd is silent.

    A row reads ``^* 198.19.255.9   10   2   377   3   -22us[ -24us] +/- 51us``: mode and
    state in the first two columns, then name, stratum, poll, reach (octal), ...
    """
    out = snapshot[key]
    if out.rc != 0:
        return None
    rows = []
    lines = out.stdout.splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith("===")), len(lines))
    for line in lines[start:]:
        words = line[2:].split()
        if len(line) > 2 and len(words) >= 4:
            rows.append({"mode": line[0], "state": line[1], "name": words[0], "reach": words[3]})
    return rows


def tracking(snapshot: Any) -> dict[str, str] | None:
    """``chronyc tracking`` as {field: value}, or None if chronyd is silent."""
    out = snapshot["time/chronyc_tracking"]
    if out.rc != 0:
        return None
    fields = {}
    for line in out.stdout.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    return fields if "Leap status" in fields else None


def seconds(value: str | None) -> float | None:
    """The signed seconds of a tracking value such as ``0.000015 seconds slow of NTP time``."""
    words = (value or "").split()
    try:
        number = float(words[0])
    except (IndexError, ValueError):
        return None
    return -number if "slow" in words else number


def evidence(snapshot: Any, *keys: str) -> None:
    """Read outputs that a check does not parse but that an auditor needs beside its result."""
    for key in keys:
        snapshot[key]


# --- TS-01 ----------------------------------------------------------------------------------


@pytest.mark.control("TS-01")
def test_chrony_sources_declared(snapshot, expected, audit) -> None:
    evidence(snapshot, "time/chrony_conf_files")
    want = expected_sources(expected)
    hosts = sorted({str(s["host"]) for s in expected["time_sync_servers"]})
    conf = config(snapshot)
    configured = conf.sources()
    observed: dict[str, Any] = {"configured": sorted(d.text for d in configured)}
    ok = observed["configured"] == want
    rows = sources(snapshot, "time/chronyc_sources_names")
    if rows is None:
        observed["running"] = NOT_ANSWERING
    else:
        observed["running"] = sorted({r["name"] for r in rows})
        ok = ok and observed["running"] == hosts
    audit.expect(
        ok,
        expected={"configured": want, "running": hosts},
        observed=observed,
        message="configured: chrony.conf, its drop-ins and sourcedir files; running: chronyc -N",
        source=traced(conf, configured),
    )


@pytest.mark.control("TS-01")
def test_chrony_makestep(snapshot, expected, audit) -> None:
    evidence(snapshot, "time/chrony_conf_files")
    last, found, source = effective(snapshot, "makestep")
    threshold = float(expected["time_sync_makestep_threshold"])
    limit = int(expected["time_sync_makestep_limit"])
    try:
        got = (float(last.args[0]), int(last.args[1])) if last and len(last.args) == 2 else None
    except ValueError:
        got = None
    audit.expect(
        got == (threshold, limit),
        expected=f"makestep {threshold:g} {limit}",
        observed=found or "no makestep (chronyd never steps the clock)",
        message="chronyd uses the last makestep directive it reads",
        source=source,
    )


@pytest.mark.control("TS-01")
def test_chrony_minsources(snapshot, expected, audit) -> None:
    evidence(snapshot, "time/chrony_conf_files")
    last, found, source = effective(snapshot, "minsources")
    try:
        got = (int(last.args[0]) if last.args else None) if last else 1  # chrony's default
    except ValueError:
        got = None
    audit.expect(
        got == int(expected["time_sync_minsources"]),
        expected=f"minsources {expected['time_sync_minsources']}",
        observed=found or "no minsources (chrony's default: 1)",
        message="chronyd uses the last minsources directive it reads",
        source=source if last else "chrony's default (no minsources directive)",
    )


# --- TS-02 ----------------------------------------------------------------------------------


@pytest.mark.control("TS-02")
def test_chrony_sources_internal_only(snapshot, expected, audit) -> None:
    internal = list(expected["time_sync_internal_networks"])
    addresses: dict[str, list[str]] = {}  # source -> the addresses it is or resolves to
    for line in snapshot.text("time/chrony_source_addresses").splitlines():
        name, *resolved = line.split()
        addresses[f"configured {name}"] = [name] if is_address(name) else resolved
    rows = sources(snapshot, "time/chronyc_sources")
    for row in rows or []:
        if row["mode"] in ("^", "="):
            addresses[f"running {row['name']}"] = [row["name"]]
    outside = {
        name: addrs or ["(does not resolve)"]
        for name, addrs in sorted(addresses.items())
        if not addrs or not all(inside(a, internal) for a in addrs)
    }
    conf = config(snapshot)
    audit.expect(
        not outside,
        expected=f"every source in {internal}",
        observed={"outside or unresolved": outside} if outside else dict(sorted(addresses.items())),
        message="" if rows is not None else f"{NOT_ANSWERING}: configured sources only",
        source=traced(conf, conf.sources()),
    )


# --- TS-03 ----------------------------------------------------------------------------------


@pytest.mark.control("TS-03")
def test_chrony_enabled(snapshot, expected, audit) -> None:
    audit.equal(snapshot.unit("chrony.service").enabled, "enabled")


@pytest.mark.control("TS-03")
def test_chrony_active(snapshot, expected, audit) -> None:
    state = snapshot.unit("chrony.service").active
    args = snapshot.text("time/chronyd_cmdline").split()
    # -x: chronyd does not control the clock (the lab-only container option).
    no_control = any(re.fullmatch(r"-[A-Za-z]*x[A-Za-z]*", a) for a in args[1:])
    lab = bool(expected["time_sync_container_lab"])
    audit.expect(
        state == "active" and bool(args) and no_control == lab,
        expected={"state": "active", "controls the clock": not lab},
        observed={"state": state, "controls the clock": (not no_control) if args else None},
        message="lab only: chronyd runs without clock control (-x)" if lab else "",
    )


@pytest.mark.control("TS-03")
def test_no_other_time_daemon(snapshot, expected, audit) -> None:
    running = [
        f"unit {u}"
        for u in sorted(OTHER_UNITS)
        if snapshot.unit(u).active in ("active", "activating", "reloading")
    ]
    for line in snapshot.text("time/other_time_daemons").splitlines():
        kind, name, *_ = line.split()
        if kind == "process" and name in OTHER_PROCESSES:
            running.append(f"{kind} {name}")
    audit.equal(running, [], message="only chronyd may keep the time")


# --- TS-04 ----------------------------------------------------------------------------------


@pytest.mark.control("TS-04")
def test_timezone_configured(snapshot, expected, audit) -> None:
    link = snapshot.text("time/timezone").strip()
    observed = {
        "/etc/localtime": link.removeprefix("/usr/share/zoneinfo/") or None,
        "/etc/timezone": snapshot.text("time/timezone_file").strip() or None,
    }
    zone = expected["time_sync_timezone"]
    audit.equal(observed, {"/etc/localtime": zone, "/etc/timezone": zone})


# --- TS-05 ----------------------------------------------------------------------------------


@pytest.mark.control("TS-05")
def test_chrony_leap_status_normal(snapshot, expected, audit) -> None:
    fields = tracking(snapshot)
    audit.equal(fields["Leap status"] if fields else NOT_ANSWERING, "Normal")


@pytest.mark.control("TS-05")
def test_chrony_selected_source_reachable(snapshot, expected, audit) -> None:
    fields = tracking(snapshot)
    rows = sources(snapshot, "time/chronyc_sources")
    if fields is None or rows is None:
        audit.expect(False, expected="a selected, reachable source", observed=NOT_ANSWERING)
        return
    stratum = int(expected["time_sync_local_stratum"])
    if not expected["time_sync_servers"] and stratum > 0:
        # A time server without an upstream source serves its own clock (`local stratum N`).
        audit.equal(
            {"reference": fields.get("Reference ID", "").split(" ")[0],
             "stratum": fields.get("Stratum")},
            {"reference": LOCAL_REFERENCE_ID, "stratum": str(stratum)},
            message="no server declared: the host's own clock at the local stratum",
        )  # fmt: skip
        return
    selected = [
        f"{r['name']} (reach {r['reach']})"
        for r in rows
        if r["state"] == "*" and re.fullmatch(r"[0-7]+", r["reach"]) and int(r["reach"], 8)
    ]
    audit.expect(
        bool(selected),
        expected="a selected source (*) with a non-zero reach register",
        observed=selected[0]
        if selected
        else [f"{r['mode']}{r['state']} {r['name']}" for r in rows],
        message="" if selected else "no source is selected and reachable (chronyc -n sources)",
    )


@pytest.mark.control("TS-05")
def test_chrony_offset_within_bound(snapshot, expected, audit) -> None:
    fields = tracking(snapshot)
    system = seconds(fields.get("System time")) if fields else None
    last = seconds(fields.get("Last offset")) if fields else None
    offset = None
    if system is not None and last is not None:
        offset = round(max(abs(system), abs(last)) * 1000, 3)
    audit.at_most(
        offset if offset is not None else NOT_ANSWERING,
        int(expected["time_sync_max_offset_ms"]),
        message="milliseconds: the larger of chronyc tracking's System time and Last offset",
    )


# --- TS-06 ----------------------------------------------------------------------------------


@pytest.mark.control("TS-06")
def test_chrony_allow_declared_only(snapshot, expected, audit) -> None:
    evidence(snapshot, "time/chrony_conf_files")
    want = sorted(network(n) for n in expected["time_sync_allow_networks"])
    conf = config(snapshot)
    audit.equal(
        allows(snapshot),
        want,
        message="the allow directives chronyd reads",
        source=traced(conf, conf.all("allow")),
    )


@pytest.mark.control("TS-06")
def test_chrony_no_allow_all(snapshot, expected, audit) -> None:
    declared = list(expected["time_sync_allow_networks"])
    conf = config(snapshot)
    wide_lines = [d for d in conf.all("allow") if wide(allow_network(d))]
    everyone = [allow_network(d) for d in wide_lines]
    answers = snapshot.text("time/chronyc_accheck").splitlines()
    allowed = [
        probe
        for probe, _, answer in (line.partition(" ") for line in answers)
        if "allowed" in answer.lower() and not inside(probe, declared)
    ]
    silent = any("cannot talk" in line.lower() for line in answers)
    audit.expect(
        not everyone and not allowed,
        expected={"allow everyone (as read)": [], "documentation addresses allowed": []},
        observed={"allow everyone (as read)": everyone, "documentation addresses allowed": allowed},
        message=f"{NOT_ANSWERING}: configuration only" if silent else "chronyc accheck",
        source=traced(conf, wide_lines) if wide_lines else "",
    )


@pytest.mark.control("TS-06")
def test_chrony_serving_clients(snapshot, expected, audit) -> None:
    port_open = bool(snapshot.text("time/ntp_port").strip())
    serve = bool(expected["time_sync_allow_networks"])
    evidence(snapshot, "time/chronyc_serverstats")  # what the server has served
    audit.equal(
        "NTP port (UDP 123) open" if port_open else "NTP port (UDP 123) closed",
        "NTP port (UDP 123) open" if serve else "NTP port (UDP 123) closed",
        message="a time server serves its declared networks; with none declared, nobody",
    )
