"""Evidence bundles: redaction rules, atomic writing, the manifest and its metadata helpers."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from kijun.evidence import (
    MANIFEST,
    SCHEMA,
    SIGNATURE,
    BundleWriter,
    EvidenceError,
    clean_stale_partials,
    control_node_time_sync,
    git_state,
    operator,
    parse_chronyc_tracking,
    parse_timedatectl,
    tree_hash,
)
from kijun.redact import redact, redact_json

# -- redaction: secrets ------------------------------------------------------------------------

# Real crypt(3) output (libxcrypt) for the password "correct horse".
HASHES = {
    "md5crypt": "$1$saltsalt$NuzA7WTAelpl95xgBGWN60",
    "sha256crypt": "$5$rounds=5000$saltsaltsaltsalt$vzxOvVGSAthqKsVBFh1uWPorUBPL5g6mz42rSF1xpk5",
    "sha512crypt": "$6$saltsalt$hRM5XZ86KXEw9UOmjigeVqFgULtFB2sgpC9lXQDfMib3Zgw7mEiUvBJI2EplzfAqxL5"
    "Vvwp2scFtv/uamSo5z0",
    "yescrypt": "$y$j9T$PaFuKzsN3T9Aoee9hFVPy.$ZJEpyRBoI7Iow.aGveFgyN/DGCd9nfv0FfstSJBRxG2",
    "gost-yescrypt": "$gy$j9T$PaFuKzsN3T9Aoee9hFVPy.$HhLnxhwapqibcL0HNs1RqjdtgIClZI22kWDyocQgaG3",
    "scrypt": "$7$CU..../....abcdefghijklmnopqrstuv$9iKUd8kFo0fLA4Ucy6/Q0BuBv301rJIKpU6KHvKNPCB",
    "bcrypt": "$2b$12$abcdefghijklmnopqrstuuFDJRuYeKkCzo3Wy7h8SxhBSHBAHiPK2",
}


@pytest.mark.parametrize("name", sorted(HASHES))
def test_a_crypt_hash_is_redacted_anywhere(name: str) -> None:
    hash_ = HASHES[name]
    for text, expected in [
        (f"admin:{hash_}:19800:0:90:7:::\n", "admin:[REDACTED:password-hash]:19800:0:90:7:::\n"),
        (f"admin:{hash_}\n", "admin:[REDACTED:password-hash]\n"),  # htpasswd
        (f"usermod -p '{hash_}' admin", "usermod -p '[REDACTED:password-hash]' admin"),
        (f'{{"hash": "{hash_}"}}', '{"hash": "[REDACTED:password-hash]"}'),
    ]:
        assert redact(text) == (expected, ["password-hash"])


SHADOW = f"""\
root:{HASHES["sha512crypt"]}:19800:0:99999:7:::
daemon:*:19800:0:99999:7:::
admin:{HASHES["yescrypt"]}:19800:1:90:14:30::
locked:!{HASHES["yescrypt"]}:19800:1:90:14:30::
legacy:abJnggxhB/yWI:15000:0:99999:7:::
nopass:!:19800::::::
never:!!:19800:0:99999:7:::
sshd:!*:19800::::::
"""

SHADOW_REDACTED = """\
root:[REDACTED:password-hash]:19800:0:99999:7:::
daemon:*:19800:0:99999:7:::
admin:[REDACTED:password-hash]:19800:1:90:14:30::
locked:![REDACTED:password-hash]:19800:1:90:14:30::
legacy:[REDACTED:password-hash]:15000:0:99999:7:::
nopass:!:19800::::::
never:!!:19800:0:99999:7:::
sshd:!*:19800::::::
"""


def test_shadow_keeps_ageing_and_lock_states_and_loses_every_hash() -> None:
    text, fired = redact(SHADOW)
    assert text == SHADOW_REDACTED
    assert Counter(fired) == {"password-hash": 4}


PEM_KEYS = [
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIBy1Q9v2S0j8c3m2k0QJ9n3y6d5x0mGd9xZ5lJ0bq1zA\n"
    "-----END PRIVATE KEY-----",
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "-----END RSA PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDq3o0p6Qv0bZ7w0Qm1b3hV1M3kJY1oQy9c5m8p0m4nKAAAAJg=\n"
    "-----END OPENSSH PRIVATE KEY-----",
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\n"
    "-----END EC PRIVATE KEY-----",
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
    "MIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n"
    "-----END ENCRYPTED PRIVATE KEY-----",
    "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n"
    "lFgEZbJ0xRYJKwYBBAHaRw8BAQdA3Jq0\n=Xq1T\n"
    "-----END PGP PRIVATE KEY BLOCK-----",
]


@pytest.mark.parametrize("key", PEM_KEYS, ids=lambda k: k.split("\n")[0][11:-5])
def test_a_pem_private_key_block_is_redacted_whole(key: str) -> None:
    text = f"# /etc/ssl/private/relay.key\n{key}\n# end\n"
    assert redact(text) == (
        "# /etc/ssl/private/relay.key\n[REDACTED:private-key]\n# end\n",
        ["private-key"],
    )


def test_an_unterminated_private_key_is_redacted_to_the_end() -> None:
    text = "before\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUA\n"
    assert redact(text) == ("before\n[REDACTED:private-key]", ["private-key"])


def test_certificates_and_public_keys_stay() -> None:
    text = (
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUUq\n-----END CERTIFICATE-----\n"
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq3 admin@ctl\n"
    )
    assert redact(text) == (text, [])


ASSIGNMENTS = [
    # hostapd.conf
    ("wpa_passphrase=correct horse battery", "wpa_passphrase=[REDACTED:secret-assignment]"),
    ("sae_password=S3cret|id=staff", "sae_password=[REDACTED:secret-assignment]"),
    (
        "auth_server_shared_secret=testing123",
        "auth_server_shared_secret=[REDACTED:secret-assignment]",
    ),
    ("wpa_psk=" + "a1" * 32, "wpa_psk=[REDACTED:secret-assignment]"),
    # wpa_supplicant.conf network block
    ('\tpsk="correct horse battery"', '\tpsk="[REDACTED:secret-assignment]"'),
    ('\tpassword="Pa55w0rd"', '\tpassword="[REDACTED:secret-assignment]"'),
    ('\tprivate_key_passwd="keypass"', '\tprivate_key_passwd="[REDACTED:secret-assignment]"'),
    # ini, yaml, env, json, command lines
    ("password = hunter2", "password = [REDACTED:secret-assignment]"),
    ("  secret: 's3cr3t value'", "  secret: '[REDACTED:secret-assignment]'"),
    ("token=ghp_0123456789abcdef", "token=[REDACTED:secret-assignment]"),
    ("export DB_PASSWORD=hunter2", "export DB_PASSWORD=[REDACTED:secret-assignment]"),
    ("API_KEY: abc123", "API_KEY: [REDACTED:secret-assignment]"),
    (
        '{"api_token": "abc", "user": "svc"}',
        '{"api_token": "[REDACTED:secret-assignment]", "user": "svc"}',
    ),
    (
        "mysql --user=app --password=hunter2 db",
        "mysql --user=app --password=[REDACTED:secret-assignment]",
    ),
    ("secret = testing123", "secret = [REDACTED:secret-assignment]"),  # freeradius clients.conf
]


@pytest.mark.parametrize(("line", "expected"), ASSIGNMENTS, ids=[a[0][:24] for a in ASSIGNMENTS])
def test_a_secret_assignment_keeps_its_key_and_loses_its_value(line: str, expected: str) -> None:
    assert redact(line) == (expected, ["secret-assignment"])


SASL_LINES = [
    ("[smtp.example.lg.jp]:587 relay@example.lg.jp:Pa55-w0rd!", "relay@example.lg.jp:"),
    ("smtp.example.lg.jp kijun-relay:Pa55-w0rd!", "kijun-relay:"),
    ("198.18.20.25:25 relay:pw", "relay:"),
    ("@example.lg.jp relay:pw", "relay:"),
    ("admin@example.lg.jp admin:pw", "admin:"),
    ("+[smtp.example.lg.jp]:587 relay:pw", "relay:"),  # a line of ansible --diff
]


@pytest.mark.parametrize(("line", "user"), SASL_LINES, ids=[s[0] for s in SASL_LINES])
def test_a_sasl_password_map_line_keeps_relay_and_user(line: str, user: str) -> None:
    text, fired = redact(line + "\n")
    assert text == line[: line.index(user) + len(user)] + "[REDACTED:sasl-password]\n"
    assert fired == ["sasl-password"]


def test_url_credentials_lose_the_password() -> None:
    text = "Acquire::http::Proxy http://proxy-user:Pa55@198.18.0.3:3128/;"
    assert redact(text) == (
        "Acquire::http::Proxy http://proxy-user:[REDACTED:url-credentials]@198.18.0.3:3128/;",
        ["url-credentials"],
    )


def test_chrony_keys_lose_the_key_material() -> None:
    text = "1 SHA256 HEX:A6CFC50C9C93AB6E5A19754C246242FC5471BCDF\n2 AES128 ASCII:s3cret\n"
    assert redact(text) == (
        "1 SHA256 HEX:[REDACTED:ntp-key]\n2 AES128 ASCII:[REDACTED:ntp-key]\n",
        ["ntp-key", "ntp-key"],
    )


def test_redaction_is_idempotent_and_counts_each_secret() -> None:
    text = "\n".join([SHADOW, *PEM_KEYS, *(a[0] for a in ASSIGNMENTS), *(s[0] for s in SASL_LINES)])
    once, fired = redact(text)
    assert Counter(fired) == {
        "password-hash": 4,
        "private-key": len(PEM_KEYS),
        "secret-assignment": len(ASSIGNMENTS),
        "sasl-password": len(SASL_LINES),
    }
    assert redact(once) == (once, [])


def test_json_strings_are_redacted_and_secret_keys_too() -> None:
    value = {
        "wpa_passphrase": "correct horse",
        "observed": ["password = hunter2", HASHES["yescrypt"], "minlen = 12"],
        "password": {"minlen": 12},  # not a string: a parameter block, kept
        "passwd": "files systemd",
        "count": 3,
    }
    redacted, fired = redact_json(value)
    assert redacted == {
        "wpa_passphrase": "[REDACTED:secret-assignment]",
        "observed": [
            "password = [REDACTED:secret-assignment]",
            "[REDACTED:password-hash]",
            "minlen = 12",
        ],
        "password": {"minlen": 12},
        "passwd": "files systemd",
        "count": 3,
    }
    assert Counter(fired) == {"secret-assignment": 2, "password-hash": 1}


# -- redaction: ordinary configuration passes unchanged -----------------------------------------

ORDINARY = {
    "chrony.conf": """\
