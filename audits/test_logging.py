"""Logging and log retention (LG): journald, rsyslog, logrotate, log readers, forwarding to the
central collector and reception on it.

Configuration is read as the tools themselves read it: ``systemd-analyze cat-config`` for
journald (the last assignment wins; the main file's commented lines are the compiled-in
defaults; kijun.journald), ``rsyslogd -N1 -o`` for rsyslog's full configuration (kijun.rsyslog), and
``logrotate -d`` for each log's rotation, completed with kijun's reading of the logrotate files
for what logrotate 3.21 does not print (kijun.logrotate; retention = rotations x period,
bounded by maxage). Each check of a setting names in ``source`` the file and line that set the
value in force (the winner among the drop-ins and includes the service reads).

The managed logs are the files rsyslog writes (its static file actions) and, on collectors,
the per-host files under log_retention_collector_directory.

One exception to "audits change nothing on the host": the collection step logs one probe
message (``logger -t kijun-audit kijun-audit-<uuid>``), a line in the logs, not a change of
configuration. LG-02 looks for it in the host's own syslog files, LG-06 at the collector (an
off-host copy: 改ざん又は消去されないように), reading the collector's received files with one
read-only command, retried until PROBE_WAIT_SECONDS after the first check (all hosts log their
probes in the collection step, before any check runs).
"""

from __future__ import annotations

import math
import re
import shlex
import time
from typing import Any

import pytest

from kijun import journald as jd
from kijun import logrotate as lr
from kijun import rsyslog as rs

PROBE_WAIT_SECONDS = 10.0

_PROBE = r"""
m="kijun-audit-$(cat /proc/sys/kernel/random/uuid)"
logger -t kijun-audit -p user.notice "$m" || exit 1
echo "marker $m"
i=0
while [ $i -lt 40 ]; do  # up to 10 s: rsyslog may have just been restarted
  found=$(find /var/log -xdev -path /var/log/journal -prune -o -type f -mmin -2 -print \
          | xargs -r grep -lF -e "$m")
  # Done once a file right under /var/log has it (the host's own syslog files). A file deeper
  # down may be the collector's copy of its own message, which can arrive first (through its
  # own TCP input) while the local file action is still flushing its batch: wait on.
  printf '%s\n' "$found" | grep -q '^/var/log/[^/]*$' && break
  sleep 0.25; i=$((i + 1))
done
for f in $found; do echo "local $f"; done
"""

_GROUPS = r"""
for g in adm systemd-journal; do
  e=$(getent group "$g") || continue
  echo "group $e"
  getent passwd | awk -F: -v gid="$(echo "$e" | cut -d: -f3)" -v g="$g" \
    '$4 == gid {print "primary " g " " $1}'
done
"""

_WORK_DIRECTORY = r"""
w=$(rsyslogd -N1 -o /dev/stdout 2>/dev/null \
    | sed -n -e 's/^[[:space:]]*\$WorkDirectory[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/Ip' \
             -e 's/.*workDirectory="\([^"]*\)".*/\1/Ip' | tail -n 1)
[ -n "$w" ] && stat -c '%F|%U|%G|%a|%n' "$w" && ls -la "$w"
"""

UNITS = ("rsyslog.service",)  # read with every module's units in one systemctl call
COLLECT = {
    **jd.COLLECT,
    "logging/journal_files": (
        "m=$(cat /etc/machine-id); "
        "stat -c '%F|%U|%G|%a|%n' /var/log/journal /var/log/journal/$m "
        "/var/log/journal/$m/system.journal; journalctl --disk-usage"
    ),
    **rs.COLLECT,
    "logging/rsyslog_work_directory": _WORK_DIRECTORY,
    "logging/listening": "ss -Hltnp",
    **lr.COLLECT,
    "logging/log_files": (
        "find /var/log -xdev -path /var/log/journal -prune -o "
        "\\( -type f -o -type d \\) -printf '%m %u %g %y %p\\n'"
    ),
    "logging/groups": _GROUPS,
    "logging/probe": _PROBE,
}


# --- reading the snapshot ---------------------------------------------------------------------


def _journald(snapshot: Any) -> jd.Config:
    """journald's effective settings, each with the file and line that set it (kijun.journald):
    the last assignment, else the compiled-in default."""
    return jd.read_cat_config(snapshot.text("logging/journald_conf"))


