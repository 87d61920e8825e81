"""The lab image: Debian 12 (bookworm) built with debootstrap and imported into podman.

The image is named after a hash of its recipe (the package list and the customisation script
in ``kijun/data/lab-image/``, the suite and the architecture), so it is rebuilt only when the
recipe changes. ``localhost/kijun-lab:latest`` always points at the current recipe's image;
molecule scenarios use that name.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from kijun import paths, podman

REPOSITORY = "localhost/kijun-lab"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
LABEL = "io.kijun.lab-image"

Progress = Callable[[str], None]


class ImageBuildError(RuntimeError):
    """The lab image could not be built; the message says which step failed and why."""


def _recipe_files() -> dict[str, bytes]:
    base = resources.files("kijun") / "data" / "lab-image"
    return {name: (base / name).read_bytes() for name in ("packages", "customize.sh")}


def packages() -> list[str]:
    text = _recipe_files()["packages"].decode()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def recipe_hash() -> str:
    digest = hashlib.sha256()
    digest.update(f"suite={SUITE}\narch={platform.machine()}\n".encode())
    for name, data in sorted(_recipe_files().items()):
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:16]


def image_name() -> str:
    return f"{REPOSITORY}:{recipe_hash()}"


LATEST = f"{REPOSITORY}:latest"


def exists(name: str | None = None) -> bool:
    proc = podman.run(["image", "exists", name or image_name()], check=False)
    return proc.returncode == 0


def _step(cmd: list[str], what: str, **kwargs: object) -> None:
    proc = subprocess.run(
        cmd, capture_output=True, text=True, check=False, **kwargs, stdin=subprocess.DEVNULL
    )  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def ensure(progress: Progress = print, *, force: bool = False) -> tuple[str, bool]:
    """Make sure the current recipe's image exists; return its name and whether it was built."""
    name = image_name()
    if exists(name) and not force:
        podman.run(["tag", name, LATEST])
        return name, False
    build(progress)
    return name, True


def build(progress: Progress = print) -> str:
    if os.geteuid() != 0:
        raise ImageBuildError(
            "building the lab image needs root (debootstrap and chroot): run `sudo make setup`"
        )
    if shutil.which("debootstrap") is None:
        raise ImageBuildError(
            "debootstrap is not installed: run `sudo apt-get install debootstrap`"
        )
    name = image_name()
    mirror = os.environ.get("KIJUN_DEBIAN_MIRROR", DEFAULT_MIRROR)
    work_root = paths.state_dir() / "cache"
    work_root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lab-image-", dir=work_root) as tmp:
        rootfs = Path(tmp) / "rootfs"
        progress(f"lab image {name}: debootstrap {SUITE} from {mirror} (about a minute)")
        _step(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages())}",
                SUITE,
                str(rootfs),
                mirror,
            ],
            "debootstrap",
        )
        progress("lab image: customising (admin account, per-container SSH host keys)")
        script = rootfs / "tmp" / "kijun-customize.sh"
        script.write_bytes(_recipe_files()["customize.sh"])
        _step(
            ["chroot", str(rootfs), "/bin/sh", "/tmp/kijun-customize.sh"],
            "customising the image",
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        )
        script.unlink()
        progress("lab image: importing into podman")
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        imp = subprocess.run(
            [
                "podman",
                "import",
                "--change",
                "CMD=/sbin/init",
                "--change",
                f"LABEL={LABEL}={recipe_hash()}",
                "-",
                name,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            env=podman.environ(),
            check=False,
        )
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise ImageBuildError(f"podman import failed: {imp.stderr.strip()}")
    podman.run(["tag", name, LATEST])
    progress(f"lab image {name} built in {time.monotonic() - started:.0f} s")
    return name
