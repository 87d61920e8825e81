"""The zone policy (kijun.zones): reading zones.yml, refusing bad declarations by file and line,
the zone_firewall variables it gives each host, and the lab's own policy."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from kijun import lab, variables, zones

from .conftest import ROOT

LAB_POLICY = ROOT / "inventories" / "lab" / "zones.yml"


def lab_hosts() -> dict[str, zones.InventoryHost]:
    """The lab's hosts as `kijun lab up` writes them into hosts.yml (no lab needed)."""
    children = lab.render_inventory(lab.default_spec())["all"]["children"]
    groups: dict[str, set[str]] = {}
    hostvars: dict[str, dict[str, Any]] = {}
    for group, body in children.items():
        for name, values in (body.get("hosts") or {}).items():
            groups.setdefault(name, {"all"}).add(group)
            hostvars.setdefault(name, {}).update(values or {})
    return {h: zones.InventoryHost.of(h, groups[h], hostvars[h]) for h in groups}


# A small inventory for the error cases: one host per zone, a gateway, a relay on each side.
HOSTS = {
    "gw": ({"gateways"}, {"ansible_host": "10.0.0.10"}),
    "mn1": ({"zone_mynumber"}, {"kijun_zone_address": "10.10.0.11", "ansible_host": "10.0.0.11"}),
    "lg1": ({"zone_lgwan"}, {"kijun_zone_address": "10.20.0.21", "ansible_host": "10.0.0.21"}),
    "lgmail": (
        {"zone_lgwan", "mail_relays"},
        {"kijun_zone_address": "10.20.0.22", "ansible_host": "10.0.0.22"},
    ),
    "in1": ({"zone_internet"}, {"kijun_zone_address": "10.30.0.31", "ansible_host": "10.0.0.31"}),
    "inmail": (
        {"zone_internet", "mail_relays"},
        {"kijun_zone_address": "10.30.0.32", "ansible_host": "10.0.0.32"},
    ),
}


def hosts(**changes: tuple[set[str], dict[str, Any]]) -> dict[str, zones.InventoryHost]:
    merged = {**HOSTS, **changes}
    return {n: zones.InventoryHost.of(n, {"all", *g}, v) for n, (g, v) in merged.items()}


BASE = """\
zones:
  mynumber: {networks: [10.10.0.0/24]}
  lgwan: {networks: [10.20.0.0/24]}
  internet: {networks: [10.30.0.0/24]}
management:
  networks: [10.0.0.0/24]
  admin_hosts: [10.0.0.1]
sanitising_hosts: [lgmail]
public_servers: [in1]
services:
  - {name: smtp, on: [mail_relays], proto: tcp, port: 25}
  - {name: https, on: [in1], proto: tcp, port: 443}
  - {name: ntp, on: [lg1], proto: udp, port: 123}
flows:
  - name: mail-out
    from: lgmail
    to: inmail
    proto: tcp
    port: 25
    purpose: メール送信
    clause: "5(2)ア"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "zones.yml"
    path.write_text(text, encoding="utf-8")
    return path


def flow(name: str, src: str, dst: str, proto: str = "tcp", port: Any = 25, **extra: Any) -> str:
    lines = [
        f"  - name: {name}",
        f"    from: {src}",
        f"    to: {dst}",
        f"    proto: {proto}",
        f"    port: {port}",
        "    purpose: テスト",
        '    clause: "5(1)"',
    ]
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def refused(path: Path, inventory: dict[str, zones.InventoryHost] | None = None) -> list[str]:
    """The problems of a refused policy, each as `file:line: message`."""
    with pytest.raises(zones.ZonePolicyError) as err:
        zones.load(path, inventory if inventory is not None else hosts())
    return [str(p) for p in err.value.problems]


def line_of(path: Path, text: str) -> int:
    """The (first) line of ``path`` that contains ``text``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def only(problems: list[str], path: Path, line: int, *words: str) -> None:
    """Exactly one problem, on ``path:line``, saying each of ``words``."""
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{line}: "), problems
    for word in words:
        assert word in problems[0], problems


# --- a sound policy -------------------------------------------------------------------------


