"""kijun.modprobe: the install command in force per module and the file line that set it."""

from __future__ import annotations

from kijun import modprobe

FILES = """\
### /etc/modprobe.d/00-local.conf
/etc/modprobe.d/00-local.conf:3:install cfg80211 /sbin/modprobe --ignore-install cfg80211
### /etc/modprobe.d/kijun-no-wireless.conf
/etc/modprobe.d/kijun-no-wireless.conf:4:blacklist cfg80211
/etc/modprobe.d/kijun-no-wireless.conf:5:install cfg80211 /bin/false
/etc/modprobe.d/kijun-no-wireless.conf:7:install mac80211 /bin/false
### /lib/modprobe.d/aliases.conf
"""

SHOW = """\
install cfg80211 /sbin/modprobe --ignore-install cfg80211
install cfg80211 /bin/false
install mac80211 /bin/false
blacklist cfg80211
"""


def test_the_first_install_line_in_file_name_order_wins() -> None:
    lines = modprobe.read_files(FILES)
    found = modprobe.effective_install("cfg80211", lines, modprobe.showconfig_installs(SHOW))
    assert found.command == "/sbin/modprobe --ignore-install cfg80211"
    assert found.source == "/etc/modprobe.d/00-local.conf:3"
    mac = modprobe.effective_install("mac80211", lines, modprobe.showconfig_installs(SHOW))
    assert (mac.command, mac.source) == ("/bin/false", "/etc/modprobe.d/kijun-no-wireless.conf:7")


def test_files_are_sorted_by_name_across_directories() -> None:
    text = (
        "### /lib/modprobe.d/10-vendor.conf\n"
        "/lib/modprobe.d/10-vendor.conf:1:install cfg80211 /bin/true\n"
        "### /etc/modprobe.d/kijun-no-wireless.conf\n"
        "/etc/modprobe.d/kijun-no-wireless.conf:2:install cfg80211 /bin/false\n"
    )
    found = modprobe.effective_install("cfg80211", modprobe.read_files(text))
    assert found.source == "/lib/modprobe.d/10-vendor.conf:1"


def test_a_name_in_etc_hides_the_same_name_in_lib() -> None:
    text = (
        "### /etc/modprobe.d/10-vendor.conf\n"
        "### /lib/modprobe.d/10-vendor.conf\n"
        "/lib/modprobe.d/10-vendor.conf:1:install cfg80211 /sbin/modprobe --ignore-install x\n"
        "### /etc/modprobe.d/kijun-no-wireless.conf\n"
        "/etc/modprobe.d/kijun-no-wireless.conf:2:install cfg80211 /bin/false\n"
    )
    found = modprobe.effective_install("cfg80211", modprobe.read_files(text))
    assert (found.command, found.source) == (
        "/bin/false",
        "/etc/modprobe.d/kijun-no-wireless.conf:2",
    )


def test_wildcard_patterns_match() -> None:
    text = "### /etc/modprobe.d/a.conf\n/etc/modprobe.d/a.conf:1:install *80211 /bin/true\n"
    found = modprobe.effective_install("mac80211", modprobe.read_files(text))
    assert found.source == "/etc/modprobe.d/a.conf:1"


def test_no_install_line_and_disagreement_with_modprobe_name_no_source() -> None:
    assert modprobe.effective_install("cfg80211", []) == modprobe.Install("cfg80211", None, "")
    lines = modprobe.read_files(FILES)
    other = [("cfg80211", "/bin/true")]
    found = modprobe.effective_install("cfg80211", lines, other)
    assert (found.command, found.source) == ("/bin/true", "")
