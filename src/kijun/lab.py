"""The built-in lab: a small municipality's network of real Debian hosts under podman.

Networks (all inside 198.18.0.0/15, the range reserved for benchmarking):

* ``kijun-mgmt``       198.18.0.0/24   management network; the control node (this machine) is
                                       198.18.0.1 and reaches every host over SSH
* ``kijun-mynumber``   198.18.10.0/24  individual-number zone (マイナンバー利用事務系), --internal
* ``kijun-lgwan``      198.18.20.0/24  LGWAN zone (LGWAN接続系), --internal
* ``kijun-internet``   198.18.30.0/24  internet zone (インターネット接続系), --internal

``gw01`` has a leg in every zone (``.254``) and forwards between them; the other hosts reach
the other zones only through it. The individual-number zone is routed to the LGWAN zone only,
never to the internet zone. Everything the lab makes carries the label ``io.kijun.lab``, and
``lab down`` removes only what carries it.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kijun import image, paths, podman

LABEL_KEY = "io.kijun.lab"
LAB_NAME = "kijun"
ADMIN_USER = "labadmin"
MGMT_GATEWAY = "198.18.0.1"
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
SSH_TIMEOUT_S = 60.0

Progress = Callable[[str], None]


class LabError(RuntimeError):
    """The lab could not be brought up, inspected or removed; the message says what to do."""


@dataclass(frozen=True)
class Network:
    name: str
    subnet: str
    internal: bool
    zone: str | None = None  # mynumber | lgwan | internet; None for the management network
    title: str = ""

    @property
    def gateway_address(self) -> str:
        """The zone gateway's leg on a zone network (``.254``)."""
        return str(ipaddress.ip_network(self.subnet).network_address + 254)


@dataclass(frozen=True)
class Host:
    name: str
    mgmt_address: str
    zone: str | None  # None for the zone gateway, which has a leg in every zone
    zone_address: str | None
    functions: tuple[str, ...] = ()

    @property
    def container(self) -> str:
        return f"kijun-{self.name}"


MGMT = Network("kijun-mgmt", "198.18.0.0/24", internal=False, title="management network")
ZONES: dict[str, Network] = {
    "mynumber": Network(
        "kijun-mynumber", "198.18.10.0/24", True, "mynumber", "マイナンバー利用事務系"
    ),
    "lgwan": Network("kijun-lgwan", "198.18.20.0/24", True, "lgwan", "LGWAN接続系"),
    "internet": Network(
        "kijun-internet", "198.18.30.0/24", True, "internet", "インターネット接続系"
    ),
}
# Which zones each zone is routed to through gw01. The individual-number zone reaches the
# LGWAN zone only (pinned flows are then allowed or dropped by the gateway's firewall).
ROUTED: dict[str, tuple[str, ...]] = {
    "mynumber": ("lgwan",),
    "lgwan": ("mynumber", "internet"),
    "internet": ("lgwan",),
}
FUNCTION_GROUPS = ("gateways", "mail_relays", "ntp_servers", "log_collectors", "access_points")


@dataclass(frozen=True)
class LabSpec:
    hosts: tuple[Host, ...]
    networks: tuple[Network, ...] = field(default=(MGMT, *ZONES.values()))

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)


def default_spec(extra_hosts: int = 0) -> LabSpec:
    """The lab's hosts; ``extra_hosts`` adds plain LGWAN application hosts (for scaling runs)."""
    hosts = [
        Host("gw01", "198.18.0.10", None, None, ("gateways",)),
        Host("mn-app01", "198.18.0.11", "mynumber", "198.18.10.11"),
        Host("lg-app01", "198.18.0.21", "lgwan", "198.18.20.21"),
        Host("lg-mail01", "198.18.0.22", "lgwan", "198.18.20.22", ("mail_relays",)),
        Host("lg-ntp01", "198.18.0.23", "lgwan", "198.18.20.23", ("ntp_servers",)),
        Host("lg-log01", "198.18.0.24", "lgwan", "198.18.20.24", ("log_collectors",)),
        Host("lg-ap01", "198.18.0.25", "lgwan", "198.18.20.25", ("access_points",)),
        Host("in-web01", "198.18.0.31", "internet", "198.18.30.31"),
        Host("in-mail01", "198.18.0.32", "internet", "198.18.30.32", ("mail_relays",)),
    ]
    if not 0 <= extra_hosts <= 150:
        raise LabError("extra hosts must be between 0 and 150")
    for i in range(extra_hosts):
        n = 100 + i
        hosts.append(Host(f"lg-bench{i + 1:03d}", f"198.18.0.{n}", "lgwan", f"198.18.20.{n}"))
    for h in hosts:
        for addr in (h.mgmt_address, h.zone_address):
            if addr is not None and ipaddress.ip_address(addr) not in LAB_RANGE:
                raise LabError(f"{h.name}: {addr} is outside the lab range {LAB_RANGE}")
    return LabSpec(tuple(hosts))


