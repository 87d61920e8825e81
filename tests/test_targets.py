"""How kijun audit reaches hosts: the ssh_config written from the inventory."""

from __future__ import annotations

from pathlib import Path

import pytest

from kijun import targets
from kijun.variables import HostVars


def test_ssh_config_shares_one_connection_per_host_and_its_directory_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    hosts = {
        "lg-app01": HostVars(
            "lg-app01", frozenset({"zone_lgwan"}), {},
            {"ansible_host": "198.18.0.21", "ansible_user": "admin"},
        ),
    }  # fmt: skip
    config = tmp_path / "ssh_config"
    targets.write_ssh_config(config, hosts, ["lg-app01"])
    text = config.read_text()
    assert "HostName 198.18.0.21" in text and "User admin" in text
    assert "ControlMaster auto" in text and "ControlPersist 60s" in text
    # ssh refuses to connect when it cannot create the control socket: the directory is made.
    control = tmp_path / "home" / ".ansible" / "cp"
    assert f"ControlPath {targets.CONTROL_DIR}/%C" in text and control.is_dir()
    assert control.stat().st_mode & 0o777 == 0o700
