"""The zone policy of an inventory: zones, management network, services and allowed flows.

An inventory declares its zone separation once, in ``<inventory>/zones.yml`` (format in
``inventories/ZONES.md``, schema in ``catalog/schema/zones.schema.json``): the networks of each
zone (マイナンバー利用事務系 ``mynumber``, LGWAN接続系 ``lgwan``, インターネット接続系
``internet``), the management network with the admin hosts, the services hosts offer and the
flows that are allowed (特定通信), each with its purpose and the clause it serves. Nothing else
is allowed. Which host is in which zone comes from the inventory's ``zone_<zone>`` groups, and
each host's address in its zone from its ``kijun_zone_address`` variable (the zone gateway's
legs: ``kijun_zone_addresses``).

:func:`read_policy` reads the file and refuses what is wrong in it alone (overlapping networks,
unknown zones, 'any' where a pinned endpoint is required, ...); :func:`check_inventory` refuses
what is wrong against the inventory (unknown hosts, addresses outside their zone, a flow to a
port its destination does not serve, ...). Every problem names the file and line
(:class:`ZonePolicyError`). :func:`role_vars` turns a checked policy into the variables of the
``zone_firewall`` role for one host (the catalog's FW-* parameters); the ``kijun_zones`` vars
plugin provides them to Ansible, so the role and the audits read the same values.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kijun import paths
from kijun.catalog_source import Loc, Problem, SourceFile, check_schema, load_validator, read_yaml

__all__ = [
    "ANY",
    "POLICY_FILE",
    "ZONES",
    "Endpoint",
    "Flow",
    "InventoryHost",
    "Service",
    "Zone",
    "ZonePolicy",
    "ZonePolicyError",
    "check_inventory",
    "load",
    "policy_path",
    "read_policy",
    "role_vars",
]

POLICY_FILE = "zones.yml"
ZONES = ("mynumber", "lgwan", "internet")  # the three zones of the national guideline
ANY = "any"  # outside networks: only as the far side of a public server's flow
_ANY_SPELLINGS = {"any", "all", "*", "0.0.0.0/0", "0/0"}
PROTOCOLS = ("tcp", "udp")
EVERYWHERE = "0.0.0.0/0"  # how 'any' appears in the role's variables
OUTSIDE = "outside"  # the zone of 'any' in the gateway's flows
# The admin hosts (management.admin_hosts) as the source of a flow over the management network,
# e.g. the control node's live audit probes (the SMTP relay probes of ML-01).
ADMIN = "admin_hosts"

IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address


class ZonePolicyError(ValueError):
    """The zone policy is refused; ``problems`` lists everything found, by file and line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (str(p.file), p.line, p.message))
        super().__init__("\n".join(map(str, self.problems)))


@dataclass(frozen=True)
class Zone:
    name: str
    networks: tuple[IPv4Net, ...]
    title: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """One side of a flow: a host of the inventory, a zone, or ``any`` (outside networks)."""

    kind: str  # "host" | "zone" | "any" | "admin_hosts"
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Service:
    """What hosts offer: ``on`` names hosts or groups (e.g. the function group ntp_servers)."""

    name: str
    on: tuple[str, ...]
    proto: str
    port: int
    line: int = 0


@dataclass(frozen=True)
class Flow:
    """An allowed flow (特定通信 when it crosses zones)."""

    name: str
    source: Endpoint
    destination: Endpoint
    proto: str
    port: int
    purpose: str
    clause: str
    line: int = 0
    over: str = "zones"  # "zones" | "management"


@dataclass(frozen=True)
class ZonePolicy:
    path: Path
    zones: Mapping[str, Zone]
    management_networks: tuple[IPv4Net, ...]
    admin_hosts: tuple[IPv4Addr, ...]
    services: tuple[Service, ...] = ()
    flows: tuple[Flow, ...] = ()
    sanitising_hosts: tuple[str, ...] = ()
    public_servers: tuple[str, ...] = ()
    external_interface: str = ""
    source: SourceFile | None = field(default=None, compare=False, repr=False)

    def problem(self, loc: Loc, message: str) -> Problem:
        if self.source is None:
            return Problem(self.path, 0, message)
        return self.source.problem(loc, message)