# --- state on this machine ------------------------------------------------------------------


def lab_dir() -> Path:
    return paths.state_dir() / "lab"


def key_path() -> Path:
    return lab_dir() / "id_ed25519"


def known_hosts_path() -> Path:
    return lab_dir() / "known_hosts"


def password_path() -> Path:
    return lab_dir() / "admin-password"


def inventory_path() -> Path:
    return paths.repo_root() / "inventories" / "lab" / "hosts.yml"


def ensure_credentials() -> None:
    """The lab's SSH key and admin password, made once per checkout (mode 0600). Safe to call
    from several processes at once (the lab and molecule scenarios in parallel test workers):
    one makes them, the others wait and find them."""
    lab_dir().mkdir(parents=True, exist_ok=True)
    os.chmod(lab_dir(), 0o700)
    with open(lab_dir() / ".credentials.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _make_credentials()


def _make_credentials() -> None:
    if not key_path().is_file():
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "kijun-lab",
                "-f",
                str(key_path()),
            ],
            check=True,
            stdin=subprocess.DEVNULL,
        )
    if not password_path().is_file():
        password_path().write_text(secrets.token_urlsafe(18) + "\n")
        os.chmod(password_path(), 0o600)


# --- what podman has --------------------------------------------------------------------------


@dataclass
class Observed:
    containers: dict[str, dict[str, Any]]  # container name -> podman ps entry
    networks: dict[str, dict[str, Any]]  # network name -> podman network inspect entry


def observe() -> Observed:
    ps = podman.run_json(["ps", "-a", "--filter", f"label={LABEL_KEY}", "--format", "json"])
    containers = {c["Names"][0]: c for c in ps}
    names = podman.run(
        ["network", "ls", "--filter", f"label={LABEL_KEY}", "--format", "{{.Name}}"]
    ).stdout.split()
    networks: dict[str, dict[str, Any]] = {}
    if names:
        for entry in podman.run_json(["network", "inspect", *names]):
            networks[entry["name"]] = entry
    return Observed(containers, networks)


def _network_matches(net: Network, entry: dict[str, Any]) -> bool:
    subnets = [s.get("subnet") for s in entry.get("subnets", [])]
    return subnets == [net.subnet] and bool(entry.get("internal")) == net.internal


def _container_image_ok(entry: dict[str, Any]) -> bool:
    return str(entry.get("Labels", {}).get(image.LABEL, "")) == image.recipe_hash()


# --- bringing it up ---------------------------------------------------------------------------


@dataclass
class UpReport:
    created_networks: list[str] = field(default_factory=list)
    created_hosts: list[str] = field(default_factory=list)
    recreated_hosts: list[tuple[str, str]] = field(default_factory=list)  # (host, why)
    kept_hosts: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    image_built: bool = False
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(
            self.created_networks
            or self.created_hosts
            or self.recreated_hosts
            or self.removed
            or self.image_built
        )


def _create_network(net: Network) -> None:
    args = ["network", "create", "--label", f"{LABEL_KEY}={LAB_NAME}", "--subnet", net.subnet]
    if net.internal:
        args.append("--internal")
    else:
        args += ["--gateway", MGMT_GATEWAY]
    podman.run([*args, net.name])


