"""The set-up step: idempotent, fast on a second run, clear when it cannot install."""

from __future__ import annotations

import os
import pwd
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from kijun import image, podman

from .conftest import ROOT, VENV_BIN

BOOTSTRAP = ROOT / "src" / "kijun" / "data" / "bootstrap.sh"


def test_second_run_of_setup_installs_nothing_and_takes_seconds() -> None:
    # `make test` has already run the set-up once: this is the second run.
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(BOOTSTRAP)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "installing" not in out and "creating .venv" not in out
    assert "containers.conf unchanged" in out
    assert "cached" in out  # the lab image was not rebuilt
    assert elapsed < 30, f"second set-up run took {elapsed:.1f} s"


def test_containers_conf_uses_runc_and_fits_this_machines_limits() -> None:
    text = podman.containers_conf_path().read_text()
    assert 'runtime = "runc"' in text
    hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = int(text.split('"nofile=')[1].split(":")[0])
    assert nofile <= hard_nofile or hard_nofile == resource.RLIM_INFINITY
    # podman actually runs with it (and the machine's own configuration is not touched)
    proc = podman.run(["info", "--format", "{{.Host.OCIRuntime.Name}}"])
    assert proc.stdout.strip() == "runc"


def test_lab_image_is_named_after_its_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    assert image.exists(image.image_name())
    before = image.recipe_hash()
    files = image._recipe_files()
    monkeypatch.setattr(
        image, "_recipe_files", lambda: {**files, "packages": files["packages"] + b"htop\n"}
    )
    assert image.recipe_hash() != before  # a changed recipe means a new image


def test_without_root_setup_names_what_is_missing_and_how_to_fix_it(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    # The checkout may sit where only its owner can enter (a clone under `mktemp -d`): the
    # unprivileged user runs a copy of the set-up script from a directory it can read, in the
    # checkout's layout (the script finds the checkout three levels up).
    readable = Path(tempfile.mkdtemp(prefix="kijun-setup-"))
    readable.chmod(0o755)
    script = readable / "src" / "kijun" / "data" / "bootstrap.sh"
    script.parent.mkdir(parents=True)
    shutil.copy(BOOTSTRAP, script)
    for d in (readable / "src", readable / "src" / "kijun", script.parent):
        d.chmod(0o755)
    script.chmod(0o755)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(readable),
        "KIJUN_EXTRA_APT_PACKAGES": "kijun-no-such-package",
    }
    # As root, drop to an unprivileged user; otherwise this user already is one.
    as_user = (
        ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        if os.geteuid() == 0
        else []
    )
    proc = subprocess.run(
        [*as_user, "bash", str(script)], cwd=readable,
        capture_output=True, text=True, env=env, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "missing Debian packages: kijun-no-such-package" in proc.stderr
    assert "sudo apt-get install -y kijun-no-such-package" in proc.stderr
    shutil.rmtree(readable)


def test_setup_without_podman_says_how_to_install_it(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    python = shutil.which("python3", path=str(VENV_BIN))
    assert python
    proc = subprocess.run(
        [str(VENV_BIN / "kijun"), "setup"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PATH": str(bindir)}, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "podman is not installed" in proc.stderr
    assert "apt-get install podman runc" in proc.stderr


def test_make_demo_runs_what_the_lab_tests_prove() -> None:
    """The README's main job is `make demo`: the lab up, `kijun apply`, `kijun audit`, the
    commands the lab tests run (tests/conftest.py `applied_lab`, tests/test_audit_lab.py)."""
    proc = subprocess.run(
        ["make", "-n", "--no-print-directory", "demo"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    commands = [
        line.split("/")[-1] if line.startswith(".venv/bin/") else line
        for line in proc.stdout.splitlines()
    ]
    kijun = [c for c in commands if c.startswith("kijun ")]
    assert kijun == ["kijun lab up", "kijun lab status", "kijun apply", "kijun audit"], commands
    assert not [c for c in commands if "ansible-playbook" in c], commands