@dataclass(frozen=True)
class InventoryHost:
    """A host as the zone policy sees it: its groups and its address(es) in the zones."""

    name: str
    groups: frozenset[str]
    address: IPv4Addr | None = None  # kijun_zone_address
    legs: tuple[tuple[str, IPv4Addr], ...] = ()  # kijun_zone_addresses (a zone gateway)
    management_address: IPv4Addr | None = None  # kijun_management_address, else ansible_host

    @property
    def zones(self) -> tuple[str, ...]:
        return tuple(sorted(g.removeprefix("zone_") for g in self.groups if g.startswith("zone_")))

    @property
    def zone(self) -> str | None:
        zones = self.zones
        return zones[0] if len(zones) == 1 else None

    @classmethod
    def of(cls, name: str, groups: Iterable[str], hostvars: Mapping[str, Any]) -> InventoryHost:
        """From inventory variables; unusable addresses are left out (and refused later when
        a flow needs them)."""
        address = _address(hostvars.get("kijun_zone_address"))
        management = _address(
            hostvars.get("kijun_management_address", hostvars.get("ansible_host"))
        )
        raw_legs = hostvars.get("kijun_zone_addresses")
        legs: dict[str, IPv4Addr] = {}
        if isinstance(raw_legs, Mapping):
            for zone, value in raw_legs.items():
                leg = _address(value)
                if leg is not None:
                    legs[str(zone)] = leg
        return cls(name, frozenset(groups), address, tuple(sorted(legs.items())), management)


def _address(value: Any) -> IPv4Addr | None:
    try:
        return ipaddress.IPv4Address(str(value)) if value is not None else None
    except ValueError:
        return None


def policy_path(inventory: Path) -> Path:
    """Where an inventory (a directory, or a file in it) keeps its zone policy."""
    folder = inventory if inventory.is_dir() else inventory.parent
    return folder / POLICY_FILE


# --- reading the file -----------------------------------------------------------------------


def read_policy(path: Path, schema: Path | None = None) -> ZonePolicy:
    """Read and check ``path`` on its own (no inventory); refuse it with every problem found."""
    policy, problems = _read(path, schema)
    if policy is None or problems:
        raise ZonePolicyError(problems)
    return policy


