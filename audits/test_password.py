"""Password policy (PW-01..PW-09) and unused IDs (AC-03): what the password_policy role applied.

Everything is read as the tools themselves read it: pam_pwquality's settings through
libpwquality (configuration files, then the module's arguments in the PAM stack, exactly as
pam_pwquality does), pam_faillock's from faillock.conf overridden by its arguments, login.defs
with the last occurrence of a key in effect, useradd's defaults from ``useradd -D``, and TMOUT
from a login shell. Accounts are reduced on the host to names, a password *state* (set, empty,
locked), the hash method's identifier and the ageing fields: no password hash is ever collected.

Human accounts are those with a UID in login.defs' UID_MIN..UID_MAX; the accounts listed in
``password_policy_ageing_exclude`` (approved service and break-glass deviations) are not
reported by the human-account checks, and the checks' observed values name them as excluded.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from typing import Any

import pytest

from kijun import password as pw

# pam_pwquality's settings as pam_pwquality computes them (src/pam_pwquality.c): defaults, then
# pwquality.conf.d/*.conf and pwquality.conf, then each argument of the pam_pwquality line(s) of
# common-password that the module does not keep for itself. Beside each value, where it was set
# ("source NAME PATH:LINE"): the files in libpwquality's order (the directory's *.conf names in
# byte order, then pwquality.conf; the name ends at a space or "=", "#" starts a comment), then
# the PAM arguments.
_PWQUALITY = r"""
import ctypes, os, re
lib = ctypes.CDLL("libpwquality.so.1")
lib.pwquality_default_settings.restype = ctypes.c_void_p
pwq = ctypes.c_void_p(lib.pwquality_default_settings())
print("read_config", lib.pwquality_read_config(pwq, None, None))
skip = ("debug", "type=", "difignore=", "reject_username", "authtok_type", "use_authtok",
        "use_first_pass", "try_first_pass")
source = {}
conf_d = "/etc/security/pwquality.conf.d"
try:
    # libpwquality's filter: the first ".conf" in the name ends it; names compared as bytes
    names = [n for n in os.listdir(conf_d) if n.partition(".conf")[1:] == (".conf", "")]
    names.sort(key=os.fsencode)
except OSError:
    names = []
for path in [f"{conf_d}/{n}" for n in names] + ["/etc/security/pwquality.conf"]:
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        continue
    for number, line in enumerate(lines, start=1):
        name = re.split(r"[\s=]", line.split("#")[0].strip(), maxsplit=1)[0]
        if name:
            source[name.lower()] = f"{path}:{number}"
for number, line in enumerate(open("/etc/pam.d/common-password"), start=1):
    words = line.split("#")[0].split()
    if len(words) >= 3 and words[2].endswith("pam_pwquality.so"):
        for arg in words[3:]:
            if not arg.startswith(skip):
                print("argument", arg, lib.pwquality_set_option(pwq, arg.encode()))
                source[arg.split("=")[0].lower()] = f"/etc/pam.d/common-password:{number}"
names = {"minlen": 3, "minclass": 8, "maxrepeat": 9, "maxsequence": 14, "dictcheck": 15,
         "usercheck": 16, "enforcing": 17, "enforce_for_root": 19}
for name, setting in names.items():
    value = ctypes.c_int(-1)
    rc = lib.pwquality_get_int_value(pwq, setting, ctypes.byref(value))
    print("setting", name, value.value if rc == 0 else "error")
    print("source", name, source.get(name, "libpwquality's default"))
"""

# One line per account: name uid state hash-id lstchg min max warn inactive expire lastlog
# home-mtime. The password field is reduced to a state and the method's identifier.
_ACCOUNTS = r"""
import os, struct
shadow = {}
for line in open("/etc/shadow"):
    f = line.rstrip("\n").split(":")
    if len(f) < 9:
        continue
    pw = f[1]
    state = "empty" if pw == "" else "locked" if pw[:1] in "!*" else "set"
    rest = pw.lstrip("!")
    method = rest.split("$")[1] if rest.startswith("$") and rest.count("$") >= 2 else (
        "des" if len(rest) == 13 else "-")
    shadow[f[0]] = [state, method] + [x or "-" for x in f[2:8]]