# Ansible managed: time_sync (TM-01, TM-02)
server 198.18.20.10 iburst prefer
server ntp.example.lg.jp iburst nts
server fd00:198:18::10 iburst
pool 2.debian.pool.ntp.org iburst
keyfile /etc/chrony/chrony.keys
driftfile /var/lib/chrony/chrony.drift
ntsdumpdir /var/lib/chrony
logdir /var/log/chrony
makestep 1 3
maxupdateskew 100.0
rtcsync
leapsectz right/UTC
allow 198.18.0.0/15
allow 2001:db8::/32
""",
    "login.defs": """\
MAIL_DIR        /var/mail
PASS_MAX_DAYS   90
PASS_MIN_DAYS   1
PASS_WARN_AGE   14
UMASK           027
ENCRYPT_METHOD  YESCRYPT
YESCRYPT_COST_FACTOR 5
LOGIN_RETRIES   5
""",
    "postconf -n": """\
alias_maps = hash:/etc/aliases
inet_interfaces = all
inet_protocols = ipv4
mydestination = $myhostname, localhost.$mydomain, localhost
mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128 198.18.20.0/24
relayhost = [smtp.example.lg.jp]:587
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = hash:/etc/postfix/sasl_passwd
smtp_sasl_security_options = noanonymous
smtp_tls_security_level = encrypt
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination
smtpd_tls_cert_file = /etc/ssl/certs/ssl-cert-snakeoil.pem
smtpd_tls_key_file = /etc/ssl/private/ssl-cert-snakeoil.key
""",
    "nft list ruleset": """\
