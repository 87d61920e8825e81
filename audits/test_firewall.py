"""Zone separation and firewall (FW-01..FW-12): nftables on every host and on the zone gateway.

What is read (one collection per host, see ``COLLECT``); the outputs a check reads are its
evidence, so the ruleset as nft prints it (``nft -j list ruleset``, with counters) is in the
evidence of every check that judges it:

* the ruleset in force (JSON, and without counters as text), nftables.conf, its checksum and
  the role's record of what it last loaded from it (FW-05);
* systemd's view of nftables and of other firewall managers, leftover legacy iptables rules;
* the listening sockets (FW-04), the routing table (FW-09) and the interfaces (FW-11).

The checks compare the ruleset by meaning (:mod:`kijun.ruleset` reads each rule into what it
matches and does) with the values the zone_firewall role applied: the host's variables, which an
inventory with a zone policy gets from ``zones.yml`` (inventories/ZONES.md). FW-09's
``other_zones_unreachable`` is behavioural: at the time of the check, the host of the
individual-number zone tries real TCP connections to the hosts of the other zones, on its
declared ports and on a sample of undeclared ones (read-only: a connection attempt changes
nothing on either side).
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from kijun import ruleset, unitfile
from kijun.audit_plugin import STATE
from kijun.ruleset import Packet, Rule

RECORD_DIR = "/var/lib/kijun/zone_firewall"
CONF = "/etc/nftables.conf"
TABLE = "kijun"
OTHER_MANAGERS = ("ufw", "firewalld", "netfilter-persistent")
LEGACY = ("iptables-legacy", "ip6tables-legacy")
# Addresses no organisation uses (RFC 5737): where "anyone" comes from in the checks.
STRANGERS = ("192.0.2.1", "198.51.100.1", "203.0.113.1")
# Undeclared TCP ports tried besides every port the policy declares anywhere (FW-09 probes).
SAMPLE_PORTS = (21, 22, 23, 25, 80, 135, 139, 443, 445, 514, 3389, 8080)

COLLECT = {
    "firewall/nft_ruleset": "nft -j list ruleset",
    "firewall/nft_ruleset_text": "nft -s list ruleset",
    "firewall/nft_loaded_record": f"cat {RECORD_DIR}/ruleset.nft",
    "firewall/nftables_conf": f"cat {CONF}",
    "firewall/nftables_conf_checksums": (
        f"echo \"persisted $(sha256sum < {CONF} | cut -d' ' -f1)\"; "
        f'echo "loaded_from $(cat {RECORD_DIR}/nftables.conf.sha256)"'
    ),
    "firewall/nftables_conf_stat": f"stat -c '%a %U %G' {CONF}",
    "firewall/nftables_enabled": "systemctl is-enabled nftables.service",
    "firewall/nftables_active": "systemctl is-active nftables.service",
    # The unit and its drop-ins, each after a "# /path" header: what loads the ruleset (FW-05).
    "firewall/nftables_unit": "systemctl cat nftables.service",
    "firewall/other_managers": (
        f"for u in {' '.join(OTHER_MANAGERS)}; do "
        'echo "unit $u $(systemctl is-active "$u.service") $(systemctl is-enabled "$u.service")";'
        f' done; for t in {" ".join(LEGACY)}; do command -v "$t" >/dev/null || continue; '
        'for tb in filter nat mangle raw; do "$t" -t "$tb" -S 2>/dev/null | '
        "grep -Ev -- ' -P [A-Z]+ ACCEPT$' | sed \"s/^/legacy $t $tb /\"; done; done"
    ),
    "firewall/listening": "ss -H -lntu",
    "firewall/routes": "ip -j route show table main",
    "firewall/interfaces": "ip -j -4 addr show",
}


# --- what the host has --------------------------------------------------------------------


def nft(snapshot: Any) -> ruleset.Ruleset | None:
    """The ruleset in force, or None when nft did not answer with one."""
    out = snapshot["firewall/nft_ruleset"]
    if out.rc != 0:
        return None
    try:
        return ruleset.parse(out.stdout)
    except ruleset.RulesetError:
        return None


NO_RULESET = "nft printed no ruleset"


def chain_of(rs: ruleset.Ruleset | None, hook: str) -> ruleset.Chain | None:
    """The role's base chain of ``hook`` (table inet kijun)."""
    if rs is None:
        return None
    return next((c for c in rs.base_chains(hook) if c.table == TABLE), None)


def policies(rs: ruleset.Ruleset | None, hook: str) -> dict[str, str] | str:
    """Every base chain of a hook with its policy, as found."""
    if rs is None:
        return NO_RULESET
    return {f"{c.family} {c.table} {c.name}": c.policy or "accept" for c in rs.base_chains(hook)}


def drops_by_default(rs: ruleset.Ruleset | None, hook: str) -> bool:
    """The hook drops what no rule accepts: the role's chain has policy drop (other base
    chains of the hook cannot accept what it drops)."""
    chain = chain_of(rs, hook)
    return chain is not None and chain.policy == "drop"


def accepts(rs: ruleset.Ruleset | None, hook: str) -> list[Rule]:
    """The hook's accepting rules, apart from loopback and replies to accepted traffic."""
    if rs is None:
        return []
    return [r for r in rs.rules(hook) if r.accepts and not r.is_loopback and not r.is_replies]


def nets(values: Iterable[str]) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(v, strict=False) for v in values]


