"""A cache for what ``kijun audit`` resolves before contacting a host.

Loading the catalog (schema validation, quotes checked against the seeds) and resolving every
host's variables with Ansible's own inventory and variable manager take most of a one-host
audit's time, yet their inputs rarely change between scheduled runs. Both are cached in
``.kijun/cache/`` under a key made from the *content* of every file they read (and of kijun's
own sources), so an edited inventory, profile, role default or catalog entry is always picked
up on the next run. Inputs whose result may change without a file changing (dynamic inventory
scripts and plugins, lookups) are never cached.

``KIJUN_NO_CACHE=1`` turns the cache off.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from kijun import __version__, paths

T = TypeVar("T")

# Text that makes a variable's value depend on something other than the files: lookups,
# queries, the clock, the environment.
_VOLATILE = re.compile(rb"lookup\s*\(|query\s*\(|\bq\s*\(|now\s*\(|ansible_env|\benv\b")
_PLUGIN_SOURCE = re.compile(rb"^plugin\s*:", re.M)


def enabled() -> bool:
    return os.environ.get("KIJUN_NO_CACHE", "") in ("", "0")


def _files(sources: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for src in sources:
        if src.is_dir():
            out += sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        elif src.is_file():
            out.append(src)
    return out


def fingerprint(sources: Iterable[Path], extra: Iterable[str] = ()) -> str:
    """A digest of every file's path and content under ``sources`` and of ``extra``."""
    digest = hashlib.sha256(__version__.encode())
    for item in extra:
        digest.update(b"\0x" + item.encode())
    for src in sources:
        if src == _KIJUN:
            digest.update(b"\0k" + _kijun_digest())
            continue
        for path in _files([src]):
            digest.update(b"\0p" + str(path).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:32]


_KIJUN = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def _kijun_digest() -> bytes:
    # kijun's own sources go into several keys of a run: read them once.
    digest = hashlib.sha256()
    for path in _files([_KIJUN]):
        digest.update(str(path).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.digest()


def static_inventory(inventory: Path) -> bool:
    """True when the inventory's variables follow from its files alone: no executable
    inventory scripts, no inventory plugins, no lookups or environment in its variables."""
    for path in _files([inventory]):
        if os.access(path, os.X_OK):
            return False
        data = path.read_bytes()
        if _PLUGIN_SOURCE.search(data) or _VOLATILE.search(data):
            return False
    return True


def _dir() -> Path:
    return paths.state_dir() / "cache"


def cached(name: str, key: str, compute: Callable[[], T]) -> T:
    """``compute()``, or its result stored under ``name`` and ``key`` by an earlier run.

    Only this checkout's own ``.kijun/cache`` (written by kijun itself) is read. A stored result
    that cannot be read is computed again; older results of ``name`` are removed."""
    if not enabled():
        return compute()
    directory = _dir()
    path = directory / f"{name}-{key}.pickle"
    try:
        with path.open("rb") as fh:
            value: T = pickle.load(fh)  # noqa: S301 - written by kijun into its own state dir
        return value
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
        pass
    value = compute()
    tmp = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}-")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        for old in directory.glob(f"{name}-*.pickle"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:  # a read-only checkout, or a full disk, audits without a cache
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return value


def kijun_sources() -> list[Path]:
    """kijun's own code: a change to how things are loaded invalidates what was cached."""
    return [_KIJUN]