_SPAN = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "": 1, "s": 1, "sec": 1, "second": 1,
    "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600,
    "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400, "w": 604800,
    "week": 604800, "weeks": 604800, "M": 2629800, "month": 2629800, "months": 2629800,
    "y": 31557600, "year": 31557600, "years": 31557600,
}  # fmt: skip


def timespan_seconds(text: str | None) -> float | None:
    """A systemd time span ("1year", "2w 3d", "3600") in seconds; None if not one."""
    if not text or not re.fullmatch(r"(\s*\d+(\.\d+)?\s*[A-Za-z]*)+\s*", text):
        return None
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", text):
        if unit not in _SPAN:
            return None
        total += float(number) * _SPAN[unit]
    return total


def size_bytes(text: str | None, *, rsyslog: bool = False) -> int | None:
    """A size in bytes: systemd's K, M, G, T (base 1024), or rsyslog's k, m, g (1024) and
    K, M, G (1000)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGTPEkmgtpe]?)\s*", text or "")
    if not m:
        return None
    number, unit = int(m.group(1)), m.group(2)
    if not unit:
        return number
    power = "KMGTPE".index(unit.upper()) + 1
    base = 1000 if rsyslog and unit.isupper() else 1024
    return number * base**power


def _rsyslog(snapshot: Any) -> rs.Config:
    return rs.parse(snapshot.text("logging/rsyslog_conf"))


def _probe(snapshot: Any) -> tuple[str | None, list[str]]:
    marker, local = None, []
    for line in snapshot.text("logging/probe").splitlines():
        word, _, rest = line.partition(" ")
        if word == "marker":
            marker = rest.strip()
        elif word == "local":
            local.append(rest.strip())
    return marker, local


def _rotations(snapshot: Any) -> tuple[list[lr.Rotation], list[str]]:
    debug = lr.parse_debug(snapshot.text("logging/logrotate_debug"))
    blocks, unread = lr.read_config(lr.parse_files(snapshot.text("logging/logrotate_files")))
    rotations, problems = lr.combine(debug, blocks)
    return rotations, [*unread, *problems]


def _file_stats(snapshot: Any) -> dict[str, tuple[str, str, str, str]]:
    """path -> (mode, owner, group, type f|d) of everything under /var/log (but the journal)."""
    stats = {}
    for line in snapshot.text("logging/log_files").splitlines():
        parts = line.split(" ", 4)
        if len(parts) == 5:
            stats[parts[4]] = (parts[0], parts[1], parts[2], parts[3])
    return stats


def _collector_template(conf: rs.Config, expected: dict[str, Any]) -> tuple[str | None, str]:
    """The per-host file template of the collector's TCP input ruleset, and its ruleset."""
    port = str(expected["log_retention_collector_port"])
    inputs = [i for i in conf.inputs if i.get("type") == "imtcp" and i.get("port") == port]
    ruleset = inputs[0].get("ruleset") if inputs else None
    for action in conf.actions:
        if action.type == "omfile" and action.ruleset == ruleset and "dynafile" in action.params:
            template = conf.templates.get(action.params["dynafile"], {})
            return template.get("string"), ruleset or "RSYSLOG_DefaultRuleset"
    return None, ruleset or "RSYSLOG_DefaultRuleset"


_HOST_PROPERTY = re.compile(r"%(hostname|fromhost|fromhost-ip|source)(:[^%]*)?%", re.I)


def _sample_path(template: str) -> str:
    """A path the template produces, with every property replaced by a sample value."""
    return re.sub(r"%[^%]+%", "HOST", template)


def _managed(snapshot: Any) -> list[str]:
    """The log files whose retention and protection the controls govern: those rsyslog writes."""
    return sorted({a.file for a in _rsyslog(snapshot).files() if a.file})


def _mode_within(mode: str | None, limit: str) -> bool:
    try:
        return mode is not None and int(mode, 8) & ~int(limit, 8) == 0
    except ValueError:
        return False


def _sources(found: Any) -> str:
    """The distinct ``path:line`` places among ``found``, in order, as one string."""
    return ", ".join(dict.fromkeys(s for s in found if s))


