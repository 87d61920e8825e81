"""Postfix's settings in force and where they were set (kijun.postfix, the mail audits' reader),
and the mail_relay role's removal of master.cf's ``-o`` overrides (kijun_effective, remove=match,
with the role's own pattern)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from kijun import postfix as pf

from .conftest import ROOT, run_module

MAIN_CF = """\
# main.cf
myhostname = relay.example
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks,
    permit_sasl_authenticated,
    reject_unauth_destination
message_size_limit = 10240000
# a later assignment wins
message_size_limit = 0
"""

MASTER_CF = """\
# ==========================================================================
smtp      inet  n       -       y       -       -       smtpd
# a comment between the lines of one entry
  -o mynetworks=0.0.0.0/0
  -o syslog_name=postfix/smtp
#submission inet n       -       y       -       -       smtpd
#  -o smtpd_relay_restrictions=permit
submission inet n       -       y       -       -       smtpd -o { smtpd_banner = $myhostname hi }
relay     unix  -       -       y       -       -       smtp
        -o syslog_name=postfix/$service_name
"""

VALUES = """\
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
message_size_limit = 0
smtpd_banner = relay.example ESMTP
relayhost =
"""

OVERRIDES = """\
smtp/inet/mynetworks = 0.0.0.0/0
smtp/inet/syslog_name = postfix/smtp
submission/inet/smtpd_banner = relay.example hi
relay/unix/syslog_name = postfix/relay
"""


def config(overrides: str = OVERRIDES) -> pf.PostfixConfig:
    return pf.PostfixConfig.read(
        values=VALUES, overrides=overrides, main_cf=MAIN_CF, master_cf=MASTER_CF
    )


def test_main_cf_names_the_last_assignment_and_skips_continuation_lines() -> None:
    lines = pf.main_cf_lines(MAIN_CF)
    assert lines["message_size_limit"] == 9
    assert lines["smtpd_relay_restrictions"] == 4
    assert "permit_sasl_authenticated," not in lines


def test_master_cf_options_by_service_with_comments_between_and_braces() -> None:
    lines = pf.master_cf_lines(MASTER_CF)
    assert lines[("smtp/inet", "mynetworks")] == 4
    assert lines[("submission/inet", "smtpd_banner")] == 8
    assert lines[("relay/unix", "syslog_name")] == 10
    # a commented-out entry and its commented options are not in force
    assert ("submission/inet", "smtpd_relay_restrictions") not in lines


def test_an_override_is_the_value_in_force_and_names_master_cf_and_its_line() -> None:
    setting = config().setting("mynetworks")
    assert setting == pf.Setting("mynetworks", "0.0.0.0/0", "/etc/postfix/master.cf:4", "smtp/inet")
    assert config().effective(["mynetworks", "relayhost"]) == {
        "mynetworks": "0.0.0.0/0",
        "relayhost": "",
    }


def test_without_override_main_cf_names_its_last_line() -> None:
    setting = config().setting("message_size_limit")
    assert setting == pf.Setting("message_size_limit", "0", "/etc/postfix/main.cf:9")
    assert config().source("smtpd_relay_restrictions") == "/etc/postfix/main.cf:4"
    # a parameter main.cf does not set: Postfix's default, no file
    assert config().setting("relayhost").source == ""


def test_source_of_several_names_is_the_overridden_one() -> None:
    assert config().source("smtpd_relay_restrictions", "mynetworks") == "/etc/postfix/master.cf:4"


def test_an_override_whose_line_is_not_found_still_wins_and_names_its_service() -> None:
    cfg = config(OVERRIDES + "smtp/inet/message_size_limit = 1\n")
    assert cfg.setting("message_size_limit") == pf.Setting(
        "message_size_limit", "1", "/etc/postfix/master.cf (smtp/inet)", "smtp/inet"
    )


def test_an_override_equal_to_main_cf_is_still_named() -> None:
    cfg = config("smtp/inet/mynetworks = 127.0.0.0/8\n")
    assert cfg.setting("mynetworks").source == "/etc/postfix/master.cf:4"


def test_unreadable_override_output_is_an_error_never_a_pass() -> None:
    with pytest.raises(ValueError, match="cannot read"):
        pf.parse_overrides("postconf: fatal: open /etc/postfix/master.cf: No such file\n")


# --- the role's removal of the overrides -------------------------------------------------------


def role_pattern() -> str:
    variables = yaml.safe_load((ROOT / "roles/mail_relay/vars/main.yml").read_text())
    template = variables["__mail_relay_master_override_pattern"]
    return jinja2.Template(template).render(**variables)


def module(args: dict[str, Any], *flags: str) -> dict[str, Any]:
    return run_module("kijun_effective", args, *flags)


def test_the_role_removes_only_the_owned_options_and_keeps_the_service_lines(
    tmp_path: Path,
) -> None:
    master = tmp_path / "master.cf"
    master.write_text(
        "smtp      inet  n       -       y       -       -       smtpd"
        " -o { smtpd_relay_restrictions = permit_mynetworks, permit, reject_unauth_destination }"
        " -o syslog_name=postfix/smtp\n"
        "  -o mynetworks=0.0.0.0/0\n"
        "  -o smtpd_tls_security_level=may -o message_size_limit=0\n"
        "  -o mynetworks=127.0.0.0/8 -o smtpd_sasl_auth_enable=yes\n"
        "#  -o smtpd_banner=commented\n"
    )
    args = {"paths": [str(master)], "format": "pattern", "pattern": role_pattern(),
            "remove": "match", "label": "mail_relay ML-01..ML-06",
            "backup_dir": str(tmp_path / "backups")}  # fmt: skip
    before = master.read_text()

    checked = module(args, "--check")
    assert checked["changed"] is True and master.read_text() == before
    assert [(n["line"], n["text"]) for n in checked["neutralised"]] == [
        (
            1,
            "-o { smtpd_relay_restrictions = permit_mynetworks, permit,"
            " reject_unauth_destination }",
        ),
        (2, "-o mynetworks=0.0.0.0/0"),
        (3, "-o message_size_limit=0"),
        (4, "-o mynetworks=127.0.0.0/8"),
    ]

    res = module(args)
    assert res["changed"] is True
    assert master.read_text() == (
        "# kijun(mail_relay ML-01..ML-06) neutralised: -o { smtpd_relay_restrictions ="
        " permit_mynetworks, permit, reject_unauth_destination }\n"
        "smtp      inet  n       -       y       -       -       smtpd"
        " -o syslog_name=postfix/smtp\n"
        "# kijun(mail_relay ML-01..ML-06) neutralised: -o mynetworks=0.0.0.0/0\n"
        "# kijun(mail_relay ML-01..ML-06) neutralised: -o message_size_limit=0\n"
        "  -o smtpd_tls_security_level=may\n"
        "# kijun(mail_relay ML-01..ML-06) neutralised: -o mynetworks=127.0.0.0/8\n"
        "  -o smtpd_sasl_auth_enable=yes\n"
        "#  -o smtpd_banner=commented\n"
    )
    [backup] = {n["backup"] for n in res["neutralised"]}
    assert Path(backup).read_text() == before
    # the file as Postfix reads it now: no override of an owned parameter is left
    assert set(pf.master_cf_lines(master.read_text())) == {
        ("smtp/inet", "syslog_name"),
        ("smtp/inet", "smtpd_tls_security_level"),
        ("smtp/inet", "smtpd_sasl_auth_enable"),
    }
    assert module(args)["changed"] is False