def _run_host(host: Host, image_name: str) -> None:
    args = [
        "run", "-d",
        "--name", host.container,
        "--hostname", host.name,
        "--label", f"{LABEL_KEY}={LAB_NAME}",
        "--label", f"io.kijun.lab.host={host.name}",
        "--systemd=always",
        "--cap-add", "NET_ADMIN",
        "--network", f"{MGMT.name}:ip={host.mgmt_address}",
    ]  # fmt: skip
    if host.zone is None:  # the zone gateway: one leg in every zone, forwarding between them
        for net in ZONES.values():
            args += ["--network", f"{net.name}:ip={net.gateway_address}"]
        args += ["--sysctl", "net.ipv4.ip_forward=1"]
    else:
        args += ["--network", f"{ZONES[host.zone].name}:ip={host.zone_address}"]
    podman.run([*args, image_name, "/sbin/init"])


SSHD_START_SECONDS = 240  # a host's boot, with dozens of others booting beside it


def _prepare_script(host: Host, pubkey: str, password: str) -> str:
    """Shell run in a fresh or kept host: wait for sshd, admin access, zone routes, host key."""
    routes = ""
    if host.zone is not None:
        via = ZONES[host.zone].gateway_address
        for other in ROUTED[host.zone]:
            routes += f"ip route replace {ZONES[other].subnet} via {via}\n"
    return f"""set -eu
# Many hosts boot at once in a scaling run: a deadline in seconds, not a number of tries.
end=$(( $(date +%s) + {SSHD_START_SECONDS} ))
until [ -s /etc/ssh/ssh_host_ed25519_key.pub ] && systemctl is-active -q ssh; do
  [ "$(date +%s)" -lt "$end" ] ||
    {{ echo 'sshd did not start within {SSHD_START_SECONDS} s' >&2; exit 1; }}
  sleep 0.2
done
install -d -m 0700 -o {ADMIN_USER} -g {ADMIN_USER} /home/{ADMIN_USER}/.ssh
printf '%s\\n' '{pubkey}' > /home/{ADMIN_USER}/.ssh/authorized_keys
chown {ADMIN_USER}:{ADMIN_USER} /home/{ADMIN_USER}/.ssh/authorized_keys
chmod 0600 /home/{ADMIN_USER}/.ssh/authorized_keys
printf '%s:%s\\n' '{ADMIN_USER}' '{password}' | chpasswd
{routes}cat /etc/ssh/ssh_host_ed25519_key.pub
"""


def _prepare(host: Host) -> str:
    pubkey = Path(str(key_path()) + ".pub").read_text().strip()
    password = password_path().read_text().strip()
    proc = podman.run(
        ["exec", "-i", host.container, "/bin/sh", "-s"],
        input_text=_prepare_script(host, pubkey, password),
        check=False,
        timeout=SSHD_START_SECONDS + 60,
    )
    if proc.returncode != 0:
        raise LabError(f"{host.name}: preparing the host failed: {proc.stderr.strip()}")
    return proc.stdout.strip().splitlines()[-1]


def ssh_command(host: Host, *remote: str) -> list[str]:
    return [
        "ssh",
        "-i", str(key_path()),
        "-o", f"UserKnownHostsFile={known_hosts_path()}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=5",
        "-o", "LogLevel=ERROR",
        f"{ADMIN_USER}@{host.mgmt_address}",
        *remote,
    ]  # fmt: skip