def test_sound_policy_gives_each_host_its_rules(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + flow("ntp-mn", "mynumber", "lg1", "udp", 123))
    inventory = hosts()
    policy = zones.load(path, inventory)
    assert [f.name for f in policy.flows] == ["mail-out", "ntp-mn"]

    mn1 = zones.role_vars(policy, inventory, "mn1")
    assert mn1["zone_firewall_output_allowed"] == [
        {"name": "ntp-mn", "daddr": "10.20.0.21", "proto": "udp", "dport": 123}
    ]
    assert mn1["zone_firewall_flows"] == []  # not a gateway
    assert mn1["zone_firewall_admin_sources"] == ["10.0.0.1"]
    assert mn1["zone_firewall_management_networks"] == ["10.0.0.0/24"]

    lg1 = zones.role_vars(policy, inventory, "lg1")
    assert lg1["zone_firewall_services"] == [
        {"name": "ntp", "proto": "udp", "port": 123, "sources": ["10.10.0.0/24"]}
    ]
    inmail = zones.role_vars(policy, inventory, "inmail")
    assert inmail["zone_firewall_services"] == [
        {"name": "smtp", "proto": "tcp", "port": 25, "sources": ["10.20.0.22"]}
    ]
    # A service that no flow reaches is offered to nobody.
    assert zones.role_vars(policy, inventory, "lgmail")["zone_firewall_services"] == [
        {"name": "smtp", "proto": "tcp", "port": 25, "sources": []}
    ]

    gw = zones.role_vars(policy, inventory, "gw")
    assert gw["zone_firewall_flows"] == [
        {"name": "mail-out", "from_zone": "lgwan", "to_zone": "internet",
         "saddr": "10.20.0.22", "daddr": "10.30.0.32", "proto": "tcp", "dport": 25},
        {"name": "ntp-mn", "from_zone": "mynumber", "to_zone": "lgwan",
         "saddr": "10.10.0.0/24", "daddr": "10.20.0.21", "proto": "udp", "dport": 123},
    ]  # fmt: skip
    assert gw["zone_firewall_sanitising_hosts"] == ["10.20.0.22"]
    assert gw["zone_firewall_public_servers"] == ["10.30.0.31"]
    assert gw["zone_firewall_zone_networks"] == {
        "mynumber": ["10.10.0.0/24"], "lgwan": ["10.20.0.0/24"], "internet": ["10.30.0.0/24"],
    }  # fmt: skip


def test_flows_within_a_zone_and_over_management_do_not_pass_the_gateway(tmp_path: Path) -> None:
    text = BASE + flow("ntp-lg", "lgwan", "lg1", "udp", 123)
    text += flow("ntp-in1", "in1", "lg1", "udp", 123, over="management")
    policy = zones.load(write(tmp_path, text), hosts())
    gw = zones.role_vars(policy, hosts(), "gw")
    assert [f["name"] for f in gw["zone_firewall_flows"]] == ["mail-out"]
    lg1 = zones.role_vars(policy, hosts(), "lg1")
    # in1 reaches lg1 from its management address; the LGWAN zone from its network.
    assert lg1["zone_firewall_services"][0]["sources"] == ["10.0.0.31", "10.20.0.0/24"]


def test_outside_flows_need_an_external_interface_and_a_public_server(tmp_path: Path) -> None:
    text = "external_interface: ens5\n" + BASE + flow("web", "any", "in1", "tcp", 443)
    text += flow("mail-send", "inmail", "any")
    policy = zones.load(write(tmp_path, text), hosts())
    gw = zones.role_vars(policy, hosts(), "gw")
    outside = [f for f in gw["zone_firewall_flows"] if "outside" in (f["from_zone"], f["to_zone"])]
    assert outside == [
        {"name": "web", "from_zone": "outside", "to_zone": "internet",
         "saddr": "0.0.0.0/0", "daddr": "10.30.0.31", "proto": "tcp", "dport": 443},
        {"name": "mail-send", "from_zone": "internet", "to_zone": "outside",
         "saddr": "10.30.0.32", "daddr": "0.0.0.0/0", "proto": "tcp", "dport": 25},
    ]  # fmt: skip
    assert gw["zone_firewall_external_interface"] == "ens5"
    in1 = zones.role_vars(policy, hosts(), "in1")
    https = next(s for s in in1["zone_firewall_services"] if s["name"] == "https")
    assert https["sources"] == ["0.0.0.0/0"]


