"""kijun.ruleset: nftables rulesets read from `nft -j list ruleset` and packets followed through
them. tests/data/nft-sample.json is the JSON nft 1.0.6 (Debian 12) printed for this ruleset:

    table inet kijun {
      chain cutoff {
        ip saddr 198.18.30.0/24 counter drop comment "FW-11 cut-off: internet zone"
        oifname "ens5" counter drop
      }
      chain input { type filter hook input priority filter; policy drop;
        ip saddr { 198.18.20.0/24, 198.18.0.31, 198.18.10.0/24 } udp dport 123 accept comment "FW-04 ntp"
        ip saddr 0.0.0.0/0 tcp dport 443 accept
        tcp dport { 80, 8080 } accept
        meta l4proto tcp accept
        ip saddr != 10.0.0.0/8 tcp dport 9 accept
        limit rate 10/minute log prefix "kijun-drop: " comment "FW-10 log drops"
      }
      chain forward { type filter hook forward priority filter; policy drop;
        jump cutoff comment "FW-11"
        ip saddr 198.18.10.0/24 ip daddr 198.18.30.0/24 counter drop comment "FW-09"
        iifname "ens5" ip daddr 198.18.30.31 tcp dport 443 accept
        ip saddr 198.18.30.32 oifname "ens5" tcp dport 25 accept
        ip saddr 198.18.20.5-198.18.20.9 accept
      }
    }
"""  # noqa: E501

from __future__ import annotations

import ipaddress
import json

import pytest

from kijun import ruleset
from kijun.ruleset import Packet

from .conftest import ROOT

SAMPLE = (ROOT / "tests" / "data" / "nft-sample.json").read_text()


@pytest.fixture(scope="module")
def rs() -> ruleset.Ruleset:
    return ruleset.parse(SAMPLE)


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


def test_chains_and_policies(rs: ruleset.Ruleset) -> None:
    assert rs.tables == (("inet", "kijun"),)
    assert [(c.name, c.hook, c.policy) for c in rs.chains] == [
        ("cutoff", None, None), ("input", "input", "drop"), ("forward", "forward", "drop"),
    ]  # fmt: skip
    assert [c.name for c in rs.base_chains("input")] == ["input"]


def test_rules_are_read_into_what_they_match(rs: ruleset.Ruleset) -> None:
    chain = rs.chain("kijun", "input")
    assert chain is not None
    ntp, https, web, anytcp, negated, log = chain.rules
    assert ntp.saddr is not None and ntp.saddr.networks == (
        net("198.18.0.31/32"), net("198.18.10.0/24"), net("198.18.20.0/24"),
    )  # fmt: skip
    assert (ntp.protos, ntp.dports, ntp.verdict, ntp.comment) == (
        frozenset({"udp"}), frozenset({123}), "accept", "FW-04 ntp",
    )  # fmt: skip
    assert https.saddr is not None and https.saddr.is_everything
    assert web.saddr is None and web.dports == frozenset({80, 8080})
    assert anytcp.protos == frozenset({"tcp"}) and anytcp.dports is None
    assert negated.saddr is not None and negated.saddr.negated
    assert (log.log_prefix, log.limit, log.verdict) == ("kijun-drop: ", "10/minute", None)
    assert not any(r.unknown for r in chain.rules)
    assert str(ntp) == "from { 198.18.0.31, 198.18.10.0/24, 198.18.20.0/24 } udp port 123 " \
        "accept # FW-04 ntp"  # fmt: skip


def test_address_ranges_and_interfaces(rs: ruleset.Ruleset) -> None:
    chain = rs.chain("kijun", "forward")
    assert chain is not None
    jump, fw09, inbound, outbound, ranged = chain.rules
    assert (jump.verdict, jump.target) == ("jump", "cutoff")
    assert inbound.iif == "ens5" and outbound.oif == "ens5"
    assert ranged.saddr is not None
    assert ranged.saddr.within([net("198.18.20.0/29"), net("198.18.20.8/30")])
    assert not ranged.saddr.within([net("198.18.20.0/29")])


