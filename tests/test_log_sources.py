"""Where the logging settings in force come from (issue 14): kijun.journald, the file and line
of each rsyslog statement (kijun.rsyslog.origins), of each logrotate block (Rotation.source),
and the log_retention role's kijun_logrotate_owned module, which takes the role's logs out of
competing logrotate blocks."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import ModuleType

from kijun import journald as jd
from kijun import logrotate as lr
from kijun import rsyslog as rs

from .conftest import import_module_file

ROOT = Path(__file__).resolve().parents[1]

# systemd-analyze cat-config systemd/journald.conf (systemd 252, Debian 12), the main file
# shortened: the role's drop-in, a later one in /etc, one in /run and a vendor one in /usr/lib.
CAT_CONFIG = """\
# /etc/systemd/journald.conf
#  This file is part of systemd.
#
# See journald.conf(5) for details.

[Journal]
#Storage=auto
#Compress=yes
#ForwardToSyslog=no
#SystemMaxUse=

# /etc/systemd/journald.conf.d/50-kijun-retention.conf
# Ansible managed
# log_retention: LG-01 (journal kept on disk, compressed, bounded in age and size)
[Journal]
Storage=persistent
Compress=yes
MaxRetentionSec=1year
SystemMaxUse=1G

# /run/systemd/journald.conf.d/60-runtime.conf
[Journal]
Compress=no

# /usr/lib/systemd/journald.conf.d/90-vendor.conf
[Journal]

SystemMaxUse=64M

# /etc/systemd/journald.conf.d/99-local.conf
[Journal]
Storage=volatile
"""


def test_journald_last_assignment_wins_and_names_its_file_and_line() -> None:
    conf = jd.read_cat_config(CAT_CONFIG)
    assert conf.get("Storage") == "volatile"
    assert conf.source("Storage") == "/etc/systemd/journald.conf.d/99-local.conf:2"
    assert conf.get("Compress") == "no"
    assert conf.source("Compress") == "/run/systemd/journald.conf.d/60-runtime.conf:2"
    assert conf.get("SystemMaxUse") == "64M"
    assert conf.source("SystemMaxUse") == "/usr/lib/systemd/journald.conf.d/90-vendor.conf:3"
    assert conf.get("MaxRetentionSec") == "1year"
    assert conf.source("MaxRetentionSec") == (
        "/etc/systemd/journald.conf.d/50-kijun-retention.conf:6"
    )


def test_journald_compiled_in_defaults_have_no_source() -> None:
    conf = jd.read_cat_config(CAT_CONFIG)
    assert conf.get("ForwardToSyslog") == "no"
    assert conf.source("ForwardToSyslog") == ""


def test_journald_empty_assignment_restores_the_default() -> None:
    text = CAT_CONFIG + "\n# /etc/systemd/journald.conf.d/99-zz.conf\n[Journal]\nStorage=\n"
    conf = jd.read_cat_config(text)
    assert conf.get("Storage") == "auto"
    assert conf.source("Storage") == ""


def test_journald_other_sections_and_unread_input() -> None:
    conf = jd.read_cat_config("# /etc/systemd/journald.conf\n[Other]\nStorage=volatile\n")
    assert conf.get("Storage") is None
    empty = jd.read_cat_config("")
    assert empty.files == [] and empty.settings == {}  # nothing read: the checks cannot pass


# rsyslogd 8.2302 -N1 -o for a main file that includes three drop-ins: the include's files are
# announced together in reverse name order, then read in name order, each ending at its END
# line; the main file's include line ends in the first line after the last END.
RSYSLOG_OUT = """\
## full conf created by rsyslog version 8.2302.0 at 2026-12-07 23:39:00 ##

