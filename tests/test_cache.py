"""The cache of what kijun audit resolves before contacting a host: a changed file always wins."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kijun import cache, variables


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setattr(cache, "_dir", lambda: directory)
    monkeypatch.delenv("KIJUN_NO_CACHE", raising=False)
    return directory


def test_fingerprint_follows_content_not_time(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.yml").write_text("x: 1\n")
    first = cache.fingerprint([src])
    os.utime(src / "a.yml", (1, 1))
    assert cache.fingerprint([src]) == first
    (src / "a.yml").write_text("x: 2\n")
    assert cache.fingerprint([src]) != first
    (src / "a.yml").write_text("x: 1\n")
    assert cache.fingerprint([src]) == first
    (src / "b.yml").write_text("")
    assert cache.fingerprint([src]) != first
    assert cache.fingerprint([src], extra=["ANSIBLE_X=1"]) != cache.fingerprint([src])


def test_cached_computes_once_per_key(cache_dir: Path) -> None:
    calls: list[int] = []

    def compute() -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    assert cache.cached("thing", "k1", compute) == {"n": 1}
    assert cache.cached("thing", "k1", compute) == {"n": 1}
    assert len(calls) == 1
    assert cache.cached("thing", "k2", compute) == {"n": 2}
    assert [p.name for p in cache_dir.glob("thing-*")] == ["thing-k2.pickle"]


def test_an_unreadable_entry_is_computed_again(cache_dir: Path) -> None:
    cache.cached("thing", "k", lambda: 1)
    (cache_dir / "thing-k.pickle").write_bytes(b"not a pickle")
    assert cache.cached("thing", "k", lambda: 2) == 2


def test_no_cache_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIJUN_NO_CACHE", "1")
    cache.cached("thing", "k", lambda: 1)
    assert cache.cached("thing", "k", lambda: 2) == 2


@pytest.mark.parametrize(
    ("name", "text", "executable"),
    [
        ("hosts.yml", "all:\n  hosts: {a: {}}\n", True),
        ("aws_ec2.yml", "plugin: amazon.aws.aws_ec2\n", False),
        ("group_vars/all.yml", "x: \"{{ lookup('env', 'HOME') }}\"\n", False),
        ("group_vars/all.yml", "x: \"{{ query('file', 'y') }}\"\n", False),
    ],
)
def test_dynamic_inventories_are_never_cached(
    tmp_path: Path, name: str, text: str, executable: bool
) -> None:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "static.yml").write_text("all:\n  hosts: {a: {}}\n")
    assert cache.static_inventory(inv)
    (inv / name).write_text(text)
    if executable:
        (inv / name).chmod(0o755)
    assert not cache.static_inventory(inv)


def test_host_variables_follow_an_edited_group_vars_file(tmp_path: Path) -> None:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  children:\n    zone_lgwan:\n      hosts: {h1: {}}\n")
    gv = inv / "group_vars" / "zone_lgwan.yml"
    gv.write_text("time_sync_max_offset_ms: 100\n")
    first = variables.load_cached(inv)
    assert first["h1"].values["time_sync_max_offset_ms"] == 100
    assert type(first["h1"].values["time_sync_max_offset_ms"]) is int  # plain, picklable
    again = variables.load_cached(inv)
    assert again["h1"].values == first["h1"].values
    gv.write_text("time_sync_max_offset_ms: 50\n")
    assert variables.load_cached(inv)["h1"].values["time_sync_max_offset_ms"] == 50
