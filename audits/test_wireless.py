"""Wireless LAN (WL-01..WL-06): access points, clients, and none in the individual-number zone.

What is read (one collection per host; secrets are replaced by ``(redacted)`` on the host, so
no shared secret, passphrase or key ever reaches the evidence):

* access points: every hostapd configuration in /etc/hostapd (``*.conf``), read as hostapd
  reads it: the lines before the first ``bss=`` configure the first BSS, each ``bss=`` starts
  the next one, and a parameter a BSS does not set has hostapd's default (``wpa=0``: open,
  ``wpa_key_mgmt=WPA-PSK``, ``rsn_pairwise`` = ``wpa_pairwise`` = TKIP, ``ieee80211w=0``);
* clients: wpa_supplicant's configurations (/etc/wpa_supplicant/*.conf, ``network={}`` blocks
  with wpa_supplicant's defaults: ``key_mgmt=WPA-PSK WPA-EAP``, ``pairwise=CCMP TKIP``,
  ``group=CCMP TKIP WEP104 WEP40``, PMF from the global ``pmf=``) and NetworkManager's keyfile
  profiles of type wifi;
* the individual-number zone: wireless interfaces and radios (/sys/class/net/*/wireless,
  /sys/class/ieee80211), wireless stanzas of ifupdown, hostapd and wpa_supplicant units,
  processes and configurations, and whether the kernel's wireless modules can be loaded.

Each check reports every weak setting by SSID (``file: ssid``).
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from kijun import modprobe, unitfile

_SECRETS = (
    "auth_server_shared_secret|acct_server_shared_secret|sae_password|wpa_passphrase|wpa_psk"
    "|wep_key[0-3]|radius_das_client|psk|password|private_key_passwd|private-key-password"
    "|wep-key[0-3]|eap_password"
)
_REDACT = f"sed -E 's/^([[:space:]]*({_SECRETS})[[:space:]]*=).*/\\1(redacted)/'"
_FILES = (
    'for f in {paths}; do [ -f "$f" ] && {{ echo "### $f"; ' + _REDACT + ' "$f"; }}; done; true'
)
DAEMONS = ("hostapd", "wpa_supplicant")
UNITS = ("hostapd.service", "wpa_supplicant.service")
COLLECT = {
    "wireless/hostapd_conf": _FILES.format(paths="/etc/hostapd/*.conf"),
    "wireless/wpa_supplicant_conf": _FILES.format(paths="/etc/wpa_supplicant/*.conf"),
    "wireless/nm_connections": _FILES.format(paths="/etc/NetworkManager/system-connections/*"),
    "wireless/interfaces": (
        'for d in /sys/class/net/*; do { [ -e "$d/wireless" ] || [ -e "$d/phy80211" ]; } '
        '&& echo "interface ${d##*/}"; done; '
        'for r in /sys/class/ieee80211/*; do [ -e "$r" ] && echo "radio ${r##*/}"; done; '
        "grep -HnE '^[[:space:]]*(wpa-|wireless-)' /etc/network/interfaces "
        "/etc/network/interfaces.d/* 2>/dev/null | sed 's/^/ifupdown /'; true"
    ),
    "wireless/modules": (
        "[ -r /proc/modules ] && grep -E '^(cfg80211|mac80211) ' /proc/modules "
        "| sed 's/^/loaded /'; true"
    ),
    "wireless/hostapd_unit": "systemctl cat hostapd.service",
    "wireless/hostapd_default": "grep -n '' /etc/default/hostapd 2>/dev/null; true",
    "wireless/modprobe_showconfig": modprobe.SHOWCONFIG,
    "wireless/modprobe_files": modprobe.FILES,
    "wireless/processes": (
        'for c in /proc/[0-9]*/comm; do read -r n < "$c" && echo "process $n"; done '
        f"2>/dev/null | sort -u | grep -Ex 'process ({'|'.join(DAEMONS)})' || true"
    ),
}

EAP_KEY_MGMT = {"WPA-EAP", "WPA-EAP-SHA256", "WPA-EAP-SUITE-B", "WPA-EAP-SUITE-B-192", "FT-EAP"}
SHARED_KEY_MGMT = {"WPA-PSK", "WPA-PSK-SHA256", "FT-PSK", "SAE", "FT-SAE"}


# --- hostapd ----------------------------------------------------------------------------------


@dataclass
class Bss:
    file: str
    settings: dict[str, str] = field(default_factory=dict)  # the last value of each parameter
    radius: list[str] = field(default_factory=list)  # auth servers, "host:port", in order

    @property
    def ssid(self) -> str:
        return self.settings.get("ssid") or self.settings.get("ssid2") or "(no ssid)"

    @property
    def label(self) -> str:
        return f"{self.file}: {self.ssid}"

    def get(self, name: str, default: str = "") -> str:
        return self.settings.get(name, default)

    @property
    def wpa(self) -> int:
        try:
            return int(self.get("wpa", "0"))
        except ValueError:
            return 0

    @property
    def key_mgmt(self) -> set[str]:
        return set(self.get("wpa_key_mgmt", "WPA-PSK").split())

    @property
    def pairwise(self) -> set[str]:
        """The pairwise ciphers of every WPA version the BSS may use (hostapd's defaults)."""
        wpa_pairwise = self.get("wpa_pairwise", "TKIP")
        ciphers = set(self.get("rsn_pairwise", wpa_pairwise).split())
        if "wpa_pairwise" in self.settings or self.wpa & 1:
            ciphers |= set(wpa_pairwise.split())
        return ciphers

    @property
    def wep(self) -> list[str]:
        found = [k for k in self.settings if re.fullmatch(r"wep_key\d|wep_default_key", k)]
        if int(self.get("auth_algs", "3") or 3) & 2:
            found.append("auth_algs shared key")
        return sorted(found)

    @property
    def ieee8021x(self) -> bool:
        return self.get("ieee8021x", "0") == "1"

    @property
    def open(self) -> bool:
        """Nothing protects the BSS: no WPA/RSN, no 802.1X, no WEP key."""
        return (
            self.wpa == 0
            and not self.ieee8021x
            and not any(k.startswith("wep_key") for k in self.settings)
        )


def hostapd_bsses(snapshot: Any) -> list[Bss]:
    out: list[Bss] = []
    current: Bss | None = None
    path = ""
    for raw in snapshot.text("wireless/hostapd_conf").splitlines():
        if raw.startswith("### "):
            path, current = raw[4:].strip(), None
            continue
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        if current is None or name == "bss":
            current = Bss(path)
            out.append(current)
            if name == "bss":
                continue
        if name == "auth_server_addr":
            current.radius.append(f"{value}:1812")
        elif name == "auth_server_port" and current.radius:
            current.radius[-1] = current.radius[-1].rsplit(":", 1)[0] + f":{value}"
        current.settings[name] = value
    return out


HOSTAPD_CONF = "/etc/hostapd/hostapd.conf"
HOSTAPD_DEFAULT = "/etc/default/hostapd"
# hostapd's options that take an argument (hostapd 2.10); its other words are files to read.
_HOSTAPD_ARG_OPTIONS = {"-P", "-e", "-f", "-g", "-G", "-i", "-b", "-r", "-z"}
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass
class HostapdService:
    """The configuration files hostapd.service starts hostapd with, each with the ``path:line``
    that named it (the ExecStart line, or the assignment of the variable it uses), and what
    could not be read (an unreadable unit, another environment file, not one ExecStart)."""

    files: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return next(iter(self.files.values()), "")


def hostapd_service(snapshot: Any) -> HostapdService:
    """Read hostapd.service as systemd runs it: its unit and drop-ins (``systemctl cat``),
    ``Environment=`` then the ``EnvironmentFile=`` (which overrides it), and the variables
    expanded in the one ``ExecStart=`` (``$VAR`` splits into words, ``${VAR}`` is one word)."""
    out = HostapdService()
    unit = snapshot["wireless/hostapd_unit"]
    if unit.rc != 0 or not unit.stdout.strip():
        out.problems.append("systemctl cat hostapd.service printed no unit")
        return out
    found = unitfile.assignments(
        unit.stdout, "Service", ("ExecStart", "Environment", "EnvironmentFile")
    )
    env = unitfile.environment(found)
    for a in found:
        if a.key != "EnvironmentFile":
            continue
        if a.value.lstrip("-") == HOSTAPD_DEFAULT:
            text = snapshot.text("wireless/hostapd_default")
            env.update(unitfile.environment_file(text, HOSTAPD_DEFAULT))
        else:
            out.problems.append(f"environment file {a.value} ({a.source}) not read by the audit")
    starts = [a for a in found if a.key == "ExecStart"]
    if len(starts) != 1:
        out.problems.append(f"{len(starts)} ExecStart lines: {[str(a) for a in starts]}")
        return out
    words: list[tuple[str, str]] = []  # (word, where it came from)
    for word in starts[0].value.lstrip("-@:+!").split():
        m = _VARIABLE.fullmatch(word)
        if m and m.group(2):  # $VAR: its value splits into words
            var = env.get(m.group(2))
            words += [(w, var.source) for w in (var.value.split() if var else [])]
        elif m:  # ${VAR}: one word, empty when unset
            var = env.get(m.group(1))
            if var and var.value:
                words.append((var.value, var.source))
        else:
            words.append((_VARIABLE.sub(lambda v: _env_value(env, v), word), starts[0].source))
    skip = True  # argv[0]
    for word, source in words:
        if skip:
            skip = False
        elif word in _HOSTAPD_ARG_OPTIONS:
            skip = True
        elif not word.startswith("-"):
            out.files[word] = source
    return out


def _env_value(env: dict[str, unitfile.Assignment], m: re.Match[str]) -> str:
    var = env.get(m.group(1) or m.group(2))
    return var.value if var else ""


def _guest(expected: dict[str, Any]) -> str:
    return str(expected["wireless_guest_ssid"])


def _report(audit: Any, bad: dict[str, Any], bsses: list[Bss], want: str) -> None:
    audit.expect(
        not bad,
        expected=want,
        observed=bad or f"{len(bsses)} BSS(s) as expected: {sorted(b.ssid for b in bsses)}",
    )


# --- WL-01 ------------------------------------------------------------------------------------


@pytest.mark.control("WL-01")
def test_hostapd_rsn_only(snapshot, expected, audit) -> None:
    bsses = hostapd_bsses(snapshot)
    bad = {b.label: f"wpa={b.get('wpa', '0 (default)')}" for b in bsses if b.wpa != 2}
    _report(audit, bad, bsses, "wpa=2 (RSN: WPA2/WPA3 only) in every BSS")


@pytest.mark.control("WL-01")
def test_hostapd_pairwise_ccmp_only(snapshot, expected, audit) -> None:
    bsses = hostapd_bsses(snapshot)
    bad = {b.label: sorted(b.pairwise) for b in bsses if b.pairwise != {"CCMP"}}
    _report(audit, bad, bsses, "CCMP the only pairwise cipher (rsn_pairwise, wpa_pairwise)")


@pytest.mark.control("WL-01")
def test_hostapd_no_wep(snapshot, expected, audit) -> None:
    bsses = hostapd_bsses(snapshot)
    bad = {b.label: b.wep for b in bsses if b.wep}
    _report(audit, bad, bsses, "no WEP key and no shared-key authentication")


@pytest.mark.control("WL-01")
def test_hostapd_no_open_bss(snapshot, expected, audit) -> None:
    bsses = hostapd_bsses(snapshot)
    bad = {b.label: "open (no WPA/RSN, no 802.1X)" for b in bsses if b.open}
    _report(audit, bad, bsses, "no open BSS")


@pytest.mark.control("WL-01")
def test_hostapd_ieee80211w_required(snapshot, expected, audit) -> None:
    bsses = hostapd_bsses(snapshot)
    bad = {b.label: f"ieee80211w={b.get('ieee80211w', '0 (default)')}" for b in bsses
           if b.get("ieee80211w", "0") != "2"}  # fmt: skip
    _report(audit, bad, bsses, "ieee80211w=2 (management frame protection required)")


# --- WL-02 ------------------------------------------------------------------------------------


def _enterprise(snapshot: Any, expected: dict[str, Any]) -> list[Bss]:
    """Every BSS but the declared guest network must be an 802.1X network."""
    return [b for b in hostapd_bsses(snapshot) if b.ssid != _guest(expected) or not b.ssid]


@pytest.mark.control("WL-02")
def test_hostapd_ieee8021x(snapshot, expected, audit) -> None:
    bsses = _enterprise(snapshot, expected)
    bad = {b.label: f"ieee8021x={b.get('ieee8021x', '0 (default)')}" for b in bsses
           if not b.ieee8021x}  # fmt: skip
    _report(audit, bad, bsses, "ieee8021x=1 in every BSS but the guest network")


@pytest.mark.control("WL-02")
def test_hostapd_key_mgmt_eap(snapshot, expected, audit) -> None:
    bsses = _enterprise(snapshot, expected)
    bad = {b.label: sorted(b.key_mgmt) for b in bsses if not b.key_mgmt <= EAP_KEY_MGMT}
    _report(audit, bad, bsses, f"wpa_key_mgmt within {sorted(EAP_KEY_MGMT)} (but the guest)")


@pytest.mark.control("WL-02")
def test_hostapd_radius_servers_declared(snapshot, expected, audit) -> None:
    want = sorted(f"{s['host']}:{s['port']}" for s in expected["wireless_radius_servers"])
    bsses = _enterprise(snapshot, expected)
    bad = {b.label: sorted(b.radius) or "none" for b in bsses if sorted(b.radius) != want}
    audit.expect(
        not bad and (bool(want) or not bsses),
        expected={"RADIUS servers of each 802.1X BSS": want},
        observed=bad or {b.label: b.radius for b in bsses},
    )


@pytest.mark.control("WL-02")
def test_hostapd_shared_key_only_on_guest(snapshot, expected, audit, hostvars) -> None:
    guest_zone = "internet" in hostvars.zones
    bad = {}
    for b in hostapd_bsses(snapshot):
        shared = sorted(b.key_mgmt & SHARED_KEY_MGMT) if b.wpa else []
        if shared and not (b.ssid == _guest(expected) and guest_zone and b.ssid):
            bad[b.label] = shared
    audit.expect(
        not bad,
        expected=f"a shared key only on the guest network {_guest(expected) or '(none)'!r} "
        "of the internet zone",
        observed=bad or "no other BSS uses a shared key",
    )


# --- WL-03 ------------------------------------------------------------------------------------


def _declared(expected: dict[str, Any], hostvars: Any) -> dict[str, str]:
    """SSID -> bridge of the networks declared for the host's zone."""
    return {
        str(n["ssid"]): str(n["bridge"])
        for n in expected["wireless_ssids"]
        if n["zone"] in hostvars.zones
    }


@pytest.mark.control("WL-03")
def test_hostapd_ssids_declared(snapshot, expected, audit, hostvars) -> None:
    """Only the declared SSIDs, from the role's file, which hostapd.service reads and no other
    (a DAEMON_CONF in /etc/default/hostapd or a drop-in would make it offer another file's)."""
    offered = sorted(b.ssid for b in hostapd_bsses(snapshot))
    want = sorted(_declared(expected, hostvars))
    service = hostapd_service(snapshot)
    reads = sorted(service.files)
    audit.expect(
        offered == want and reads == [HOSTAPD_CONF] and not service.problems,
        expected={"SSIDs": want, "hostapd.service reads": [HOSTAPD_CONF]},
        observed={
            "offered": offered,
            "not declared": sorted(set(offered) - set(want)),
            "hostapd.service reads": service.files or "nothing it could name",
            **({"unreadable": service.problems} if service.problems else {}),
        },
        source=next((src for f, src in service.files.items() if f != HOSTAPD_CONF), "")
        or service.source,
    )


@pytest.mark.control("WL-03")
def test_hostapd_ssid_bridge_matches(snapshot, expected, audit, hostvars) -> None:
    declared = _declared(expected, hostvars)
    bsses = hostapd_bsses(snapshot)
    bad = {b.label: {"bridge": b.get("bridge") or None, "declared": declared.get(b.ssid)}
           for b in bsses if b.get("bridge") != declared.get(b.ssid)}  # fmt: skip
    _report(audit, bad, bsses, "each BSS on the bridge declared for its SSID")


# --- WL-04 ------------------------------------------------------------------------------------


def _guest_bss(snapshot: Any, expected: dict[str, Any]) -> list[Bss]:
    return [b for b in hostapd_bsses(snapshot) if _guest(expected) and b.ssid == _guest(expected)]


@pytest.mark.control("WL-04")
def test_guest_bss_own_bridge(snapshot, expected, audit) -> None:
    bridge = expected["wireless_guest_bridge"]
    guests = _guest_bss(snapshot, expected)
    sharing = sorted(b.label for b in hostapd_bsses(snapshot)
                     if b.get("bridge") == bridge and b not in guests)  # fmt: skip
    wrong = {b.label: b.get("bridge") or None for b in guests if b.get("bridge") != bridge}
    audit.expect(
        not sharing and not wrong,
        expected=f"the guest network alone on {bridge}",
        observed={
            "guest": {b.label: b.get("bridge") for b in guests} or "no guest network",
            **({"others on it": sharing} if sharing else {}),
        },  # fmt: skip
    )


@pytest.mark.control("WL-04")
def test_guest_bridge_not_internal(snapshot, expected, audit) -> None:
    internal = {str(n["bridge"]) for n in expected["wireless_ssids"]
                if str(n["ssid"]) != _guest(expected)}  # fmt: skip
    internal |= {b.get("bridge") for b in hostapd_bsses(snapshot)
                 if b.ssid != _guest(expected) and b.get("bridge")}  # fmt: skip
    used = {b.label: b.get("bridge") for b in _guest_bss(snapshot, expected)}
    bad = {label: bridge for label, bridge in used.items() if not bridge or bridge in internal}
    audit.expect(
        not bad,
        expected=f"the guest bridge is none of the internal networks' {sorted(internal)}",
        observed=bad or used or "no guest network",
    )


@pytest.mark.control("WL-04")
def test_guest_ap_isolate(snapshot, expected, audit) -> None:
    guests = _guest_bss(snapshot, expected)
    bad = {b.label: f"ap_isolate={b.get('ap_isolate', '0 (default)')}" for b in guests
           if b.get("ap_isolate", "0") != "1"}  # fmt: skip
    _report(audit, bad, guests, "ap_isolate=1 on the guest network")


@pytest.mark.control("WL-04")
def test_guest_key_mgmt_sae_only(snapshot, expected, audit) -> None:
    guests = _guest_bss(snapshot, expected)
    bad = {b.label: sorted(b.key_mgmt) for b in guests if b.key_mgmt != {"SAE"} or b.wpa != 2}
    _report(audit, bad, guests, "wpa_key_mgmt=SAE (WPA3-Personal) only on the guest network")


# --- WL-05 clients ----------------------------------------------------------------------------


@dataclass
class Profile:
    source: str  # file
    ssid: str
    kind: str  # wpa_supplicant | networkmanager
    key_mgmt: set[str]
    pairwise: set[str]
    group: set[str]
    proto: set[str]
    wep: bool
    pmf: str  # "required" | other

    @property
    def label(self) -> str:
        return f"{self.source}: {self.ssid}"


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    try:
        return bytes.fromhex(value).decode("utf-8", "replace")  # an SSID given in hex
    except ValueError:
        return value


def supplicant_profiles(snapshot: Any) -> list[Profile]:
    out = []
    path = ""
    global_pmf = "0"
    block: dict[str, str] | None = None
    for raw in snapshot.text("wireless/wpa_supplicant_conf").splitlines():
        line = raw.strip()
        if raw.startswith("### "):
            path, global_pmf, block = raw[4:].strip(), "0", None
            continue
        if not line or line.startswith("#"):
            continue
        if re.fullmatch(r"network\s*=\s*\{", line):
            block = {}
        elif line == "}" and block is not None:
            pmf = block.get("ieee80211w", global_pmf)
            out.append(Profile(
                path, _unquote(block.get("ssid", "")), "wpa_supplicant",
                set(block.get("key_mgmt", "WPA-PSK WPA-EAP").split()),
                set(block.get("pairwise", "CCMP TKIP").split()),
                set(block.get("group", "CCMP TKIP WEP104 WEP40").split()),
                set(block.get("proto", "WPA RSN").split()),
                any(k.startswith("wep_key") for k in block),
                "required" if pmf == "2" else f"ieee80211w={pmf}",
            ))  # fmt: skip
            block = None
        elif "=" in line:
            name, _, value = line.partition("=")
            if block is not None:
                block[name.strip()] = value.strip()
            elif name.strip() == "pmf":
                global_pmf = value.strip()
    return out


_NM_KEY_MGMT = {
    "wpa-eap": "WPA-EAP",
    "wpa-psk": "WPA-PSK",
    "sae": "SAE",
    "none": "NONE",
    "owe": "OWE",
    "ieee8021x": "IEEE8021X",
    "wpa-eap-suite-b-192": "WPA-EAP-SUITE-B-192",
}


def nm_profiles(snapshot: Any) -> list[Profile]:
    chunks: dict[str, list[str]] = {}
    path = ""
    for raw in snapshot.text("wireless/nm_connections").splitlines():
        if raw.startswith("### "):
            path = raw[4:].strip()
            chunks[path] = []
        elif path:
            chunks[path].append(raw)
    out = []
    for path, lines in chunks.items():
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string("\n".join(lines))
        except configparser.Error:
            continue
        if parser.get("connection", "type", fallback="") not in ("wifi", "802-11-wireless"):
            continue
        wifi = "wifi" if parser.has_section("wifi") else "802-11-wireless"
        sec = "wifi-security" if parser.has_section("wifi-security") else "802-11-wireless-security"
        has_sec = parser.has_section(sec)
        mgmt = parser.get(sec, "key-mgmt", fallback="none") if has_sec else "none"
        wep = has_sec and any(k.startswith("wep-key") for k in parser.options(sec))
        out.append(Profile(
            path, parser.get(wifi, "ssid", fallback=""), "networkmanager",
            {_NM_KEY_MGMT.get(mgmt, mgmt.upper())},
            set(parser.get(sec, "pairwise", fallback="ccmp;tkip").upper().split(";")) - {""}
            if has_sec else set(),
            set(parser.get(sec, "group", fallback="ccmp;tkip;wep40;wep104").upper().split(";"))
            - {""} if has_sec else set(),
            set(parser.get(sec, "proto", fallback="wpa;rsn").upper().split(";")) - {""}
            if has_sec else set(),
            wep,
            "required" if has_sec and parser.get(sec, "pmf", fallback="0") == "3"
            else f"pmf={parser.get(sec, 'pmf', fallback='0 (default)') if has_sec else 'none'}",
        ))  # fmt: skip
    return out


def client_profiles(snapshot: Any) -> list[Profile]:
    return supplicant_profiles(snapshot) + nm_profiles(snapshot)


def _client_report(audit: Any, bad: dict[str, Any], profiles: list[Profile], want: str) -> None:
    audit.expect(
        not bad,
        expected=want,
        observed=bad
        or f"{len(profiles)} profile(s) as expected: {sorted(p.ssid for p in profiles)}",
    )


@pytest.mark.control("WL-05")
def test_client_ssids_declared(snapshot, expected, audit) -> None:
    allowed = set(map(str, expected["wireless_client_allowed_ssids"]))
    profiles = client_profiles(snapshot)
    bad = {p.label: "not declared" for p in profiles if p.ssid not in allowed}
    _client_report(audit, bad, profiles, f"only the declared SSIDs {sorted(allowed)}")


@pytest.mark.control("WL-05")
def test_client_no_open_networks(snapshot, expected, audit) -> None:
    profiles = client_profiles(snapshot)
    bad = {p.label: "open (no key management)" for p in profiles
           if p.key_mgmt & {"NONE", "OWE"} and not p.wep}  # fmt: skip
    _client_report(audit, bad, profiles, "no profile for an open network")


@pytest.mark.control("WL-05")
def test_client_no_wep_networks(snapshot, expected, audit) -> None:
    profiles = client_profiles(snapshot)
    bad = {p.label: "WEP" for p in profiles
           if p.wep or p.group & {"WEP40", "WEP104"} and "NONE" in p.key_mgmt}  # fmt: skip
    _client_report(audit, bad, profiles, "no profile for a WEP network")


@pytest.mark.control("WL-05")
def test_client_no_tkip(snapshot, expected, audit) -> None:
    profiles = client_profiles(snapshot)
    bad = {}
    for p in profiles:
        weak = sorted((p.pairwise | p.group) & {"TKIP", "WEP40", "WEP104"})
        if "WPA" in p.proto:
            weak.append("proto WPA (WPA1)")
        if weak and "NONE" not in p.key_mgmt:
            bad[p.label] = weak
    _client_report(audit, bad, profiles, "CCMP only (pairwise, group), proto RSN")


@pytest.mark.control("WL-05")
def test_client_pmf_required(snapshot, expected, audit) -> None:
    profiles = client_profiles(snapshot)
    bad = {p.label: p.pmf for p in profiles if p.pmf != "required"}
    _client_report(audit, bad, profiles, "management frame protection required in every profile")


# --- WL-06 individual-number zone -------------------------------------------------------------


@pytest.mark.control("WL-06")
def test_no_wireless_interfaces(snapshot, expected, audit) -> None:
    found = snapshot.text("wireless/interfaces").splitlines()
    profiles = [f"networkmanager {p.label}" for p in nm_profiles(snapshot)]
    audit.equal([*found, *profiles], [], message="no wireless interface, radio or configuration")


@pytest.mark.control("WL-06")
def test_no_wireless_daemons(snapshot, expected, audit) -> None:
    found = [
        f"unit {u} {snapshot.unit(u).active}/{snapshot.unit(u).enabled}"
        for u in UNITS
        if snapshot.unit(u).active in ("active", "activating", "reloading")
        or snapshot.unit(u).enabled in ("enabled", "enabled-runtime")
    ]
    found += snapshot.text("wireless/processes").splitlines()
    found += [f"hostapd configuration {b.label}" for b in hostapd_bsses(snapshot)]
    found += [f"wpa_supplicant network {p.label}" for p in supplicant_profiles(snapshot)]
    audit.equal(found, [], message="neither hostapd nor wpa_supplicant runs or is configured")


REFUSING = ("/bin/false", "/bin/true", "/usr/bin/false", "/usr/bin/true")
WIRELESS_MODULES = ("cfg80211", "mac80211")


@pytest.mark.control("WL-06")
def test_wireless_modules_disabled(snapshot, expected, audit) -> None:
    """The install command in force for each module (modprobe's first matching ``install``
    line, kijun.modprobe) refuses to load it, and it is not loaded; the source is the file and
    line that set the command in force (the first that does not refuse, when one does not)."""
    files = modprobe.read_files(snapshot.text("wireless/modprobe_files"))
    shown = modprobe.showconfig_installs(snapshot.text("wireless/modprobe_showconfig"))
    loaded = [
        ln for ln in snapshot.text("wireless/modules").splitlines() if ln.startswith("loaded ")
    ]
    observed: dict[str, Any] = {}
    good: list[str] = []  # where each refusing command in force was set
    bad: list[str] = []  # where a command in force that loads the module was set
    for module in WIRELESS_MODULES:
        found = modprobe.effective_install(module, files, shown)
        refused = (found.command or "").split()[:1] in [[c] for c in REFUSING]
        observed[module] = {
            "install": found.command or "(none: the module loads)",
            "set in": found.source or "(not found in the files modprobe reads)",
        }
        if refused and found.source:
            good.append(found.source)
        else:
            bad.append(found.source)
    ok = not loaded and not bad
    if loaded:
        observed["loaded"] = loaded
    audit.expect(
        ok,
        expected="cfg80211 and mac80211 cannot be loaded (install /bin/false in force) and are "
        "not loaded",
        observed=observed,
        source=next((b for b in bad if b), "") if bad else good[0],
    )
