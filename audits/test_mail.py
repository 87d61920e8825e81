"""Mail relays (ML-01..ML-07): Postfix's effective configuration and live SMTP conversations.

What is read: ``postconf`` (the values Postfix uses, expanded, and the explicit settings of
main.cf), ``postconf -P`` (the parameters a service of master.cf overrides with ``-o``, which
Postfix prefers to main.cf for that service), main.cf and master.cf themselves (the line that set
each value in force, named as each check's ``source``: ``kijun.postfix``), and for the mail log
rsyslog's full
configuration (``rsyslogd -N1 -o``), logrotate's reading of its configuration and which log
files hold Postfix's records. The log commands run only where postfix is enabled.

Live conversations (kijun.smtpprobe, Python's smtplib), each transcript kept as evidence
(``mail/smtp_<mode>``), nothing ever delivered:

* ``outside``, from the control node, which must be outside the declared ``mynetworks``: MAIL
  before HELO is refused (ML-05), VRFY is disabled (ML-05), relaying to an outside domain is
  refused with 5xx (ML-01), mail for postmaster at the relay's own domain is accepted (ML-01);
* ``inside``, from a host of the relay's zone whose address is in the declared ``mynetworks``
  (``python3`` on that host; else the relay itself over loopback when loopback is declared):
  relaying to an outside domain is accepted (ML-01); the conversation stops after RCPT;
* ``size``, from the control node: a message one byte over the declared limit, announced with
  ``SIZE=`` and then sent, is refused (ML-04).

The control node reaches the relay at its ``ansible_host``; an inside host reaches it at its
zone address (``kijun_zone_address``) when the inventory gives one. When the relay does not
answer SMTP at all, ML-01's probe fails (it neither refuses relaying nor accepts its own mail)
and ML-04 and ML-05 judge the configuration alone and say so.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import pytest

from kijun import logrotate as lr
from kijun import postfix as pf
from kijun import rsyslog as rs
from kijun import smtpprobe
from kijun.audit_plugin import STATE

SMTP_PORT = 25
PARAMETERS = (
    "mynetworks", "relayhost", "message_size_limit", "mailbox_size_limit",
    "smtpd_relay_restrictions", "disable_vrfy_command", "smtpd_helo_required", "smtpd_banner",
    "smtpd_client_message_rate_limit", "smtpd_client_recipient_rate_limit",
    "smtpd_client_connection_rate_limit", "smtpd_client_event_limit_exceptions",
    "anvil_rate_time_unit", "myhostname", "mydestination", "mail_name", "mail_version",
)  # fmt: skip
_ONLY_WHERE_POSTFIX = "systemctl -q is-enabled postfix.service 2>/dev/null || exit 0; "

COLLECT = {
    "mail/postconf": f"postconf -x {' '.join(PARAMETERS)}",
    "mail/postconf_raw": "postconf -h smtpd_banner",
    "mail/postconf_n": "postconf -n",
    # master.cf's -o overrides per service (expanded, and as written), and both files for the
    # line numbers of the values in force.
    "mail/postconf_services": "postconf -Px",
    "mail/postconf_services_raw": "postconf -P",
    "mail/main_cf": f"cat {pf.MAIN_CF}",
    "mail/master_cf": f"cat {pf.MASTER_CF}",
    # The same commands as the logging module's, run once per host when both modules run.
    **rs.COLLECT,
    **lr.COLLECT,
    # Log files holding at least one record of Postfix (grep stops at the first).
    "mail/log_files_with_postfix": _ONLY_WHERE_POSTFIX
    + "find /var/log -xdev \\( -path /var/log/journal -o -path /var/log/remote \\) -prune "
    "-o -type f ! -name '*.gz' -exec grep -l -m1 -F ' postfix/' {} +",
}
NOT_ANSWERING = "the relay does not answer SMTP"


# --- reading the snapshot ---------------------------------------------------------------------


def config(snapshot: Any) -> pf.PostfixConfig:
    """Postfix's configuration in force: main.cf's values (``postconf -x``), each service's
    overrides (``postconf -Px``) and the lines that set them. An override list Postfix could not
    print, or that cannot be read, is an error, never a pass."""
    overrides = snapshot["mail/postconf_services"]
    if overrides.rc != 0:
        raise pf.PostfixReadError(f"postconf -Px failed (exit {overrides.rc}): {overrides.stdout}")
    return pf.PostfixConfig.read(
        values=snapshot.text("mail/postconf"), overrides=overrides.stdout,
        main_cf=snapshot.text("mail/main_cf"), master_cf=snapshot.text("mail/master_cf"),
    )  # fmt: skip


def postconf(snapshot: Any) -> dict[str, str]:
    """Postfix's values in force (``postconf -x``, $names expanded; a parameter that a service
    of master.cf overrides: the override, see :meth:`kijun.postfix.PostfixConfig.setting`)."""
    return config(snapshot).effective(PARAMETERS)


def source(snapshot: Any, *names: str) -> str:
    """The file and line that set the first overridden of ``names`` (else the first's)."""
    return config(snapshot).source(*names)


def words(value: str | None) -> list[str]:
    """A Postfix list (commas and/or spaces between the items)."""
    return [w for w in re.split(r"[,\s]+", value or "") if w]


def network(text: str) -> str:
    """A mynetworks item in canonical form (``[::1]/128`` is ``::1/128``); others as given."""
    try:
        return str(ipaddress.ip_network(text.replace("[", "").replace("]", ""), strict=False))
    except ValueError:
        return text


def inside(address: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for net in networks:
        try:
            if ip in ipaddress.ip_network(network(net), strict=False):
                return True
        except ValueError:
            continue
    return False


def integer(value: str | None) -> int | None:
    try:
        return int(value or "")
    except ValueError:
        return None


def own_domain(expected: dict[str, Any], values: dict[str, str]) -> str:
    domains = list(expected["mail_relay_domains"])
    return str(domains[0]) if domains else values.get("myhostname") or "localhost"


# --- live conversations -----------------------------------------------------------------------


def _stored(snapshot: Any, key: str) -> dict[str, Any] | None:
    if key not in snapshot:
        return None
    first = snapshot.text(key).splitlines()[:1]
    return json.loads(first[0]) if first else None


def _relay_address(hostvars: Any) -> str:
    return str(hostvars.connection.get("ansible_host") or hostvars.name)


def converse(snapshot: Any, hostvars: Any, expected: dict[str, Any], mode: str) -> dict[str, Any]:
    """The control node's conversation of this mode with the relay, once per host and run."""
    key = f"mail/smtp_{mode}"
    done = _stored(snapshot, key)
    if done is not None:
        return done
    result = smtpprobe.probe(
        mode,
        _relay_address(hostvars),
        SMTP_PORT,
        helo="kijun-audit.probe.example",
        domain=own_domain(expected, postconf(snapshot)),
        size_limit=int(expected["mail_relay_message_size_limit"]),
    )
    snapshot.add(key, smtpprobe.transcript_text(result), 0 if not result["error"] else 1)
    return {k: v for k, v in result.items() if k != "transcript"}


def _inside_client(hostvars: Any, hosts: dict[str, Any], networks: list[str]) -> tuple[str, str]:
    """The host to relay from inside, and the relay address it connects to."""
    target = str(hostvars.values.get("kijun_zone_address") or _relay_address(hostvars))
    for name in sorted(hosts):
        other = hosts[name]
        address = other.values.get("kijun_zone_address") or other.connection.get("ansible_host")
        if (
            name != hostvars.name
            and other.zones & hostvars.zones
            and inside(str(address), networks)
            and not ipaddress.ip_address(address).is_loopback
        ):
            return name, target
    return hostvars.name, "127.0.0.1"


def converse_inside(
    snapshot: Any, hostvars: Any, expected: dict[str, Any], host: Any, pytestconfig: Any,
    inventory_hosts: Any,
) -> dict[str, Any]:  # fmt: skip
    key = "mail/smtp_inside"
    done = _stored(snapshot, key)
    if done is not None:
        return done
    networks = [str(n) for n in expected["mail_relay_mynetworks"]]
    client, target = _inside_client(hostvars, pytestconfig.stash[STATE].hosts, networks)
    if target == "127.0.0.1" and not inside(target, networks):
        result: dict[str, Any] = {
            "mode": "inside",
            "client": None,
            "error": None,
            "transcript": ["-- no declared network to relay from"],
        }
    else:
        runner = host
        if client != hostvars.name:
            hosts = pytestconfig.stash[STATE].hosts
            zone = sorted(hosts[client].zones & hostvars.zones)[0]
            runner = inventory_hosts(f"zone_{zone}")[client]
        command = smtpprobe.remote_command(
            "inside", target, SMTP_PORT, helo=f"{client}.kijun-audit.probe.example",
            domain=own_domain(expected, postconf(snapshot)),
        )  # fmt: skip
        out = runner.run(command)
        try:
            result = json.loads(out.stdout)
        except json.JSONDecodeError:
            result = {"mode": "inside", "error": f"the probe did not run on {client}: "
                      f"{(out.stderr or out.stdout).strip()[-300:]}", "transcript": []}  # fmt: skip
        result["client"] = client
    snapshot.add(key, smtpprobe.transcript_text(result), 0 if not result["error"] else 1)
    return {k: v for k, v in result.items() if k != "transcript"}


def _outside_source_ok(result: dict[str, Any], expected: dict[str, Any]) -> None:
    source = result.get("source")
    if source and inside(source, list(expected["mail_relay_mynetworks"])):
        pytest.fail(
            f"the control node ({source}) is inside the declared mynetworks: the relay cannot be "
            "probed from outside; audit from a control node outside them",
            pytrace=False,
        )


# --- ML-01 ------------------------------------------------------------------------------------


@pytest.mark.control("ML-01")
def test_relay_restrictions_reject_unauth_destination(snapshot, expected, audit) -> None:
    restrictions = words(postconf(snapshot).get("smtpd_relay_restrictions"))
    before = restrictions[: restrictions.index("reject_unauth_destination")] if (
        "reject_unauth_destination" in restrictions) else restrictions  # fmt: skip
    # Before the refusal only the trusted clients may be permitted (or more be refused).
    loose = [r for r in before if r not in ("permit_mynetworks", "permit_sasl_authenticated")
             and not r.startswith("reject_")]  # fmt: skip
    audit.expect(
        "reject_unauth_destination" in restrictions and not loose,
        expected="smtpd_relay_restrictions: permit_mynetworks, permit_sasl_authenticated, "
        "reject_unauth_destination",
        observed={
            "smtpd_relay_restrictions": restrictions,
            **({"before it": loose} if loose else {}),
        },
        message="Postfix decides relaying by smtpd_relay_restrictions (postconf -x, -P)",
        source=source(snapshot, "smtpd_relay_restrictions"),
    )


@pytest.mark.control("ML-01")
def test_open_relay_probe_rejected(
    snapshot, expected, audit, hostvars, host, pytestconfig, inventory_hosts
) -> None:
    outside = converse(snapshot, hostvars, expected, "outside")
    _outside_source_ok(outside, expected)
    inner = converse_inside(snapshot, hostvars, expected, host, pytestconfig, inventory_hosts)
    ok_outside = (
        not outside["error"]
        and 500 <= outside.get("relay", 0) < 600
        and outside.get("local") == 250
    )
    ok_inside = inner.get("client") is None or (not inner["error"] and inner.get("relay") == 250)
    audit.expect(
        ok_outside and ok_inside,
        expected={
            "outside: relay to another domain": "5xx",
            "outside: mail for postmaster of the relay's domain": 250,
            "inside: relay to another domain": 250,
        },
        observed={
            "outside": {k: outside.get(k) for k in ("source", "relay", "local", "error")},
            "inside": {k: inner.get(k) for k in ("client", "source", "relay", "error")},
        },
        message="SMTP transcripts: mail/smtp_outside, mail/smtp_inside"
        + ("" if not outside["error"] else f"; {NOT_ANSWERING}"),
        source=source(snapshot, "smtpd_relay_restrictions", "mynetworks"),
    )


# --- ML-02 ------------------------------------------------------------------------------------


@pytest.mark.control("ML-02")
def test_mynetworks_exact(snapshot, expected, audit) -> None:
    snapshot["mail/postconf_n"]  # main.cf's explicit settings, beside the value Postfix uses
    observed = words(postconf(snapshot).get("mynetworks"))
    want = sorted(network(str(n)) for n in expected["mail_relay_mynetworks"])
    got = sorted(network(n) for n in observed)
    catch_all = [n for n in got if n.endswith("/0")]
    audit.expect(
        got == want and not catch_all,
        expected=want,
        observed={"mynetworks": observed, **({"catch-all": catch_all} if catch_all else {})},
        message="compared as networks (postconf -x mynetworks, postconf -P)",
        source=source(snapshot, "mynetworks"),
    )


# --- ML-03 ------------------------------------------------------------------------------------


@pytest.mark.control("ML-03")
def test_relayhost_declared(snapshot, expected, audit, hostvars) -> None:
    observed = postconf(snapshot).get("relayhost")
    want = str(expected["mail_relay_relayhost"])
    direct_ok = "internet" in hostvars.zones
    audit.expect(
        observed == want and (bool(want) or direct_ok),
        expected=want or "an upstream relay (direct delivery only in the internet zone)",
        observed=observed if observed else "(empty: direct delivery)",
        source=source(snapshot, "relayhost"),
    )


# --- ML-04 ------------------------------------------------------------------------------------


@pytest.mark.control("ML-04")
def test_message_size_limit(snapshot, expected, audit, hostvars) -> None:
    want = int(expected["mail_relay_message_size_limit"])
    configured = integer(postconf(snapshot).get("message_size_limit"))
    live = converse(snapshot, hostvars, expected, "size")
    _outside_source_ok(live, expected)
    refused = not live["error"] and 500 <= live.get("announced", 0) < 600
    refused = refused and (live.get("data") is None or 500 <= live["data"] < 600)
    answered = not live["error"] or "announced" in live
    audit.expect(
        configured == want and (refused or not answered),
        expected={"message_size_limit": want, f"a message of {want + 1} bytes": "refused (5xx)"},
        observed={
            "message_size_limit": configured,
            "advertised SIZE": live.get("advertised"),
            "announced with SIZE=": live.get("announced"),
            "sent": live.get("data", "not sent"),
        },
        message="SMTP transcript: mail/smtp_size"
        + ("" if answered else f"; {NOT_ANSWERING}: configuration alone"),
        source=source(snapshot, "message_size_limit"),
    )


@pytest.mark.control("ML-04")
def test_mailbox_size_limit(snapshot, expected, audit) -> None:
    audit.equal(
        integer(postconf(snapshot).get("mailbox_size_limit")),
        int(expected["mail_relay_mailbox_size_limit"]),
        source=source(snapshot, "mailbox_size_limit"),
    )


@pytest.mark.control("ML-04")
def test_mailbox_limit_not_below_message_limit(snapshot, expected, audit) -> None:
    values = postconf(snapshot)
    mailbox = integer(values.get("mailbox_size_limit"))
    message = integer(values.get("message_size_limit"))
    # 0 means no limit: an unlimited message needs an unlimited mailbox.
    ok = mailbox is not None and message is not None and (
        mailbox == 0 or (message != 0 and mailbox >= message))  # fmt: skip
    audit.expect(
        ok,
        expected="mailbox_size_limit 0 (none) or >= message_size_limit (0: none)",
        observed={"mailbox_size_limit": mailbox, "message_size_limit": message},
        source=source(snapshot, "mailbox_size_limit", "message_size_limit"),
    )


# --- ML-05 ------------------------------------------------------------------------------------


def _live_code(snapshot: Any, hostvars: Any, expected: dict[str, Any], name: str) -> Any:
    result = converse(snapshot, hostvars, expected, "outside")
    return result.get(name) if result.get(name) is not None else NOT_ANSWERING


@pytest.mark.control("ML-05")
def test_disable_vrfy_command(snapshot, expected, audit, hostvars) -> None:
    configured = postconf(snapshot).get("disable_vrfy_command")
    live = _live_code(snapshot, hostvars, expected, "vrfy")
    audit.expect(
        configured == "yes" and live in (502, NOT_ANSWERING),
        expected={"disable_vrfy_command": "yes", "VRFY": 502},
        observed={"disable_vrfy_command": configured, "VRFY": live},
        message="SMTP transcript: mail/smtp_outside",
        source=source(snapshot, "disable_vrfy_command"),
    )


@pytest.mark.control("ML-05")
def test_smtpd_helo_required(snapshot, expected, audit, hostvars) -> None:
    configured = postconf(snapshot).get("smtpd_helo_required")
    live = _live_code(snapshot, hostvars, expected, "mail_before_helo")
    audit.expect(
        configured == "yes" and live in (503, NOT_ANSWERING),
        expected={"smtpd_helo_required": "yes", "MAIL before HELO": 503},
        observed={"smtpd_helo_required": configured, "MAIL before HELO": live},
        message="SMTP transcript: mail/smtp_outside",
        source=source(snapshot, "smtpd_helo_required"),
    )


@pytest.mark.control("ML-05")
def test_smtpd_banner_minimal(snapshot, expected, audit, hostvars) -> None:
    values = postconf(snapshot)
    raw = snapshot.text("mail/postconf_raw").strip()
    overridden = config(snapshot).setting("smtpd_banner").service
    if overridden is not None:  # the service's -o value as written ($names not expanded)
        raw = pf.parse_overrides(snapshot.text("mail/postconf_services_raw"))[overridden][
            "smtpd_banner"
        ]
    banner = values.get("smtpd_banner", "")
    software = [w for w in (values.get("mail_name"), values.get("mail_version")) if w]
    shown = [w for w in software if w.lower() in banner.lower()]
    greeting = converse(snapshot, hostvars, expected, "outside").get("greeting")
    live = greeting[1] if greeting else NOT_ANSWERING
    audit.expect(
        raw == expected["mail_relay_smtpd_banner"]
        and not shown
        and live in (banner, NOT_ANSWERING),
        expected={"smtpd_banner": expected["mail_relay_smtpd_banner"], "names the software": []},
        observed={"smtpd_banner": raw, "names the software": shown, "greeting": live},
        message="SMTP transcript: mail/smtp_outside",
        source=source(snapshot, "smtpd_banner"),
    )


# --- ML-06 ------------------------------------------------------------------------------------


def _rate_check(snapshot: Any, expected: dict[str, Any], audit: Any, kind: str) -> None:
    values = postconf(snapshot)
    name = f"smtpd_client_{kind}_rate_limit"
    want = int(expected[f"mail_relay_client_{kind}_rate_limit"])
    observed = {
        name: integer(values.get(name)),
        "anvil_rate_time_unit": values.get("anvil_rate_time_unit"),
        "smtpd_client_event_limit_exceptions": values.get("smtpd_client_event_limit_exceptions"),
    }
    audit.expect(
        observed
        == {
            name: want,
            "anvil_rate_time_unit": "60s",
            "smtpd_client_event_limit_exceptions": "",
        },  # fmt: skip
        expected={name: want, "per": "60s", "exempt clients": "none (mynetworks included)"},
        observed=observed,
        message="Postfix exempts mynetworks unless smtpd_client_event_limit_exceptions is empty",
        source=source(
            snapshot, name, "anvil_rate_time_unit", "smtpd_client_event_limit_exceptions"
        ),
    )


@pytest.mark.control("ML-06")
def test_client_message_rate_limit(snapshot, expected, audit) -> None:
    _rate_check(snapshot, expected, audit, "message")


@pytest.mark.control("ML-06")
def test_client_recipient_rate_limit(snapshot, expected, audit) -> None:
    _rate_check(snapshot, expected, audit, "recipient")


@pytest.mark.control("ML-06")
def test_client_connection_rate_limit(snapshot, expected, audit) -> None:
    _rate_check(snapshot, expected, audit, "connection")


# --- ML-07 ------------------------------------------------------------------------------------


def _mail_log_files(snapshot: Any) -> list[str]:
    """The files rsyslog writes the mail facility to (default ruleset)."""
    files = []
    for action in rs.parse(snapshot.text("logging/rsyslog_conf")).files():
        if action.ruleset is not None or len(action.conditions) != 1:
            continue
        chosen = rs.selector_facilities(action.conditions[0])
        if "mail" in chosen or "*" in chosen:
            files.append(str(action.file))
    return sorted(set(files))


@pytest.mark.control("ML-07")
def test_mail_log_present(snapshot, expected, audit) -> None:
    files = _mail_log_files(snapshot)
    with_records = set(snapshot.text("mail/log_files_with_postfix").split())
    # The current file, or its last rotated copy (a quiet week leaves the new file empty).
    written = sorted(f for f in files if f.endswith("mail.log") and {f, f + ".1"} & with_records)
    audit.expect(
        bool(written),
        expected="rsyslog writes the mail facility to a mail.log holding Postfix's records",
        observed={"mail facility files": files, "with Postfix records": written},
    )


@pytest.mark.control("ML-07")
def test_mail_log_retention_days(snapshot, expected, audit) -> None:
    debug = lr.parse_debug(snapshot.text("logging/logrotate_debug"))
    blocks, unread = lr.read_config(lr.parse_files(snapshot.text("logging/logrotate_files")))
    rotations, problems = lr.combine(debug, blocks)
    want = int(expected["mail_relay_log_retention_days"])
    observed: dict[str, Any] = {}
    kept = []
    for path in (f for f in _mail_log_files(snapshot) if f.endswith("mail.log")):
        rot = lr.rotation_for(path, rotations)
        days = lr.retention_days(rot) if rot else None
        observed[path] = "not rotated" if rot is None else (days if days is not None else "by size")
        if rot is not None and rot.verified and days is not None and days >= want:
            kept.append(path)
    audit.expect(
        bool(kept),
        expected=f"a mail.log kept >= {want} days",
        observed={"days": observed, **({"unclear": [*unread, *problems]} if not kept else {})},
        message="retention = rotations x period, bounded by maxage (kijun.logrotate)",
    )
