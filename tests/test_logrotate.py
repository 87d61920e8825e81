"""kijun.logrotate: logrotate's own reading (``logrotate -d``), kijun's reading of the files,
and the effective retention computed from them."""

from __future__ import annotations

import math

import pytest

from kijun import logrotate as lr

# Printed by logrotate 3.21.0 (Debian 12) for Debian's stock configuration.
DEBIAN_STOCK = """\
warning: logrotate in debug mode does nothing except printing debug messages!

reading config file /etc/logrotate.conf
including /etc/logrotate.d
reading config file btmp
reading config file rsyslog
Reading state from file: /var/lib/logrotate/status
Allocating hash table for state file, size 64 entries

Handling 2 logs

rotating pattern: /var/log/btmp  monthly (1 rotations)
empty log files are rotated, old logs are removed
considering log /var/log/btmp
  log does not need rotating (log has already been rotated)

rotating pattern: /var/log/syslog
/var/log/mail.log
/var/log/auth.log
 weekly (4 rotations)
empty log files are not rotated, old logs are removed
considering log /var/log/syslog
  log /var/log/syslog does not exist -- skipping
not running postrotate script, since no logs were rotated
"""

# logrotate 3.21.0: size, olddir, mail, minsize/maxsize/minage, daily, rotate -1 (prints nothing).
VARIANTS_321 = """\
rotating pattern: /var/log/e.log  102400 bytes (no old logs will be kept)
olddir is /var/log/old, empty log files are rotated, old logs mailed to root@example
considering log /var/log/e.log

rotating pattern: /var/log/f.log  monthly (4 rotations)
empty log files are rotated, only log files >= 10240 bytes are rotated, log files >= 1048576 \
are rotated earlier, only log files older than 3 days are rotated, old logs are removed
considering log /var/log/f.log

rotating pattern: "/var/log/c d.log"
 after 1 days empty log files are rotated, old logs are removed
considering log /var/log/c d.log
error: stat of /var/log/c d.log failed: No such file or directory
"""

# logrotate 3.22 and later print maxage and unlimited rotations.
VARIANTS_322 = """\
rotating pattern: /var/log/a.log  weekly empty log files are rotated, (53 rotations), \
old logs are removed after 30 days
considering log /var/log/a.log

rotating pattern: /var/log/b.log  after 1 days empty log files are rotated, (unlimited rotations), \
old logs are removed
considering log /var/log/b.log

rotating pattern: /var/log/c.log  yearly empty log files are rotated, old logs are kept forever
"""


def test_parse_debug_reads_debian_stock_output() -> None:
    debug = lr.parse_debug(DEBIAN_STOCK)
    assert debug.files_read == ("/etc/logrotate.conf", "btmp", "rsyslog")
    btmp, syslog = debug.rotations
    assert (btmp.patterns, btmp.frequency, btmp.rotations) == (("/var/log/btmp",), "monthly", 1)
    assert syslog.patterns == ("/var/log/syslog", "/var/log/mail.log", "/var/log/auth.log")
    assert (syslog.frequency, syslog.rotations, syslog.max_age) == ("weekly", 4, 0)
    assert lr.retention_days(syslog) == 28


def test_parse_debug_reads_size_olddir_mail_and_unlimited_321() -> None:
    e, f, cd = lr.parse_debug(VARIANTS_321).rotations
    assert (e.frequency, e.rotations, e.olddir, e.mail) == (
        "size", 0, "/var/log/old", "root@example"
    )  # fmt: skip
    assert (f.frequency, f.rotations, f.max_size, f.min_size) == ("monthly", 4, 1048576, 10240)
    assert (cd.patterns, cd.frequency, cd.rotations) == (("/var/log/c d.log",), "daily", -1)
    assert lr.parse_debug(VARIANTS_321).errors == (
        "error: stat of /var/log/c d.log failed: No such file or directory",
    )


def test_parse_debug_reads_maxage_and_unlimited_322() -> None:
    a, b, c = lr.parse_debug(VARIANTS_322).rotations
    assert (a.frequency, a.rotations, a.max_age) == ("weekly", 53, 30)
    assert (b.frequency, b.rotations) == ("daily", -1)
    assert (c.frequency, c.rotations) == ("yearly", -1)


@pytest.mark.parametrize(
    ("months", "days"), [(0, 0), (1, 28), (2, 59), (3, 89), (11, 334), (12, 365), (13, 393)]
)
def test_month_days_is_the_shortest_span_of_consecutive_months(months: int, days: int) -> None:
    assert lr.month_days(months) == days


@pytest.mark.parametrize(
    ("rotation", "days"),
    [
        (lr.Rotation(("x",), "weekly", 53), 371),
        (lr.Rotation(("x",), "weekly", 4), 28),
        (lr.Rotation(("x",), "daily", 365), 365),
        (lr.Rotation(("x",), "monthly", 12), 365),
        (lr.Rotation(("x",), "yearly", 2), 730),
        (lr.Rotation(("x",), "hourly", 48), 2),
        (lr.Rotation(("x",), "weekly", 53, max_age=30), 30),
        (lr.Rotation(("x",), "weekly", -1), math.inf),
        (lr.Rotation(("x",), "weekly", -1, max_age=400), 400),
        (lr.Rotation(("x",), "weekly", 0), 0),
        (lr.Rotation(("x",), "size", 10), None),
        (lr.Rotation(("x",), "weekly", 53, max_size=1 << 20), None),
    ],
)
def test_retention_days(rotation: lr.Rotation, days: float | None) -> None:
    assert lr.retention_days(rotation) == days