# --- refused declarations, each named by file and line ------------------------------------


def test_unknown_host_in_a_flow_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + flow("typo", "lgmail", "inmial"))
    only(refused(path), path, line_of(path, "to: inmial"), "typo.to", "unknown host or zone "
         "'inmial'", "did you mean 'inmail'?")  # fmt: skip


def test_unknown_zone_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("  internet: {networks: [10.30.0.0/24]}\n", "")
    text = text.replace("public_servers: [in1]", "public_servers: []")
    text = text.replace("  - {name: https, on: [in1], proto: tcp, port: 443}\n", "")
    path = write(tmp_path, text + flow("to-in", "lgmail", "internet"))
    problems = refused(path)
    # The flow names an undeclared zone, and inventory hosts are in its group.
    assert any(
        p.startswith(f"{path}:{line_of(path, 'to: internet')}: ") and "unknown zone 'internet'" in p
        for p in problems
    ), problems
    assert any("in group zone_internet but zones.yml declares no zone internet" in p
               for p in problems), problems  # fmt: skip


def test_a_zone_outside_the_three_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("  lgwan:", "  dmz: {networks: [10.40.0.0/24]}\n  lgwan:"))
    problems = refused(path)
    assert any(p.startswith(f"{path}:{line_of(path, 'dmz:')}: ") and "mynumber" in p
               for p in problems), problems  # fmt: skip


def test_overlapping_networks_are_refused_naming_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("lgwan: {networks: [10.20.0.0/24]}",
                                        "lgwan: {networks: [10.16.0.0/12]}"))  # fmt: skip
    # 10.16.0.0/12 holds the internet zone's 10.30.0.0/24 (declared after it).
    only(refused(path), path, line_of(path, "10.30.0.0/24"), "10.30.0.0/24 (zone internet) "
         f"overlaps 10.16.0.0/12 (zone lgwan, line {line_of(path, '10.16.0.0/12')})")  # fmt: skip


def test_zone_overlapping_the_management_network_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("networks: [10.0.0.0/24]", "networks: [10.0.0.0/8]"))
    problems = [p for p in refused(path) if "overlaps" in p]
    assert len(problems) == 3, problems  # every zone lies inside 10.0.0.0/8
    assert all(p.startswith(f"{path}:{line_of(path, '10.0.0.0/8')}: ") for p in problems)
    assert all("10.0.0.0/8 (management) overlaps" in p for p in problems)


@pytest.mark.parametrize(
    ("text", "marker", "words"),
    [
        (flow("anyproto", "lgmail", "inmail", proto="any"), "proto: any", "must pin its protocol"),
        (flow("anyport", "lgmail", "inmail", port="any"), "port: any", "must pin its port"),
        (flow("lg-out", "lg1", "any"), "to: any", "only hosts of the internet zone"),
        (flow("any-in", "any", "lg1", "udp", 123), "from: any", "only the declared public_servers"),
        (flow("any-zone", "any", "internet", "tcp", 443), "to: internet", "public server"),
        (flow("zone-any", "internet", "any"), "from: internet", "each named"),
        (flow("anyany", "any", "any"), "name: anyany", "from any to any"),
        (flow("zones", "lgwan", "internet"), "to: internet", "must name its destination host"),
    ],
    ids=[
        "proto",
        "port",
        "to-any-from-lgwan",
        "from-any-to-lgwan",
        "any-to-zone",
        "zone-to-any",
        "any-any",
        "zone-to-zone",
    ],  # fmt: skip
)
def test_any_where_a_pinned_endpoint_is_required_is_refused(
    tmp_path: Path, text: str, marker: str, words: str
) -> None:
    path = write(tmp_path, "external_interface: ens5\n" + BASE + text)
    problems = refused(path)
    assert len(problems) == 1, problems
    assert words in problems[0], problems
    # The problem is on the flow's line or on the line of the field at fault.
    name_line = line_of(path, f"name: {text.split()[2]}")
    assert problems[0].startswith((f"{path}:{line_of(path, marker)}: ", f"{path}:{name_line}: "))


