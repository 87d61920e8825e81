"""nftables rulesets as ``nft -j list ruleset`` shows them: chains, rules, and what they do to a
packet.

The firewall audits compare the ruleset in force with the zone policy by meaning, not by text:
each rule is read into what it matches (source and destination addresses, protocol, destination
port, interfaces, connection state) and what it does (accept, drop, jump, log ...), and
:meth:`Ruleset.verdict` follows a packet through the base chains of a hook as the kernel does.
Expressions this module does not understand are kept (``Rule.unknown``) and make a rule match
any packet, so that a rule the audit cannot read is never taken for a narrower one.

Only IPv4 is modelled: the zone policy is IPv4, and a rule that matches IPv6 only never matches
the IPv4 packets the audits ask about.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kijun import unitfile

IPv4Net = ipaddress.IPv4Network
EVERYWHERE = ipaddress.IPv4Network("0.0.0.0/0")
VERDICTS = ("accept", "drop", "reject", "jump", "goto", "return", "queue")


class RulesetError(ValueError):
    """The text is not a ruleset as ``nft -j list ruleset`` prints it."""


@dataclass(frozen=True)
class Addresses:
    """An address match: the networks it names (ranges become networks), maybe negated."""

    networks: tuple[IPv4Net, ...]
    negated: bool = False

    def contains(self, address: ipaddress.IPv4Address) -> bool:
        inside = any(address in n for n in self.networks)
        return inside != self.negated

    def within(self, allowed: Iterable[IPv4Net]) -> bool:
        """Whether every address it matches lies in ``allowed``."""
        allowed = list(allowed)
        if self.negated:
            return any(a.prefixlen == 0 for a in allowed)
        return all(any(n.subnet_of(a) for a in allowed) for n in self.networks)

    def overlaps(self, others: Iterable[IPv4Net]) -> bool:
        """Whether it matches any address of ``others``."""
        others = list(others)
        if self.negated:
            return any(not any(o.subnet_of(n) for n in self.networks) for o in others)
        return any(n.overlaps(o) for n in self.networks for o in others)

    @property
    def is_everything(self) -> bool:
        return not self.negated and any(n.prefixlen == 0 for n in self.networks)

    def __str__(self) -> str:
        text = ", ".join(str(n.network_address) if n.prefixlen == 32 else str(n)
                         for n in self.networks)  # fmt: skip
        text = text if len(self.networks) == 1 else "{ " + text + " }"
        return f"!= {text}" if self.negated else text


@dataclass(frozen=True)
class Packet:
    """A packet as the audits ask about it (a new connection unless ``ct_state`` says so)."""

    saddr: str
    daddr: str
    proto: str
    dport: int
    iifname: str = ""
    sport: int = 0  # 0: any source port the audits do not ask about
    oifname: str = ""
    ct_state: str = "new"


@dataclass(frozen=True)
class Rule:
    table: str
    chain: str
    handle: int
    comment: str = ""
    saddr: Addresses | None = None
    daddr: Addresses | None = None
    protos: frozenset[str] | None = None
    dports: frozenset[int] | None = None
    dport_ranges: tuple[tuple[int, int], ...] = ()
    sports: frozenset[int] | None = None
    iif: str | None = None  # iif / iifname (names)
    oif: str | None = None  # oif / oifname
    ct_states: frozenset[str] | None = None
    ipv6_only: bool = False
    verdict: str | None = None
    target: str | None = None  # of jump / goto
    log_prefix: str | None = None
    limit: str | None = None  # "10/minute"
    unknown: tuple[str, ...] = ()

    @property
    def accepts(self) -> bool:
        return self.verdict == "accept"

    @property
    def is_replies(self) -> bool:
        """``ct state established,related accept``: replies to accepted traffic."""
        return self.ct_states is not None and self.ct_states <= {"established", "related"}

    @property
    def is_loopback(self) -> bool:
        return self.iif == "lo" or self.oif == "lo"

    def port_matches(self, port: int) -> bool:
        if self.dports is None and not self.dport_ranges:
            return True
        return port in (self.dports or ()) or any(a <= port <= b for a, b in self.dport_ranges)

    def matches(self, packet: Packet) -> bool:
        if self.ipv6_only:
            return False
        if self.saddr is not None and not self.saddr.contains(ipaddress.IPv4Address(packet.saddr)):
            return False
        if self.daddr is not None and not self.daddr.contains(ipaddress.IPv4Address(packet.daddr)):
            return False
        if self.protos is not None and packet.proto not in self.protos:
            return False
        if not self.port_matches(packet.dport):
            return False
        if self.sports is not None and packet.sport not in self.sports:
            return False
        if self.iif is not None and self.iif != packet.iifname:
            return False
        if self.oif is not None and self.oif != packet.oifname:
            return False
        return self.ct_states is None or packet.ct_state in self.ct_states

    def __str__(self) -> str:
        parts = []
        if self.iif:
            parts.append(f"iif {self.iif}")
        if self.oif:
            parts.append(f"oif {self.oif}")
        if self.ct_states is not None:
            parts.append("ct state " + ",".join(sorted(self.ct_states)))
        if self.saddr is not None:
            parts.append(f"from {self.saddr}")
        if self.daddr is not None:
            parts.append(f"to {self.daddr}")
        if self.protos is not None:
            parts.append("/".join(sorted(self.protos)))
        if self.dports is not None or self.dport_ranges:
            ports = [str(p) for p in sorted(self.dports or ())]
            ports += [f"{a}-{b}" for a, b in self.dport_ranges]
            parts.append("port " + ",".join(ports))
        if self.sports is not None:
            parts.append("from port " + ",".join(str(p) for p in sorted(self.sports)))
        parts += [f"[{u}]" for u in self.unknown]
        if self.limit:
            parts.append(f"limit {self.limit}")
        if self.log_prefix is not None:
            parts.append(f"log {self.log_prefix!r}")
        if self.verdict:
            parts.append(self.verdict + (f" {self.target}" if self.target else ""))
        text = " ".join(parts) or "(empty)"
        return f"{text} # {self.comment}" if self.comment else text


@dataclass(frozen=True)
class Chain:
    family: str
    table: str
    name: str
    hook: str | None = None
    policy: str | None = None
    prio: int = 0
    rules: tuple[Rule, ...] = ()

    @property
    def base(self) -> bool:
        return self.hook is not None


@dataclass(frozen=True)
class Ruleset:
    tables: tuple[tuple[str, str], ...]  # (family, name)
    chains: tuple[Chain, ...] = ()

    def chain(self, table: str, name: str) -> Chain | None:
        return next((c for c in self.chains if c.table == table and c.name == name), None)

    def base_chains(self, hook: str) -> list[Chain]:
        """The base chains of a hook (IPv4-capable families), in the order the kernel runs them."""
        found = [c for c in self.chains if c.hook == hook and c.family in ("inet", "ip")]
        return sorted(found, key=lambda c: c.prio)

    def rules(self, hook: str, *, reachable: bool = True) -> list[Rule]:
        """The rules of a hook's base chains and, with ``reachable``, of the chains they jump to."""
        out: list[Rule] = []
        seen: set[tuple[str, str]] = set()

        def walk(chain: Chain) -> None:
            if (chain.table, chain.name) in seen:
                return
            seen.add((chain.table, chain.name))
            for rule in chain.rules:
                out.append(rule)
                if reachable and rule.verdict in ("jump", "goto") and rule.target:
                    target = self.chain(chain.table, rule.target)
                    if target is not None:
                        walk(target)

        for chain in self.base_chains(hook):
            walk(chain)
        return out

    def verdict(self, hook: str, packet: Packet) -> tuple[str, Rule | None]:
        """What the hook does to ``packet``: ``accept`` or ``drop`` (a reject counts as a
        drop), and the rule that decided (None: a chain's policy, or no base chain)."""
        for chain in self.base_chains(hook):
            verdict, rule = self._chain_verdict(chain, packet, depth=0)
            if verdict is None:
                verdict = chain.policy or "accept"
            if verdict != "accept":
                return "drop", rule
        return "accept", None

    def _chain_verdict(
        self, chain: Chain, packet: Packet, depth: int
    ) -> tuple[str | None, Rule | None]:
        if depth > 16:
            return "drop", None  # a loop: the kernel refuses those; never call it accepted
        for rule in chain.rules:
            if not rule.matches(packet):
                continue
            if rule.verdict in ("accept", "drop", "reject", "queue"):
                return ("accept" if rule.verdict == "accept" else "drop"), rule
            if rule.verdict == "return":
                return None, rule
            if rule.verdict in ("jump", "goto") and rule.target:
                target = self.chain(chain.table, rule.target)
                if target is None:
                    continue
                verdict, decided = self._chain_verdict(target, packet, depth + 1)
                if verdict is not None:
                    return verdict, decided
                if rule.verdict == "goto":
                    return None, rule
        return None, None


