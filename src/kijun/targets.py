"""Which hosts an audit reaches, and how (testinfra host specs from the inventory).

``--limit`` takes Ansible's host patterns: host or group names, shell globs, ``,`` or ``:``
between terms, ``!term`` to exclude and ``&term`` to intersect. A term that matches nothing is
an error (a typo must not silently shrink an audit).

Hosts reached over SSH get an ``ssh_config`` written from their inventory variables, with the
same control path as Ansible (``~/.ansible/cp/%C``) so audits reuse Ansible's persistent
connections and the other way round.
"""

from __future__ import annotations

import fnmatch
import shlex
from collections.abc import Mapping
from pathlib import Path

from kijun.variables import HostVars


class SelectionError(ValueError):
    """The limit pattern selects nothing or names an unknown host or group."""


def select(hosts: Mapping[str, HostVars], pattern: str | None) -> list[str]:
    names = sorted(hosts)
    if not pattern or pattern == "all":
        return names
    groups = sorted({g for hv in hosts.values() for g in hv.groups})

    def match(term: str) -> set[str]:
        found = {n for n in names if fnmatch.fnmatchcase(n, term)}
        found |= {
            n for n, hv in hosts.items() if any(fnmatch.fnmatchcase(g, term) for g in hv.groups)
        }
        if not found:
            raise SelectionError(
                f"--limit {term!r} matches no host or group of the inventory; "
                f"groups: {', '.join(groups)}; hosts: {', '.join(names)}"
            )
        return found

    chosen: set[str] = set()
    terms = [t for t in pattern.replace(":", ",").split(",") if t.strip()]
    for term in (t.strip() for t in terms if not t.strip().startswith(("!", "&"))):
        chosen |= match(term)
    if not chosen and all(t.strip().startswith(("!", "&")) for t in terms):
        chosen = set(names)
    for term in (t.strip() for t in terms):
        if term.startswith("&"):
            chosen &= match(term[1:])
        elif term.startswith("!"):
            chosen -= match(term[1:])
    if not chosen:
        raise SelectionError(f"--limit {pattern!r} selects no host")
    return sorted(chosen)


def _ssh_options(args: str) -> list[tuple[str, str]]:
    """``-o Key=Value`` pairs of an ansible_ssh_common_args string."""
    words = shlex.split(args)
    options = []
    for i, word in enumerate(words):
        value = words[i + 1] if word == "-o" and i + 1 < len(words) else None
        if word.startswith("-o") and len(word) > 2:
            value = word[2:]
        if value and "=" in value:
            key, val = value.split("=", 1)
            options.append((key.strip(), val.strip()))
    return options


CONTROL_DIR = "~/.ansible/cp"  # Ansible's default ControlPath directory: connections are shared


def write_ssh_config(
    path: Path, hosts: Mapping[str, HostVars], names: list[str], timeout: int = 5
) -> None:
    """Write :func:`ssh_config` to ``path`` and make sure its ControlPath directory exists (ssh
    refuses to connect when it cannot create the control socket, e.g. on a control node where
    Ansible never ran)."""
    Path(CONTROL_DIR).expanduser().mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(ssh_config(hosts, names, timeout))


def ssh_config(hosts: Mapping[str, HostVars], names: list[str], timeout: int = 5) -> str:
    lines = ["# Written by `kijun audit` from the inventory; rewritten on every run."]
    for name in names:
        conn = hosts[name].connection
        lines.append(f"Host {name}")
        lines.append(f"  HostName {conn.get('ansible_host', name)}")
        if conn.get("ansible_user"):
            lines.append(f"  User {conn['ansible_user']}")
        if conn.get("ansible_port"):
            lines.append(f"  Port {conn['ansible_port']}")
        key = conn.get("ansible_ssh_private_key_file") or conn.get("ansible_private_key_file")
        if key:
            lines.append(f"  IdentityFile {Path(str(key)).expanduser()}")
        for k, v in _ssh_options(str(conn.get("ansible_ssh_common_args", ""))):
            lines.append(f"  {k} {v}")
        for k, v in _ssh_options(str(conn.get("ansible_ssh_extra_args", ""))):
            lines.append(f"  {k} {v}")
        lines += [
            "  BatchMode yes",
            f"  ConnectTimeout {timeout}",
            # One persistent connection per host, shared with Ansible's own (same path): the
            # next audit within a minute, or a playbook run, needs no new SSH handshake.
            "  ControlMaster auto",
            "  ControlPersist 60s",
            f"  ControlPath {CONTROL_DIR}/%C",
            "  ServerAliveInterval 15",
        ]
    return "\n".join(lines) + "\n"


def host_specs(hosts: Mapping[str, HostVars], names: list[str], config_path: Path) -> list[str]:
    """testinfra host specs: ssh with the written config, or podman/docker by connection."""
    specs = []
    for name in names:
        conn = hosts[name].connection
        kind = str(conn.get("ansible_connection", "ssh")).rsplit(".", 1)[-1]
        sudo = "&sudo=true" if conn.get("ansible_become") else ""
        if kind in ("ssh", "smart", "paramiko"):
            specs.append(f"ssh://{name}?ssh_config={config_path}&timeout=10{sudo}")
        elif kind in ("podman", "docker"):
            specs.append(f"{kind}://{name}")
        else:
            raise SelectionError(f"{name}: connection {kind!r} is not supported by kijun audit")
    return specs