def _read(path: Path, schema: Path | None) -> tuple[ZonePolicy | None, list[Problem]]:
    """The sound part of the policy (None if nothing can be read) and every problem found."""
    schema = schema or paths.catalog_dir() / "schema" / "zones.schema.json"
    validator, problems = load_validator(schema)
    if validator is None:
        return None, problems
    source, problems = read_yaml(path)
    if source is None:
        return None, problems
    if source.data is None:
        return None, [Problem(path, 1, "the file is empty; declare zones, management and flows")]
    check = check_schema(source, validator)
    problems += check.problems
    # What is sound is read even when the schema found problems: one run shows them all.
    return _Reader(source, check.valid, problems).policy(), problems


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class _Reader:
    def __init__(self, source: SourceFile, valid: Any, problems: list[Problem]) -> None:
        self.source = source
        self.valid = valid
        self.problems = problems
        self.data: dict[str, Any] = source.data if isinstance(source.data, dict) else {}

    def fail(self, loc: Loc, message: str) -> None:
        self.problems.append(self.source.problem(loc, message))

    def networks(self, loc: Loc, raw: Any) -> list[tuple[IPv4Net, Loc]]:
        """The valid networks of a list, each with its location."""
        out = []
        for i, text in enumerate(raw if isinstance(raw, list) else []):
            if not isinstance(text, str):
                continue
            if text.strip().lower() in _ANY_SPELLINGS:
                self.fail((*loc, i), f"'{text}' is every address; write the zone's own networks")
                continue
            try:
                out.append((ipaddress.IPv4Network(text), (*loc, i)))
            except ipaddress.NetmaskValueError as err:
                self.fail((*loc, i), f"{text} is not a network ({err})")
            except ValueError as err:
                if "host bits" in str(err):
                    fixed = ipaddress.IPv4Network(text, strict=False)
                    self.fail((*loc, i), f"{text} has host bits set; write {fixed}")
                else:
                    self.fail((*loc, i), f"{text} is not an IPv4 network; write e.g. 10.1.0.0/24")
        return out

    def policy(self) -> ZonePolicy:
        d = self.data
        zones: dict[str, Zone] = {}
        located: list[tuple[str, IPv4Net, Loc]] = []  # every network, its owner and location
        raw_zones = _mapping(d.get("zones"))
        for name, raw in raw_zones.items():
            if name not in ZONES or not isinstance(raw, dict):
                continue
            nets = self.networks(("zones", name, "networks"), raw.get("networks"))
            located += [(f"zone {name}", net, loc) for net, loc in nets]
            title = raw.get("title") if isinstance(raw.get("title"), str) else None
            zones[name] = Zone(name, tuple(net for net, _ in nets), title)
        mgmt = _mapping(d.get("management"))
        mgmt_located = self.networks(("management", "networks"), mgmt.get("networks"))
        located += [("management", net, loc) for net, loc in mgmt_located]
        mgmt_nets = tuple(net for net, _ in mgmt_located)
        admins = self.admin_hosts(mgmt, mgmt_nets)
        self.overlaps(located)
        services = self.services(d.get("services"))
        flows = self.flows(d.get("flows"), zones)
        names = {
            key: tuple(v for v in d.get(key, []) if isinstance(v, str))
            if isinstance(d.get(key), list)
            else ()
            for key in ("sanitising_hosts", "public_servers")
        }
        external = d.get("external_interface")
        policy = ZonePolicy(
            path=self.source.path,
            zones=zones,
            management_networks=mgmt_nets,
            admin_hosts=admins,
            services=services,
            flows=flows,
            sanitising_hosts=names["sanitising_hosts"],
            public_servers=names["public_servers"],
            external_interface=external if isinstance(external, str) else "",
            source=self.source,
        )
        if any(ANY in (f.source.kind, f.destination.kind) for f in flows) and not external:
            first = next(f for f in flows if ANY in (f.source.kind, f.destination.kind))
            self.fail(
                ("flows", flows.index(first)),
                f"flow {first.name} uses 'any' (outside networks) but no external_interface "
                "is declared; declare the zone gateway's interface towards outside networks",
            )
        return policy

    def admin_hosts(self, mgmt: dict[str, Any], nets: tuple[IPv4Net, ...]) -> tuple[IPv4Addr, ...]:
        out = []
        raw = mgmt.get("admin_hosts")
        for i, text in enumerate(raw if isinstance(raw, list) else []):
            if not isinstance(text, str):
                continue
            loc: Loc = ("management", "admin_hosts", i)
            if text.strip().lower() in _ANY_SPELLINGS or "/" in text:
                self.fail(
                    loc,
                    f"'{text}' is not one host: SSH must be pinned to the admin hosts' "
                    "own addresses (FW-03); write each admin host's address",
                )
                continue
            try:
                addr = ipaddress.IPv4Address(text)
            except ValueError:
                self.fail(loc, f"{text} is not an IPv4 address; write e.g. 10.0.0.5")
                continue
            if nets and not any(addr in n for n in nets):
                shown = ", ".join(map(str, nets))
                self.fail(
                    loc,
                    f"admin host {addr} is not on the management network ({shown}); "
                    "administration is allowed from the management network only (FW-03)",
                )
            out.append(addr)
        return tuple(out)

    def overlaps(self, located: list[tuple[str, IPv4Net, Loc]]) -> None:
        for i, (owner, net, loc) in enumerate(located):
            for other_owner, other, other_loc in located[:i]:
                if net.overlaps(other):
                    line = self.source.line(other_loc)
                    self.fail(
                        loc,
                        f"{net} ({owner}) overlaps {other} ({other_owner}, line {line}); "
                        "zones and the management network must not share addresses",
                    )

    def services(self, raw: Any) -> tuple[Service, ...]:
        out: list[Service] = []
        first: dict[str, int] = {}
        for i, item in enumerate(raw if isinstance(raw, list) else []):
            loc: Loc = ("services", i)
            if not isinstance(item, dict) or not self.valid(loc):
                continue
            if item["name"] in first:
                line = self.source.line(("services", first[item["name"]]))
                self.fail(
                    (*loc, "name"),
                    f"duplicate service name {item['name']} (first at "
                    f"line {line}); name each service once",
                )
                continue
            first[item["name"]] = i
            proto = self.proto(loc, item["proto"], "service")
            port = self.port(loc, item["port"], "service")
            if proto is None or port is None:
                continue
            out.append(Service(item["name"], tuple(item["on"]), proto, port, self.source.line(loc)))
        return tuple(out)

    def proto(self, loc: Loc, value: Any, what: str) -> str | None:
        text = str(value).strip().lower()
        if text in PROTOCOLS:
            return text
        if text in _ANY_SPELLINGS:
            self.fail(
                (*loc, "proto"),
                f"a {what} must pin its protocol: 'any' is not allowed "
                "(FW-06, FW-07); write tcp or udp",
            )
        else:
            self.fail((*loc, "proto"), f"unknown protocol {value!r}; write tcp or udp")
        return None

    def port(self, loc: Loc, value: Any, what: str) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
            return value
        if isinstance(value, str) and value.strip().lower() in _ANY_SPELLINGS:
            self.fail(
                (*loc, "port"),
                f"a {what} must pin its port: 'any' is not allowed "
                "(FW-06, FW-07); write one port number",
            )
        else:
            self.fail((*loc, "port"), f"{value!r} is not a port; write a number from 1 to 65535")
        return None

    def flows(self, raw: Any, zones: Mapping[str, Zone]) -> tuple[Flow, ...]:
        out: list[Flow] = []
        first: dict[str, int] = {}
        for i, item in enumerate(raw if isinstance(raw, list) else []):
            loc: Loc = ("flows", i)
            if not isinstance(item, dict) or not self.valid(loc):
                continue
            if item["name"] in first:
                line = self.source.line(("flows", first[item["name"]]))
                self.fail(
                    (*loc, "name"),
                    f"duplicate flow name {item['name']} (first at line "
                    f"{line}); name each flow once",
                )
                continue
            first[item["name"]] = i
            proto = self.proto(loc, item["proto"], "flow")
            port = self.port(loc, item["port"], "flow")
            ends = [self.endpoint((*loc, side), item[side], zones) for side in ("from", "to")]
            if proto is None or port is None or ends[0] is None or ends[1] is None:
                continue
            purpose = item["purpose"]
            text = purpose if isinstance(purpose, str) else str(purpose.get("ja", ""))
            flow = Flow(
                item["name"],
                ends[0],
                ends[1],
                proto,
                port,
                text,
                item["clause"],
                self.source.line(loc),
                item.get("over", "zones"),
            )
            if self.flow_shape(loc, flow):
                out.append(flow)
        return tuple(out)

    def endpoint(self, loc: Loc, value: str, zones: Mapping[str, Zone]) -> Endpoint | None:
        text = value.strip()
        if text.lower() in _ANY_SPELLINGS:
            return Endpoint(ANY, ANY)
        if text == ADMIN:
            return Endpoint(ADMIN, ADMIN)
        if text.startswith("zone_") and text.removeprefix("zone_") in ZONES:
            text = text.removeprefix("zone_")
        if text in ZONES:
            if text not in zones:
                declared = ", ".join(zones) or "none"
                self.fail(
                    loc,
                    f"unknown zone '{text}': zones.yml declares {declared}; "
                    "declare it under zones or name a declared zone",
                )
                return None
            return Endpoint("zone", text)
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            return Endpoint("host", text)  # checked against the inventory later
        self.fail(
            loc,
            f"'{text}' is an address; name the host (from the inventory) or the zone, "
            "so that the flow follows the host's declared address",
        )
        return None

    def flow_shape(self, loc: Loc, flow: Flow) -> bool:
        """What the file alone says about a flow's endpoints; True when it is sound."""
        src, dst = flow.source, flow.destination
        if src.kind == ANY and dst.kind == ANY:
            self.fail(loc, f"flow {flow.name} is from any to any; pin its source and destination")
            return False
        if src == dst:
            self.fail(
                loc,
                f"flow {flow.name} goes from {src} to itself; a flow connects two "
                "different hosts or zones",
            )
            return False
        if src.kind == "zone" and dst.kind == "zone":
            self.fail(
                (*loc, "to"),
                f"flow {flow.name} is from zone {src} to zone {dst}; a flow "
                "between zones (特定通信) must name its destination host (FW-06)",
            )
            return False
        if dst.kind == "zone" and src.kind == ANY:
            self.fail(
                (*loc, "to"),
                f"flow {flow.name} is from any to zone {dst}; only a declared "
                "public server may be reached from outside networks (FW-12)",
            )
            return False
        if src.kind == "zone" and dst.kind == ANY:
            self.fail(
                (*loc, "from"),
                f"flow {flow.name} lets zone {src} reach any address; "
                "only hosts of the internet zone may reach outside networks, each named "
                "(FW-12)",
            )
            return False
        if {src.name, dst.name} == {"mynumber", "internet"}:
            self.fail(
                loc,
                f"flow {flow.name} connects the individual-number zone with the "
                "internet zone; they never communicate (FW-09, 三層の対策)",
            )
            return False
        if dst.kind == ADMIN:
            self.fail(
                (*loc, "to"),
                f"flow {flow.name} goes to the admin hosts; they are only ever a flow's source "
                "(SSH to the hosts is always allowed from them, FW-03)",
            )
            return False
        if src.kind == ADMIN and flow.over != "management":
            self.fail(
                (*loc, "over"),
                f"flow {flow.name} comes from the admin hosts, which are on the management "
                "network: add over: management",
            )
            return False
        if flow.over == "management" and (src.kind not in ("host", ADMIN) or dst.kind != "host"):
            self.fail(
                (*loc, "over"),
                f"flow {flow.name} goes over the management network, "
                "where both ends must be named hosts (their management addresses) "
                "or the source the admin hosts",
            )
            return False
        return True