# --- reading nft's JSON ---------------------------------------------------------------------


def parse(text: str) -> Ruleset:
    """A ruleset from the output of ``nft -j list ruleset``."""
    try:
        doc = json.loads(text)
        items = doc["nftables"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise RulesetError(f"not the JSON of `nft -j list ruleset`: {err}") from None
    tables: list[tuple[str, str]] = []
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[Rule]] = {}
    for item in items:
        if "table" in item:
            tables.append((item["table"]["family"], item["table"]["name"]))
        elif "chain" in item:
            c = item["chain"]
            chains[(c["family"], c["table"], c["name"])] = c
        elif "rule" in item:
            r = item["rule"]
            key = (r["family"], r["table"], r["chain"])
            rules.setdefault(key, []).append(_rule(r))
    out = []
    for key, c in chains.items():
        out.append(
            Chain(
                family=c["family"],
                table=c["table"],
                name=c["name"],
                hook=c.get("hook"),
                policy=c.get("policy"),
                prio=int(c["prio"]) if isinstance(c.get("prio"), int) else 0,
                rules=tuple(rules.get(key, [])),
            )
        )
    return Ruleset(tuple(tables), tuple(out))


def _networks(right: Any) -> tuple[IPv4Net, ...] | None:
    """The IPv4 networks of an address match's right-hand side, or None if not understood."""
    if isinstance(right, str):
        try:
            return (ipaddress.IPv4Network(right, strict=False),)
        except ValueError:
            return None
    if isinstance(right, dict):
        if "prefix" in right:
            p = right["prefix"]
            try:
                return (ipaddress.IPv4Network(f"{p['addr']}/{p['len']}", strict=False),)
            except (ValueError, KeyError, TypeError):
                return None
        if "range" in right:
            try:
                low, high = (ipaddress.IPv4Address(a) for a in right["range"])
            except (ValueError, TypeError):
                return None
            return tuple(ipaddress.summarize_address_range(low, high))
        if "set" in right:
            out: list[IPv4Net] = []
            for element in right["set"]:
                nets = _networks(element)
                if nets is None:
                    return None
                out += nets
            return tuple(out)
    return None