def test_any_as_a_network_or_admin_host_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("admin_hosts: [10.0.0.1]", "admin_hosts: [any]")
    text = text.replace("mynumber: {networks: [10.10.0.0/24]}", "mynumber: {networks: [0.0.0.0/0]}")
    path = write(tmp_path, text)
    problems = refused(path)
    assert any(p.startswith(f"{path}:{line_of(path, 'admin_hosts')}: ") and "FW-03" in p
               for p in problems), problems  # fmt: skip
    assert any(p.startswith(f"{path}:{line_of(path, '0.0.0.0/0')}: ") and "every address" in p
               for p in problems), problems  # fmt: skip


def test_individual_number_zone_never_talks_to_the_internet_zone(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + flow("mn-web", "mn1", "in1", "tcp", 443))
    only(refused(path), path, line_of(path, "name: mn-web"), "never communicate", "FW-09")
    path = write(tmp_path, BASE + flow("web-mn", "internet", "mn1", "tcp", 443))
    only(refused(path), path, line_of(path, "name: web-mn"), "never communicate")


def test_internet_to_lgwan_only_through_a_sanitising_host(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + flow("in-ntp", "in1", "lg1", "udp", 123))
    only(refused(path), path, line_of(path, "name: in-ntp"), "sanitising host", "FW-08")
    ok = write(tmp_path, BASE + flow("mail-in", "inmail", "lgmail"))
    assert [f.name for f in zones.load(ok, hosts()).flows] == ["mail-out", "mail-in"]


def test_flow_to_a_port_its_destination_does_not_serve_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + flow("mail-587", "lgmail", "inmail", "tcp", 587))
    only(refused(path), path, line_of(path, "port: 587"), "inmail offers no service tcp/587")


def test_flow_with_an_address_instead_of_a_host_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + flow("raw", "10.20.0.22", "inmail"))
    only(refused(path), path, line_of(path, "from: 10.20.0.22"), "name the host")


def test_duplicate_flow_names_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + flow("mail-out", "inmail", "lgmail"))
    only(refused(path), path, line_of(path, "from: inmail") - 1, "duplicate flow name mail-out",
         "first at line")  # fmt: skip


def test_admin_host_outside_the_management_network_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("admin_hosts: [10.0.0.1]", "admin_hosts: [10.20.0.5]"))
    only(refused(path), path, line_of(path, "admin_hosts"), "not on the management network")


def test_network_with_host_bits_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("[10.10.0.0/24]", "[10.10.0.7/24]"))
    problems = refused(path)
    assert any("has host bits set; write 10.10.0.0/24" in p for p in problems), problems


def test_host_address_outside_its_zone_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    inventory = hosts(lg1=({"zone_lgwan"}, {"kijun_zone_address": "10.30.0.99"}))
    only(refused(path, inventory), path, line_of(path, "lgwan:"), "lg1", "10.30.0.99",
         "outside zone lgwan")  # fmt: skip


def test_host_in_two_zones_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    inventory = hosts(lg1=({"zone_lgwan", "zone_internet"}, {"kijun_zone_address": "10.20.0.21"}))
    problems = refused(path, inventory)
    assert any("lg1 is in the groups of several zones" in p for p in problems), problems


def test_gateway_cannot_be_a_flow_endpoint(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + flow("gwmail", "gw", "inmail"))
    only(refused(path), path, line_of(path, "from: gw"), "gw is in no zone group")


def test_outside_flows_without_external_interface_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + flow("web", "any", "in1", "tcp", 443))
    only(refused(path), path, line_of(path, "name: web"), "no external_interface")


def test_management_flow_needs_hosts_on_the_management_network(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + flow("ntp-in", "internet", "lg1", "udp", 123, over="management"))
    only(refused(path), path, line_of(path, "over: management"), "both ends must be named hosts")
    path = write(tmp_path, BASE + flow("ntp-in", "in1", "lg1", "udp", 123, over="management"))
    inventory = hosts(in1=({"zone_internet"}, {"kijun_zone_address": "10.30.0.31"}))
    only(refused(path, inventory), path, line_of(path, "from: in1"), "no address on the "
         "management network")  # fmt: skip


