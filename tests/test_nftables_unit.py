"""kijun.ruleset's reading of nftables.service: what loads the ruleset, and from which line."""

from __future__ import annotations

from kijun import ruleset

VENDOR = """\
# /lib/systemd/system/nftables.service
[Unit]
Description=nftables

[Service]
Type=oneshot
ExecStart=/usr/sbin/nft -f /etc/nftables.conf
ExecReload=/usr/sbin/nft -f /etc/nftables.conf
ExecStop=/usr/sbin/nft flush ruleset
"""


def test_the_vendor_unit_loads_nftables_conf_only() -> None:
    commands = ruleset.unit_commands(VENDOR)
    assert [(c.key, c.source) for c in commands] == [
        ("ExecStart", "/lib/systemd/system/nftables.service:6"),
        ("ExecReload", "/lib/systemd/system/nftables.service:7"),
    ]
    assert ruleset.loads_only(commands, "/etc/nftables.conf") == []


def test_a_drop_in_adding_rules_is_named_by_file_and_line() -> None:
    text = VENDOR + (
        "\n# /etc/systemd/system/nftables.service.d/50-local.conf\n"
        "[Service]\n"
        "ExecStartPost=/usr/sbin/nft -f /etc/nftables-local.nft\n"
    )
    bad = ruleset.loads_only(ruleset.unit_commands(text), "/etc/nftables.conf")
    assert [(c.key, c.source) for c in bad] == [
        ("ExecStartPost", "/etc/systemd/system/nftables.service.d/50-local.conf:2")
    ]


def test_an_empty_assignment_clears_and_replaces_the_vendor_command() -> None:
    text = VENDOR + (
        "\n# /etc/systemd/system/nftables.service.d/override.conf\n"
        "[Service]\n"
        "ExecStart=\n"
        "ExecStart=/usr/sbin/nft \\\n"
        "    -f /etc/other.nft\n"
    )
    commands = ruleset.unit_commands(text)
    start = [c for c in commands if c.key == "ExecStart"]
    assert [(c.value, c.source) for c in start] == [
        (
            "/usr/sbin/nft -f /etc/other.nft",
            "/etc/systemd/system/nftables.service.d/override.conf:3",
        )
    ]
    assert [c.key for c in ruleset.loads_only(commands, "/etc/nftables.conf")] == ["ExecStart"]


def test_a_neutralised_line_is_a_comment_and_nothing_read_is_never_right() -> None:
    text = VENDOR + (
        "\n# /etc/systemd/system/nftables.service.d/50-local.conf\n"
        "[Service]\n"
        "# kijun(zone_firewall FW-01..FW-12) neutralised: ExecStartPost=/usr/sbin/nft -f /x\n"
    )
    assert ruleset.loads_only(ruleset.unit_commands(text), "/etc/nftables.conf") == []
    missing = ruleset.loads_only(ruleset.unit_commands(""), "/etc/nftables.conf")
    assert sorted(c.key for c in missing) == ["ExecReload", "ExecStart"]
