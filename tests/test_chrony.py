"""kijun.chrony: chrony's configuration in chronyd's reading order, each directive with its file."""

from __future__ import annotations

from kijun import chrony

MAIN = """\
# comment
confdir /etc/chrony/conf.d
sourcedir /etc/chrony/sources.d

makestep 1 3
minsources 1
"""
SERVE = "allow 198.19.255.0/24\nlocal stratum 10\n"
LOCAL = "! a comment\nMakeStep 5 5\nserver 198.18.255.125\n"
OWN_SOURCES = "# Ansible managed\nserver ntp.example iburst\n"
OTHER_SOURCES = "server 198.18.255.124 iburst"  # no newline at the end


def collected(**files: str) -> str:
    return "".join(f"### {path}\n{text}" + ("" if text.endswith("\n") else "\n")
                   for path, text in files.items())  # fmt: skip


def config_files(*extra: tuple[str, str]) -> str:
    files = {"/etc/chrony/chrony.conf": MAIN, "/etc/chrony/conf.d/50-kijun-serve.conf": SERVE}
    files.update(dict(extra))
    return collected(**files)


def printed(*drop_ins: str) -> str:
    """What chronyd -p prints: conf.d expanded where confdir stands, no comments."""
    lines = [w for text in drop_ins for w in text.splitlines() if w and w[0] not in "#!"]
    rest = [w for w in MAIN.splitlines()[2:] if w]
    return "\n".join([*lines, *rest]) + "\n"


SOURCES = collected(
    **{
        "/etc/chrony/sources.d/50-kijun-servers.sources": OWN_SOURCES,
        "/etc/chrony/sources.d/99-local.sources": OTHER_SOURCES,
    }
)


def test_each_directive_names_its_file_and_line() -> None:
    conf = chrony.read(config_files(), printed(SERVE), "")
    assert conf.traced, conf.why
    assert conf.last("makestep") == chrony.Directive(
        "makestep", ("1", "3"), "/etc/chrony/chrony.conf", 5
    )
    assert [d.source for d in conf.all("allow")] == ["/etc/chrony/conf.d/50-kijun-serve.conf:1"]


def test_a_drop_in_is_read_where_confdir_stands() -> None:
    # A drop-in's makestep comes before chrony.conf's own, which is the one in force.
    drop_in = ("/etc/chrony/conf.d/99-local.conf", LOCAL)
    conf = chrony.read(config_files(drop_in), printed(SERVE, LOCAL), "")
    assert conf.traced, conf.why
    assert [d.source for d in conf.all("makestep")] == [
        "/etc/chrony/conf.d/99-local.conf:2",
        "/etc/chrony/chrony.conf:5",
    ]
    assert conf.last("makestep").source == "/etc/chrony/chrony.conf:5"  # type: ignore[union-attr]
    assert [d.source for d in conf.sources()] == ["/etc/chrony/conf.d/99-local.conf:3"]


def test_a_competing_sources_file_is_named() -> None:
    conf = chrony.read(config_files(), printed(SERVE), SOURCES)
    assert [(d.text, d.source) for d in conf.sources()] == [
        ("server ntp.example iburst", "/etc/chrony/sources.d/50-kijun-servers.sources:2"),
        ("server 198.18.255.124 iburst", "/etc/chrony/sources.d/99-local.sources:1"),
    ]


def test_confdir_reads_sorted_names_first_directory_wins() -> None:
    main = "confdir /a /b\n"
    files = collected(
        **{"/etc/chrony/chrony.conf": main, "/b/10-x.conf": "server b10\n",
           "/a/20-y.conf": "server a20\n", "/b/20-y.conf": "server b20\n",
           "/a/README": "server readme\n"}
    )  # fmt: skip
    conf = chrony.read(files, "server b10\nserver a20\n")
    assert conf.traced, conf.why
    assert [d.source for d in conf.sources()] == ["/b/10-x.conf:1", "/a/20-y.conf:1"]


def test_include_is_expanded() -> None:
    files = collected(
        **{"/etc/chrony/chrony.conf": "include /etc/chrony/extra/*.conf\nminsources 2\n",
           "/etc/chrony/extra/a.conf": "pool pool.example\n"}
    )  # fmt: skip
    conf = chrony.read(files, "pool pool.example\nminsources 2\n")
    assert [d.source for d in conf.directives] == [
        "/etc/chrony/extra/a.conf:1",
        "/etc/chrony/chrony.conf:2",
    ]


def test_disagreement_with_chronyd_keeps_chronyds_values_without_files() -> None:
    # A drop-in the collection missed: chronyd -p decides, and no file is named.
    conf = chrony.read(config_files(), printed(SERVE, "server hidden\n"), "")
    assert not conf.traced
    assert "do not rebuild" in conf.why
    assert [d.text for d in conf.sources()] == ["server hidden"]
    assert conf.sources()[0].source == ""


def test_nothing_collected_is_not_traced() -> None:
    conf = chrony.read("", "", "")
    assert not conf.traced
    assert "was not collected" in conf.why
    assert conf.last("makestep") is None
