"""Where things live in a kijun checkout.

kijun runs from a checkout of the baseline repository (roles, inventories, catalog and audits
are files in it). The root is found from ``KIJUN_HOME``, else from the installed package's
location (an editable install lives in ``<root>/src/kijun``), else from the working directory.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class NotACheckoutError(RuntimeError):
    """No kijun checkout (a directory with ``ansible.cfg`` and ``catalog/``) was found."""


def _is_root(path: Path) -> bool:
    return (path / "ansible.cfg").is_file() and (path / "catalog").is_dir()


def repo_root() -> Path:
    env = os.environ.get("KIJUN_HOME")
    if env:
        root = Path(env).resolve()
        if not _is_root(root):
            raise NotACheckoutError(
                f"KIJUN_HOME={env} is not a kijun checkout (no ansible.cfg and catalog/ there)"
            )
        return root
    candidates = [Path(__file__).resolve().parents[2], Path.cwd().resolve()]
    candidates += list(Path.cwd().resolve().parents)
    for cand in candidates:
        if _is_root(cand):
            return cand
    raise NotACheckoutError(
        "cannot find the kijun checkout: run kijun from inside it or set KIJUN_HOME to its path"
    )


def catalog_dir() -> Path:
    return repo_root() / "catalog"


def state_dir() -> Path:
    """Machine-local state of this checkout (lab key, known_hosts, caches); never committed.

    ``KIJUN_STATE_DIR`` puts it elsewhere: a scheduled audit runs from a checkout it may not
    write to, with its state (signing key, cache, history) in ``/var/lib/kijun``."""
    env = os.environ.get("KIJUN_STATE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return repo_root() / ".kijun"


def write_error_text(exc: OSError) -> str:
    """Why writing failed, in words (a full disk says so), with the file when it is known."""
    if exc.errno == errno.ENOSPC:
        why = "the disk is full (no space left on device)"
    elif exc.errno == errno.EDQUOT:
        why = "the disk quota is exhausted"
    else:
        why = exc.strerror or str(exc)
    return f"{why}: {exc.filename}" if exc.filename else why