# --- checking against the inventory ---------------------------------------------------------


def check_inventory(policy: ZonePolicy, hosts: Mapping[str, InventoryHost]) -> None:
    """Refuse the policy if it does not fit the inventory ``hosts``; every problem is listed."""
    problems: list[Problem] = []
    names = sorted(hosts)
    groups = sorted({g for h in hosts.values() for g in h.groups})
    for member in hosts.values():
        problems += _host_problems(policy, member)
    for key in ("sanitising_hosts", "public_servers"):
        for i, name in enumerate(getattr(policy, key)):
            loc: Loc = (key, i)
            host = hosts.get(name)
            if host is None:
                problems.append(policy.problem(loc, _unknown(name, "host", names)))
            elif key == "public_servers" and host.zone != "internet":
                problems.append(
                    policy.problem(
                        loc,
                        f"{name} is not in the internet zone; only "
                        "its hosts can be public servers (FW-12)",
                    )
                )
            elif key == "sanitising_hosts" and host.zone not in ("lgwan", "internet"):
                problems.append(
                    policy.problem(
                        loc,
                        f"{name} is in zone {host.zone}; sanitising "
                        "hosts relay between the internet and LGWAN zones (FW-08)",
                    )
                )
    for i, service in enumerate(policy.services):
        for j, target in enumerate(service.on):
            if target not in hosts and target not in groups:
                problems.append(
                    policy.problem(
                        ("services", i, "on", j), _unknown(target, "host or group", names + groups)
                    )
                )
    for flow in policy.flows:
        problems += _flow_problems(policy, hosts, flow)
    if problems:
        raise ZonePolicyError(problems)


