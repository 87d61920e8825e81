"""The roles as the Ansible collection ``kijun.baseline`` (``galaxy.yml``, docs/awx.md).

In the repository a role finds its modules in its own ``library/`` or in that of a role it
depends on (``kijun_common``, whose ``kijun_effective`` every baseline role uses). Ansible does
not load modules from a collection role's ``library/``: a collection's modules live in its
``plugins/modules/``, shared by all its roles. So the collection is built from a staged copy:
``galaxy.yml``, ``README.md`` and ``roles/``, with every ``roles/*/library/*.py`` put into
``plugins/modules/``; then ``ansible-galaxy collection build`` runs on the copy.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from kijun import paths


class CollectionError(RuntimeError):
    """The collection could not be built; the message says why."""


def modules(root: Path) -> dict[str, Path]:
    """Every role's module by its name; two roles with a module of the same name refused."""
    found: dict[str, Path] = {}
    for path in sorted(root.glob("roles/*/library/*.py")):
        if path.stem in found:
            raise CollectionError(
                f"module {path.stem} is in {found[path.stem].relative_to(root)} and in "
                f"{path.relative_to(root)}: a collection has one plugins/modules/ for all roles"
            )
        found[path.stem] = path
    return found


def stage(root: Path, target: Path) -> list[str]:
    """Lay the collection's files out in ``target``; return the modules' names."""
    shutil.copy2(root / "galaxy.yml", target / "galaxy.yml")
    shutil.copy2(root / "README.md", target / "README.md")
    # each module once, in plugins/modules/ (Ansible ignores a collection role's library/)
    shutil.copytree(
        root / "roles",
        target / "roles",
        ignore=shutil.ignore_patterns("library", "__pycache__", "*.pyc"),
    )
    plugins = target / "plugins" / "modules"
    plugins.mkdir(parents=True)
    found = modules(root)
    for name, path in found.items():
        shutil.copy2(path, plugins / f"{name}.py")
    return sorted(found)


def build(output: Path, root: Path | None = None) -> Path:
    """Build the collection into ``output``; return the tarball."""
    root = root or paths.repo_root()
    galaxy = yaml.safe_load((root / "galaxy.yml").read_text())
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kijun-collection-") as tmp:
        staged = Path(tmp)
        stage(root, staged)
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-galaxy"), "collection", "build",
             "--force", "--output-path", str(output.resolve()), str(staged)],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    if proc.returncode != 0:
        raise CollectionError(f"ansible-galaxy collection build failed:\n{proc.stderr.strip()}")
    tarball = output / f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    if not tarball.is_file():
        raise CollectionError(f"ansible-galaxy collection build wrote no {tarball}")
    return tarball