def _retention_text(days: float | None) -> Any:
    if days is None:
        return "depends on the log volume (rotated by size)"
    return "never removed" if math.isinf(days) else round(days, 2)


# --- LG-01 journald ---------------------------------------------------------------------------


@pytest.mark.control("LG-01")
def test_journald_storage_persistent(snapshot, expected, audit) -> None:
    conf = _journald(snapshot)
    audit.equal(conf.get("Storage"), "persistent", source=conf.source("Storage"))


@pytest.mark.control("LG-01")
def test_journal_directory_present(snapshot, expected, audit) -> None:
    found = {}
    for line in snapshot.text("logging/journal_files").splitlines():
        parts = line.split("|")
        if len(parts) == 5:
            found[parts[4]] = parts[0]
    directory = found.get("/var/log/journal")
    active = [p for p in found if p.endswith("/system.journal")]
    audit.expect(
        directory == "directory" and bool(active),
        expected="/var/log/journal/<machine-id>/system.journal (journald writes to disk)",
        observed={"/var/log/journal": directory, "system journal": active or None},
    )


@pytest.mark.control("LG-01")
def test_journald_max_retention(snapshot, expected, audit) -> None:
    conf = _journald(snapshot)
    observed = conf.get("MaxRetentionSec") or None
    want = expected["log_retention_journald_max_retention"]
    audit.expect(
        timespan_seconds(observed) is not None
        and timespan_seconds(observed) == timespan_seconds(want),
        expected=want,
        observed=observed,
        message="MaxRetentionSec compared as a systemd time span",
        source=conf.source("MaxRetentionSec"),
    )


@pytest.mark.control("LG-01")
def test_journald_system_max_use(snapshot, expected, audit) -> None:
    conf = _journald(snapshot)
    observed = conf.get("SystemMaxUse") or None
    want = expected["log_retention_journald_system_max_use"]
    audit.expect(
        size_bytes(observed) is not None and size_bytes(observed) == size_bytes(want),
        expected=want,
        observed=observed,
        message="SystemMaxUse compared in bytes",
        source=conf.source("SystemMaxUse"),
    )


@pytest.mark.control("LG-01")
def test_journald_compress(snapshot, expected, audit) -> None:
    conf = _journald(snapshot)
    # Compress defaults to yes; but a configuration that could not be read is never a pass.
    observed = conf.get("Compress", "yes") if conf.files else None
    audit.expect(
        observed is not None and observed.lower() not in ("no", "false", "0", "off"),
        expected="yes",
        observed=observed if conf.files else "journald's configuration not read",
        source=conf.source("Compress"),
    )


# --- LG-02 rsyslog ----------------------------------------------------------------------------


@pytest.mark.control("LG-02")
def test_rsyslog_enabled(snapshot, expected, audit) -> None:
    audit.equal(snapshot.unit("rsyslog.service").enabled, "enabled")


@pytest.mark.control("LG-02")
def test_rsyslog_active(snapshot, expected, audit) -> None:
    audit.equal(snapshot.unit("rsyslog.service").active, "active")


@pytest.mark.control("LG-02")
def test_rsyslog_receives_journal(snapshot, expected, audit) -> None:
    conf = _rsyslog(snapshot)
    journald = _journald(snapshot)
    forward = journald.get("ForwardToSyslog", "no") or "no"
    uxsock = conf.modules.get("imuxsock")
    socket_on = uxsock is not None and uxsock.get("syssock.use", "on").lower() not in ("off", "0")
    configured = "imjournal" in conf.modules or (socket_on and forward.lower() in ("yes", "1"))
    marker, local = _probe(snapshot)
    written = sorted(set(local) & set(_managed(snapshot)))
    audit.expect(
        configured and bool(written),
        expected="journald forwards to rsyslog (or imjournal) and the probe reaches a log file",
        observed={
            "ForwardToSyslog": forward,
            "imuxsock system socket": socket_on,
            "imjournal": "imjournal" in conf.modules,
            "probe": marker,
            "probe found in": written or local or None,
        },
        source=journald.source("ForwardToSyslog"),
    )