try:
    lastlog = open("/var/log/lastlog", "rb").read()
except OSError:
    lastlog = b""
size = struct.calcsize("=i32s256s")
for line in open("/etc/passwd"):
    f = line.rstrip("\n").split(":")
    if len(f) < 7 or f[0] not in shadow:
        continue
    uid = int(f[2])
    entry = lastlog[uid * size: uid * size + 4]
    last = struct.unpack("=i", entry)[0] if len(entry) == 4 else 0
    try:
        home = int(os.stat(f[5]).st_mtime)
    except OSError:
        home = 0
    print(f[0], uid, *shadow[f[0]], last, home)
"""

COLLECT = {
    "password/pwquality": f"python3 -c {shlex.quote(_PWQUALITY)}",
    "password/pwquality-files": (
        "for f in /etc/security/pwquality.conf.d/*.conf /etc/security/pwquality.conf; do "
        '[ -f "$f" ] && echo "== $f" && grep -Ev \'^[[:space:]]*(#|$)\' "$f"; done; true'
    ),
    "password/pam-stack": (
        'for t in auth account password; do echo "== common-$t"; '
        "grep -nEv '^[[:space:]]*(#|$)' /etc/pam.d/common-$t; done"
    ),
    "password/pam-nullok": "grep -HnE '^[^#]*nullok' /etc/pam.d/* ; true",
    "password/faillock-conf": "grep -nEv '^[[:space:]]*(#|$)' /etc/security/faillock.conf; true",
    "password/login-defs": (
        "grep -nE '^[[:space:]]*(PASS_MAX_DAYS|PASS_MIN_DAYS|PASS_WARN_AGE|ENCRYPT_METHOD"
        "|UID_MIN|UID_MAX)[[:space:]]' /etc/login.defs"
    ),
    "password/useradd-defaults": "useradd -D",
    "password/useradd-file": "grep -nE '^[[:space:]]*INACTIVE=' /etc/default/useradd; true",
    "password/accounts": f"python3 -c {shlex.quote(_ACCOUNTS)}",
    # names (and whether the field is empty) of /etc/passwd entries not pointing to /etc/shadow
    "password/passwd-fields": 'awk -F: \'$2 != "x" {print $1, ($2 == "" ? "empty" : "set")}\''
    " /etc/passwd",
    "password/shadow-files": "stat -c '%n %U %G %a' /etc/shadow /etc/gshadow",
    "password/tmout": (
        "env -i HOME=/nonexistent PATH=/usr/bin:/bin bash --login -c "
        '\'echo "TMOUT=${TMOUT-unset}"; readonly -p | grep -E "[ ]TMOUT=" || echo not-readonly\''
    ),
    "password/tmout-files": (
        "grep -HnE '^[^#]*TMOUT' /etc/profile /etc/profile.d/*.sh /etc/bash.bashrc; true"
    ),
    # The same login shell, as a user (bash ignores PS4 from the environment when run by root),
    # traced: each command that touches TMOUT with the file and line it ran from.
    "password/tmout-trace": (
        "runuser -u nobody -- env -i HOME=/nonexistent PATH=/usr/bin:/bin SHELLOPTS=xtrace "
        "PS4='+${BASH_SOURCE}:${LINENO}: ' bash --login -c true 2>&1 | grep -E 'TMOUT' ; true"
    ),
}

DAY = 86400


# ---------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class PamLine:
    kind: str
    control: str
    module: str
    args: tuple[str, ...]
    where: str = ""  # /etc/pam.d/common-<type>:<line>


def pam_stack(snapshot: Any) -> dict[str, list[PamLine]]:
    """The module lines of common-auth, common-account and common-password."""
    stack: dict[str, list[PamLine]] = {}
    current = ""
    for raw in snapshot.text("password/pam-stack").splitlines():
        if raw.startswith("== common-"):
            current = raw.removeprefix("== common-")
            stack[current] = []
            continue
        number, _, text = raw.partition(":") if re.match(r"^\d+:", raw) else ("", "", raw)
        m = re.match(r"^\s*(\w+)\s+(\[[^\]]*\]|\S+)\s+(\S+)\s*(.*)$", text)
        if m and current:
            module = m.group(3).rsplit("/", 1)[-1]
            where = f"/etc/pam.d/common-{current}:{number}" if number else ""
            stack[current].append(
                PamLine(m.group(1), m.group(2), module, tuple(m.group(4).split()), where)
            )
    return stack


def where(lines: list[tuple[int, PamLine]]) -> str:
    """The ``source`` of a check about PAM lines: the file and line of each."""
    return ", ".join(ln.where for _, ln in lines if ln.where)


def lines_of(snapshot: Any, kind: str, module: str) -> list[tuple[int, PamLine]]:
    return [
        (i, ln) for i, ln in enumerate(pam_stack(snapshot).get(kind, [])) if ln.module == module
    ]


def show(lines: list[tuple[int, PamLine]]) -> list[str]:
    return [f"{ln.kind} {ln.control} {ln.module} {' '.join(ln.args)}".strip() for _, ln in lines]


def pwquality(snapshot: Any) -> dict[str, int | None]:
    values: dict[str, int | None] = {}
    for line in snapshot.text("password/pwquality").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "setting":
            values[parts[1]] = int(parts[2]) if parts[2].lstrip("-").isdigit() else None
    return values


def login_defs_read(snapshot: Any) -> dict[str, tuple[str, str]]:
    """login.defs as shadow's getdef reads it (the last occurrence of a key wins), each value
    with the line that set it."""
    return pw.last_assignments(pw.numbered(snapshot.text("password/login-defs")), "/etc/login.defs")


def login_defs(snapshot: Any) -> dict[str, str]:
    return {key: value for key, (value, _) in login_defs_read(snapshot).items()}


def login_defs_source(snapshot: Any, key: str) -> str:
    found = login_defs_read(snapshot).get(key)
    return found[1] if found else f"no {key} in /etc/login.defs"


def pwquality_source(snapshot: Any, name: str) -> str:
    return pw.pwquality_sources(snapshot.text("password/pwquality")).get(name, "")


def as_int(value: str | None) -> int | None:
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    state: str  # set | empty | locked
    method: str  # hash identifier: y (yescrypt), 6 (SHA-512), ..., or "-"
    lstchg: int | None  # days since the epoch; 0 = must change at next login
    min: int | None
    max: int | None
    warn: int | None
    inactive: int | None
    expire: int | None
    lastlog: int  # seconds since the epoch; 0 = never logged in (as recorded by lastlog)
    home_mtime: int

    def fields(self) -> tuple[int | None, ...]:
        return (self.min, self.max, self.warn, self.inactive)


def accounts(snapshot: Any) -> list[Account]:
    out = []
    for line in snapshot.text("password/accounts").splitlines():
        f = line.split()
        if len(f) != 12:
            continue
        num = [None if x == "-" else as_int(x) for x in f[4:10]]
        out.append(Account(f[0], int(f[1]), f[2], f[3], *num, int(f[10]), int(f[11])))
    return out


def humans(snapshot: Any, expected: dict[str, Any]) -> tuple[list[Account], dict[str, Any]]:
    """Human accounts the policy applies to, and the names checked and excluded (evidence)."""
    defs = login_defs(snapshot)
    low = as_int(defs.get("UID_MIN")) or 1000
    high = as_int(defs.get("UID_MAX")) or 60000
    excluded = set(expected["password_policy_ageing_exclude"] or [])
    all_humans = [a for a in accounts(snapshot) if low <= a.uid <= high]
    people = [a for a in all_humans if a.name not in excluded]
    scope = {
        "checked": sorted(a.name for a in people),
        "excluded": sorted(a.name for a in all_humans if a.name in excluded),
    }
    return people, scope


def report(names: list[str], scope: dict[str, Any]) -> dict[str, Any]:
    return {"not_compliant": names, **scope}


def today() -> int:
    return int(time.time()) // DAY


# ---------------------------------------------------------------------------- PW-01, PW-02


@pytest.mark.control("PW-01")
def test_pwquality_in_pam_stack(snapshot, expected, audit) -> None:
    quality = lines_of(snapshot, "password", "pam_pwquality.so")
    unix = lines_of(snapshot, "password", "pam_unix.so")
    ok = bool(quality and unix) and all(
        ln.control in ("requisite", "required") and i < unix[0][0] for i, ln in quality
    )
    audit.expect(
        ok,
        expected="password requisite pam_pwquality.so before pam_unix.so in common-password",
        observed=show(quality) or "pam_pwquality.so not in common-password",
        source=where(quality),
    )


@pytest.mark.control("PW-01")
def test_pwquality_minlen(snapshot, expected, audit) -> None:
    audit.equal(
        pwquality(snapshot).get("minlen"),
        expected["password_policy_minlen"],
        source=pwquality_source(snapshot, "minlen"),
    )


@pytest.mark.control("PW-01")
def test_pwquality_minclass(snapshot, expected, audit) -> None:
    audit.equal(
        pwquality(snapshot).get("minclass"),
        expected["password_policy_minclass"],
        source=pwquality_source(snapshot, "minclass"),
    )


@pytest.mark.control("PW-01")
def test_pwquality_enforce_for_root(snapshot, expected, audit) -> None:
    value = pwquality(snapshot).get("enforce_for_root")
    observed = None if value is None else bool(value)
    audit.equal(
        observed,
        bool(expected["password_policy_enforce_for_root"]),
        source=pwquality_source(snapshot, "enforce_for_root"),
    )


@pytest.mark.control("PW-02")
def test_pwquality_dictcheck(snapshot, expected, audit) -> None:
    value = pwquality(snapshot).get("dictcheck")
    audit.equal(
        None if value is None else bool(value),
        bool(expected["password_policy_dictcheck"]),
        source=pwquality_source(snapshot, "dictcheck"),
    )


@pytest.mark.control("PW-02")
def test_pwquality_usercheck(snapshot, expected, audit) -> None:
    value = pwquality(snapshot).get("usercheck")
    audit.equal(
        None if value is None else bool(value),
        bool(expected["password_policy_usercheck"]),
        source=pwquality_source(snapshot, "usercheck"),
    )


@pytest.mark.control("PW-02")
def test_pwquality_maxrepeat(snapshot, expected, audit) -> None:
    audit.equal(
        pwquality(snapshot).get("maxrepeat"),
        expected["password_policy_maxrepeat"],
        source=pwquality_source(snapshot, "maxrepeat"),
    )


@pytest.mark.control("PW-02")
def test_pwquality_maxsequence(snapshot, expected, audit) -> None:
    audit.equal(
        pwquality(snapshot).get("maxsequence"),
        expected["password_policy_maxsequence"],
        source=pwquality_source(snapshot, "maxsequence"),
    )


# ---------------------------------------------------------------------------- PW-03


def pwhistory_args(snapshot: Any) -> tuple[str, ...] | None:
    found = lines_of(snapshot, "password", "pam_pwhistory.so")
    return found[0][1].args if found else None


def pwhistory_where(snapshot: Any) -> str:
    return where(lines_of(snapshot, "password", "pam_pwhistory.so")[:1])


@pytest.mark.control("PW-03")
def test_pwhistory_in_pam_stack(snapshot, expected, audit) -> None:
    quality = lines_of(snapshot, "password", "pam_pwquality.so")
    history = lines_of(snapshot, "password", "pam_pwhistory.so")
    unix = lines_of(snapshot, "password", "pam_unix.so")
    ok = bool(history and unix) and all(
        ln.control in ("requisite", "required")
        and "use_authtok" in ln.args
        and i < unix[0][0]
        and all(q < i for q, _ in quality)
        for i, ln in history
    )
    audit.expect(
        ok,
        expected="password requisite pam_pwhistory.so use_authtok after pam_pwquality.so, "
        "before pam_unix.so",
        observed=show(history) or "pam_pwhistory.so not in common-password",
        source=where(history),
    )


@pytest.mark.control("PW-03")
def test_pwhistory_remember(snapshot, expected, audit) -> None:
    args = pwhistory_args(snapshot)
    observed = None
    if args is not None:
        # pam_pwhistory's default is 10 when remember= is not given
        values = [a.split("=", 1)[1] for a in args if a.startswith("remember=")]
        observed = as_int(values[-1]) if values else 10
    audit.equal(observed, expected["password_policy_remember"], source=pwhistory_where(snapshot))


@pytest.mark.control("PW-03")
def test_pwhistory_enforce_for_root(snapshot, expected, audit) -> None:
    args = pwhistory_args(snapshot)
    observed = None if args is None else "enforce_for_root" in args
    audit.equal(
        observed,
        bool(expected["password_policy_enforce_for_root"]),
        source=pwhistory_where(snapshot),
    )


@pytest.mark.control("PW-03")
def test_logindefs_pass_min_days(snapshot, expected, audit) -> None:
    observed = as_int(login_defs(snapshot).get("PASS_MIN_DAYS"))
    audit.equal(
        observed,
        expected["password_policy_pass_min_days"],
        source=login_defs_source(snapshot, "PASS_MIN_DAYS"),
    )


@pytest.mark.control("PW-03")
def test_human_accounts_min_days(snapshot, expected, audit) -> None:
    people, excluded = humans(snapshot, expected)
    wanted = expected["password_policy_pass_min_days"]
    wrong = [f"{a.name} (min {a.min})" for a in people if a.min != wanted]
    audit.expect(
        not wrong,
        expected=f"every human account: min {wanted}",
        observed=report(wrong, excluded),
        message="human accounts whose minimum password age differs from the policy",
    )


# ---------------------------------------------------------------------------- PW-04


@pytest.mark.control("PW-04")
def test_logindefs_pass_max_days(snapshot, expected, audit) -> None:
    observed = as_int(login_defs(snapshot).get("PASS_MAX_DAYS"))
    audit.equal(
        observed,
        expected["password_policy_pass_max_days"],
        source=login_defs_source(snapshot, "PASS_MAX_DAYS"),
    )


@pytest.mark.control("PW-04")
def test_logindefs_pass_warn_age(snapshot, expected, audit) -> None:
    observed = as_int(login_defs(snapshot).get("PASS_WARN_AGE"))
    audit.equal(
        observed,
        expected["password_policy_pass_warn_age"],
        source=login_defs_source(snapshot, "PASS_WARN_AGE"),
    )


@pytest.mark.control("PW-04")
def test_useradd_inactive(snapshot, expected, audit) -> None:
    found = re.search(r"^INACTIVE=(-?\d+)$", snapshot.text("password/useradd-defaults"), re.M)
    lines = pw.numbered(snapshot.text("password/useradd-file"))
    audit.equal(
        as_int(found.group(1)) if found else None,
        expected["password_policy_inactive"],
        source=f"/etc/default/useradd:{lines[-1][0]}" if lines else "useradd's default",
    )


def _human_field(snapshot: Any, expected: dict[str, Any], audit: Any, field: str, key: str) -> None:
    people, excluded = humans(snapshot, expected)
    wanted = expected[key]
    wrong = [
        f"{a.name} ({field} {getattr(a, field)})" for a in people if getattr(a, field) != wanted
    ]
    audit.expect(
        not wrong,
        expected=f"every human account: {field} {wanted}",
        observed=report(wrong, excluded),
        message=f"human accounts whose password {field} differs from the policy",
    )


@pytest.mark.control("PW-04")
def test_human_accounts_max_days(snapshot, expected, audit) -> None:
    _human_field(snapshot, expected, audit, "max", "password_policy_pass_max_days")


@pytest.mark.control("PW-04")
def test_human_accounts_warn_age(snapshot, expected, audit) -> None:
    _human_field(snapshot, expected, audit, "warn", "password_policy_pass_warn_age")


@pytest.mark.control("PW-04")
def test_human_accounts_inactive(snapshot, expected, audit) -> None:
    _human_field(snapshot, expected, audit, "inactive", "password_policy_inactive")


# ---------------------------------------------------------------------------- PW-05

# Strong methods accepted in stored hashes: yescrypt ("y") and SHA-512 ("6"), whichever the
# organisation configures (hashes change only when a password changes).
STRONG = {"y": "YESCRYPT", "6": "SHA512"}


@pytest.mark.control("PW-05")
def test_logindefs_encrypt_method(snapshot, expected, audit) -> None:
    audit.equal(
        login_defs(snapshot).get("ENCRYPT_METHOD"),
        expected["password_policy_encrypt_method"],
        source=login_defs_source(snapshot, "ENCRYPT_METHOD"),
    )


@pytest.mark.control("PW-05")
def test_pam_unix_hash_method(snapshot, expected, audit) -> None:
    methods = {"md5", "bigcrypt", "sha256", "sha512", "blowfish", "gost_yescrypt", "yescrypt"}
    unix = lines_of(snapshot, "password", "pam_unix.so")
    observed = sorted({a for _, ln in unix for a in ln.args if a in methods}) or None
    audit.equal(observed, [expected["password_policy_encrypt_method"].lower()], source=where(unix))


@pytest.mark.control("PW-05")
def test_shadow_hash_algorithms(snapshot, expected, audit) -> None:
    weak = [
        f"{a.name} ({a.method})"
        for a in accounts(snapshot)
        if a.state in ("set", "locked") and a.method not in ("-", *STRONG)
    ]
    audit.expect(
        not weak,
        expected=f"every stored hash: {' or '.join(STRONG.values())}",
        observed=weak or "all strong",
        message="accounts whose password is stored with a weak hash method (change the password)",
    )


@pytest.mark.control("PW-05")
def test_passwd_no_hashes(snapshot, expected, audit) -> None:
    found = snapshot.text("password/passwd-fields").split("\n")
    names = [line.split()[0] for line in found if line.strip()]
    audit.expect(
        not names,
        expected="x in the password field of every /etc/passwd entry",
        observed=names or "none",
        message="accounts with a password (or none) in /etc/passwd instead of /etc/shadow",
    )


def _shadow_file(snapshot: Any, audit: Any, path: str) -> None:
    observed = None
    for line in snapshot.text("password/shadow-files").splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == path:
            observed = {"owner": parts[1], "group": parts[2], "mode": parts[3].zfill(4)}
    ok = (
        observed is not None
        and observed["owner"] == "root"
        and observed["group"] in ("root", "shadow")
        and int(observed["mode"], 8) & 0o7137 == 0
    )
    audit.expect(
        ok, expected="root:shadow (or root:root), mode 0640 or stricter", observed=observed
    )


@pytest.mark.control("PW-05")
def test_shadow_file_permissions(snapshot, expected, audit) -> None:
    _shadow_file(snapshot, audit, "/etc/shadow")


@pytest.mark.control("PW-05")
def test_gshadow_file_permissions(snapshot, expected, audit) -> None:
    _shadow_file(snapshot, audit, "/etc/gshadow")


# ---------------------------------------------------------------------------- PW-06


@pytest.mark.control("PW-06")
def test_shadow_no_empty_password(snapshot, expected, audit) -> None:
    empty = [a.name for a in accounts(snapshot) if a.state == "empty"]
    audit.expect(
        not empty,
        expected="no account with an empty password",
        observed=empty or "none",
    )


@pytest.mark.control("PW-06")
def test_pam_no_nullok(snapshot, expected, audit) -> None:
    found = [line for line in snapshot.text("password/pam-nullok").splitlines() if line.strip()]
    audit.expect(not found, expected="no nullok in /etc/pam.d", observed=found or "none")


# ---------------------------------------------------------------------------- PW-07


FAILLOCK_CONF = "/etc/security/faillock.conf"


def faillock_read(snapshot: Any) -> dict[str, dict[str, tuple[int | None, str]]]:
    """Effective settings of each pam_faillock line, each with where it was set: pam_faillock's
    default, then faillock.conf, then the line's arguments."""
    base: dict[str, tuple[int | None, str]] = {
        "deny": (3, "pam_faillock's default"),
        "fail_interval": (900, "pam_faillock's default"),
        "unlock_time": (600, "pam_faillock's default"),
    }
    conf = pw.equals_assignments(
        pw.numbered(snapshot.text("password/faillock-conf")), FAILLOCK_CONF
    )
    for key, (value, source) in conf.items():
        if key in base:
            base[key] = (as_int(value), source)
    out = {}
    for kind in ("auth", "account"):
        for i, ln in lines_of(snapshot, kind, "pam_faillock.so"):
            values = dict(base)
            for arg in ln.args:
                key, _, value = arg.partition("=")
                if key in values:
                    values[key] = (as_int(value), ln.where)
            out[f"{kind}:{i} {' '.join(ln.args)}".strip()] = values
    return out