def test_verdicts_follow_the_kernel_order(rs: ruleset.Ruleset) -> None:
    def verdict(hook: str, *args: object, **kwargs: object) -> str:
        return rs.verdict(hook, Packet(*args, **kwargs))[0]  # type: ignore[arg-type]

    assert verdict("input", "198.18.10.5", "198.18.20.1", "udp", 123) == "accept"
    assert verdict("input", "198.18.30.5", "198.18.20.1", "udp", 123) == "drop"  # policy
    assert verdict("input", "192.0.2.1", "198.18.20.1", "tcp", 22) == "accept"  # any tcp
    assert verdict("input", "192.0.2.1", "198.18.20.1", "udp", 9) == "drop"
    # The jump to cutoff drops the internet zone before the accept below it.
    assert verdict("forward", "198.18.30.32", "192.0.2.9", "tcp", 25, oifname="ens5") == "drop"
    assert verdict("forward", "192.0.2.9", "198.18.30.31", "tcp", 443, iifname="ens5") == "accept"
    assert verdict("forward", "192.0.2.9", "198.18.30.31", "tcp", 443, iifname="eth9") == "drop"
    assert verdict("forward", "198.18.20.6", "198.18.10.1", "tcp", 1) == "accept"
    decided = rs.verdict("forward", Packet("198.18.10.1", "198.18.30.9", "tcp", 80))[1]
    assert decided is not None and decided.comment == "FW-09"


def test_rules_of_a_hook_include_the_chains_it_jumps_to(rs: ruleset.Ruleset) -> None:
    assert [r.chain for r in rs.rules("forward")][:3] == ["forward", "cutoff", "cutoff"]


def test_an_expression_not_understood_makes_the_rule_match_anything() -> None:
    doc = json.loads(SAMPLE)
    rule = next(
        i["rule"] for i in doc["nftables"] if i.get("rule", {}).get("comment") == "FW-04 ntp"
    )
    rule["expr"].insert(0, {"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 7}})
    rs = ruleset.parse(json.dumps(doc))
    chain = rs.chain("kijun", "input")
    assert chain is not None and chain.rules[0].unknown
    # Read conservatively: the rule still accepts udp/123 from its sources (the mark is unknown).
    assert rs.verdict("input", Packet("198.18.10.5", "198.18.20.1", "udp", 123))[0] == "accept"


def test_ipv6_only_rules_never_match_ipv4_packets() -> None:
    doc = {"nftables": [
        {"table": {"family": "inet", "name": "t"}},
        {"chain": {"family": "inet", "table": "t", "name": "in", "hook": "input", "prio": 0,
                   "policy": "drop"}},
        {"rule": {"family": "inet", "table": "t", "chain": "in", "handle": 2, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}},
                       "right": "::1"}}, {"accept": None}]}},
    ]}  # fmt: skip
    rs = ruleset.parse(json.dumps(doc))
    assert rs.verdict("input", Packet("10.0.0.1", "10.0.0.2", "tcp", 22))[0] == "drop"


def test_not_a_ruleset_is_refused() -> None:
    with pytest.raises(ruleset.RulesetError):
        ruleset.parse("table inet kijun {}")


def test_source_ports_are_read() -> None:
    """`ip daddr 198.18.0.1 tcp sport 22 accept`: SSH replies to an admin host only."""
    doc = {"nftables": [
        {"table": {"family": "inet", "name": "t"}},
        {"chain": {"family": "inet", "table": "t", "name": "out", "hook": "output", "prio": 0,
                   "policy": "drop"}},
        {"rule": {"family": "inet", "table": "t", "chain": "out", "handle": 2, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                       "right": "198.18.0.1"}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "sport"}},
                       "right": 22}},
            {"accept": None}]}},
    ]}  # fmt: skip
    rs = ruleset.parse(json.dumps(doc))
    chain = rs.chain("t", "out")
    assert chain is not None
    rule = chain.rules[0]
    assert (rule.sports, rule.protos, rule.dports, rule.unknown) == (
        frozenset({22}),
        frozenset({"tcp"}),
        None,
        (),
    )
    reply = Packet("198.18.0.11", "198.18.0.1", "tcp", 50000, sport=22)
    assert rs.verdict("output", reply)[0] == "accept"
    assert rs.verdict("output", Packet("198.18.0.11", "198.18.0.1", "tcp", 22))[0] == "drop"
