"""A real lab cycle: up, status, routing through gw01, up again, repair, down."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from kijun import lab, podman

from .conftest import ROOT, VENV_BIN, run_kijun

pytestmark = pytest.mark.lab

FOREIGN = "kijuntest-foreign"


def _ids() -> dict[str, str]:
    ps = podman.run_json(["ps", "-a", "--filter", f"label={lab.LABEL_KEY}", "--format", "json"])
    return {c["Names"][0]: c["Id"] for c in ps}


def _sh(host: str, command: str) -> subprocess.CompletedProcess[str]:
    return lab.exec_on(lab.default_spec().host(host), command)


@pytest.fixture(scope="module")
def running_lab() -> Iterator[None]:
    """A lab brought up from nothing by `kijun lab up`, next to objects the lab did not make."""
    run_kijun("lab", "down")
    podman.run(["network", "rm", "-f", FOREIGN], check=False)
    podman.run(["rm", "-f", FOREIGN], check=False)
    podman.run(["network", "create", "--internal", "--subnet", "198.18.99.0/24", FOREIGN])
    podman.run(["create", "--name", FOREIGN, "--network", FOREIGN, "localhost/kijun-lab:latest"])
    started = time.monotonic()
    proc = run_kijun("lab", "up")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "ready" in proc.stdout
    # target: `lab up` on a cached image in at most 60 s
    assert elapsed <= 60, f"lab up took {elapsed:.1f} s"
    yield
    podman.run(["rm", "-f", FOREIGN], check=False)
    podman.run(["network", "rm", "-f", FOREIGN], check=False)


def test_status_every_host_answers_ssh(running_lab: None) -> None:
    proc = run_kijun("lab", "status", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["host"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {h.name for h in lab.default_spec().hosts}
    assert all(r["ssh"] and r["container"] == "running" for r in rows.values())
    table = run_kijun("lab", "status")
    assert "lg-mail01" in table.stdout and "answers" in table.stdout


def test_ansible_manages_every_host_through_the_written_inventory(running_lab: None) -> None:
    # The admin logs in over SSH with the lab key and becomes root with sudo on every host.
    proc = subprocess.run(
        [str(VENV_BIN / "ansible"), "all", "-m", "ansible.builtin.command", "-a", "id -u"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    as_root = set(re.findall(r"^(\S+) \| CHANGED \| rc=0 >>\n0$", proc.stdout, re.M))
    assert as_root == {h.name for h in lab.default_spec().hosts}, proc.stdout
    groups = subprocess.run(
        [str(VENV_BIN / "ansible-inventory"), "--list"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    inv = json.loads(groups.stdout)
    assert inv["zone_mynumber"]["hosts"] == ["mn-app01"]
    assert inv["_meta"]["hostvars"]["lg-app01"]["kijun_zone"] == "lgwan"


def test_zones_route_through_the_gateway(running_lab: None) -> None:
    # lg-app01 (LGWAN) reaches in-web01 (internet zone) via gw01's LGWAN leg ...
    route = _sh("lg-app01", "ip route get 198.18.30.31")
    assert "via 198.18.20.254" in route.stdout, route.stdout
    assert _sh("lg-app01", "nc -z -w 3 198.18.30.31 22").returncode == 0
    # ... and only through it: when gw01 stops forwarding, the connection fails.
    block = (
        "sudo nft add table inet kijuntest && sudo nft add chain inet kijuntest blocked "
        "'{ type filter hook forward priority 0; policy drop; }'"
    )
    try:
        assert _sh("gw01", block).returncode == 0
        assert _sh("lg-app01", "nc -z -w 3 198.18.30.31 22").returncode != 0
        assert _sh("mn-app01", "nc -z -w 3 198.18.20.21 22").returncode != 0
    finally:
        _sh("gw01", "sudo nft delete table inet kijuntest")
    assert _sh("mn-app01", "nc -z -w 3 198.18.20.21 22").returncode == 0
    # The individual-number zone has no route to the internet zone at all.
    mn_route = _sh("mn-app01", "ip route get 198.18.30.31").stdout
    assert "198.18.10.254" not in mn_route
    assert _sh("mn-app01", "nc -z -w 3 198.18.30.31 22").returncode != 0


def test_up_again_changes_nothing(running_lab: None) -> None:
    before = _ids()
    known_hosts = lab.known_hosts_path().read_text()
    proc = run_kijun("lab", "up")
    assert proc.returncode == 0, proc.stderr
    assert "unchanged" in proc.stdout
    assert _ids() == before
    assert lab.known_hosts_path().read_text() == known_hosts


def test_up_repairs_a_stale_host(running_lab: None) -> None:
    podman.run(["stop", "-t", "0", "kijun-in-web01"])
    proc = run_kijun("lab", "up")
    assert proc.returncode == 0, proc.stderr
    assert "in-web01" in proc.stderr and "exited" in proc.stderr
    assert run_kijun("lab", "status").returncode == 0


def test_down_removes_only_what_the_lab_made(running_lab: None) -> None:
    proc = run_kijun("lab", "down")
    assert proc.returncode == 0, proc.stderr
    assert _ids() == {}
    nets = podman.run(
        ["network", "ls", "--filter", f"label={lab.LABEL_KEY}", "--format", "{{.Name}}"]
    ).stdout.split()
    assert nets == []
    assert podman.run(["container", "exists", FOREIGN], check=False).returncode == 0
    assert podman.run(["network", "exists", FOREIGN], check=False).returncode == 0
    assert not lab.inventory_path().exists()
    status = run_kijun("lab", "status")
    assert status.returncode == 1