def ssh_answers(host: Host, timeout: float = 15) -> bool:
    try:
        proc = subprocess.run(
            ssh_command(host, "true"),
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def _wait_ssh(host: Host) -> None:
    deadline = time.monotonic() + SSH_TIMEOUT_S
    while time.monotonic() < deadline:
        if ssh_answers(host, timeout=10):
            return
        time.sleep(0.3)
    raise LabError(
        f"{host.name}: SSH on {host.mgmt_address} did not answer within {SSH_TIMEOUT_S:.0f} s; "
        f"see `podman logs {host.container}` and `kijun lab status`"
    )


def _read_known_hosts() -> dict[str, str]:
    """Pinned host keys by management address."""
    if not known_hosts_path().is_file():
        return {}
    keys: dict[str, str] = {}
    for line in known_hosts_path().read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            keys[parts[0]] = " ".join(parts[1:3])
    return keys


def _write_known_hosts(spec: LabSpec, keys: dict[str, str]) -> None:
    lines = [
        f"{h.mgmt_address} {' '.join(keys[h.mgmt_address].split()[:2])}"
        for h in spec.hosts
        if h.mgmt_address in keys
    ]
    text = "\n".join(lines) + "\n"
    if not known_hosts_path().is_file() or known_hosts_path().read_text() != text:
        known_hosts_path().write_text(text)


def render_inventory(spec: LabSpec) -> dict[str, Any]:
    def hostvars(h: Host) -> dict[str, Any]:
        hv: dict[str, Any] = {"ansible_host": h.mgmt_address}
        if h.zone_address:
            hv["kijun_zone_address"] = h.zone_address
        else:
            hv["kijun_zone_addresses"] = {z: n.gateway_address for z, n in ZONES.items()}
        return hv

    children: dict[str, Any] = {}
    members: dict[str, dict[str, Any] | None]
    for zone in ZONES:
        members = {h.name: hostvars(h) for h in spec.hosts if h.zone == zone}
        children[f"zone_{zone}"] = {"hosts": members, "vars": {"kijun_zone": zone}}
    for group in FUNCTION_GROUPS:
        members = {
            h.name: (hostvars(h) if h.zone is None else None)
            for h in spec.hosts
            if group in h.functions
        }
        children[group] = {"hosts": members}
    return {
        "all": {
            "vars": {
                "ansible_user": ADMIN_USER,
                "ansible_become": True,
                "ansible_ssh_private_key_file": str(key_path()),
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={known_hosts_path()} -o StrictHostKeyChecking=yes"
                ),
                "kijun_lab": True,
                "kijun_lab_networks": {
                    "management": MGMT.subnet,
                    **{zone: net.subnet for zone, net in ZONES.items()},
                },
            },
            "children": children,
        }
    }


def write_inventory(spec: LabSpec) -> Path:
    path = inventory_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Written by `kijun lab up`; do not edit (it is rewritten on every run).\n"
        "# Zone groups: zone_mynumber (マイナンバー利用事務系), zone_lgwan (LGWAN接続系),\n"
        "# zone_internet (インターネット接続系). Tailoring goes in group_vars/.\n"
    )
    body = yaml.safe_dump(render_inventory(spec), sort_keys=False, allow_unicode=True)
    text = header + body
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
# systemd, journald, logind, dbus and udev in a booted host hold inotify instances; all hosts
# count against one per-user limit on this machine (Debian's default is 128).
INOTIFY_PER_HOST = 8  # 6 measured on a booted lab host, with room for more services
INOTIFY_SPARE = 48  # molecule instances and the rest of the machine


def ensure_inotify(
    hosts: int, progress: Progress = print, limit_file: Path = INOTIFY_INSTANCES
) -> None:
    """Make sure ``hosts`` systemd hosts can boot: raise the machine's inotify instance limit
    for this boot (as root), or say how to, before any host hangs in its boot."""
    needed = INOTIFY_SPARE + INOTIFY_PER_HOST * hosts
    try:
        current = int(limit_file.read_text().strip())
    except (OSError, ValueError):
        return  # not Linux's procfs: nothing to check
    if current >= needed:
        return
    try:
        limit_file.write_text(f"{needed}\n")
    except OSError:
        raise LabError(
            f"{hosts} lab hosts need fs.inotify.max_user_instances >= {needed} (it is {current}); "
            f"run as root: sysctl -w fs.inotify.max_user_instances={needed}"
        ) from None
    progress(
        f"raised fs.inotify.max_user_instances from {current} to {needed} for {hosts} hosts "
        "(until the next reboot)"
    )


