"""Running podman with kijun's own container configuration.

The machine's containers.conf is left alone: kijun writes its own (runc, ulimits that fit this
machine) under the checkout's state directory and points ``CONTAINERS_CONF`` at it for every
podman call it makes, and for the tools it starts (molecule, ansible's podman connection).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kijun import paths


class PodmanError(RuntimeError):
    """A podman command failed; the message carries its command line and stderr."""


def containers_conf_path() -> Path:
    return paths.state_dir() / "containers.conf"


def _limit(kind: int, wanted: int) -> int:
    _soft, hard = resource.getrlimit(kind)
    if hard == resource.RLIM_INFINITY:
        return wanted
    return min(wanted, hard)


def render_containers_conf() -> str:
    """containers.conf for this machine: runc, and default ulimits within its hard limits."""
    nofile = _limit(resource.RLIMIT_NOFILE, 20000)
    nproc = _limit(resource.RLIMIT_NPROC, 4096)
    return (
        "# Written by `kijun setup` for this machine; used through CONTAINERS_CONF.\n"
        "# crun fails on hosts with cgroups in hybrid mode, so kijun uses runc; the default\n"
        "# ulimits of podman exceed the hard limits of some build machines.\n"
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "\n[engine]\n"
        'runtime = "runc"\n'
        "\n[network]\n"
        'network_backend = "netavark"\n'
    )


def write_containers_conf() -> tuple[Path, bool]:
    """Write the containers.conf if it differs; return its path and whether it changed."""
    path = containers_conf_path()
    text = render_containers_conf()
    if path.is_file() and path.read_text() == text:
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path, True


def environ() -> dict[str, str]:
    """The environment for podman and for tools that call it."""
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(containers_conf_path())
    return env


def available() -> bool:
    return shutil.which("podman") is not None


def run(
    args: Sequence[str],
    *,
    check: bool = True,
    input_text: str | None = None,
    timeout: float | None = 300,
) -> subprocess.CompletedProcess[str]:
    if not containers_conf_path().is_file():
        write_containers_conf()
    cmd = ["podman", *args]
    proc = subprocess.run(
        cmd,
        input=input_text,
        capture_output=True,
        text=True,
        env=environ(),
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise PodmanError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def run_json(args: Sequence[str]) -> Any:
    out = run(args).stdout.strip()
    return json.loads(out) if out else []