@pytest.mark.control("LG-02")
def test_auth_log_rule_present(snapshot, expected, audit) -> None:
    rules = []
    for action in _rsyslog(snapshot).files():
        if action.ruleset is None and len(action.conditions) == 1:
            chosen = rs.selector_facilities(action.conditions[0])
            if set(chosen) == {"auth", "authpriv"} and set(chosen.values()) <= {"*", "debug"}:
                rules.append(f"{action.conditions[0]} {action.file}")
    audit.expect(
        bool(rules),
        expected="auth,authpriv.* to a file of their own",
        observed=rules or None,
    )


# --- LG-03 logrotate --------------------------------------------------------------------------


@pytest.mark.control("LG-03")
def test_logrotate_covers_syslog_files(snapshot, expected, audit) -> None:
    rotations, _ = _rotations(snapshot)
    managed = _managed(snapshot)
    uncovered = [f for f in managed if lr.rotation_for(f, rotations) is None]
    found = [lr.rotation_for(f, rotations) for f in managed]
    audit.expect(
        bool(managed) and not uncovered,
        expected="every file rsyslog writes is rotated by logrotate",
        observed={"files": managed, "not rotated": uncovered},
        source=_sources(r.source for r in found if r),
    )


@pytest.mark.control("LG-03")
def test_logrotate_retention_days(snapshot, expected, audit) -> None:
    rotations, problems = _rotations(snapshot)
    want = expected["log_retention_days"]
    observed: dict[str, Any] = {}
    short = []
    places: dict[str, str] = {}
    for path in _managed(snapshot):
        rot = lr.rotation_for(path, rotations)
        days = lr.retention_days(rot) if rot else None
        observed[path] = _retention_text(days) if rot else "not rotated"
        places[path] = rot.source if rot else ""
        if rot is None or days is None or days < want or not rot.verified:
            short.append(path)
    unclear = [p for p in short if observed[p] != "not rotated"] and problems
    audit.expect(
        bool(observed) and not short,
        expected=f">= {want} days each",
        observed={"days": observed, **({"unclear": unclear} if unclear else {})},
        message="retention = rotations x period, bounded by maxage (kijun.logrotate)",
        source=_sources(places[p] for p in (short or places)),
    )


@pytest.mark.control("LG-03")
def test_logrotate_compress(snapshot, expected, audit) -> None:
    rotations, _ = _rotations(snapshot)
    want = bool(expected["log_retention_compress"])
    observed = {}
    places = []
    for path in _managed(snapshot):
        rot = lr.rotation_for(path, rotations)
        observed[path] = rot.compress if rot else "not rotated"
        places.append(rot.source if rot else "")
    audit.expect(
        bool(observed) and all(v is want for v in observed.values()),
        expected=f"compress {want} for each",
        observed=observed,
        source=_sources(places),
    )


# --- LG-04 file protection --------------------------------------------------------------------