def _ports(right: Any) -> tuple[frozenset[int], tuple[tuple[int, int], ...]] | None:
    if isinstance(right, int):
        return frozenset({right}), ()
    if isinstance(right, dict) and "range" in right:
        a, b = right["range"]
        return frozenset(), ((int(a), int(b)),)
    if isinstance(right, dict) and "set" in right:
        ports: set[int] = set()
        ranges: list[tuple[int, int]] = []
        for element in right["set"]:
            got = _ports(element)
            if got is None:
                return None
            ports |= got[0]
            ranges += got[1]
        return frozenset(ports), tuple(ranges)
    return None


def _names(right: Any) -> frozenset[str] | None:
    if isinstance(right, str):
        return frozenset({right})
    if isinstance(right, list) and all(isinstance(x, str) for x in right):
        return frozenset(right)
    if isinstance(right, dict) and "set" in right:
        return _names(right["set"])
    return None


def _rule(raw: dict[str, Any]) -> Rule:
    fields: dict[str, Any] = {}
    unknown: list[str] = []
    for expr in raw.get("expr", []):
        (kind, body), *_ = expr.items()
        if kind == "match":
            if not _match(body, fields):
                unknown.append(json.dumps(body, sort_keys=True))
        elif kind in ("accept", "drop", "return"):
            fields["verdict"] = kind
        elif kind == "reject":
            fields["verdict"] = "reject"
        elif kind in ("jump", "goto"):
            fields["verdict"] = kind
            fields["target"] = body.get("target")
        elif kind == "queue":
            fields["verdict"] = "queue"
        elif kind == "log":
            fields["log_prefix"] = (body or {}).get("prefix", "")
        elif kind == "limit":
            fields["limit"] = f"{body.get('rate')}/{body.get('per')}"
        elif kind == "counter":
            continue
        else:
            unknown.append(json.dumps(expr, sort_keys=True))
    return Rule(
        table=raw["table"],
        chain=raw["chain"],
        handle=int(raw.get("handle", 0)),
        comment=raw.get("comment", ""),
        unknown=tuple(unknown),
        **fields,
    )