def _flow_index(policy: ZonePolicy, flow: Flow) -> int:
    """The flow's index in the file (flows the file refused are not in the policy)."""
    raw = policy.source.data.get("flows", []) if policy.source is not None else []
    for i, item in enumerate(raw):
        if isinstance(item, dict) and item.get("name") == flow.name:
            return i
    return 0


def _host_problems(policy: ZonePolicy, host: InventoryHost) -> list[Problem]:
    problems = []
    zones = host.zones
    if len(zones) > 1:
        problems.append(
            policy.problem(
                ("zones",),
                f"host {host.name} is in the groups of "
                f"several zones ({', '.join('zone_' + z for z in zones)}); a host belongs "
                "to one zone",
            )
        )
    for zone in zones:
        if zone not in policy.zones:
            problems.append(
                policy.problem(
                    ("zones",),
                    f"host {host.name} is in group "
                    f"zone_{zone} but zones.yml declares no zone {zone}; declare it",
                )
            )
    own = host.zone
    if own is not None and own in policy.zones and host.address is not None:
        nets = policy.zones[own].networks
        if not any(host.address in n for n in nets):
            problems.append(
                policy.problem(
                    ("zones", own, "networks"),
                    f"host {host.name}'s "
                    f"kijun_zone_address {host.address} is outside zone {own} "
                    f"({', '.join(map(str, nets))}); correct the address or the zone",
                )
            )
    return problems