def faillock_settings(snapshot: Any) -> dict[str, dict[str, int | None]]:
    """Effective settings of each pam_faillock line: faillock.conf, then the line's arguments."""
    return {
        line: {key: value for key, (value, _) in values.items()}
        for line, values in faillock_read(snapshot).items()
    }


@pytest.mark.control("PW-07")
def test_faillock_in_pam_stack(snapshot, expected, audit) -> None:
    auth = lines_of(snapshot, "auth", "pam_faillock.so")
    unix = lines_of(snapshot, "auth", "pam_unix.so")
    account = lines_of(snapshot, "account", "pam_faillock.so")
    preauth = [
        i for i, ln in auth if "preauth" in ln.args and ln.control in ("requisite", "required")
    ]
    authfail = [i for i, ln in auth if "authfail" in ln.args and "die" in ln.control]
    ok = bool(unix and preauth and authfail and account) and (
        min(preauth) < unix[0][0] < min(authfail)
    )
    audit.expect(
        ok,
        expected="auth pam_faillock.so preauth, pam_unix.so, [default=die] pam_faillock.so "
        "authfail; account pam_faillock.so",
        observed=show(auth) + show(account) or "pam_faillock.so not in the PAM stack",
        source=where(auth + account),
    )


def _faillock(snapshot: Any, audit: Any, key: str, wanted: int) -> None:
    """Every pam_faillock line of the stack must work with the expected value."""
    read = faillock_read(snapshot)
    observed = {line: values[key][0] for line, values in read.items()}
    sources = sorted({values[key][1] for values in read.values() if values[key][1]})
    ok = bool(observed) and all(v == wanted for v in observed.values())
    audit.expect(
        ok,
        expected=wanted,
        observed=observed or "pam_faillock.so not in the PAM stack",
        source=", ".join(sources),
    )