def _protected_files(snapshot: Any, expected: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """The managed files, their rotated copies and (on collectors) the received files."""
    managed = _managed(snapshot)
    directory = expected["log_retention_collector_directory"].rstrip("/") + "/"
    return {
        path: stat
        for path, stat in _file_stats(snapshot).items()
        if stat[3] == "f"
        and (
            path.startswith(directory)
            or any(path == m or path.startswith((m + ".", m + "-")) for m in managed)
        )
    }


@pytest.mark.control("LG-04")
def test_log_file_modes(snapshot, expected, audit) -> None:
    limit = expected["log_retention_file_mode"]
    files = _protected_files(snapshot, expected)
    loose = {p: s[0] for p, s in sorted(files.items()) if not _mode_within(s[0], limit)}
    audit.expect(
        bool(files) and not loose,
        expected=f"{limit} or stricter for each of {len(files)} log files",
        observed=loose or (f"{len(files)} files within {limit}" if files else "no log files"),
    )


@pytest.mark.control("LG-04")
def test_log_file_ownership(snapshot, expected, audit) -> None:
    groups = {expected["log_retention_file_group"], "root"}
    files = _protected_files(snapshot, expected)
    wrong = {
        path: f"{owner}:{group}"
        for path, (_, owner, group, _) in sorted(files.items())
        if owner != "root" or group not in groups
    }
    audit.expect(
        bool(files) and not wrong,
        expected=f"root:{expected['log_retention_file_group']} (or root:root) for each",
        observed=wrong or (f"{len(files)} files owned as expected" if files else "no log files"),
    )


@pytest.mark.control("LG-04")
def test_rsyslog_file_create_mode(snapshot, expected, audit) -> None:
    limit = expected["log_retention_file_mode"]
    groups = {expected["log_retention_file_group"], "root"}
    conf = _rsyslog(snapshot)
    observed = {}
    bad = []
    places: dict[str, list[str]] = {}
    for action in conf.actions:
        if action.type != "omfile":
            continue
        attrs = conf.file_attributes(action)
        name = action.file or f"dynaFile {action.params.get('dynafile')}"
        observed[name] = f"{attrs['filecreatemode']} {attrs['fileowner']}:{attrs['filegroup']}"
        where = conf.file_attribute_sources(action)
        ok = {
            "filecreatemode": _mode_within(attrs["filecreatemode"], limit),
            "fileowner": attrs["fileowner"] == "root",
            "filegroup": attrs["filegroup"] in groups,
        }
        # Where the values in force were set: those that break the limit, else all of them.
        places[name] = [where[k] for k in ok if not ok[k]] or list(where.values())
        if not all(ok.values()):
            bad.append(name)
    audit.expect(
        bool(observed) and not bad,
        expected=f"{limit} root:{expected['log_retention_file_group']} or stricter",
        observed=observed,
        source=_sources(s for name in (bad or places) for s in places[name]),
    )


@pytest.mark.control("LG-04")
def test_logrotate_create_mode(snapshot, expected, audit) -> None:
    limit = expected["log_retention_file_mode"]
    groups = {expected["log_retention_file_group"], "root"}
    rotations, _ = _rotations(snapshot)
    paths = list(_managed(snapshot))
    template, _ = _collector_template(_rsyslog(snapshot), expected)
    if template:
        paths.append(_sample_path(template))
    observed: dict[str, Any] = {}
    bad = []
    places: dict[str, str] = {}
    for path in paths:
        rot = lr.rotation_for(path, rotations)
        if rot is None:
            observed[path] = "not rotated"
            continue
        places[path] = rot.source
        if rot.copytruncate or not rot.create:
            # The file is not recreated by logrotate: kept (copytruncate) or left to rsyslog,
            # whose create mode rsyslog_file_create_mode checks.
            observed[path] = "copytruncate" if rot.copytruncate else "no create (rsyslog creates)"
            continue
        mode, owner, group = rot.create
        observed[path] = "create " + " ".join(v or "(as the old file)" for v in rot.create)
        if not (_mode_within(mode, limit) and owner == "root" and group in groups):
            bad.append(path)
    audit.expect(
        bool(observed) and not bad,
        expected=f"create {limit} root {expected['log_retention_file_group']} or stricter",
        observed=observed,
        source=_sources(places[p] for p in (bad or places)),
    )


# --- LG-05 log readers ------------------------------------------------------------------------


def _members(snapshot: Any, group: str) -> list[str] | None:
    members: set[str] = set()
    exists = False
    for line in snapshot.text("logging/groups").splitlines():
        words = line.split(" ")
        if words[0] == "group" and len(words) > 1 and words[1].split(":")[0] == group:
            exists = True
            listed = words[1].split(":")[3] if words[1].count(":") >= 3 else ""
            members |= {m for m in listed.split(",") if m}
        elif words[0] == "primary" and len(words) == 3 and words[1] == group:
            members.add(words[2])
    return sorted(members) if exists else None


def _readers_check(snapshot: Any, expected: dict[str, Any], audit: Any, group: str) -> None:
    members = _members(snapshot, group)
    readers = sorted(expected["log_retention_readers"])
    extra = sorted(set(members or []) - set(readers))
    audit.expect(
        members is not None and not extra,
        expected=f"members of {group} within {readers}",
        observed=members,
        message=f"not declared: {', '.join(extra)}" if extra else "",
    )


@pytest.mark.control("LG-05")
def test_adm_group_members_declared(snapshot, expected, audit) -> None:
    _readers_check(snapshot, expected, audit, "adm")


@pytest.mark.control("LG-05")
def test_systemd_journal_group_members_declared(snapshot, expected, audit) -> None:
    _readers_check(snapshot, expected, audit, "systemd-journal")


# --- LG-06 forwarding -------------------------------------------------------------------------


def _forwards(snapshot: Any) -> list[rs.Action]:
    """Forwarding actions that see every message (default ruleset, no filter)."""
    return [
        a
        for a in _rsyslog(snapshot).actions
        if a.type == "omfwd" and a.ruleset is None and a.unconditional
    ]


def _to_collector(snapshot: Any, expected: dict[str, Any]) -> list[rs.Action]:
    target = expected["log_retention_collector_host"]
    port = str(expected["log_retention_collector_port"])
    return [
        a
        for a in _forwards(snapshot)
        if a.params.get("target") == target and a.params.get("port", "514") == port
    ]


def _describe(action: rs.Action) -> str:
    p = action.params
    return f"{p.get('protocol', 'udp')}://{p.get('target')}:{p.get('port', '514')}"


@pytest.mark.control("LG-06")
def test_rsyslog_forward_tcp(snapshot, expected, audit) -> None:
    forwards = _forwards(snapshot)
    audit.expect(
        any(a.params.get("protocol", "udp").lower() == "tcp" for a in forwards),
        expected="every message forwarded over TCP",
        observed=[_describe(a) for a in forwards] or None,
    )


@pytest.mark.control("LG-06")
def test_rsyslog_forward_target(snapshot, expected, audit) -> None:
    want = f"tcp://{expected['log_retention_collector_host']}:{expected['log_retention_collector_port']}"
    observed = [_describe(a) for a in _forwards(snapshot)]
    audit.expect(want in observed, expected=want, observed=observed or None)


def _work_directory(snapshot: Any) -> str | None:
    for line in snapshot.text("logging/rsyslog_work_directory").splitlines():
        parts = line.split("|")
        if len(parts) == 5 and parts[0] == "directory":
            return parts[4]
    return None


@pytest.mark.control("LG-06")
def test_rsyslog_queue_disk_assisted(snapshot, expected, audit) -> None:
    want = expected["log_retention_queue_max_disk_space"]
    actions = _to_collector(snapshot, expected)
    directory = _work_directory(snapshot)
    observed = [
        {
            "queue.type": a.params.get("queue.type"),
            "queue.filename": a.params.get("queue.filename"),
            "queue.maxDiskSpace": a.params.get("queue.maxdiskspace"),
            "action.resumeRetryCount": a.params.get("action.resumeretrycount"),
        }
        for a in actions
    ]
    ok = bool(actions) and directory is not None
    for a in actions:
        p = a.params
        ok = ok and (
            p.get("queue.type", "").lower() in ("linkedlist", "fixedarray")
            and bool(p.get("queue.filename"))
            and size_bytes(p.get("queue.maxdiskspace"), rsyslog=True)
            == size_bytes(want, rsyslog=True)
            and p.get("action.resumeretrycount") == "-1"
        )
    conf = _rsyslog(snapshot)
    audit.expect(
        ok,
        expected=f"disk-assisted queue, maxDiskSpace {want}, retried for ever",
        observed={"forward": observed or None, "work directory": directory},
        source=_sources(
            [a.source for a in actions]
            + [conf.sources.get("global.workdirectory") or conf.sources.get("$workdirectory")]
        ),
    )


@pytest.mark.control("LG-06")
def test_rsyslog_queue_save_on_shutdown(snapshot, expected, audit) -> None:
    actions = _to_collector(snapshot, expected)
    observed = [a.params.get("queue.saveonshutdown") for a in actions]
    audit.expect(
        bool(actions) and all((v or "").lower() in ("on", "yes", "1") for v in observed),
        expected="queue.saveOnShutdown on",
        observed=observed or None,
        source=_sources(a.source for a in actions),
    )


@pytest.fixture(scope="session")
def probe_deadline() -> float:
    """Every host logged its probe in the collection step, before the first check: one wait of
    PROBE_WAIT_SECONDS covers all of them."""
    return time.monotonic() + PROBE_WAIT_SECONDS


@pytest.mark.control("LG-06")
def test_forwarded_message_reaches_collector(
    snapshot, expected, audit, inventory_hosts, probe_deadline
) -> None:
    marker, _ = _probe(snapshot)
    collectors = inventory_hosts("log_collectors")
    directory = expected["log_retention_collector_directory"]
    want = f"the probe message in {directory} on a collector ({', '.join(collectors) or 'none'})"
    if not marker or not collectors:
        audit.expect(
            False,
            expected=want,
            observed={"probe": marker, "collectors in the inventory": sorted(collectors)},
            message="no probe was logged" if not marker else "no log_collectors host to read",
        )
    # The marker must not stand on the command line as it is: the collector logs the commands
    # run with sudo (auth.log), often into its own directory under the collector's, where the
    # search would then find its own command line (a false pass). It is sent in capitals and
    # turned back on the host.
    command = (
        f"m=$(printf %s {shlex.quote(str(marker).upper())} | tr A-Z a-z) && "
        f'find {shlex.quote(directory)} -type f -mmin -15 -exec grep -lF -e "$m" {{}} +'
    )
    found: list[str] = []
    while not found:
        for name, host in collectors.items():
            result = host.run(command)
            found += [f"{name}:{line}" for line in result.stdout.split() if line]
        if found or time.monotonic() > probe_deadline:
            break
        time.sleep(0.5)
    audit.expect(
        bool(found),
        expected=want,
        observed={"probe": marker, "found in": found or f"not within {PROBE_WAIT_SECONDS:.0f} s"},
    )


# --- LG-07 collector --------------------------------------------------------------------------


@pytest.mark.control("LG-07")
def test_collector_listening_tcp(snapshot, expected, audit) -> None:
    port = str(expected["log_retention_collector_port"])
    conf = _rsyslog(snapshot)
    inputs = [i for i in conf.inputs if i.get("type") == "imtcp" and i.get("port") == port]
    legacy = conf.settings.get("$inputtcpserverrun") == port
    sockets = [
        line.split()[3]
        for line in snapshot.text("logging/listening").splitlines()
        if len(line.split()) > 5 and line.split()[3].endswith(f":{port}") and "rsyslogd" in line
    ]
    audit.expect(
        bool(inputs or legacy) and bool(sockets),
        expected=f"rsyslog imtcp input on port {port}, listening",
        observed={"configured": bool(inputs or legacy), "listening": sockets or None},
    )


@pytest.mark.control("LG-07")
def test_collector_allowed_senders_declared(snapshot, expected, audit) -> None:
    observed = sorted(_rsyslog(snapshot).allowed_senders.get("TCP", []))
    want = sorted(expected["log_retention_collector_allowed_senders"])
    audit.expect(
        bool(observed) and observed == want,
        expected=want,
        observed=observed or "none: rsyslog accepts TCP from any sender",
    )


@pytest.mark.control("LG-07")
def test_collector_per_host_files(snapshot, expected, audit) -> None:
    template, ruleset = _collector_template(_rsyslog(snapshot), expected)
    directory = expected["log_retention_collector_directory"].rstrip("/") + "/"
    per_host = bool(template) and template.startswith(directory)
    per_host = per_host and bool(_HOST_PROPERTY.search(template[len(directory) :]))
    hosts = sorted(
        p.removeprefix(directory).split("/")[0]
        for p, s in _file_stats(snapshot).items()
        if s[3] == "f" and p.startswith(directory) and "/" in p.removeprefix(directory)
    )
    audit.expect(
        per_host and bool(hosts),
        expected=f"{directory}<sending host>/... written by the TCP input's ruleset",
        observed={"ruleset": ruleset, "file template": template, "hosts": sorted(set(hosts))},
    )


@pytest.mark.control("LG-07")
def test_collector_retention_days(snapshot, expected, audit) -> None:
    template, _ = _collector_template(_rsyslog(snapshot), expected)
    rotations, problems = _rotations(snapshot)
    want = expected["log_retention_collector_days"]
    sample = _sample_path(template) if template else None
    rot = lr.rotation_for(sample, rotations) if sample else None
    days = lr.retention_days(rot) if rot else None
    audit.expect(
        rot is not None and rot.verified and days is not None and days >= want,
        expected=f">= {want} days",
        observed={
            "file": sample,
            "rotation": " ".join(rot.patterns) if rot else "not rotated",
            "days": _retention_text(days) if rot else None,
            **({"unclear": problems} if rot and not rot.verified else {}),
        },
        source=rot.source if rot else "",
    )