table inet kijun {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		ct state invalid drop
		iifname "lo" accept
		ip saddr 198.18.0.0/24 tcp dport 22 accept comment "management ssh"
		ip6 saddr fd00::/8 udp dport 123 accept
		meta l4proto icmp accept
		counter packets 12 bytes 720 drop
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ip saddr 198.18.10.0/24 ip daddr 198.18.20.0/24 accept
	}
}
""",
    "hostapd.conf": """\
interface=wlan0
driver=nl80211
ssid=LGWAN-STAFF
country_code=JP
hw_mode=a
channel=36
ieee80211w=2
wpa=2
wpa_key_mgmt=SAE WPA-PSK-SHA256
rsn_pairwise=CCMP
sae_require_mfp=1
sae_pwe=2
sae_groups=19 20
wpa_psk_file=/etc/hostapd/hostapd.wpa_psk
wpa_psk_radius=0
wpa_disable_eapol_key_retries=1
auth_server_addr=198.18.20.12
auth_server_port=1812
own_ip_addr=198.18.20.15
nas_identifier=lg-ap01
ignore_broadcast_ssid=0
""",
    "nsswitch.conf": """\
passwd:         files systemd
group:          files systemd
shadow:         files
hosts:          files dns
""",
    "sshd -T": """\
port 22
listenaddress [::]:22
listenaddress 0.0.0.0:22
passwordauthentication no
permitemptypasswords no
kbdinteractiveauthentication no
pubkeyauthentication yes
""",
    "chage -l admin": """\