@pytest.mark.control("PW-07")
def test_faillock_deny(snapshot, expected, audit) -> None:
    _faillock(snapshot, audit, "deny", expected["password_policy_faillock_deny"])


@pytest.mark.control("PW-07")
def test_faillock_unlock_time(snapshot, expected, audit) -> None:
    _faillock(snapshot, audit, "unlock_time", expected["password_policy_faillock_unlock_time"])


@pytest.mark.control("PW-07")
def test_faillock_fail_interval(snapshot, expected, audit) -> None:
    _faillock(snapshot, audit, "fail_interval", expected["password_policy_faillock_fail_interval"])


# ---------------------------------------------------------------------------- PW-08


@pytest.mark.control("PW-08")
def test_initial_passwords_expired(snapshot, expected, audit) -> None:
    people, excluded = humans(snapshot, expected)
    if not expected["password_policy_force_change_at_first_login"]:
        audit.expect(True, expected="not required (key-only logins)", observed=None)
        return
    # A usable password on an account that has never logged in is a temporary password: it must
    # be expired (last change 0) so that the user chooses their own at the first login.
    wrong = [a.name for a in people if a.state == "set" and a.lastlog == 0 and a.lstchg != 0]
    audit.expect(
        not wrong,
        expected="accounts never logged in with a password: password expired (chage -d 0)",
        observed=report(wrong, excluded),
        message="temporary passwords that need not be changed at the first login",
    )


