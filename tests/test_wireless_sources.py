"""The wireless audit's readers of what is in force and where it was set: the configuration
hostapd.service starts hostapd with (WL-03) and the modprobe install commands (WL-06)."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType

from kijun.snapshot import Output


def _audit() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "audits" / "test_wireless.py"
    spec = importlib.util.spec_from_file_location("kijun_audit_wireless", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    with warnings.catch_warnings():  # its control marks are registered by audits/conftest.py
        warnings.simplefilter("ignore")
        spec.loader.exec_module(module)
    return module


wl = _audit()

UNIT = """\
# /lib/systemd/system/hostapd.service
[Unit]
ConditionFileNotEmpty=/etc/hostapd/hostapd.conf

[Service]
Type=forking
Environment=DAEMON_CONF=/etc/hostapd/hostapd.conf
EnvironmentFile=-/etc/default/hostapd
ExecStart=/usr/sbin/hostapd -B -P /run/hostapd.pid $DAEMON_OPTS ${DAEMON_CONF}
"""
DEFAULT = '13:#DAEMON_CONF=""\n24:#DAEMON_OPTS=""\n'


class Snap:
    def __init__(self, **outputs: str | Output) -> None:
        self.outputs = {
            f"wireless/{k}": v if isinstance(v, Output) else Output(v, 0)
            for k, v in outputs.items()
        }

    def __getitem__(self, key: str) -> Output:
        return self.outputs[key]

    def text(self, key: str) -> str:
        return self.outputs[key].stdout


def test_the_packaged_unit_reads_the_roles_file() -> None:
    service = wl.hostapd_service(Snap(hostapd_unit=UNIT, hostapd_default=DEFAULT))
    assert service.files == {"/etc/hostapd/hostapd.conf": "/lib/systemd/system/hostapd.service:6"}
    assert service.problems == []


def test_daemon_conf_in_etc_default_is_named_by_line() -> None:
    default = DEFAULT + "30:DAEMON_CONF=/etc/hostapd-local.conf\n"
    service = wl.hostapd_service(Snap(hostapd_unit=UNIT, hostapd_default=default))
    assert service.files == {"/etc/hostapd-local.conf": "/etc/default/hostapd:30"}


def test_a_drop_in_replacing_execstart_and_daemon_opts_with_a_second_file() -> None:
    unit = UNIT + (
        "\n# /etc/systemd/system/hostapd.service.d/local.conf\n"
        "[Service]\n"
        "ExecStart=\n"
        "ExecStart=/usr/sbin/hostapd -B $DAEMON_OPTS /etc/hostapd/hostapd.conf\n"
    )
    default = DEFAULT + '31:DAEMON_OPTS="-d /srv/open.conf"\n'
    service = wl.hostapd_service(Snap(hostapd_unit=unit, hostapd_default=default))
    assert service.files == {
        "/srv/open.conf": "/etc/default/hostapd:31",
        "/etc/hostapd/hostapd.conf": "/etc/systemd/system/hostapd.service.d/local.conf:3",
    }


def test_no_unit_and_another_environment_file_are_problems() -> None:
    missing = wl.hostapd_service(Snap(hostapd_unit=Output("", 1), hostapd_default=""))
    assert missing.files == {} and missing.problems
    unit = (
        UNIT + "\n# /etc/systemd/system/hostapd.service.d/env.conf\n[Service]\nEnvironmentFile=/x\n"
    )
    other = wl.hostapd_service(Snap(hostapd_unit=unit, hostapd_default=DEFAULT))
    assert any("/x" in p for p in other.problems)
