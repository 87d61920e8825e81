"""One collection step per host: everything the audits read, in a single remote command.

Each audit module declares what it reads as ``COLLECT = {"key": "shell command", ...}``. The
commands of every module in the run are joined into one script that runs once per host (as
root), and the checks then read the outputs from the :class:`Snapshot`. A check never runs a
remote command of its own, so an audit costs a round trip per host, not one per check.

Commands must print only what the check needs and never a secret: shadow entries, for example,
are reduced to ageing fields and a password *state* on the host, never a hash.
"""

from __future__ import annotations

import base64
import re
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

KEY_RE = re.compile(r"^[a-z][a-z0-9_.-]*/[a-z0-9_.-]+$")


class SnapshotError(RuntimeError):
    """The collection step failed or its output is incomplete (the host was not assessed)."""


@dataclass(frozen=True)
class Output:
    stdout: str
    rc: int


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
        # which truncates: nothing else is in that file yet) and then the end marker.
        lines.append(f"printf '%s begin %s\\n' {marker} {shlex.quote(key)} >\"$d/{i:04d}a\"")
        lines.append(
            f'{{ ( {commands[key]} ) </dev/null >"$d/{i:04d}b" 2>/dev/null; '
            f"printf '\\n%s end %s %s\\n' {marker} {shlex.quote(key)} $? >>\"$d/{i:04d}b\"; }} &"
        )
    lines.append("wait")
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
