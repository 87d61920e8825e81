"""The lab's topology and inventory, without starting anything."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from kijun import lab


def test_every_address_is_in_the_benchmarking_range() -> None:
    spec = lab.default_spec(extra_hosts=50)
    addresses = []
    for h in spec.hosts:
        addresses.append(h.mgmt_address)
        if h.zone_address:
            addresses.append(h.zone_address)
    for net in spec.networks:
        assert ipaddress.ip_network(net.subnet).subnet_of(lab.LAB_RANGE)  # type: ignore[arg-type]
        addresses.append(net.gateway_address)
    assert all(ipaddress.ip_address(a) in lab.LAB_RANGE for a in addresses)
    assert len(addresses) == len(set(addresses)), "an address is used twice"


def test_zone_networks_are_internal_and_management_is_not() -> None:
    assert not lab.MGMT.internal
    assert all(net.internal for net in lab.ZONES.values())


def test_individual_number_zone_is_never_routed_to_the_internet_zone() -> None:
    assert "internet" not in lab.ROUTED["mynumber"]
    assert "mynumber" not in lab.ROUTED["internet"]


def test_hosts_and_groups_of_the_inventory() -> None:
    inv = lab.render_inventory(lab.default_spec())
    children = inv["all"]["children"]
    assert set(children["zone_mynumber"]["hosts"]) == {"mn-app01"}
    assert set(children["zone_lgwan"]["hosts"]) == {
        "lg-app01", "lg-mail01", "lg-ntp01", "lg-log01", "lg-ap01",
    }  # fmt: skip
    assert set(children["zone_internet"]["hosts"]) == {"in-web01", "in-mail01"}
    assert set(children["gateways"]["hosts"]) == {"gw01"}
    assert set(children["mail_relays"]["hosts"]) == {"lg-mail01", "in-mail01"}
    assert set(children["ntp_servers"]["hosts"]) == {"lg-ntp01"}
    assert set(children["log_collectors"]["hosts"]) == {"lg-log01"}
    assert set(children["access_points"]["hosts"]) == {"lg-ap01"}
    assert children["zone_lgwan"]["vars"] == {"kijun_zone": "lgwan"}


def test_extra_hosts_are_bounded() -> None:
    assert len(lab.default_spec(extra_hosts=3).hosts) == 12
    with pytest.raises(lab.LabError):
        lab.default_spec(extra_hosts=151)


def test_a_scaling_lab_raises_the_inotify_limit_or_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    said: list[str] = []
    lab.ensure_inotify(9, said.append, limit)  # the built-in lab fits Debian's default
    assert limit.read_text() == "128\n" and said == []
    lab.ensure_inotify(50, said.append, limit)
    assert int(limit.read_text()) >= 50 * 6 and "max_user_instances" in said[0]

    def refuse(self: Path, *args: object, **kwargs: object) -> int:
        raise PermissionError("not root")

    limit.write_text("128\n")
    monkeypatch.setattr(Path, "write_text", refuse)
    with pytest.raises(lab.LabError, match="sysctl -w fs.inotify.max_user_instances="):
        lab.ensure_inotify(50, said.append, limit)