def test_admin_hosts_reach_a_declared_service_over_the_management_network(tmp_path: Path) -> None:
    """The control node's live audit probes (the mail relays' SMTP, ML-01): the relay accepts
    smtp from the admin hosts at its management address; nothing goes through the gateway."""
    text = BASE + flow("audit-smtp", "admin_hosts", "lgmail", over="management")
    inventory = hosts()
    policy = zones.load(write(tmp_path, text), inventory)
    relay = zones.role_vars(policy, inventory, "lgmail")
    [smtp] = [s for s in relay["zone_firewall_services"] if s["name"] == "smtp"]
    assert smtp["sources"] == ["10.0.0.1"]
    gateway = zones.role_vars(policy, inventory, "gw")
    assert [f["name"] for f in gateway["zone_firewall_flows"]] == ["mail-out"]
    assert "audit-smtp" not in {o["name"] for o in relay["zone_firewall_output_allowed"]}


def test_admin_hosts_only_as_a_source_and_only_over_management(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + flow("audit-smtp", "admin_hosts", "lgmail"))
    only(refused(path), path, line_of(path, "name: audit-smtp"), "add over: management")
    path = write(tmp_path, BASE + flow("back", "lgmail", "admin_hosts", over="management"))
    only(refused(path), path, line_of(path, "to: admin_hosts"), "only ever a flow's source")
    path = write(tmp_path, BASE + flow("wide", "admin_hosts", "lgwan", over="management"))
    only(refused(path), path, line_of(path, "over: management"), "both ends must be named hosts")


def test_unknown_fields_and_missing_fields_are_refused(tmp_path: Path) -> None:
    text = BASE.replace("    purpose: メール送信\n", "").replace("port: 25\n    ", "prot: 25\n    ")
    path = write(tmp_path, text)
    problems = refused(path)
    assert any("mail-out.prot: unknown field 'prot'" in p and "did you mean" in p for p in problems)
    assert any("missing required fields 'port', 'purpose'" in p for p in problems), problems


def test_every_problem_is_reported_in_one_run(tmp_path: Path) -> None:
    text = BASE.replace("[10.20.0.0/24]", "[10.16.0.0/12]") + flow("typo", "lgmail", "inmial")
    problems = refused(write(tmp_path, text))
    assert any("overlaps" in p for p in problems) and any("'inmial'" in p for p in problems)


# --- the lab's policy -----------------------------------------------------------------------


def test_lab_policy_fits_the_lab() -> None:
    inventory = lab_hosts()
    policy = zones.load(LAB_POLICY, inventory)
    spec = lab.default_spec()
    assert {z: [str(n) for n in policy.zones[z].networks] for z in policy.zones} == {
        zone: [net.subnet] for zone, net in lab.ZONES.items()
    }
    assert [str(n) for n in policy.management_networks] == [lab.MGMT.subnet]
    assert [str(a) for a in policy.admin_hosts] == [lab.MGMT_GATEWAY]
    gw = zones.role_vars(policy, inventory, "gw01")
    crossing = {(f["name"], f["from_zone"], f["to_zone"]) for f in gw["zone_firewall_flows"]}
    assert crossing == {
        ("time-mynumber", "mynumber", "lgwan"),
        ("logs-mynumber", "mynumber", "lgwan"),
        ("mail-out", "lgwan", "internet"),
        ("mail-in", "internet", "lgwan"),
        ("web-publish", "lgwan", "internet"),
    }
    # Nothing is routed or allowed from the individual-number zone to the internet zone.
    assert not any(
        f["from_zone"] == "mynumber" and f["to_zone"] == "internet"
        for f in gw["zone_firewall_flows"]
    )
    assert lab.ROUTED["mynumber"] == ("lgwan",)
    assert gw["zone_firewall_sanitising_hosts"] == [spec.host("lg-mail01").zone_address]