def first_address(network: str) -> str:
    n = ipaddress.IPv4Network(network, strict=False)
    return str(n.network_address if n.prefixlen >= 31 else n.network_address + 1)


def rule_within(rule: Rule, proto: str, port: int, sources: list[str]) -> bool:
    """Whether ``rule`` accepts nothing beyond proto/port from ``sources``."""
    return (
        rule.protos == frozenset({proto})
        and rule.dports == frozenset({port})
        and not rule.dport_ranges
        and rule.saddr is not None
        and rule.saddr.within(nets(sources))
        and rule.iif is None
        and not rule.unknown
    )


def rule_covers(rule: Rule, proto: str, port: int, sources: list[str]) -> bool:
    """Whether ``rule`` accepts proto/port from every one of ``sources``."""
    if rule.protos is not None and proto not in rule.protos:
        return False
    if not rule.port_matches(port) or rule.iif is not None:
        return False
    if rule.saddr is None:
        return True
    return all(
        rule.saddr.contains(n.network_address) and rule.saddr.contains(n.broadcast_address)
        for n in nets(sources)
    )


def is_gateway(hostvars: Any) -> bool:
    return "gateways" in hostvars.groups


def only_individual_number_hosts(hostvars: Any) -> None:
    if "zone_mynumber" not in hostvars.groups:
        pytest.skip(
            "not_applicable: only hosts of the individual-number zone (the zone gateway, in no "
            "zone group, forwards between the zones)"
        )


def declared_inputs(expected: dict[str, Any]) -> list[dict[str, Any]]:
    """What the input chain may accept: SSH from the admin hosts and each declared service
    from its sources (a service without sources is accepted from nobody)."""
    items = [
        {
            "name": "ssh",
            "proto": "tcp",
            "port": int(expected["zone_firewall_ssh_port"]),
            "sources": list(expected["zone_firewall_admin_sources"]),
        },
    ]
    for s in expected["zone_firewall_services"]:
        if s.get("sources"):
            items.append(
                {
                    "name": s["name"],
                    "proto": s["proto"],
                    "port": int(s["port"]),
                    "sources": list(s["sources"]),
                }
            )
    return items


def described(rules: Iterable[Rule]) -> list[str]:
    return [f"{r.chain}: {r}" for r in rules]


# --- FW-01 -----------------------------------------------------------------------------------