Last password change					: Jan 15, 2026
Password expires					: Apr 15, 2026
Password inactive					: never
Minimum number of days between password change		: 1
Maximum number of days between password change		: 90
""",
    "common-password": """\
password	requisite			pam_pwquality.so retry=3
password	[success=1 default=ignore]	pam_unix.so obscure use_authtok try_first_pass yescrypt
password	requisite			pam_deny.so
""",
    "grep -Hn nullok /etc/pam.d/*": """\
/etc/pam.d/common-password:25:password	[success=1 default=ignore]	pam_unix.so obscure nullok
/etc/pam.d/chpasswd:3:@include common-password
common-password:26:password	requisite	pam_deny.so
""",
    "chrony source names": (  # the audit's output ends each line with a space
        "ntp.example.lg.jp 198.18.20.4 fd00:198:18::4 \n"
        "ntp6.example.lg.jp fd00:198:18::4 \n"
        "ntp-ll.example.lg.jp fe80::4%eth0 \n"
    ),
    "chronyc serverstats": """\
NTP packets received       : 1042
NTP packets dropped        : 0
Command packets received   : 12
Authenticated NTP packets  : 0
""",
    "timedatectl show + chronyc tracking": """\
Timezone=Asia/Tokyo
NTP=yes
NTPSynchronized=yes
Reference ID    : C6121404 (198.18.20.4)
Stratum         : 3
Ref time (UTC)  : Sat Jan 31 00:12:34 2026
System time     : 0.000012345 seconds fast of NTP time
Leap status     : Normal
""",
    "file checks": """\