def _unknown(name: str, kind: str, known: list[str]) -> str:
    message = f"unknown {kind} '{name}'"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"{message}; did you mean '{close[0]}'?"
    return f"{message}; the inventory has: {', '.join(known[:12])}" + (
        ", ..." if len(known) > 12 else ""
    )


def _flow_problems(
    policy: ZonePolicy, hosts: Mapping[str, InventoryHost], flow: Flow
) -> list[Problem]:
    loc: Loc = ("flows", _flow_index(policy, flow))
    problems: list[Problem] = []
    names = sorted(hosts)
    for side, end in (("from", flow.source), ("to", flow.destination)):
        if end.kind != "host":
            continue
        host = hosts.get(end.name)
        if host is None:
            known = names + list(policy.zones)
            problems.append(policy.problem((*loc, side), _unknown(end.name, "host or zone", known)))
        elif host.zone is None:
            problems.append(
                policy.problem(
                    (*loc, side),
                    f"host {end.name} is in no zone group; "
                    "flows connect hosts of the zones (add it to a zone_<zone> group)",
                )
            )
        elif flow.over == "management":
            addr = host.management_address
            if addr is None or not any(addr in n for n in policy.management_networks):
                problems.append(
                    policy.problem(
                        (*loc, side),
                        f"host {end.name} has no address "
                        f"on the management network (found {addr}); set "
                        "kijun_management_address (or ansible_host) in the inventory",
                    )
                )
        elif host.address is None:
            problems.append(
                policy.problem(
                    (*loc, side),
                    f"host {end.name} has no "
                    "kijun_zone_address in the inventory; set its address in its zone",
                )
            )
    if problems:
        return problems
    src_zone = _zone_of(flow.source, hosts)
    dst_zone = _zone_of(flow.destination, hosts)
    src, dst = flow.source, flow.destination
    if {src_zone, dst_zone} == {"mynumber", "internet"}:
        problems.append(
            policy.problem(
                loc,
                f"flow {flow.name} connects the individual-number "
                "zone with the internet zone; they never communicate (FW-09, 三層の対策)",
            )
        )
    if dst.kind == "zone" and src_zone != dst_zone:
        problems.append(
            policy.problem(
                (*loc, "to"),
                f"flow {flow.name} goes from zone "
                f"{src_zone} into zone {dst}; a flow between zones (特定通信) must name "
                "its destination host (FW-06)",
            )
        )
    if src.kind == ANY and (dst.name not in policy.public_servers):
        problems.append(
            policy.problem(
                (*loc, "from"),
                f"'any' is not allowed here: flow "
                f"{flow.name} would open {dst} to outside networks, but only the "
                "declared public_servers may be reached from outside (FW-12); pin the "
                "source",
            )
        )
    if dst.kind == ANY and src_zone != "internet":
        problems.append(
            policy.problem(
                (*loc, "to"),
                f"'any' is not allowed here: flow "
                f"{flow.name} would let {src} (zone {src_zone}) reach outside networks; "
                "only hosts of the internet zone may (FW-12); pin the destination",
            )
        )
    if src_zone == "internet" and dst_zone == "lgwan" and flow.over == "zones":
        via = {src.name, dst.name} & set(policy.sanitising_hosts)
        if not via:
            problems.append(
                policy.problem(
                    loc,
                    f"flow {flow.name} enters the LGWAN zone from "
                    "the internet zone without a sanitising host (無害化) at either end; "
                    "route it through one of sanitising_hosts (FW-08)",
                )
            )
    if dst.kind != ANY and not problems:
        targets = _members(flow.destination, hosts)
        offering = [h for h in targets if _serves(policy, hosts[h], flow.proto, flow.port)]
        if dst.kind == "host" and not offering:
            problems.append(
                policy.problem(
                    (*loc, "port"),
                    f"{dst} offers no service "
                    f"{flow.proto}/{flow.port}; declare it under services (on: "
                    f"[{dst}] or one of its function groups) or correct the port",
                )
            )
        elif dst.kind == "zone" and not offering:
            problems.append(
                policy.problem(
                    (*loc, "port"),
                    f"no host of zone {dst} offers "
                    f"{flow.proto}/{flow.port}; declare the service under services",
                )
            )
    return problems


