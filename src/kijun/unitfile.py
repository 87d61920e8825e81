"""systemd units as ``systemctl cat UNIT`` prints them: each setting in force and where it was set.

``systemctl cat`` prints the unit file and then its drop-ins, in the order systemd reads them,
each after a ``# /path`` header line. :func:`assignments` reads the settings of one section in
that order with systemd's rules for list settings (``ExecStart=``, ``Environment=``,
``EnvironmentFile=``, ...): each assignment adds to the list and an empty one clears it. Every
value carries the ``path:line`` that set it, which audits report as the source of what is in
force.

    >>> text = "# /lib/systemd/system/x.service\\n[Service]\\nExecStart=/bin/x\\n"
    >>> [str(a) for a in assignments(text, "Service", ["ExecStart"])]
    ['ExecStart=/bin/x (/lib/systemd/system/x.service:2)']
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

_HEADER = re.compile(r"^# /\S+$")


@dataclass(frozen=True)
class Assignment:
    """One setting of a unit, and the file and line that set it."""

    key: str
    value: str
    source: str  # path:line ("" when not read from a file)

    def __str__(self) -> str:
        return f"{self.key}={self.value} ({self.source})" if self.source else f"{self.key}: none"


def assignments(text: str, section: str, keys: Iterable[str]) -> list[Assignment]:
    """The assignments in force of ``keys`` in ``[section]``, in reading order (continuation
    lines ending in ``\\`` joined; comments and other sections skipped)."""
    wanted = set(keys)
    found: list[Assignment] = []
    path, number, current, pending, start = "", 0, "", "", 0
    for raw in text.splitlines():
        if not pending and _HEADER.match(raw):
            path, number, current = raw[2:], 0, ""
            continue
        number += 1
        if pending:
            line = pending + raw.strip()
        else:
            line, start = raw.strip(), number
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if current != section or not sep or key not in wanted:
            continue
        if not value:
            found = [a for a in found if a.key != key]
        else:
            found.append(Assignment(key, value, f"{path}:{start}"))
    return found


def environment(found: list[Assignment]) -> dict[str, Assignment]:
    """Each variable of the ``Environment=`` assignments with the assignment that set it last
    (each assignment may set several, ``A=1 "B=two words"``)."""
    out: dict[str, Assignment] = {}
    for a in found:
        if a.key != "Environment":
            continue
        try:
            words = shlex.split(a.value)
        except ValueError:
            continue
        for word in words:
            name, sep, value = word.partition("=")
            if sep:
                out[name] = Assignment(name, value, a.source)
    return out


def environment_file(text: str, path: str) -> dict[str, Assignment]:
    """The variables of an ``EnvironmentFile=`` as ``grep -n '' FILE`` prints it (``N:line``):
    ``KEY=VALUE`` lines, quotes removed, the last assignment winning."""
    out: dict[str, Assignment] = {}
    for raw in text.splitlines():
        number, sep, line = raw.partition(":")
        if not sep or not number.isdigit():
            continue
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        name, _, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            out[name] = Assignment(name, value, f"{path}:{number}")
    return out