/etc/shadow root:shadow 640
640 root:shadow
mode 0640 owner root:shadow
deb http://deb.debian.org/debian bookworm main
admin P 2026-01-15 1 90 14 30
ip6 fe80::1/64 scope link
""",
}


@pytest.mark.parametrize("name", sorted(ORDINARY))
def test_ordinary_configuration_passes_unchanged(name: str) -> None:
    assert redact(ORDINARY[name]) == (ORDINARY[name], [])


# -- writing a bundle ------------------------------------------------------------------------


META = {"started": "2026-01-31T00:00:00Z", "kijun_version": "0.1.0"}


def read_manifest(bundle: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((bundle / MANIFEST).read_text())
    return data


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def test_a_bundle_is_a_directory_and_an_archive_with_a_manifest(tmp_path: Path) -> None:
    out = tmp_path / "evidence"
    with BundleWriter(out, "run-1", metadata=META) as bundle:
        bundle.add_text("raw/lg-app01/time/chrony.conf", ORDINARY["chrony.conf"])
        bundle.add_text("raw/lg-app01/password/shadow", SHADOW)
        bundle.add_json("results.json", {"schema": "kijun-results/1", "results": []})
        bundle.add_bytes("blob.bin", b"\x00\xff")
        bundle.metadata["finished"] = "2026-01-31T00:05:00Z"
    assert leftovers(out) == ["run-1", "run-1.tar.gz"]
    root = out / "run-1"
    manifest = read_manifest(root)
    assert manifest["schema"] == SCHEMA
    assert manifest["run_id"] == "run-1"
    assert manifest["metadata"] == {**META, "finished": "2026-01-31T00:05:00Z"}
    files = manifest["files"]
    assert isinstance(files, dict)
    assert sorted(files) == [
        "blob.bin",
        "raw/lg-app01/password/shadow",
        "raw/lg-app01/time/chrony.conf",
        "results.json",
    ]  # never itself, never the signature
    for rel, entry in files.items():
        data = (root / rel).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size"] == len(data)
    assert files["raw/lg-app01/password/shadow"]["redactions"] == {"password-hash": 4}
    assert files["raw/lg-app01/time/chrony.conf"]["redactions"] == {}
    assert (root / "raw/lg-app01/password/shadow").read_text() == SHADOW_REDACTED
    assert not (root / SIGNATURE).exists()  # no signer given
    with tarfile.open(out / "run-1.tar.gz") as tar:
        names = tar.getnames()
        assert all(n == "run-1" or n.startswith("run-1/") for n in names)
        member = tar.extractfile("run-1/results.json")
        assert member is not None
        assert member.read() == (root / "results.json").read_bytes()


def test_redaction_can_be_turned_off_for_text_the_caller_vouches_for(tmp_path: Path) -> None:
    with BundleWriter(tmp_path, "r") as bundle:
        bundle.add_text("a.txt", "password = x\n", redact_secrets=False)
        bundle.add_text("b.txt", "password = x\n")
    assert (tmp_path / "r/a.txt").read_text() == "password = x\n"
    assert (tmp_path / "r/b.txt").read_text() == "password = [REDACTED:secret-assignment]\n"
    files = read_manifest(tmp_path / "r")["files"]
    assert isinstance(files, dict)
    assert files["b.txt"]["redactions"] == {"secret-assignment": 1}


@pytest.mark.parametrize(
    "relpath",
    ["", "/etc/shadow", "../x", "a/../../x", "a//b", "./a", "a/", "a\\b", MANIFEST, SIGNATURE],
)
def test_a_bad_bundle_path_is_refused(tmp_path: Path, relpath: str) -> None:
    with BundleWriter(tmp_path, "r") as bundle, pytest.raises(EvidenceError):
        bundle.add_text(relpath, "x")


def test_a_path_is_written_once(tmp_path: Path) -> None:
    with BundleWriter(tmp_path, "r") as bundle:
        bundle.add_text("raw/a", "x")
        for clash in ("raw/a", "raw/a/b", "raw"):
            with pytest.raises(EvidenceError, match="clashes"):
                bundle.add_text(clash, "y")


class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_an_interrupted_run_leaves_nothing_that_looks_complete(
    tmp_path: Path, error: type[BaseException]
) -> None:
    with pytest.raises(error), BundleWriter(tmp_path, "run-1", metadata=META) as bundle:
        bundle.add_text("raw/a.txt", "half")
        raise error()
    assert leftovers(tmp_path) == []


def test_a_failure_while_closing_leaves_nothing_either(tmp_path: Path) -> None:
    def broken_signer(data: bytes) -> dict[str, str]:
        raise Boom("the key is on a USB stick that was pulled out")

    with pytest.raises(Boom), BundleWriter(tmp_path, "run-1", sign=broken_signer) as bundle:
        bundle.add_text("a.txt", "x")
    assert leftovers(tmp_path) == []


def test_a_bundle_is_never_overwritten(tmp_path: Path) -> None:
    with BundleWriter(tmp_path, "run-1") as bundle:
        bundle.add_text("a.txt", "first")
    with pytest.raises(EvidenceError, match="already exists"), BundleWriter(tmp_path, "run-1"):
        pass
    assert (tmp_path / "run-1/a.txt").read_text() == "first"


@pytest.mark.parametrize("run_id", ["", "../x", "a/b", ".hidden", "x.partial", "a b"])
def test_a_bad_run_id_is_refused(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(EvidenceError, match="run id"):
        BundleWriter(tmp_path, run_id)


def test_files_are_added_only_inside_the_with_block(tmp_path: Path) -> None:
    writer = BundleWriter(tmp_path, "r")
    with pytest.raises(EvidenceError, match="inside"):
        writer.add_text("a.txt", "x")
    with writer:
        pass
    with pytest.raises(EvidenceError, match="inside"):
        writer.add_text("a.txt", "x")


def test_a_later_run_cleans_stale_partials_but_not_a_running_one(tmp_path: Path) -> None:
    (tmp_path / ".crashed.partial/raw").mkdir(parents=True)
    (tmp_path / ".crashed.partial.tar.gz").write_bytes(b"half")
    (tmp_path / ".crashed.lock").touch()
    (tmp_path / ".running.partial").mkdir()
    fd = os.open(tmp_path / ".running.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process, as far as flock is concerned
    try:
        with BundleWriter(tmp_path, "new") as bundle:
            bundle.add_text("a.txt", "x")
        assert leftovers(tmp_path) == [".running.lock", ".running.partial", "new", "new.tar.gz"]
        with pytest.raises(EvidenceError, match="another run"), BundleWriter(tmp_path, "running"):
            pass
    finally:
        os.close(fd)
    assert clean_stale_partials(tmp_path) == ["running"]
    assert leftovers(tmp_path) == ["new", "new.tar.gz"]


# -- metadata helpers --------------------------------------------------------------------------


def test_tree_hash_is_a_sha256sum_listing_independent_of_location(tmp_path: Path) -> None:
    catalog = tmp_path / "a" / "catalog"
    (catalog / "controls").mkdir(parents=True)
    (catalog / "controls/time.yml").write_text("area: time\n")
    (catalog / "FORMAT.md").write_text("# 形式\n")
    listing = "".join(
        f"{hashlib.sha256((catalog.parent / name).read_bytes()).hexdigest()}  {name}\n"
        for name in ["catalog/FORMAT.md", "catalog/controls/time.yml"]
    )
    digest = tree_hash([catalog])
    assert digest == hashlib.sha256(listing.encode()).hexdigest()
    moved = shutil.copytree(catalog, tmp_path / "b" / "catalog")
    assert tree_hash([moved]) == digest
    (moved / "controls/time.yml").write_text("area: time \n")
    assert tree_hash([moved]) != digest
    profile = catalog.parent / "generic.yml"
    profile.write_text("profile: generic\n")
    assert tree_hash([catalog, profile]) != digest
    with pytest.raises(FileNotFoundError, match="exceptions.yml"):
        tree_hash([tmp_path / "exceptions.yml"])


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.jp", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )


def test_git_state_names_the_commit_and_whether_the_tree_is_dirty(tmp_path: Path) -> None:
    assert git_state(tmp_path)["commit"] is None  # not a repository: said, not raised
    git(tmp_path, "init", "-q")
    (tmp_path / "site.yml").write_text("- hosts: all\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "baseline")
    state = git_state(tmp_path)
    assert state["dirty"] is False
    assert isinstance(state["commit"], str) and len(state["commit"]) == 40
    (tmp_path / "new.yml").write_text("x\n")
    assert git_state(tmp_path) == {"commit": state["commit"], "dirty": True}
    (tmp_path / "new.yml").unlink()
    (tmp_path / "site.yml").write_text("- hosts: none\n")
    assert git_state(tmp_path)["dirty"] is True


def test_operator_is_user_at_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUDO_USER", raising=False)
    user, _, host = operator().partition("@")
    assert user and host
    monkeypatch.setenv("SUDO_USER", "tanaka-not-" + user)
    assert operator().endswith(f"(sudo from tanaka-not-{user})")


TIMEDATECTL = "Timezone=Asia/Tokyo\nLocalRTC=no\nCanNTP=yes\nNTP=yes\nNTPSynchronized=yes\n"
TRACKING = """\
Reference ID    : C6121404 (198.18.20.4)
Stratum         : 3
Ref time (UTC)  : Sat Jan 31 00:12:34 2026
System time     : 0.000012345 seconds fast of NTP time
Leap status     : Normal
"""


def test_time_sync_parsers() -> None:
    assert parse_timedatectl(TIMEDATECTL) == {
        "ntp_synchronized": True,
        "ntp_service": True,
        "timezone": "Asia/Tokyo",
    }
    assert parse_chronyc_tracking(TRACKING) == {
        "reference": "C6121404 (198.18.20.4)",
        "stratum": "3",
        "system_time": "0.000012345 seconds fast of NTP time",
        "leap_status": "Normal",
    }


def test_time_sync_without_the_tools_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    state = control_node_time_sync()
    assert state["synchronized"] is None
    assert state["timedatectl"] == {"found": False, "reason": "timedatectl is not installed"}
    assert state["chronyc"] == {"found": False, "reason": "chronyc is not installed"}


def test_time_sync_reads_both_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, output, rc in [("timedatectl", TIMEDATECTL, 0), ("chronyc", "506 Cannot talk", 1)]:
        script = tmp_path / name
        script.write_text(f"#!/bin/sh\nprintf '%s' '{output}' >&{1 + rc}\nexit {rc}\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    state = control_node_time_sync()
    assert state["synchronized"] is True
    assert state["timedatectl"]["found"] is True
    assert state["timedatectl"]["timezone"] == "Asia/Tokyo"
    assert state["chronyc"] == {"found": False, "reason": "506 Cannot talk"}