def _zone_of(end: Endpoint, hosts: Mapping[str, InventoryHost]) -> str:
    if end.kind == "zone":
        return end.name
    if end.kind == "host":
        return hosts[end.name].zone or ""
    if end.kind == ADMIN:
        return "management"
    return OUTSIDE


def _members(end: Endpoint, hosts: Mapping[str, InventoryHost]) -> list[str]:
    if end.kind == "host":
        return [end.name]
    if end.kind == "zone":
        return sorted(h.name for h in hosts.values() if h.zone == end.name)
    return []


def _serves(policy: ZonePolicy, host: InventoryHost, proto: str, port: int) -> bool:
    return any(
        s.proto == proto and s.port == port and (host.name in s.on or host.groups & set(s.on))
        for s in policy.services
    )


def load(path: Path, hosts: Mapping[str, InventoryHost], schema: Path | None = None) -> ZonePolicy:
    """Read ``path`` and check it against the inventory ``hosts``; refuse it with every
    problem of the file and of its fit to the inventory."""
    policy, problems = _read(path, schema)
    if policy is None:
        raise ZonePolicyError(problems)
    try:
        check_inventory(policy, hosts)
    except ZonePolicyError as err:
        problems += err.problems
    if problems:
        raise ZonePolicyError(problems)
    return policy


# --- the role's variables -------------------------------------------------------------------


def _addresses(
    end: Endpoint, policy: ZonePolicy, hosts: Mapping[str, InventoryHost], over: str = "zones"
) -> list[str]:
    """The addresses of an endpoint as nftables matches them: ``a.b.c.d`` or ``net/len``."""
    if end.kind == ANY:
        return [EVERYWHERE]
    if end.kind == "zone":
        return [str(n) for n in policy.zones[end.name].networks]
    if end.kind == ADMIN:
        return [str(a) for a in policy.admin_hosts]
    host = hosts[end.name]
    return [str(host.management_address if over == "management" else host.address)]


def _covers(end: Endpoint, host: InventoryHost) -> bool:
    return (end.kind == "host" and end.name == host.name) or (
        end.kind == "zone" and end.name == host.zone
    )


def _sorted_addresses(values: Iterable[str]) -> list[str]:
    """Addresses and networks in address order, those inside another left out (nftables
    refuses overlapping elements in one set); a single address is written without /32."""
    nets = ipaddress.collapse_addresses(ipaddress.IPv4Network(v, strict=False) for v in values)
    return [str(n.network_address) if n.prefixlen == 32 else str(n) for n in nets]


