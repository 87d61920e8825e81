"""Where the password settings in force come from: the file and line that set each one.

The password audit (``audits/test_password.py``) reads the values as the tools themselves read
them (libpwquality, pam_faillock, shadow's getdef, a bash login shell); this module reads the
outputs that say where each value was set, so that a check names the file that won among the
drop-ins and includes (its ``source``):

* libpwquality: ``pwquality.conf.d/*.conf`` in byte order of the names, then ``pwquality.conf``,
  the last assignment winning, then the ``pam_pwquality.so`` arguments in ``common-password``
  (the collection prints ``source NAME PATH:LINE`` for each setting; :func:`pwquality_sources`);
* numbered lines (``grep -n`` output, ``N:text``) of ``login.defs``, ``faillock.conf`` and the
  PAM stack (:func:`numbered`, :func:`last_assignments`);
* TMOUT: a bash login shell traced with ``PS4='+${BASH_SOURCE}:${LINENO}: '`` and ``xtrace``,
  where each assignment names its file and line, and bash reports an assignment that a
  ``readonly`` TMOUT refused (:func:`tmout_source`).

    >>> lines = numbered("12:PASS_MAX_DAYS 99999\\n160:PASS_MAX_DAYS 365\\n")
    >>> last_assignments(lines, "/etc/login.defs")
    {'PASS_MAX_DAYS': ('365', '/etc/login.defs:160')}
"""

from __future__ import annotations

import re

# A traced command: "++/etc/profile.d/kijun-tmout.sh:7: TMOUT=900" (one + per nesting level).
_TRACE = re.compile(r"^\++(?P<path>/[^:]*):(?P<line>\d+): (?P<command>.*)$")
# bash refusing an assignment: "/etc/profile.d/zz-local.sh: line 1: TMOUT: readonly variable".
_REFUSED = re.compile(r"^(?P<path>/[^:]*): line (?P<line>\d+): TMOUT: readonly variable")
# Commands that give TMOUT a value or unset it (``export TMOUT`` and ``readonly TMOUT`` alone
# keep the value).
_TMOUT = re.compile(
    r"^(?:(?:export|readonly|declare|typeset|local)(?:\s+-\w+)*\s+)?TMOUT="
    r"|^unset\s+(?:-v\s+)?TMOUT$"
)


def numbered(text: str) -> list[tuple[int, str]]:
    """``grep -n`` output as (line number, text); other lines are skipped."""
    out = []
    for raw in text.splitlines():
        number, sep, rest = raw.partition(":")
        if sep and number.isdigit():
            out.append((int(number), rest))
    return out


def last_assignments(lines: list[tuple[int, str]], path: str) -> dict[str, tuple[str, str]]:
    """``KEY value`` lines (login.defs): {key: (value, "path:line")} of the last occurrence."""
    values: dict[str, tuple[str, str]] = {}
    for number, text in lines:
        parts = text.split()
        if len(parts) >= 2 and not parts[0].startswith("#"):
            values[parts[0]] = (parts[1], f"{path}:{number}")
    return values


def equals_assignments(lines: list[tuple[int, str]], path: str) -> dict[str, tuple[str, str]]:
    """``key = value`` lines (faillock.conf): {key: (value, "path:line")} of the last one."""
    values: dict[str, tuple[str, str]] = {}
    for number, text in lines:
        text = text.split("#", 1)[0].strip()
        if not text:
            continue
        key, _, value = (p.strip() for p in text.partition("="))
        values[key] = (value, f"{path}:{number}")
    return values


def pwquality_sources(text: str) -> dict[str, str]:
    """{setting: "path:line"} from the pwquality collection's ``source NAME WHERE`` lines."""
    out = {}
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] == "source":
            out[parts[1]] = parts[2]
    return out


def tmout_source(trace: str) -> str:
    """The ``path:line`` that gave TMOUT the value a traced bash login shell has, or "".

    The last command that assigned or unset TMOUT and that bash did not refuse (an assignment
    to a read-only TMOUT is refused and reported with the same file and line).
    """
    commands: list[tuple[str, str]] = []
    refused: set[str] = set()
    for line in trace.splitlines():
        found = _TRACE.match(line)
        if found and _TMOUT.match(found["command"].strip()):
            commands.append((f"{found['path']}:{found['line']}", found["command"].strip()))
            continue
        no = _REFUSED.match(line)
        if no:
            refused.add(f"{no['path']}:{no['line']}")
    effective = [where for where, _ in commands if where not in refused]
    return effective[-1] if effective else ""