# ---------------------------------------------------------------------------- PW-09


def tmout_source(snapshot: Any) -> str:
    """The file and line that gave TMOUT its value in a (traced) login shell."""
    return pw.tmout_source(snapshot.text("password/tmout-trace")) or "no file sets TMOUT"


def tmout(snapshot: Any) -> tuple[str | None, bool]:
    """TMOUT in a login shell, and whether it is read-only there (`readonly -p` lists it)."""
    first, _, rest = snapshot.text("password/tmout").partition("\n")
    value = first.removeprefix("TMOUT=") if first.startswith("TMOUT=") else None
    return (None if value == "unset" else value), "TMOUT=" in rest


@pytest.mark.control("PW-09")
def test_tmout_configured(snapshot, expected, audit) -> None:
    value, _ = tmout(snapshot)
    files = [ln for ln in snapshot.text("password/tmout-files").splitlines() if ln.strip()]
    audit.expect(
        value is not None and bool(files),
        expected="TMOUT set for login shells by /etc/profile or /etc/profile.d",
        observed={"TMOUT": value, "set in": files},
        source=tmout_source(snapshot),
    )


@pytest.mark.control("PW-09")
def test_tmout_readonly(snapshot, expected, audit) -> None:
    _, readonly = tmout(snapshot)
    audit.equal(
        readonly,
        True,
        "users can unset a TMOUT that is not read-only",
        source=tmout_source(snapshot),
    )