##### BEGIN CONFIG: /etc/rsyslog.conf (put on stack)
$FileOwner root
$FileGroup adm
$FileCreateMode 0640
$WorkDirectory /var/spool/rsyslog
$IncludeConfig /etc/rsyslog.d/*.conf/etc/rsyslog.d/*.conf
##### BEGIN CONFIG: /etc/rsyslog.d/99-local.conf (put on stack)

##### BEGIN CONFIG: /etc/rsyslog.d/50-fwd.conf (put on stack)

##### BEGIN CONFIG: /etc/rsyslog.d/00-modes.conf (put on stack)
# modes
$FileCreateMode 0640

##### END   CONFIG: /etc/rsyslog.d/00-modes.conf
action(type="omfwd" target="loghost"
       port="514" protocol="tcp")

##### END   CONFIG: /etc/rsyslog.d/50-fwd.conf
# local
$FileCreateMode 0644

##### END   CONFIG: /etc/rsyslog.d/99-local.conf


auth,authpriv.*\t\t\t/var/log/auth.log
*.*;auth,authpriv.none\t\t-/var/log/syslog

##### END   CONFIG: /etc/rsyslog.conf
"""


def test_rsyslog_origins_map_each_output_line_to_its_file_and_line() -> None:
    lines = RSYSLOG_OUT.splitlines()
    where = dict(zip(lines, rs.origins(RSYSLOG_OUT), strict=True))
    assert where["$WorkDirectory /var/spool/rsyslog"] == "/etc/rsyslog.conf:4"
    assert where["# modes"] == "/etc/rsyslog.d/00-modes.conf:1"
    assert where['action(type="omfwd" target="loghost"'] == "/etc/rsyslog.d/50-fwd.conf:1"
    assert where["# local"] == "/etc/rsyslog.d/99-local.conf:1"
    assert where["auth,authpriv.*\t\t\t/var/log/auth.log"] == "/etc/rsyslog.conf:7"
    assert where["##### END   CONFIG: /etc/rsyslog.conf"] == ""


def test_a_later_legacy_create_mode_is_named_as_the_source_of_the_file_actions() -> None:
    conf = rs.parse(RSYSLOG_OUT)
    auth = next(a for a in conf.files() if a.file == "/var/log/auth.log")
    assert conf.file_attributes(auth)["filecreatemode"] == "0644"
    sources = conf.file_attribute_sources(auth)
    assert sources["filecreatemode"] == "/etc/rsyslog.d/99-local.conf:2"
    assert sources["filegroup"] == "/etc/rsyslog.conf:2"
    assert auth.source == "/etc/rsyslog.conf:7"
    forward = next(a for a in conf.actions if a.type == "omfwd")
    assert forward.source == "/etc/rsyslog.d/50-fwd.conf:1"
    assert conf.sources["$workdirectory"] == "/etc/rsyslog.conf:4"


def test_rainerscript_file_action_takes_its_source_from_itself_or_the_module() -> None:
    text = (
        "##### BEGIN CONFIG: /etc/rsyslog.conf (put on stack)\n"
        'module(load="builtin:omfile" fileCreateMode="0600")\n'
        'action(type="omfile" file="/var/log/a.log" fileOwner="root")\n'
        "##### END   CONFIG: /etc/rsyslog.conf\n"
    )
    conf = rs.parse(text)
    sources = conf.file_attribute_sources(conf.files()[0])
    assert sources == {
        "filecreatemode": "/etc/rsyslog.conf:1",
        "fileowner": "/etc/rsyslog.conf:2",
        "filegroup": "",  # rsyslog's default
    }


# logrotate 3.21 with a file that sorts before the role's and names /var/log/syslog again: it
# skips the role's whole file, and the competing block is the one used.
DUPLICATE_DEBUG = """\
reading config file /etc/logrotate.conf
including /etc/logrotate.d
reading config file local-syslog
reading config file rsyslog
error: rsyslog:1 duplicate log entry for /var/log/syslog
error: found error in file rsyslog, skipping

Handling 1 logs

rotating pattern: /var/log/syslog
 weekly (4 rotations)
empty log files are rotated, old logs are removed
"""
DUPLICATE_FILES = {
    "/etc/logrotate.conf": "weekly\nrotate 4\ninclude /etc/logrotate.d\n",
    "/etc/logrotate.d/local-syslog": "/var/log/syslog\n{\n\tweekly\n\trotate 4\n}\n",
    "/etc/logrotate.d/rsyslog": "/var/log/syslog\n/var/log/auth.log\n{\n\tweekly\n\trotate 53\n}\n",
}


def test_logrotate_rotation_names_the_block_in_force() -> None:
    blocks, _ = lr.read_config(DUPLICATE_FILES)
    rotations, problems = lr.combine(lr.parse_debug(DUPLICATE_DEBUG), blocks)
    rot = lr.rotation_for("/var/log/syslog", rotations)
    assert rot is not None and rot.rotations == 4
    assert rot.source == "/etc/logrotate.d/local-syslog:1"
    assert lr.rotation_for("/var/log/auth.log", rotations) is None
    assert any("/etc/logrotate.d/rsyslog:1" in p for p in problems)


# --- the role's kijun_logrotate_owned module ---------------------------------------------------


def _module() -> ModuleType:
    return import_module_file(ROOT / "roles/log_retention/library/kijun_logrotate_owned.py")


LOGS = ["/var/log/syslog", "/var/log/auth.log"]
MARK = "# kijun(log_retention LG-03 LG-04) neutralised: "


def _neutralise(text: str) -> tuple[str, list[tuple[int, str, str]], list[str]]:
    lines, entries, globs = _module().neutralise(
        text.splitlines(keepends=True), LOGS, "log_retention LG-03 LG-04"
    )
    return "".join(lines), entries, globs


def test_a_block_naming_only_the_roles_logs_is_commented_out_whole() -> None:
    text = (
        "/var/log/syslog\n{\n\tweekly\n\tpostrotate\n\t\techo }\n\tendscript\n}\n/var/log/x {\n}\n"
    )
    after, entries, _ = _neutralise(text)
    assert after.splitlines()[:7] == [MARK + line.strip() for line in text.splitlines()[:7]]
    assert after.splitlines()[7:] == ["/var/log/x {", "}"]
    assert entries == [(0, "/var/log/syslog", "/var/log/syslog")]


def test_other_logs_of_a_block_stay_rotated() -> None:
    text = (
        "weekly\n/var/log/foo.log /var/log/auth.log {\n\trotate 4\n}\n"
        "/var/log/syslog\n/var/log/bar.log\n{\n}\n"
    )
    after, entries, _ = _neutralise(text)
    assert after.splitlines() == [
        "weekly",
        MARK + "/var/log/foo.log /var/log/auth.log {",
        "/var/log/foo.log {",
        "\trotate 4",
        "}",
        MARK + "/var/log/syslog",
        "/var/log/bar.log",
        "{",
        "}",
    ]
    assert [e[1] for e in entries] == ["/var/log/auth.log", "/var/log/syslog"]


def test_globs_that_match_the_roles_logs_are_reported_not_changed() -> None:
    text = "/var/log/*.log {\n\trotate 2\n}\n"
    after, entries, globs = _neutralise(text)
    assert after == text and entries == [] and globs == ["/var/log/*.log"]


def test_what_the_module_leaves_parses(tmp_path: Path) -> None:
    text = (
        "/var/log/foo.log /var/log/syslog {\n\tmissingok\n\trotate 4\n}\n/var/log/auth.log {\n}\n"
    )
    after, _, _ = _neutralise(text)
    conf = tmp_path / "local"
    conf.write_text(after)
    proc = subprocess.run(
        ["logrotate", "-d", "-s", str(tmp_path / "state"), str(conf)],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error:" not in proc.stdout + proc.stderr