def _lab_inventory_copy(tmp_path: Path) -> Path:
    inv = tmp_path / "lab"
    shutil.copytree(ROOT / "inventories" / "lab", inv, ignore=shutil.ignore_patterns("hosts.yml"))
    rendered = lab.render_inventory(lab.default_spec())
    (inv / "hosts.yml").write_text(yaml.safe_dump(rendered, sort_keys=False, allow_unicode=True))
    return inv


def _route(source: str, address: str) -> tuple[str, str]:
    """The lab host that has ``address`` and the address ``source`` sends from to reach it
    (its management address on the management network, else its zone address; the gateway's
    leg in the destination's zone)."""
    spec = lab.default_spec()
    dest = next(h for h in spec.hosts if address in (h.zone_address, h.mgmt_address))
    host = spec.host(source)
    if address == dest.mgmt_address:
        return dest.name, host.mgmt_address
    return dest.name, host.zone_address or lab.ZONES[str(dest.zone)].gateway_address


def _inside(address: str, networks: list[str]) -> bool:
    return any(
        ipaddress.ip_address(address) in ipaddress.ip_network(n, strict=False) for n in networks
    )


def _reaches(
    values: dict[str, dict[str, Any]],
    source: variables.HostVars,
    address: str,
    proto: str,
    port: int,
) -> bool:
    """Whether the zone policy lets ``source`` reach ``address`` on proto/port: the destination
    accepts it from the source's address, and an individual-number host may send it."""
    dest, mine = _route(source.name, address)
    accepted = any(
        s["proto"] == proto and s["port"] == port and _inside(mine, s["sources"])
        for s in values[dest]["zone_firewall_services"]
    )
    if "zone_mynumber" in source.groups:
        out = source.values["zone_firewall_output_allowed"]
        accepted = accepted and any(
            (o["daddr"], o["proto"], o["dport"]) == (address, proto, port) for o in out
        )
    return accepted


def test_lab_policy_keeps_every_host_s_time_and_logs_flowing(tmp_path: Path) -> None:
    """With the firewall applied, every lab host still reaches its time server and its log
    collector as the time_sync and log_retention roles configure them (the same inventory),
    and the servers accept them."""
    resolved = variables.load(_lab_inventory_copy(tmp_path))
    values = {name: hv.values for name, hv in resolved.items()}
    for name, hv in resolved.items():
        for server in hv.values["time_sync_servers"]:
            assert _reaches(values, hv, server["host"], "udp", 123), (name, server)
            dest, mine = _route(name, server["host"])
            assert _inside(mine, values[dest]["time_sync_allow_networks"]), (name, dest)
        if "log_collectors" not in hv.groups:
            collector = hv.values["log_retention_collector_host"]
            port = int(hv.values["log_retention_collector_port"])
            assert _reaches(values, hv, collector, "tcp", port), (name, collector)
            dest, mine = _route(name, collector)
            allowed = values[dest]["log_retention_collector_allowed_senders"]
            assert _inside(mine, allowed), (name, dest)


def test_vars_plugin_gives_the_policy_as_host_variables(tmp_path: Path) -> None:
    inv = _lab_inventory_copy(tmp_path)
    # A group_vars value cannot widen what zones.yml declares: the policy's host variables win.
    (inv / "group_vars" / "zone_lgwan.yml").write_text(
        "zone_firewall_admin_sources: [198.18.0.99]\n"
    )
    resolved = variables.load(inv)
    inventory = lab_hosts()
    policy = zones.load(LAB_POLICY, inventory)
    for name in ("gw01", "mn-app01", "lg-ntp01", "in-web01"):
        expected = zones.role_vars(policy, inventory, name)
        got = {k: resolved[name].values[k] for k in expected}
        assert got == expected, name
    assert resolved["lg-app01"].values["zone_firewall_admin_sources"] == ["198.18.0.1"]


def test_vars_plugin_refuses_a_bad_policy_by_file_and_line(tmp_path: Path) -> None:
    inv = _lab_inventory_copy(tmp_path)
    policy = inv / "zones.yml"
    policy.write_text(policy.read_text().replace("to: in-mail01", "to: in-mial01"))
    with pytest.raises(variables.InventoryError) as err:
        variables.load(inv)
    assert f"{policy}:{line_of(policy, 'to: in-mial01')}: mail-out.to" in str(err.value)
    assert "did you mean 'in-mail01'?" in str(err.value)


