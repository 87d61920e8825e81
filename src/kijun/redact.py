"""Redaction of secrets in what an evidence bundle holds.

The collection commands print no secrets by design (see :mod:`kijun.snapshot`); this is the
safety net under them. Each rule replaces a secret with ``[REDACTED:<rule>]`` and keeps what an
auditor needs around it: the key's name, a shadow entry's lock mark ``!``, the host of a relay
credential. The rules are narrow on purpose, so that ordinary configuration (chrony.conf,
login.defs, ``postconf -n``, nft rulesets, hostapd.conf without secrets) passes unchanged; the
tests prove both sides. Redacting redacted text changes nothing more.

Rules (the names are what the manifest counts per file):

``private-key``
    a PEM private key block (``-----BEGIN ... PRIVATE KEY-----``, OpenSSH, PGP), even unclosed.
``password-hash``
    a crypt(3) hash anywhere (``$1$ $5$ $6$ $y$ $gy$ $7$ $2b$``), and the password field of a
    shadow line in any other format (DES, ...); ``*``, ``!``, ``!!`` and an empty field are
    states, not hashes, and stay.
``url-credentials``
    the password in ``scheme://user:password@host``.
``secret-assignment``
    the value after ``=`` or ``:`` of a key whose name ends in password, passwd, passphrase,
    secret, token, psk, api_key, secret_key or access_key (``wpa_passphrase=``, ``sae_password=``,
    ``auth_server_shared_secret=``, ``psk="..."``, ``private_key_passwd=``, ``"token": "..."``).
    A quoted value loses its content and keeps its quotes; an unquoted one is redacted to the
    end of the line (a WPA passphrase may hold spaces). ``passwd:`` alone is nsswitch.conf's
    database name and stays; keys ending in ``_file`` or ``_maps`` name files and stay, and so
    do file names in ``grep -Hn`` output (``/etc/pam.d/common-password:25:...``).
``sasl-password``
    a line of a Postfix SASL password map, ``<relay> <user>:<password>``, where the relay is
    ``[host]:port``, a dotted host name or address, or ``@domain`` / ``user@domain``, and the line
    has exactly these two fields (a ``+``/``-`` diff mark before them is allowed). Times,
    IPv6 and MAC addresses in that place are not credentials and stay.
``ntp-key``
    the key of a chrony.keys / ntp.keys line, ``<id> <type> [HEX:|ASCII:]<key>``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple


def marker(rule: str) -> str:
    return f"[REDACTED:{rule}]"


class Redacted(NamedTuple):
    text: str
    fired: list[str]  # one rule name per replacement: Counter(fired) counts them


@dataclass(frozen=True)
class _Rule:
    name: str
    pattern: re.Pattern[str]
    replace: Callable[[re.Match[str], str], str | None]  # None: leave the match as it is


def _whole(match: re.Match[str], rule: str) -> str:
    return marker(rule)


def _keep_prefix(match: re.Match[str], rule: str) -> str | None:
    if match.group("secret").startswith("[REDACTED:"):
        return None
    return match.group("pre") + marker(rule)


_C = r"[./0-9A-Za-z]"  # the crypt(3) alphabet
_CRYPT = (
    rf"\$(?:1\${_C}{{1,8}}\${_C}{{22}}"  # md5crypt
    rf"|[56]\$(?:rounds=\d+\$)?{_C}{{1,16}}\${_C}{{43,86}}"  # sha256crypt, sha512crypt
    rf"|2[abxy]\$\d\d\${_C}{{53}}"  # bcrypt
    rf"|g?y\${_C}+\${_C}+\${_C}{{43}}"  # yescrypt, gost-yescrypt
    rf"|7\${_C}{{11,}}\${_C}{{43}}"  # scrypt
    rf")(?!{_C})"
)

# name:password:lastchg:min:max:warn:inactive:expire:reserved, the password neither a state
# (*, !, !!, empty) nor already redacted (a marker holds ':', which the field cannot).
_SHADOW = (
    r"^(?P<pre>[a-z_][\w.-]*\$?:!*)(?P<secret>[^:\n!*][^:\n]*)"
    r"(?=:\d*:\d*:\d*:\d*:\d*:\d*:[^:\n]*$)"
)

_URL = r"(?P<pre>\b[a-z][a-z0-9+.-]*://[^\s/:@]+:)(?P<secret>[^\s/@]+)(?=@)"

SECRET_KEY = re.compile(
    r"[\w.-]*?(?:password|passwd|passphrase|secret|token|psk|api[_-]?key|secret[_-]?key"
    r"|access[_-]?key)",
    re.I,
)

_ASSIGNMENT = (
    rf"(?<![\w./-])(?P<q>[\"']?)(?P<key>{SECRET_KEY.pattern})(?P=q)(?P<sep>[ \t]*[=:][ \t]*)"
    r"(?:\"(?P<dq>[^\"\n]*)\"|'(?P<sq>[^'\n]*)'|(?P<bare>[^\s\"'](?:[^\n]*\S)?))"
)


def _assignment(match: re.Match[str], rule: str) -> str | None:
    key, sep = match.group("key"), match.group("sep")
    quote, value = next(
        (q, match.group(g))
        for g, q in (("dq", '"'), ("sq", "'"), ("bare", ""))
        if match.group(g) is not None
    )
    if (
        not value
        or value.startswith("[REDACTED:")
        or (key.lower() == "passwd" and ":" in sep)  # nsswitch.conf: "passwd: files systemd"
        or (sep == ":" and re.match(r"\d+:", value))  # grep -Hn: "common-password:25:..."
    ):
        return None
    head = match.group("q") + key + match.group("q") + sep
    return f"{head}{quote}{marker(rule)}{quote}"


_SASL = (
    r"^(?P<pre>[ \t]*[+-]?[ \t]*"
    r"(?:\[[^\]\s]+\](?::\d+)?|[\w.+-]*@[\w.-]+|\w[\w-]*(?:\.[\w-]+)+(?::\d+)?)"
    r"[ \t]+(?P<user>[\w.+@-]+):)(?P<secret>\S+)[ \t]*$"
)
_NOT_A_CREDENTIAL = re.compile(r"[0-9A-Fa-f:.\[\]/%]+")  # IPv6, MAC, time, ratio


def _sasl(match: re.Match[str], rule: str) -> str | None:
    secret = match.group("secret")
    token = f"{match.group('user')}:{secret}"
    address = token.split("%", 1)[0]  # fe80::1%eth0
    if _NOT_A_CREDENTIAL.fullmatch(address) or secret.startswith(("//", "[REDACTED:")):
        return None
    return match.group("pre") + marker(rule)


# chrony.keys / ntp.keys: "<id> <type> [HEX:|ASCII:]<key>"
_NTP_KEY = (
    r"^(?P<pre>[ \t]*\d+[ \t]+(?:MD5|SHA1|SHA256|SHA384|SHA512|SHA3-224|SHA3-256|SHA3-384"
    r"|SHA3-512|TIGER|WHIRLPOOL|AES128|AES256|M)[ \t]+(?:HEX:|ASCII:)?)(?P<secret>\S+)[ \t]*$"
)

RULES = [
    _Rule(
        "private-key",
        re.compile(
            r"-----BEGIN (?P<kind>[A-Z0-9 ]*)PRIVATE KEY(?: BLOCK)?-----.*?"
            r"(?:-----END (?P=kind)PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.S,
        ),
        _whole,
    ),
    _Rule("password-hash", re.compile(_CRYPT), _whole),
    _Rule("password-hash", re.compile(_SHADOW, re.M), _keep_prefix),
    _Rule("url-credentials", re.compile(_URL, re.I), _keep_prefix),
    _Rule("secret-assignment", re.compile(_ASSIGNMENT, re.I | re.M), _assignment),
    _Rule("sasl-password", re.compile(_SASL, re.M), _sasl),
    _Rule("ntp-key", re.compile(_NTP_KEY, re.M), _keep_prefix),
]


def redact(text: str) -> Redacted:
    """``text`` with every secret the rules find replaced, and the rules that fired."""
    out, fired = _redact(text)
    return Redacted(out, list(fired))


@functools.lru_cache(maxsize=65536)
def _redact(text: str) -> tuple[str, tuple[str, ...]]:
    # Evidence repeats the same strings many times (hosts, statuses, values): each distinct
    # string goes through the rules once per run.
    fired: list[str] = []
    for rule in RULES:

        def substitute(match: re.Match[str], rule: _Rule = rule) -> str:
            replacement = rule.replace(match, rule.name)
            if replacement is None:
                return match.group(0)
            fired.append(rule.name)
            return replacement

        text = rule.pattern.sub(substitute, text)
    return text, tuple(fired)


def redact_json(value: Any) -> tuple[Any, list[str]]:
    """A JSON-like value with every string redacted, and the rules that fired.

    A string under a key that names a secret (``{"wpa_passphrase": "..."}``) is redacted whole,
    as ``wpa_passphrase=...`` would be in text; other strings go through :func:`redact`.
    """
    fired: list[str] = []

    def walk(item: Any, key: str | None) -> Any:
        if isinstance(item, str):
            if (
                key is not None
                and item
                and not item.startswith("[REDACTED:")
                and key.lower() != "passwd"
                and SECRET_KEY.fullmatch(key)
            ):
                fired.append("secret-assignment")
                return marker("secret-assignment")
            result = redact(item)
            fired.extend(result.fired)
            return result.text
        if isinstance(item, dict):
            return {k: walk(v, str(k)) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v, None) for v in item]
        return item

    return walk(value, None), fired
