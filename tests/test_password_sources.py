"""kijun.password: where the password settings in force were set (the audit's ``source``)."""

from __future__ import annotations

from kijun import password as pw

# A traced bash login shell (as the audit collects it, filtered to TMOUT): the role's script,
# then a later one that tries to reset the read-only TMOUT and is refused.
ROLE_THEN_REFUSED = """\
++/etc/profile.d/kijun-tmout.sh:6: grep -q '[ ]TMOUT='
++/etc/profile.d/kijun-tmout.sh:7: TMOUT=900
++/etc/profile.d/kijun-tmout.sh:8: readonly TMOUT
++/etc/profile.d/kijun-tmout.sh:9: export TMOUT
++/etc/profile.d/zz-local.sh:1: TMOUT=0
/etc/profile.d/zz-local.sh: line 1: TMOUT: readonly variable
"""
# A script read first freezes TMOUT at 0: the role's script sees it read-only and skips.
FROZEN_FIRST = """\
++/etc/profile.d/00-local.sh:1: readonly TMOUT=0
++/etc/profile.d/00-local.sh:1: TMOUT=0
++/etc/profile.d/kijun-tmout.sh:6: grep -q '[ ]TMOUT='
"""


def test_tmout_source_skips_refused_assignments() -> None:
    assert pw.tmout_source(ROLE_THEN_REFUSED) == "/etc/profile.d/kijun-tmout.sh:7"


def test_tmout_source_names_the_competing_file() -> None:
    assert pw.tmout_source(FROZEN_FIRST) == "/etc/profile.d/00-local.sh:1"


def test_tmout_source_unset_and_nothing() -> None:
    trace = ROLE_THEN_REFUSED.replace("readonly TMOUT\n", "true\n").replace(
        "zz-local.sh:1: TMOUT=0\n/etc/profile.d/zz-local.sh: line 1: TMOUT: readonly variable",
        "zz-local.sh:3: unset TMOUT",
    )
    assert pw.tmout_source(trace) == "/etc/profile.d/zz-local.sh:3"
    assert pw.tmout_source("") == ""
    assert pw.tmout_source("+:1: echo $TMOUT\n") == ""


def test_login_defs_last_occurrence_wins_with_its_line() -> None:
    lines = pw.numbered("12:PASS_MAX_DAYS\t99999\n160:PASS_MAX_DAYS\t365\n165:UID_MIN 1000\n")
    assert pw.last_assignments(lines, "/etc/login.defs") == {
        "PASS_MAX_DAYS": ("365", "/etc/login.defs:160"),
        "UID_MIN": ("1000", "/etc/login.defs:165"),
    }


def test_numbered_skips_lines_without_a_number() -> None:
    assert pw.numbered("grep: /x: No such file\n3:deny = 5\n") == [(3, "deny = 5")]


def test_equals_assignments_strip_comments() -> None:
    lines = pw.numbered("10:deny = 5\n11:unlock_time=900 # fifteen minutes\n12:deny = 3\n")
    assert pw.equals_assignments(lines, "/etc/security/faillock.conf") == {
        "deny": ("3", "/etc/security/faillock.conf:12"),
        "unlock_time": ("900", "/etc/security/faillock.conf:11"),
    }


def test_pwquality_sources() -> None:
    text = (
        "read_config 0\n"
        "setting minlen 8\n"
        "source minlen /etc/security/pwquality.conf.d/99-local.conf:1\n"
        "setting maxrepeat 0\n"
        "source maxrepeat libpwquality's default\n"
    )
    assert pw.pwquality_sources(text) == {
        "minlen": "/etc/security/pwquality.conf.d/99-local.conf:1",
        "maxrepeat": "libpwquality's default",
    }