def test_inventory_without_a_zone_policy_keeps_the_role_defaults(tmp_path: Path) -> None:
    inv = _lab_inventory_copy(tmp_path)
    (inv / "zones.yml").unlink()
    resolved = variables.load(inv)
    defaults = yaml.safe_load((ROOT / "roles/zone_firewall/defaults/main.yml").read_text())
    assert resolved["gw01"].values["zone_firewall_flows"] == defaults["zone_firewall_flows"] == []
    assert resolved["mn-app01"].values["zone_firewall_admin_sources"] == []


def _routes_module() -> Any:
    import importlib.util

    path = ROOT / "roles" / "zone_firewall" / "library" / "kijun_zone_routes.py"
    spec = importlib.util.spec_from_file_location("kijun_zone_routes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_route_module_removes_only_routes_no_declared_flow_needs() -> None:
    """FW-09's remediation (roles/zone_firewall/library/kijun_zone_routes.py): routes of an
    individual-number host into other zones, as `ip -j route` shows them."""
    routes = [
        {"dst": "default", "gateway": "198.18.0.1", "dev": "eth0"},
        {"dst": "198.18.0.0/24", "dev": "eth0"},
        {"dst": "198.18.10.0/24", "dev": "eth1"},
        {"dst": "198.18.20.0/24", "gateway": "198.18.10.254", "dev": "eth1"},
        {"dst": "198.18.30.0/24", "gateway": "198.18.10.254", "dev": "eth1"},
        {"dst": "198.18.20.128/25", "gateway": "198.18.10.254", "dev": "eth1"},
    ]
    other = {"lgwan": ["198.18.20.0/24"], "internet": ["198.18.30.0/24"]}
    removed = _routes_module().unneeded(routes, other, ["198.18.20.23"], ["internet"])
    # The LGWAN route carries the declared flow to 198.18.20.23; the internet route never
    # stays; the narrower LGWAN route leads nowhere declared.
    assert [dst for dst, _ in removed] == ["198.18.30.0/24", "198.18.20.128/25"]
    assert removed[0][1] == "198.18.30.0/24 via 198.18.10.254 dev eth1 (internet)"
    assert _routes_module().unneeded(routes, other, [], []) == [
        ("198.18.20.0/24", "198.18.20.0/24 via 198.18.10.254 dev eth1 (lgwan)"),
        ("198.18.30.0/24", "198.18.30.0/24 via 198.18.10.254 dev eth1 (internet)"),
        ("198.18.20.128/25", "198.18.20.128/25 via 198.18.10.254 dev eth1 (lgwan)"),
    ]


def test_vars_plugin_leaves_hosts_outside_the_zones_alone(tmp_path: Path) -> None:
    """A host in no zone group and not a gateway (the control node, say) gets nothing from the
    policy, and does not make a policy that names the zones' hosts fail."""
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.yml").write_text("all:\n  hosts:\n    localhost: {ansible_connection: local}\n")
    shutil.copy(LAB_POLICY, inv / "zones.yml")
    resolved = variables.load(inv)
    assert resolved["localhost"].values["zone_firewall_admin_sources"] == []


def test_kijun_zones_check_lists_the_flows_or_refuses(tmp_path: Path) -> None:
    from .conftest import run_kijun

    inv = _lab_inventory_copy(tmp_path)
    proc = run_kijun("zones", "check", "-i", str(inv))
    assert proc.returncode == 0, proc.stderr
    assert "zone policy OK: 3 zones, 8 hosts in them, 15 flows" in proc.stdout
    assert "mail-in" in proc.stdout
    policy = inv / "zones.yml"
    policy.write_text(policy.read_text().replace("to: in-mail01", "to: in-mial01"))
    proc = run_kijun("zones", "check", "-i", str(inv))
    assert proc.returncode == 2
    assert f"{policy}:{line_of(policy, 'to: in-mial01')}: mail-out.to: unknown host" in proc.stderr
