"""One collection step per host: everything the audits read, in a single remote command.

Each audit module declares what it reads as ``COLLECT = {"key": "shell command", ...}``. The
commands of every module in the run are joined into one script that runs once per host (as
root), and the checks then read the outputs from the :class:`Snapshot`. A check never runs a
remote command of its own, so an audit costs a round trip per host, not one per check.

Modules also declare the systemd units they look at as ``UNITS = ("chrony.service", ...)``: the
units of every module are read by one ``systemctl show`` (key ``systemd/units``), not by a
``systemctl is-active`` per unit and check, and checks read them with :meth:`Snapshot.unit`.

Commands must print only what the check needs and never a secret: shadow entries, for example,
are reduced to ageing fields and a password *state* on the host, never a hash.
"""

from __future__ import annotations

import base64
import functools
import re
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

KEY_RE = re.compile(r"^[a-z][a-z0-9_.-]*/[a-z0-9_.-]+$")
UNITS_KEY = "systemd/units"
_UNIT_RE = re.compile(r"^[A-Za-z0-9@_.:\\-]+\.(service|socket|timer|target|path|mount)$")


class SnapshotError(RuntimeError):
    """The collection step failed or its output is incomplete (the host was not assessed)."""


@dataclass(frozen=True)
class Output:
    stdout: str
    rc: int


OUTPUT_LIMIT = 1024 * 1024  # bytes of one command's output kept (the rest is cut, and said so)


def build_script(commands: Mapping[str, str], marker: str) -> str:
    """A POSIX sh script that runs every command concurrently and prints the outputs in order.

    Each command runs in the background (most of them wait on systemd or a daemon, so running
    them together costs the slowest one, not the sum) and writes its output, framed by markers
    with its exit status, to files of its own in a private temporary directory; one ``cat``
    then prints the files in order. Few processes per command: the collection stays cheap on hosts
    that are busy with their own work.
    """
    keys = sorted(commands)
    for key in keys:
        if not KEY_RE.match(key):
            raise ValueError(f"collection key {key!r} must look like 'area/name'")
    lines = [
        "#!/bin/sh",
        "export LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "d=$(mktemp -d) || exit 70",
        "trap 'rm -rf \"$d\"' EXIT",
    ]
    for i, key in enumerate(keys):
        # <i>a holds the begin marker; <i>b the output (the command may reopen /dev/stdout,
        # which truncates: nothing else is in that file) and <i>c the end marker.
        lines.append(f"printf '%s begin %s\\n' {marker} {shlex.quote(key)} >\"$d/{i:04d}a\"")
        lines.append(
            f'{{ ( {commands[key]} ) </dev/null >"$d/{i:04d}b" 2>/dev/null; '
            f"printf '\\n%s end %s %s\\n' {marker} {shlex.quote(key)} $? >\"$d/{i:04d}c\"; }} &"
        )
    lines.append("wait")
    # An output larger than OUTPUT_LIMIT (a huge file on the host) is cut, and says so: one
    # find per host, a cut only where needed.
    lines.append(
        f'find "$d" -name "*b" -size +{OUTPUT_LIMIT // 1024}k | while read -r f; do '
        f'head -c {OUTPUT_LIMIT} "$f" >"$f.cut"; '
        f"printf '\\n[kijun: output cut to its first {OUTPUT_LIMIT} bytes]' >>\"$f.cut\"; "
        'mv "$f.cut" "$f"; done'
    )
    lines.append('cat "$d"/*')
    return "\n".join(lines) + "\n"


def remote_command(commands: Mapping[str, str]) -> tuple[str, str]:
    """The single remote command line for ``commands`` and the marker its output uses."""
    marker = "@@kijun-" + secrets.token_hex(8)
    script = base64.b64encode(build_script(commands, marker).encode()).decode()
    return f"echo {script} | base64 -d | /bin/sh", marker


def parse(output: str, marker: str, keys: list[str]) -> dict[str, Output]:
    results: dict[str, Output] = {}
    pattern = re.compile(
        rf"^{re.escape(marker)} begin (\S+)\n(.*?)\n{re.escape(marker)} end \1 (\d+)$",
        re.S | re.M,
    )
    for match in pattern.finditer(output):
        results[match.group(1)] = Output(match.group(2), int(match.group(3)))
    missing = sorted(set(keys) - set(results))
    if missing:
        raise SnapshotError(f"the collection step did not return {', '.join(missing)}")
    return results


@dataclass(frozen=True)
class Unit:
    """A systemd unit's state as ``systemctl is-active`` and ``is-enabled`` would word it."""

    name: str
    load: str  # loaded, not-found, masked, ...
    active: str  # active, inactive, failed, activating, ...
    enabled: str  # enabled, disabled, static, masked, ... ("" when there is no unit file)


def units_command(units: set[str] | list[str]) -> str:
    """One command that reads the state of every unit (the first line lists them)."""
    names = sorted(units)
    for name in names:
        if not _UNIT_RE.match(name):
            raise ValueError(f"{name!r} is not a systemd unit name")
    listed = " ".join(names)
    return (
        f"echo 'units {listed}'; "
        f"systemctl show --property=LoadState,ActiveState,UnitFileState -- {listed}"
    )


def parse_units(text: str) -> dict[str, Unit]:
    """The units of :func:`units_command`'s output, in the order systemctl printed them."""
    first, _, rest = text.partition("\n")
    if not first.startswith("units "):
        raise SnapshotError("the systemd unit states were not collected")
    names = first.split()[1:]
    blocks = [b for b in rest.strip("\n").split("\n\n")] if rest.strip() else []
    if len(blocks) != len(names):
        raise SnapshotError(
            f"systemctl reported {len(blocks)} unit(s) for {len(names)} asked: {rest[:200]!r}"
        )
    out: dict[str, Unit] = {}
    for name, block in zip(names, blocks, strict=True):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        out[name] = Unit(
            name, props.get("LoadState", ""), props.get("ActiveState", ""),
            props.get("UnitFileState", ""),
        )  # fmt: skip
    return out


@dataclass
class Snapshot:
    host: str
    outputs: dict[str, Output]

    def __getitem__(self, key: str) -> Output:
        try:
            return self.outputs[key]
        except KeyError:
            raise SnapshotError(
                f"{key!r} was not collected: add it to the audit module's COLLECT"
            ) from None

    def text(self, key: str) -> str:
        return self[key].stdout

    def add(self, key: str, stdout: str, rc: int = 0) -> Output:
        """Add an output made during a check (a live probe's transcript from the control node):
        it becomes evidence like the collected ones. A collected output is never replaced."""
        if not KEY_RE.match(key):
            raise ValueError(f"evidence key {key!r} must look like 'area/name'")
        if key in self.outputs:
            raise ValueError(f"{key!r} is already in the snapshot of {self.host}")
        self.outputs[key] = Output(stdout, rc)
        return self.outputs[key]

    @functools.cached_property
    def _units(self) -> dict[str, Unit]:
        return parse_units(self[UNITS_KEY].stdout)  # once per host, not once per check

    def unit(self, name: str) -> Unit:
        """The state of a unit the audit module lists in ``UNITS``."""
        try:
            return self._units[name]
        except KeyError:
            raise SnapshotError(f"unit {name!r} was not collected: add it to UNITS") from None