@pytest.mark.control("PW-09")
def test_tmout_value(snapshot, expected, audit) -> None:
    value, _ = tmout(snapshot)
    audit.equal(as_int(value), expected["password_policy_tmout"], source=tmout_source(snapshot))


# ---------------------------------------------------------------------------- AC-03


def _last_use(account: Account) -> int | None:
    """Seconds since the epoch of the last login, or for an account that never logged in the
    later of its password's last change and its home directory's last change."""
    if account.lastlog:
        return account.lastlog
    dates = [account.home_mtime] if account.home_mtime else []
    if account.lstchg:
        dates.append(account.lstchg * DAY)
    return max(dates) if dates else None


def _usable(account: Account, day: int) -> bool:
    """The account can still be logged in to: a password is set, it has not expired and it has
    not been disabled by the inactivity period after its password expired."""
    if account.state != "set":
        return False
    if account.expire is not None and account.expire <= day:
        return False
    return not (
        account.lstchg
        and account.max is not None
        and account.inactive is not None
        and account.lstchg + account.max + account.inactive < day
    )


@pytest.mark.control("AC-03")
def test_unused_accounts_locked(snapshot, expected, audit) -> None:
    people, excluded = humans(snapshot, expected)
    days = expected["password_policy_max_unused_days"]
    now, day = int(time.time()), today()
    unused = []
    for a in people:
        last = _last_use(a)
        if last is None or now - last > days * DAY:
            when = time.strftime("%Y-%m-%d", time.gmtime(last)) if last else "unknown"
            what = "last login" if a.lastlog else "never logged in, account dated"
            if _usable(a, day):
                unused.append(f"{a.name} ({what} {when})")
    audit.expect(
        not unused,
        expected=f"no usable human account unused for more than {days} days",
        observed=report(unused, excluded),
        message="review these IDs with the personnel department, then lock or remove them",
    )


@pytest.mark.control("AC-03")
def test_expired_accounts_locked(snapshot, expected, audit) -> None:
    day = today()
    wrong = [
        f"{a.name} (expired {time.strftime('%Y-%m-%d', time.gmtime(a.expire * DAY))})"
        for a in accounts(snapshot)
        if a.expire is not None and a.expire <= day and a.state == "set"
    ]
    audit.expect(
        not wrong,
        expected="expired accounts have a locked password",
        observed=wrong or "none",
        message="lock them with usermod -L (or remove them)",
    )