def up(spec: LabSpec | None = None, progress: Progress = print) -> UpReport:
    """Bring the lab up; on a running, healthy lab nothing changes."""
    spec = spec or default_spec()
    started = time.monotonic()
    report = UpReport()
    ensure_inotify(len(spec.hosts), progress)
    ensure_credentials()
    image_name, report.image_built = image.ensure(progress)
    seen = observe()

    # Networks: keep those that match, recreate those that do not (after their containers).
    wrong_nets = [
        n
        for n in spec.networks
        if n.name in seen.networks and not _network_matches(n, seen.networks[n.name])
    ]
    wanted_containers = {h.container: h for h in spec.hosts}
    stale: dict[str, str] = {}
    for cname, entry in seen.containers.items():
        host = wanted_containers.get(cname)
        if host is None:
            stale[cname] = "not part of the lab any more"
        elif entry.get("State") != "running":
            stale[cname] = f"container is {entry.get('State')}"
        elif not _container_image_ok(entry):
            stale[cname] = "the lab image recipe changed"
        elif wrong_nets:
            stale[cname] = "its networks are recreated"
    # Running containers that do not answer SSH are stale too (e.g. processes gone after a reboot).
    running = [
        wanted_containers[c] for c in seen.containers if c in wanted_containers and c not in stale
    ]
    if running and known_hosts_path().is_file():
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = dict(zip(running, pool.map(ssh_answers, running), strict=True))
        for host, ok in answers.items():
            if not ok:
                stale[host.container] = "SSH does not answer"
    elif running:
        for host in running:
            stale[host.container] = "its SSH host keys are unknown to this checkout"

    for cname, why in stale.items():
        progress(f"removing {cname}: {why}")
        podman.run(["rm", "-f", "-t", "0", cname])
        host = wanted_containers.get(cname)
        if host is not None:
            report.recreated_hosts.append((host.name, why))
        else:
            report.removed.append(cname)
    for net in wrong_nets:
        progress(f"recreating network {net.name}: its settings changed")
        podman.run(["network", "rm", "-f", net.name])
        report.removed.append(net.name)
    seen = observe()
    for net in spec.networks:
        if net.name not in seen.networks:
            _create_network(net)
            report.created_networks.append(net.name)

    to_create = [h for h in spec.hosts if h.container not in seen.containers]
    recreated = {name for name, _ in report.recreated_hosts}
    for h in to_create:
        if h.name not in recreated:
            report.created_hosts.append(h.name)
    if to_create:
        progress(f"starting {len(to_create)} host(s): {', '.join(h.name for h in to_create)}")
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda h: _run_host(h, image_name), to_create))
    kept = [h for h in spec.hosts if h not in to_create]
    report.kept_hosts = [h.name for h in kept]

    # New hosts get the admin's key, password and zone routes; the SSH host key each one made
    # at first boot is pinned. Kept hosts are left exactly as they are.
    keys = _read_known_hosts()
    if to_create:
        with ThreadPoolExecutor(max_workers=8) as pool:
            made = dict(
                zip([h.name for h in to_create], pool.map(_prepare, to_create), strict=True)
            )
        keys.update({spec.host(name).mgmt_address: key for name, key in made.items()})
    _write_known_hosts(spec, keys)
    write_inventory(spec)
    if to_create:
        progress("waiting for SSH on the new hosts")
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(_wait_ssh, to_create))
    report.seconds = time.monotonic() - started
    return report


# --- status and down ------------------------------------------------------------------------


@dataclass(frozen=True)
class HostStatus:
    host: Host
    container_state: str  # running, exited, ..., or "missing"
    ssh: bool


def status(spec: LabSpec | None = None) -> list[HostStatus]:
    spec = spec or default_spec()
    seen = observe()

    def one(h: Host) -> HostStatus:
        entry = seen.containers.get(h.container)
        state = str(entry.get("State")) if entry else "missing"
        ok = state == "running" and known_hosts_path().is_file() and ssh_answers(h)
        return HostStatus(h, state, ok)

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, spec.hosts))


def down(progress: Progress = print) -> list[str]:
    """Remove every container and network that carries the lab's label, and nothing else."""
    seen = observe()
    removed: list[str] = []
    if seen.containers:
        names = sorted(seen.containers)
        progress(f"removing {len(names)} host(s)")
        podman.run(["rm", "-f", "-t", "0", *names])
        removed += names
    for name in sorted(seen.networks):
        podman.run(["network", "rm", "-f", name])
        removed.append(name)
    if inventory_path().is_file():
        inventory_path().unlink()
    return removed


def exec_on(host: Host, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a shell command on a lab host over SSH (for tests and `lab status --check`)."""
    return subprocess.run(
        ssh_command(host, command),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def describe(spec: LabSpec | None = None) -> str:
    spec = spec or default_spec()
    return json.dumps(
        {
            h.name: {"mgmt": h.mgmt_address, "zone": h.zone, "zone_address": h.zone_address}
            for h in spec.hosts
        },
        indent=2,
    )