def role_vars(policy: ZonePolicy, hosts: Mapping[str, InventoryHost], name: str) -> dict[str, Any]:
    """The ``zone_firewall`` variables of host ``name`` (the catalog's FW-* parameters).

    * every host: ``zone_firewall_admin_sources``, ``zone_firewall_management_networks``,
      ``zone_firewall_zone_networks``, ``zone_firewall_services`` (what it offers, each with
      the sources of the flows to it; none for a service no flow reaches),
      ``zone_firewall_output_allowed`` (the flows from it; used in the individual-number zone);
    * zone gateways (the ``gateways`` group): ``zone_firewall_flows`` (the flows between zones),
      ``zone_firewall_sanitising_hosts``, ``zone_firewall_public_servers`` (addresses) and
      ``zone_firewall_external_interface``.
    """
    host = hosts[name]
    services: list[dict[str, Any]] = []
    for service in policy.services:
        if not (name in service.on or host.groups & set(service.on)):
            continue
        sources: list[str] = []
        for flow in policy.flows:
            if (flow.proto, flow.port) == (service.proto, service.port) and _covers(
                flow.destination, host
            ):
                sources += _addresses(flow.source, policy, hosts, flow.over)
        services.append(
            {
                "name": service.name,
                "proto": service.proto,
                "port": service.port,
                "sources": _sorted_addresses(sources),
            }
        )
    output = []
    for flow in policy.flows:
        if not _covers(flow.source, host) or flow.destination.kind == ANY:
            continue
        if flow.destination.kind == "host" and flow.destination.name == name:
            continue  # to itself (a zone's flow to one of its hosts): not outgoing
        for daddr in _addresses(flow.destination, policy, hosts, flow.over):
            output.append(
                {"name": flow.name, "daddr": daddr, "proto": flow.proto, "dport": flow.port}
            )
    gateway = "gateways" in host.groups
    flows = []
    if gateway:
        for flow in policy.flows:
            src_zone, dst_zone = _zone_of(flow.source, hosts), _zone_of(flow.destination, hosts)
            if src_zone == dst_zone or flow.over == "management":
                continue  # within a zone or over the management network: not through the gateway
            for saddr in _addresses(flow.source, policy, hosts):
                for daddr in _addresses(flow.destination, policy, hosts):
                    flows.append(
                        {
                            "name": flow.name,
                            "from_zone": src_zone,
                            "to_zone": dst_zone,
                            "saddr": saddr,
                            "daddr": daddr,
                            "proto": flow.proto,
                            "dport": flow.port,
                        }
                    )

    def addresses_of(names: Iterable[str]) -> list[str]:
        return _sorted_addresses(str(hosts[n].address) for n in names if hosts[n].address)

    return {
        "zone_firewall_admin_sources": [str(a) for a in policy.admin_hosts],
        "zone_firewall_management_networks": [str(n) for n in policy.management_networks],
        "zone_firewall_zone_networks": {
            zone: [str(n) for n in z.networks] for zone, z in policy.zones.items()
        },
        "zone_firewall_services": services,
        "zone_firewall_output_allowed": output,
        "zone_firewall_flows": flows,
        "zone_firewall_sanitising_hosts": addresses_of(policy.sanitising_hosts) if gateway else [],
        "zone_firewall_public_servers": addresses_of(policy.public_servers) if gateway else [],
        "zone_firewall_external_interface": policy.external_interface if gateway else "",
    }


def inventory_hosts(inventory: Path) -> dict[str, InventoryHost]:
    """The hosts of an Ansible inventory (file or directory) as the zone policy sees them: their
    groups and the addresses the inventory gives them (what the kijun_zones plugin reads)."""
    import os

    os.environ.setdefault("ANSIBLE_CONFIG", str(paths.repo_root() / "ansible.cfg"))
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    manager = InventoryManager(loader=DataLoader(), sources=[str(inventory)])
    return {
        h.name: InventoryHost.of(h.name, (g.name for g in h.get_groups()), h.vars)
        for h in manager.get_hosts()
    }


def load_inventory(inventory: Path) -> tuple[ZonePolicy, dict[str, InventoryHost]]:
    """The zone policy of an inventory (``<inventory>/zones.yml``), checked against it."""
    path = policy_path(inventory)
    if not path.is_file():
        raise ZonePolicyError(
            [Problem(path, 0, "no zone policy here; write one (see inventories/ZONES.md)")]
        )
    hosts = inventory_hosts(inventory)
    return load(path, hosts), hosts