FILES = {
    "/etc/logrotate.conf": (
        "# comment\nweekly\nrotate 4\ncreate\n#compress\ninclude /etc/logrotate.d\n"
        "/var/log/wtmp {\n    monthly\n    create 0664 root utmp\n    rotate 1\n}\n"
    ),
    "/etc/logrotate.d/rsyslog": (
        "/var/log/syslog\n/var/log/auth.log\n{\n\trotate 53\n\tweekly\n\tcompress\n"
        "\tcreate 0640 root adm\n\tsharedscripts\n\tpostrotate\n\t\tweekly\n\t\trotate 1\n"
        "\tendscript\n}\n"
    ),
    "/etc/logrotate.d/apt": '"/var/log/apt/term.log" /var/log/apt/history.log {\n maxage 30\n}\n',
    "/etc/logrotate.d/apt.dpkg-old": "/var/log/old.log {\n rotate 1\n}\n",
    "/etc/logrotate.d/.hidden.bak": "/var/log/hidden.log { daily\n}\n",
}


def test_read_config_follows_globals_includes_and_taboo_extensions() -> None:
    blocks, problems = lr.read_config(FILES)
    assert problems == []
    by_pattern = {b.patterns: b for b in blocks}
    assert list(by_pattern) == [
        ("/var/log/hidden.log",),  # a dot file is read: "*" never matches a leading dot
        ("/var/log/apt/term.log", "/var/log/apt/history.log"),
        ("/var/log/syslog", "/var/log/auth.log"),
        ("/var/log/wtmp",),
    ]
    apt = by_pattern[("/var/log/apt/term.log", "/var/log/apt/history.log")]
    assert (apt.frequency, apt.rotations, apt.max_age, apt.compress) == ("weekly", 4, 30, False)
    assert apt.create == (None, None, None)
    syslog = by_pattern[("/var/log/syslog", "/var/log/auth.log")]
    assert (syslog.frequency, syslog.rotations, syslog.compress) == ("weekly", 53, True)
    assert syslog.create == ("0640", "root", "adm")
    assert by_pattern[("/var/log/hidden.log",)].frequency == "daily"


def test_combine_completes_logrotate_reading_and_reports_disagreement() -> None:
    blocks, _ = lr.read_config(FILES)
    debug = lr.parse_debug(
        "rotating pattern: /var/log/syslog\n/var/log/auth.log\n weekly (53 rotations)\n"
        "empty log files are rotated, old logs are removed\n"
        'rotating pattern: "/var/log/apt/term.log" /var/log/apt/history.log  weekly '
        "(5 rotations)\nempty log files are rotated, old logs are removed\n"
    )
    rotations, problems = lr.combine(debug, blocks)
    syslog, apt = rotations
    assert (syslog.compress, syslog.create, syslog.verified) == (
        True,
        ("0640", "root", "adm"),
        True,
    )
    assert not apt.verified
    assert apt.max_age == 30
    assert problems == [
        "/etc/logrotate.d/apt:1: kijun reads weekly/4, logrotate weekly/5",
        "/etc/logrotate.d/.hidden.bak:1: block /var/log/hidden.log is not in logrotate's own "
        "reading",
        "/etc/logrotate.conf:7: block /var/log/wtmp is not in logrotate's own reading",
    ]


def test_rotation_for_takes_the_first_matching_block() -> None:
    first = lr.Rotation(("/var/log/remote/*/*.log",), "weekly", 53)
    second = lr.Rotation(("/var/log/*.log", "/var/log/remote/a/syslog.log"), "daily", 7)
    assert lr.rotation_for("/var/log/remote/a/syslog.log", [first, second]) is first
    assert lr.rotation_for("/var/log/kern.log", [first, second]) is second
    assert lr.rotation_for("/var/log/syslog", [first, second]) is None


def test_parse_files_splits_a_dump() -> None:
    dump = "==> kijun-file: /etc/a\nx\ny\n==> kijun-file: /etc/b\n\nz\n"
    assert lr.parse_files(dump) == {"/etc/a": "x\ny\n", "/etc/b": "\nz\n"}


def test_read_config_later_directives_win() -> None:
    files = {
        "/etc/logrotate.conf": (
            "create 0600 root root\ncompress\n/var/log/a {\n nocreate\n nocompress\n"
            " daily\n weekly\n rotate 2\n rotate 3\n}\n/var/log/b {\n nocreate\n create\n}\n"
        )
    }
    a, b = lr.read_config(files)[0]
    assert (a.create, a.nocreate, a.compress, a.frequency, a.rotations) == (
        None, True, False, "weekly", 3
    )  # fmt: skip
    assert (b.create, b.nocreate, b.compress) == ((None, None, None), False, True)