def _match(body: dict[str, Any], fields: dict[str, Any]) -> bool:
    """Record one ``match`` expression in ``fields``; False if it is not understood."""
    op, left, right = body.get("op"), body.get("left", {}), body.get("right")
    negated = op == "!="
    if op not in ("==", "!=", "in"):
        return False
    if isinstance(left, dict) and "payload" in left:
        payload = left["payload"]
        protocol, name = payload.get("protocol"), payload.get("field")
        if protocol == "ip6":
            fields["ipv6_only"] = True
            return True
        if protocol == "ip" and name in ("saddr", "daddr"):
            nets = _networks(right)
            if nets is None:
                return False
            fields[name] = Addresses(nets, negated)
            return True
        if protocol in ("tcp", "udp") and name == "dport" and not negated:
            got = _ports(right)
            if got is None:
                return False
            fields["protos"] = frozenset({protocol})
            fields["dports"], fields["dport_ranges"] = got
            return True
        if protocol in ("tcp", "udp") and name == "sport" and not negated:
            got = _ports(right)
            if got is None or got[1]:
                return False
            fields["protos"] = frozenset({protocol})
            fields["sports"] = got[0]
            return True
        return False
    if isinstance(left, dict) and "meta" in left:
        key = left["meta"].get("key")
        names = _names(right)
        if names is None or negated:
            return False
        if key == "l4proto":
            fields["protos"] = names
            return True
        if key == "nfproto":
            if names == {"ipv6"}:
                fields["ipv6_only"] = True
            return True
        if key in ("iif", "iifname", "oif", "oifname") and len(names) == 1:
            fields["iif" if key.startswith("iif") else "oif"] = next(iter(names))
            return True
        return False
    if isinstance(left, dict) and "ct" in left and left["ct"].get("key") == "state":
        names = _names(right)
        if names is None or negated:
            return False
        fields["ct_states"] = names
        return True
    return False


# --- where the ruleset in force comes from -----------------------------------------------------

# The commands of nftables.service that load rules (ExecStop only flushes).
LOADING_COMMANDS = ("ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload")


def unit_commands(text: str) -> list[unitfile.Assignment]:
    """The commands of nftables.service that load rules, from ``systemctl cat`` (with the file
    and line of each)."""
    return unitfile.assignments(text, "Service", LOADING_COMMANDS)


def loads_only(commands: list[unitfile.Assignment], conf: str) -> list[unitfile.Assignment]:
    """The commands that load anything but ``conf`` with ``nft -f`` (nothing else may load rules:
    a command that adds rules after the file, or loads another file, is listed), and a missing
    ExecStart or ExecReload (source "")."""
    allowed = {"ExecStart", "ExecReload"}
    bad = []
    for c in commands:
        words = c.value.lstrip("-@:+!").split()
        nft = bool(words) and words[0].rsplit("/", 1)[-1] == "nft"
        if c.key not in allowed or not nft or words[1:] != ["-f", conf]:
            bad.append(c)
    for setting in sorted(allowed):
        if not any(c.key == setting for c in commands):
            bad.append(unitfile.Assignment(setting, "(none)", ""))
    return bad