@pytest.mark.control("FW-01")
def test_nft_input_policy_drop(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    audit.expect(
        drops_by_default(rs, "input"),
        expected={f"inet {TABLE} input": "drop"},
        observed=policies(rs, "input"),
        message="the input chain's policy: what no rule accepts is dropped",
    )


@pytest.mark.control("FW-01")
def test_nft_input_loopback_accepted(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    chain = chain_of(rs, "input")
    verdict = (
        rs.verdict("input", Packet("127.0.0.1", "127.0.0.1", "tcp", 5, iifname="lo"))[0]
        if rs
        else NO_RULESET
    )
    audit.expect(
        chain is not None
        and any(r.iif == "lo" and r.accepts for r in chain.rules)
        and verdict == "accept",
        expected="iif lo accept",
        observed={
            "loopback verdict": verdict,
            "rules": described(chain.rules) if chain else NO_RULESET,
        },
    )


@pytest.mark.control("FW-01")
def test_nft_input_established_accepted(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    chain = chain_of(rs, "input")
    reply = Packet(STRANGERS[0], "198.18.255.1", "tcp", 40000, ct_state="established")
    verdict = rs.verdict("input", reply)[0] if rs else NO_RULESET
    audit.expect(
        chain is not None
        and any(r.is_replies and r.accepts for r in chain.rules)
        and verdict == "accept",
        expected="ct state established,related accept",
        observed={
            "reply verdict": verdict,
            "rules": described(chain.rules) if chain else NO_RULESET,
        },
        message="replies to accepted connections (the admin's session among them) pass",
    )


# --- FW-02 -----------------------------------------------------------------------------------


@pytest.mark.control("FW-02")
def test_nft_output_policy_drop(snapshot, expected, audit, hostvars) -> None:
    only_individual_number_hosts(hostvars)
    rs = nft(snapshot)
    audit.expect(
        drops_by_default(rs, "output"),
        expected={f"inet {TABLE} output": "drop"},
        observed=policies(rs, "output"),
        message="a host of the individual-number zone sends nothing undeclared",
    )


@pytest.mark.control("FW-02")
def test_nft_output_rules_declared_only(snapshot, expected, audit, hostvars) -> None:
    only_individual_number_hosts(hostvars)
    rs = nft(snapshot)
    declared = expected["zone_firewall_output_allowed"]
    admins = nets(expected["zone_firewall_admin_sources"])
    ssh = frozenset({int(expected["zone_firewall_ssh_port"])})
    # SSH replies to the admin hosts pass even for a session older than the ruleset (whose
    # packets the connection tracking first sees as new): never a new connection.
    found = [
        r
        for r in accepts(rs, "output")
        if not (
            r.sports == ssh
            and r.protos == frozenset({"tcp"})
            and r.dports is None
            and r.daddr is not None
            and r.daddr.within(admins)
        )
    ]
    undeclared = [
        r
        for r in found
        if not any(
            r.protos == frozenset({d["proto"]})
            and r.dports == frozenset({int(d["dport"])})
            and r.daddr is not None
            and r.daddr.within(nets([d["daddr"]]))
            and r.saddr is None
            and r.oif is None
            and not r.unknown
            for d in declared
        )
    ]
    missing = []
    for d in declared:
        packet = Packet("0.0.0.1", first_address(d["daddr"]), d["proto"], int(d["dport"]))
        if rs is None or rs.verdict("output", packet)[0] != "accept":
            missing.append(d["name"])
    audit.expect(
        rs is not None and not undeclared and not missing,
        expected=[f"{d['name']}: to {d['daddr']} {d['proto']}/{d['dport']}" for d in declared],
        observed={
            "accepted": described(found),
            "undeclared": described(undeclared),
            "declared but not accepted": missing,
        }
        if rs
        else NO_RULESET,
    )


# --- FW-03 -----------------------------------------------------------------------------------


def ssh_rules(rs: ruleset.Ruleset | None, port: int) -> list[Rule]:
    """The input accepts that SSH can pass (loopback and replies apart)."""
    return [r for r in accepts(rs, "input") if rule_covers(r, "tcp", port, [])]


@pytest.mark.control("FW-03")
def test_ssh_sources_declared_only(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    port = int(expected["zone_firewall_ssh_port"])
    admins = list(expected["zone_firewall_admin_sources"])
    rules = ssh_rules(rs, port)
    wider = [r for r in rules if r.saddr is None or not r.saddr.within(nets(admins))]
    refused = [
        a
        for a in admins
        if rs is None or rs.verdict("input", Packet(a, "0.0.0.1", "tcp", port))[0] != "accept"
    ]
    audit.expect(
        rs is not None and bool(admins) and not wider and not refused,
        expected={"ssh from": admins, "port": port},
        observed={
            "ssh rules": described(rules),
            "wider than the admin hosts": described(wider),
            "admin hosts refused": refused,
        }
        if rs
        else NO_RULESET,
    )


@pytest.mark.control("FW-03")
def test_ssh_not_open_to_any(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    port = int(expected["zone_firewall_ssh_port"])
    verdicts = {
        a: rs.verdict("input", Packet(a, "0.0.0.1", "tcp", port))[0] if rs else NO_RULESET
        for a in STRANGERS
    }
    anyone = [r for r in ssh_rules(rs, port) if r.saddr is None or r.saddr.is_everything]
    audit.expect(
        rs is not None and not anyone and all(v == "drop" for v in verdicts.values()),
        expected={"rules open to anyone": [], **dict.fromkeys(STRANGERS, "drop")},
        observed={"rules open to anyone": described(anyone), **verdicts},
        message=f"SSH (tcp/{port}) from documentation addresses (RFC 5737) must be dropped",
    )


@pytest.mark.control("FW-03")
def test_admin_sources_in_management_networks(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    management = list(expected["zone_firewall_management_networks"])
    port = int(expected["zone_firewall_ssh_port"])
    sources = sorted({str(n) for r in ssh_rules(rs, port) if r.saddr for n in r.saddr.networks})
    outside = [
        s
        for s in sources
        if not any(ipaddress.IPv4Network(s).subnet_of(m) for m in nets(management))
    ]
    declared_outside = [
        a
        for a in expected["zone_firewall_admin_sources"]
        if not any(ipaddress.IPv4Address(a) in m for m in nets(management))
    ]
    audit.expect(
        rs is not None and bool(management) and not outside and not declared_outside,
        expected={"ssh sources within": management},
        observed={"ssh sources in force": sources, "outside": outside + declared_outside},
    )


# --- FW-04 -----------------------------------------------------------------------------------


@pytest.mark.control("FW-04")
def test_nft_input_accepts_declared_only(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    declared = declared_inputs(expected)
    found = accepts(rs, "input")
    undeclared = [
        r
        for r in found
        if not any(rule_within(r, d["proto"], d["port"], d["sources"]) for d in declared)
    ]
    missing = [
        d["name"]
        for d in declared[1:]
        if not any(rule_covers(r, d["proto"], d["port"], d["sources"]) for r in found)
    ]
    open_by_policy = rs is not None and not drops_by_default(rs, "input")
    audit.expect(
        rs is not None and not undeclared and not missing and not open_by_policy,
        expected=[f"{d['name']}: {d['proto']}/{d['port']} from {d['sources']}" for d in declared],
        observed={
            "accepted": described(found),
            "undeclared": described(undeclared),
            "declared but not accepted": missing,
            "input policy": policies(rs, "input"),
        }
        if rs
        else NO_RULESET,
    )


def listeners(snapshot: Any) -> list[tuple[str, int, str]]:
    """(proto, port, address) of every socket listening beyond loopback."""
    out = []
    for line in snapshot.text("firewall/listening").splitlines():
        words = line.split()
        if len(words) < 5:
            continue
        proto, local = words[0], words[4]
        address, _, port = local.rpartition(":")
        address = address.strip("[]").split("%")[0]
        try:
            if address not in ("*", "") and ipaddress.ip_address(address).is_loopback:
                continue
            out.append((proto, int(port), address or "*"))
        except ValueError:
            continue
    return sorted(set(out))


@pytest.mark.control("FW-04")
def test_listening_ports_declared(snapshot, expected, audit) -> None:
    declared = {(s["proto"], int(s["port"])) for s in expected["zone_firewall_services"]}
    declared.add(("tcp", int(expected["zone_firewall_ssh_port"])))
    found = listeners(snapshot)
    undeclared = [f"{p}/{port} on {a}" for p, port, a in found if (p, port) not in declared]
    audit.expect(
        not undeclared,
        expected=sorted(f"{p}/{port}" for p, port in declared),
        observed={
            "listening": [f"{p}/{port} on {a}" for p, port, a in found],
            "undeclared": undeclared,
        },
        message="sockets listening beyond loopback (ss -lntu)",
    )


# --- FW-05 -----------------------------------------------------------------------------------


def ruleset_loaders(snapshot: Any) -> tuple[list[unitfile.Assignment], list[unitfile.Assignment]]:
    """The commands nftables.service runs to load rules (from its unit and drop-ins), and
    those of them that load anything but nftables.conf. An unreadable unit loads nothing."""
    out = snapshot["firewall/nftables_unit"]
    commands = ruleset.unit_commands(out.stdout) if out.rc == 0 else []
    return commands, ruleset.loads_only(commands, CONF)


def loader_source(snapshot: Any) -> str:
    """Where the ruleset in force came from: the first command that loads something else, or
    else the ExecStart that loads nftables.conf (path:line of the unit or drop-in)."""
    commands, bad = ruleset_loaders(snapshot)
    if bad:
        return next((c.source for c in bad if c.source), "")
    return next((c.source for c in commands if c.key == "ExecStart"), "")


@pytest.mark.control("FW-05")
def test_nftables_service_enabled(snapshot, expected, audit) -> None:
    commands, bad = ruleset_loaders(snapshot)
    audit.equal(
        {
            "enabled": snapshot.text("firewall/nftables_enabled").strip(),
            "active": snapshot.text("firewall/nftables_active").strip(),
            "commands loading anything but nftables.conf": [str(c) for c in bad],
        },
        {
            "enabled": "enabled",
            "active": "active",
            "commands loading anything but nftables.conf": [],
        },
        message=f"nftables.service loads {CONF} and nothing else at boot and on reload "
        f"(systemctl cat: {', '.join(str(c) for c in commands) or 'no command'})",
        source=loader_source(snapshot),
    )


@pytest.mark.control("FW-05")
def test_loaded_ruleset_matches_persisted(snapshot, expected, audit) -> None:
    snapshot["firewall/nftables_conf"]  # evidence: the persisted configuration
    live = snapshot.text("firewall/nft_ruleset_text")
    record = snapshot["firewall/nft_loaded_record"]
    sums = dict(
        line.split(" ", 1)
        for line in snapshot.text("firewall/nftables_conf_checksums").splitlines()
        if " " in line
    )
    rs = nft(snapshot)
    tables = [f"{f} {n}" for f, n in rs.tables] if rs else NO_RULESET
    observed = {
        "tables": tables,
        "ruleset in force is the one loaded": record.rc == 0 and live == record.stdout,
        "nftables.conf unchanged since loaded": bool(sums.get("persisted"))
        and sums.get("persisted") == sums.get("loaded_from"),
    }
    audit.expect(
        observed
        == {
            "tables": [f"inet {TABLE}"],
            "ruleset in force is the one loaded": True,
            "nftables.conf unchanged since loaded": True,
        },
        expected={
            "tables": [f"inet {TABLE}"],
            "ruleset in force is the one loaded": True,
            "nftables.conf unchanged since loaded": True,
        },
        observed=observed,
        message=f"the ruleset in force (nft -s list ruleset) against the one the role loaded "
        f"from {CONF} and recorded in {RECORD_DIR}, with the configuration's SHA-256",
        source=loader_source(snapshot),
    )


@pytest.mark.control("FW-05")
def test_nftables_conf_protected(snapshot, expected, audit) -> None:
    words = snapshot.text("firewall/nftables_conf_stat").split()
    mode, owner, group = (words + ["", "", ""])[:3]
    writable = bool(mode) and int(mode, 8) & 0o022 != 0
    audit.expect(
        owner == "root" and group == "root" and bool(mode) and not writable,
        expected={"owner": "root", "group": "root", "writable by group or others": False},
        observed={
            "owner": owner or None,
            "group": group or None,
            "mode": mode or None,
            "writable by group or others": writable if mode else None,
        },
    )


@pytest.mark.control("FW-05")
def test_no_other_firewall_manager(snapshot, expected, audit) -> None:
    running, legacy = [], []
    for line in snapshot.text("firewall/other_managers").splitlines():
        words = line.split()
        if words[:1] == ["unit"] and len(words) >= 4:
            if words[2] in ("active", "activating", "reloading") or words[3] == "enabled":
                running.append(f"{words[1]} ({words[2]}, {words[3]})")
        elif words[:1] == ["legacy"]:
            legacy.append(" ".join(words[1:]))
    audit.equal(
        {"other firewall managers": running, "legacy iptables rules": legacy},
        {"other firewall managers": [], "legacy iptables rules": []},
        message=f"none of {', '.join(OTHER_MANAGERS)} active or enabled; no legacy rules",
    )


# --- FW-06 (zone gateways) ------------------------------------------------------------------


def flow_text(f: dict[str, Any]) -> str:
    return f"{f['name']}: {f['saddr']} -> {f['daddr']} {f['proto']}/{f['dport']}"


def flow_rule_matches(rule: Rule, flow: dict[str, Any], external: str) -> bool:
    """Whether ``rule`` accepts nothing beyond the declared ``flow``."""
    if rule.protos != frozenset({flow["proto"]}) or rule.dports != frozenset({int(flow["dport"])}):
        return False
    if rule.dport_ranges or rule.unknown:
        return False
    for side, iface in (("saddr", rule.iif), ("daddr", rule.oif)):
        match = getattr(rule, side)
        if flow[side] == "0.0.0.0/0":
            if not external or iface != external or match is not None:
                return False
        elif match is None or not match.within(nets([flow[side]])) or iface is not None:
            return False
    return True


def flow_packet(flow: dict[str, Any], external: str) -> Packet:
    outside = "0.0.0.0/0"
    return Packet(
        saddr=STRANGERS[0] if flow["saddr"] == outside else first_address(flow["saddr"]),
        daddr=STRANGERS[1] if flow["daddr"] == outside else first_address(flow["daddr"]),
        proto=flow["proto"],
        dport=int(flow["dport"]),
        iifname=external if flow["saddr"] == outside else "",
        oifname=external if flow["daddr"] == outside else "",
    )


@pytest.mark.control("FW-06")
def test_nft_forward_policy_drop(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    audit.expect(
        drops_by_default(rs, "forward"),
        expected={f"inet {TABLE} forward": "drop"},
        observed=policies(rs, "forward"),
        message="the gateway forwards nothing but what a rule accepts",
    )


@pytest.mark.control("FW-06")
def test_nft_forward_rules_declared_only(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    flows = expected["zone_firewall_flows"]
    external = expected["zone_firewall_external_interface"]
    found = accepts(rs, "forward")
    undeclared = [r for r in found if not any(flow_rule_matches(r, f, external) for f in flows)]
    audit.expect(
        rs is not None and not undeclared,
        expected=[flow_text(f) for f in flows],
        observed={"accepted": described(found), "undeclared": described(undeclared)}
        if rs
        else NO_RULESET,
        message="every accepting forward rule is one of the declared flows (replies apart)",
    )


def probe_matrix_plan(
    expected: dict[str, Any], config: Any
) -> dict[str, list[tuple[str, str, int, bool]]]:
    """The probe matrix the gateway's flows call for: for a host of each zone, and for each
    host that is the source of a declared flow, TCP connections to every host of the other
    zones on every declared port and on the sample ports, each with whether it must connect.
    Returns {source host: [(target host, address, port, reachable)]}."""
    state = config.stash[STATE]
    flows = [f for f in expected["zone_firewall_flows"] if f["proto"] == "tcp"]
    zoned = {
        name: (next(iter(hv.zones)), str(hv.values["kijun_zone_address"]))
        for name, hv in sorted(state.hosts.items())
        if len(hv.zones) == 1 and hv.values.get("kijun_zone_address")
    }
    ports = sorted({p for proto, p in sample_ports(expected) if proto == "tcp"})

    def covers(network: str, address: str) -> bool:
        return network != "0.0.0.0/0" and ipaddress.IPv4Address(address) in ipaddress.IPv4Network(
            network, strict=False
        )

    sources: dict[str, None] = {}
    for zone in sorted({z for z, _ in zoned.values()}):
        sources[next(n for n, (z, _) in zoned.items() if z == zone)] = None
    for name, (_, address) in zoned.items():
        if any(covers(f["saddr"], address) and "/" not in f["saddr"] for f in flows):
            sources[name] = None
    plan: dict[str, list[tuple[str, str, int, bool]]] = {}
    for source in sources:
        zone, saddr = zoned[source]
        plan[source] = [
            (
                target,
                daddr,
                port,
                any(
                    covers(f["saddr"], saddr)
                    and covers(f["daddr"], daddr)
                    and int(f["dport"]) == port
                    for f in flows
                ),
            )
            for target, (other, daddr) in zoned.items()
            if other != zone
            for port in ports
        ]
    return plan


@pytest.mark.control("FW-06")
def test_declared_flows_effective(snapshot, expected, audit, inventory_hosts, pytestconfig) -> None:
    rs = nft(snapshot)
    external = expected["zone_firewall_external_interface"]
    # 1. The ruleset in force: each declared flow's first packet followed through the forward
    #    chain as the kernel does (no earlier rule shadows it).
    results = {}
    for flow in expected["zone_firewall_flows"]:
        if rs is None:
            results[flow_text(flow)] = NO_RULESET
            continue
        verdict, rule = rs.verdict("forward", flow_packet(flow, external))
        results[flow_text(flow)] = verdict if rule is None else f"{verdict} by: {rule}"
    shadowed = {k: v for k, v in results.items() if not str(v).startswith("accept")}
    # 2. Behaviour: real TCP connections from a host of each zone (and from each declared
    #    flow's source) to the hosts of the other zones through the gateway.
    plan = probe_matrix_plan(expected, pytestconfig)
    hosts = inventory_hosts("all")
    with ThreadPoolExecutor(max_workers=max(1, len(plan))) as pool:  # all sources at once
        found = dict(
            zip(
                plan,
                pool.map(
                    lambda item: run_probes(hosts[item[0]], [(t, a, p) for t, a, p, _ in item[1]]),
                    plan.items(),
                ),
                strict=True,
            )
        )
    matrix, wrong = [], []
    for source, targets in plan.items():
        outcomes = found[source]
        for target, address, port, reachable in targets:
            observed = outcomes.get((address, port), "not probed")
            matrix.append(
                {
                    "from": source,
                    "to": target,
                    "port": port,
                    "expected": "connects" if reachable else "blocked",
                    "observed": observed,
                }
            )
            if (observed in ("connected", "refused")) != reachable:
                wrong.append(f"{source} -> {target} tcp/{port}: {observed}")
    audit.expect(
        rs is not None and not shadowed and not wrong,
        expected={
            "declared flows in the ruleset": dict.fromkeys(results, "accept"),
            "probe matrix": "declared flows connect (or reach a closed port), "
            "everything else is blocked",
        },
        observed={
            "declared flows in the ruleset": results,
            "probes not as declared": wrong,
            "probe matrix": matrix,
        },
        message=f"{len(matrix)} TCP connections from {len(plan)} host(s) (nc, 2 s); refused "
        "means the connection passed every firewall and found the port closed",
    )


# --- FW-07 (zone gateways) ------------------------------------------------------------------


def unpinned(snapshot: Any, expected: dict[str, Any], side: str) -> tuple[Any, list[str]]:
    rs = nft(snapshot)
    external = expected["zone_firewall_external_interface"]
    found = accepts(rs, "forward")
    bad = []
    for r in found:
        if side == "saddr":
            ok = (r.saddr is not None and not r.saddr.is_everything and not r.saddr.negated) or (
                bool(external) and r.iif == external
            )
        elif side == "daddr":
            ok = (r.daddr is not None and not r.daddr.is_everything and not r.daddr.negated) or (
                bool(external) and r.oif == external
            )
        else:
            ok = (
                r.protos is not None
                and len(r.protos) == 1
                and r.dports is not None
                and len(r.dports) >= 1
                and not r.dport_ranges
            )
        if not ok:
            bad.append(f"{r.chain}: {r}")
    return (described(found) if rs else NO_RULESET), bad


@pytest.mark.control("FW-07")
def test_forward_rules_pin_source(snapshot, expected, audit) -> None:
    found, bad = unpinned(snapshot, expected, "saddr")
    audit.expect(
        found != NO_RULESET and not bad,
        expected={"rules without a pinned source": []},
        observed={"rules without a pinned source": bad, "accepting rules": found},
    )


@pytest.mark.control("FW-07")
def test_forward_rules_pin_destination(snapshot, expected, audit) -> None:
    found, bad = unpinned(snapshot, expected, "daddr")
    audit.expect(
        found != NO_RULESET and not bad,
        expected={"rules without a pinned destination": []},
        observed={"rules without a pinned destination": bad, "accepting rules": found},
    )


@pytest.mark.control("FW-07")
def test_forward_rules_pin_protocol_port(snapshot, expected, audit) -> None:
    found, bad = unpinned(snapshot, expected, "port")
    audit.expect(
        found != NO_RULESET and not bad,
        expected={"rules without a pinned protocol and port": []},
        observed={"rules without a pinned protocol and port": bad, "accepting rules": found},
    )


# --- FW-08 (zone gateways) ------------------------------------------------------------------


def zone_nets(expected: dict[str, Any], zone: str) -> list[ipaddress.IPv4Network]:
    return nets(expected["zone_firewall_zone_networks"].get(zone, []))


@pytest.mark.control("FW-08")
def test_internet_to_lgwan_via_sanitisers_only(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    internet, lgwan = zone_nets(expected, "internet"), zone_nets(expected, "lgwan")
    sanitisers = nets(expected["zone_firewall_sanitising_hosts"])
    crossing = [
        r
        for r in accepts(rs, "forward")
        if (r.saddr is None or r.saddr.overlaps(internet))
        and (r.daddr is None or r.daddr.overlaps(lgwan))
    ]
    bad = [
        r
        for r in crossing
        if not (
            (r.saddr is not None and r.saddr.within(sanitisers))
            or (r.daddr is not None and r.daddr.within(sanitisers))
        )
    ]
    audit.expect(
        rs is not None and not bad,
        expected={
            "sanitising hosts": [str(n.network_address) for n in sanitisers],
            "rules from the internet zone to the LGWAN zone without one": [],
        },
        observed={
            "rules from the internet zone to the LGWAN zone": described(crossing),
            "without a sanitising host": described(bad),
        }
        if rs
        else NO_RULESET,
    )


def sample_ports(expected: dict[str, Any]) -> list[tuple[str, int]]:
    ports = {("tcp", p) for p in SAMPLE_PORTS}
    ports |= {(f["proto"], int(f["dport"])) for f in expected["zone_firewall_flows"]}
    return sorted(ports)


@pytest.mark.control("FW-08")
def test_no_direct_internet_lgwan_flow(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    sanitisers = {str(n.network_address) for n in nets(expected["zone_firewall_sanitising_hosts"])}
    lgwan_hosts = {
        f["daddr"] for f in expected["zone_firewall_flows"] if f["to_zone"] == "lgwan"
    } - sanitisers
    lgwan_hosts |= {first_address(str(n)) for n in zone_nets(expected, "lgwan")}
    sources = [first_address(str(n)) for n in zone_nets(expected, "internet")]
    sources += [
        f["saddr"]
        for f in expected["zone_firewall_flows"]
        if f["from_zone"] == "internet" and f["saddr"] not in sanitisers and "/" not in f["saddr"]
    ]
    passed = []
    for saddr in sorted(set(sources)):
        for daddr in sorted(lgwan_hosts - sanitisers):
            for proto, port in sample_ports(expected):
                if rs and rs.verdict("forward", Packet(saddr, daddr, proto, port))[0] == "accept":
                    passed.append(f"{saddr} -> {daddr} {proto}/{port}")
    audit.expect(
        rs is not None and not passed,
        expected="nothing from the internet zone reaches an LGWAN host that is no sanitiser",
        observed={"accepted": passed} if rs else NO_RULESET,
        message=f"probed: {len(set(sources))} source(s), {len(lgwan_hosts - sanitisers)} "
        f"destination(s), {len(sample_ports(expected))} port(s), through the forward chain",
    )


# --- FW-09 (individual-number zone) ---------------------------------------------------------


def other_zones(expected: dict[str, Any], hostvars: Any) -> dict[str, list[ipaddress.IPv4Network]]:
    return {
        z: nets(n)
        for z, n in expected["zone_firewall_zone_networks"].items()
        if z not in hostvars.zones
    }


@pytest.mark.control("FW-09")
def test_no_route_to_other_zones(snapshot, expected, audit, hostvars) -> None:
    only_individual_number_hosts(hostvars)
    try:
        routes = json.loads(snapshot.text("firewall/routes") or "[]")
    except json.JSONDecodeError:
        routes = []
    needed = [
        ipaddress.IPv4Address(d["daddr"].split("/")[0])
        for d in expected["zone_firewall_output_allowed"]
    ]
    found, bad = [], []
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or ":" in dst:
            continue
        net = ipaddress.IPv4Network(dst, strict=False)
        for zone, networks in other_zones(expected, hostvars).items():
            if not any(net.overlaps(n) for n in networks):
                continue
            text = f"{dst} via {route.get('gateway', 'link')} dev {route.get('dev')} ({zone})"
            found.append(text)
            if zone == "internet" or not any(a in net for a in needed):
                bad.append(text)
    audit.expect(
        not bad,
        expected="routes to other zones only towards declared destinations (FW-02); "
        "never to the internet zone",
        observed={"routes to other zones": found, "not needed by a declared flow": bad},
        message="ip route (main table); the default route is not judged",
    )


def probe_targets(
    expected: dict[str, Any], hostvars: Any, config: Any
) -> list[tuple[str, str, int]]:
    """(host, address, port) for every host of another zone and every TCP port to try."""
    state = config.stash[STATE]
    ports = {p for _, p in sample_ports(expected) if p}
    for hv in state.hosts.values():
        ports |= {
            int(s["port"])
            for s in hv.values.get("zone_firewall_services", [])
            if s["proto"] == "tcp"
        }
    ports |= {
        int(d["dport"]) for d in expected["zone_firewall_output_allowed"] if d["proto"] == "tcp"
    }
    targets = []
    for name, hv in sorted(state.hosts.items()):
        if name == hostvars.name or not hv.zones or hv.zones & hostvars.zones:
            continue
        address = hv.values.get("kijun_zone_address") or hv.connection.get("ansible_host")
        if address:
            targets += [(name, str(address), port) for port in sorted(ports)]
    return targets


def run_probes(host: Any, targets: list[tuple[str, str, int]]) -> dict[tuple[str, int], str]:
    """Real TCP connections from ``host``, all at once: connected, refused (the packet got
    through, nothing listens) or blocked (dropped or not permitted)."""
    lines = ["d=$(mktemp -d); i=0"]
    for _, address, port in targets:
        a, p = shlex.quote(address), int(port)
        lines.append(
            f'i=$((i+1)); (r=$(nc -vzn -w 2 {a} {p} 2>&1); echo "{address} {p} $r" > "$d/$i") &'
        )
    lines += ["wait", 'cat "$d"/* 2>/dev/null', 'rm -rf "$d"']
    result = host.run("\n".join(lines))
    outcomes: dict[tuple[str, int], str] = {}
    for line in result.stdout.splitlines():
        address, port, *rest = line.split(" ", 2) + [""]
        text = " ".join(rest).lower()
        outcome = (
            "connected" if "succeeded" in text else "refused" if "refused" in text else "blocked"
        )
        outcomes[(address, int(port))] = outcome
    return outcomes


@pytest.mark.control("FW-09")
def test_other_zones_unreachable(snapshot, expected, audit, hostvars, host, pytestconfig) -> None:
    only_individual_number_hosts(hostvars)
    snapshot["firewall/nft_ruleset"]  # evidence: the ruleset the probes met
    targets = probe_targets(expected, hostvars, pytestconfig)
    declared = {
        (first_address(d["daddr"]), int(d["dport"]))
        for d in expected["zone_firewall_output_allowed"]
        if d["proto"] == "tcp"
    }
    outcomes = run_probes(host, targets) if targets else {}
    matrix, reached = [], []
    for name, address, port in targets:
        observed = outcomes.get((address, port), "not probed")
        allowed = (address, port) in declared
        matrix.append(
            {
                "from": hostvars.name,
                "to": name,
                "address": address,
                "port": port,
                "expected": "connects" if allowed else "blocked",
                "observed": observed,
            }
        )
        if not allowed and observed != "blocked":
            reached.append(f"{name} {address} tcp/{port}: {observed}")
    audit.expect(
        not reached and len(outcomes) == len(targets),
        expected="only the declared destinations (FW-02) are reachable in other zones",
        observed={"reached though not declared": reached, "probe matrix": matrix},
        message=f"{len(targets)} TCP connections tried from {hostvars.name} (nc, 2 s)",
    )


# --- FW-10 -----------------------------------------------------------------------------------


def drop_logs(rs: ruleset.Ruleset | None) -> dict[str, Rule | None]:
    """Each dropping base chain of the role's table and its last rule if it only logs."""
    if rs is None:
        return {}
    out: dict[str, Rule | None] = {}
    for chain in rs.chains:
        if chain.base and chain.policy == "drop":
            last = chain.rules[-1] if chain.rules else None
            logging = last is not None and last.log_prefix is not None and last.verdict is None
            out[f"{chain.table} {chain.name}"] = last if logging else None
    return out


@pytest.mark.control("FW-10")
def test_nft_drops_logged(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    logs = drop_logs(rs)
    prefix = expected["zone_firewall_log_prefix"]
    observed = {c: (r.log_prefix if r else "not logged") for c, r in logs.items()}
    audit.expect(
        rs is not None and bool(logs) and all(v == prefix for v in observed.values()),
        expected=dict.fromkeys(logs or {"(every dropping chain)": None}, prefix),
        observed=observed or NO_RULESET,
        message="the last rule of every chain that drops by default logs what it drops",
    )


@pytest.mark.control("FW-10")
def test_nft_log_rate_limited(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    logs = drop_logs(rs)
    rate = expected["zone_firewall_log_rate"]
    observed = {c: (r.limit if r else "not logged") for c, r in logs.items()}
    audit.expect(
        rs is not None and bool(logs) and all(v == rate for v in observed.values()),
        expected=dict.fromkeys(logs or {"(every dropping chain)": None}, rate),
        observed=observed or NO_RULESET,
    )


# --- FW-11 (zone gateways) ------------------------------------------------------------------


@pytest.mark.control("FW-11")
def test_single_external_interface(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    snapshot["firewall/interfaces"]  # evidence: the gateway's interfaces and addresses
    external = expected["zone_firewall_external_interface"]
    named = sorted(
        {
            i
            for r in (rs.rules("forward") + rs.rules("input") if rs else [])
            for i in (r.iif, r.oif)
            if i and i != "lo"
        }
    )
    audit.expect(
        rs is not None and set(named) <= ({external} if external else set()),
        expected={"interfaces towards outside": [external] if external else []},
        observed={"interfaces the ruleset names": named} if rs else NO_RULESET,
    )


def cutoff_rules(rs: ruleset.Ruleset | None) -> tuple[bool, list[Rule]]:
    forward = chain_of(rs, "forward")
    cutoff = rs.chain(TABLE, "cutoff") if rs else None
    first = forward.rules[0] if forward and forward.rules else None
    present = (
        cutoff is not None
        and first is not None
        and (first.verdict, first.target) == ("jump", "cutoff")
        and not first.saddr
        and not first.daddr
        and not first.unknown
    )
    return present, list(cutoff.rules) if cutoff else []


@pytest.mark.control("FW-11")
def test_cutoff_mechanism_present(snapshot, expected, audit) -> None:
    present, rules = cutoff_rules(nft(snapshot))
    audit.expect(
        present,
        expected="the forward chain's first rule jumps to chain cutoff",
        observed={"first rule jumps to cutoff": present, "cutoff chain": described(rules)},
        message="playbooks/zone_cutoff.yml fills chain cutoff at once; zone_restore.yml empties it",
    )


@pytest.mark.control("FW-11")
def test_cutoff_state_matches_declared(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    present, rules = cutoff_rules(rs)
    active = bool(expected["zone_firewall_cutoff_active"])
    internet = zone_nets(expected, "internet")
    probes = [Packet(first_address(str(n)), STRANGERS[0], "tcp", 443) for n in internet]
    probes += [Packet(STRANGERS[0], first_address(str(n)), "tcp", 443) for n in internet]
    cut = [
        p
        for p in probes
        if rs
        and rs.verdict("forward", p)[1] is not None
        and rs.verdict("forward", p)[1].chain == "cutoff"
    ]  # type: ignore[union-attr]
    observed = (
        "cut off"
        if probes and len(cut) == len(probes)
        else ("partly cut off" if cut else "connected")
    )
    audit.expect(
        present and observed == ("cut off" if active else "connected") and (active or not rules),
        expected="cut off" if active else "connected",
        observed={"internet zone": observed, "cutoff chain": described(rules)},
        message="zone_firewall_cutoff_active is the declared state",
    )


# --- FW-12 (zone gateways) ------------------------------------------------------------------


@pytest.mark.control("FW-12")
def test_internet_inbound_to_public_servers_only(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    external = expected["zone_firewall_external_interface"]
    public = nets(expected["zone_firewall_public_servers"])
    inbound = [
        r
        for r in accepts(rs, "forward")
        if (external and r.iif == external) or (r.iif is None and r.saddr is None)
    ]
    bad = [r for r in inbound if r.daddr is None or not r.daddr.within(public)]
    audit.expect(
        rs is not None and not bad,
        expected={"reachable from outside": [str(n.network_address) for n in public]},
        observed={
            "rules from outside": described(inbound),
            "beyond the public servers": described(bad),
        }
        if rs
        else NO_RULESET,
    )


@pytest.mark.control("FW-12")
def test_no_internet_egress_from_internal_servers(snapshot, expected, audit) -> None:
    rs = nft(snapshot)
    external = expected["zone_firewall_external_interface"]
    internet = zone_nets(expected, "internet")
    outbound = [
        r
        for r in accepts(rs, "forward")
        if (external and r.oif == external) or (r.oif is None and r.daddr is None)
    ]
    bad = [r for r in outbound if r.saddr is None or not r.saddr.within(internet)]
    audit.expect(
        rs is not None and not bad,
        expected={"may reach outside": [str(n) for n in internet]},
        observed={
            "rules to outside": described(outbound),
            "from beyond the internet zone": described(bad),
        }
        if rs
        else NO_RULESET,
    )
