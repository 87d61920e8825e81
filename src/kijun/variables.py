"""The variables a host's roles use, as Ansible itself resolves them.

Audits compare a host's state with exactly the values the roles applied: the role defaults
(which equal the catalog's defaults), overridden by the profile and the inventory's group and
host variables. Ansible's own inventory and variable manager resolve them here, in-process, so
the precedence is Ansible's and not a re-implementation of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kijun import paths
from kijun.catalog_source import Problem, check_syntax, location

CONNECTION_VARS = (
    "ansible_host",
    "ansible_port",
    "ansible_user",
    "ansible_connection",
    "ansible_become",
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
)


class InventoryError(ValueError):
    """The inventory cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class HostVars:
    name: str
    groups: frozenset[str]
    values: dict[str, Any]
    connection: dict[str, Any] = field(default_factory=dict)  # ansible_host, ansible_user, ...

    @property
    def zones(self) -> frozenset[str]:
        return frozenset(g.removeprefix("zone_") for g in self.groups if g.startswith("zone_"))


def role_defaults(roles_dir: Path | None = None) -> dict[str, Any]:
    """Every role's ``defaults/main.yml`` merged (role variables are prefixed, so none clash)."""
    roles_dir = roles_dir or paths.repo_root() / "roles"
    merged: dict[str, Any] = {}
    for path in sorted(roles_dir.glob("*/defaults/main.yml")):
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise InventoryError(f"{path}: role defaults must be a mapping")
        merged.update(data)
    return merged


def plain(value: Any) -> Any:
    """``value`` with Ansible's tagged strings, lists and mappings turned into Python's own."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def load_cached(inventory: Path, roles_dir: Path | None = None) -> dict[str, HostVars]:
    """:func:`load`, from kijun's cache when no file it reads has changed since (see
    :mod:`kijun.cache`); dynamic inventories are always resolved afresh."""
    from kijun import cache

    roles_dir = roles_dir or paths.repo_root() / "roles"
    if not cache.enabled() or not cache.static_inventory(inventory):
        return load(inventory, roles_dir)
    config = Path(os.environ.get("ANSIBLE_CONFIG") or paths.repo_root() / "ansible.cfg")
    key = cache.fingerprint(
        [inventory.resolve(), *sorted(roles_dir.glob("*/defaults")), paths.catalog_dir(),
         config, *cache.kijun_sources()],
        extra=[str(inventory.resolve()), str(roles_dir.resolve()),
               *sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("ANSIBLE_"))],
    )  # fmt: skip
    return cache.cached("hostvars", key, lambda: load(inventory, roles_dir))


def load(inventory: Path, roles_dir: Path | None = None) -> dict[str, HostVars]:
    """Each host of the inventory with its groups and its resolved, templated variables."""
    os.environ.setdefault("ANSIBLE_CONFIG", str(paths.repo_root() / "ansible.cfg"))
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    if not inventory.exists():
        raise InventoryError(f"{inventory}: no such inventory file or directory")
    # Ansible skips an inventory file it cannot parse with a warning: the run would go on
    # without that file's hosts. A YAML file of the inventory must at least be YAML.
    problems = [p for source in _yaml_sources(inventory) for p in check_syntax(source)]
    if problems:
        raise InventoryError("\n".join(map(str, problems)))
    roles_dir = roles_dir or paths.repo_root() / "roles"
    defaults = role_defaults(roles_dir)
    prefixes = ("kijun_", *(f"{d.name}_" for d in roles_dir.iterdir() if d.is_dir()))
    loader = DataLoader()
    try:
        manager = InventoryManager(loader=loader, sources=[str(inventory)])
        varman = VariableManager(loader=loader, inventory=manager)
        result: dict[str, HostVars] = {}
        for host in manager.get_hosts():
            raw = varman.get_vars(host=host, include_hostvars=False)
            values: dict[str, Any] = {**defaults, **raw}
            templar = Templar(loader=loader, variables=values)
            # Only the roles' and kijun's variables are templated (and returned): other
            # inventories' variables may hold lookups that only make sense inside a play.
            ours = {
                k: plain(templar.template(v)) for k, v in values.items() if k.startswith(prefixes)
            }
            conn = {k: plain(templar.template(raw[k])) for k in CONNECTION_VARS if k in raw}
            name = str(host.name)
            result[name] = HostVars(
                name, frozenset(str(g.name) for g in host.get_groups()), ours, conn
            )
    except AnsibleError as exc:
        problems = _problems(exc)
        if problems:  # kijun's vars plugins refused kijun.yml or zones.yml, by file and line
            raise InventoryError("\n".join(map(str, problems))) from exc
        raise InventoryError(f"{_where(exc) or inventory}: {exc}") from exc
    if not result:
        raise InventoryError(f"{inventory}: the inventory has no hosts")
    return result


def _yaml_sources(inventory: Path) -> list[Path]:
    """The YAML files Ansible reads as the inventory's sources (a directory's files, in its
    subdirectories too, but those it ignores: group_vars, kijun.yml, ...)."""
    from ansible.inventory.manager import IGNORED

    if inventory.is_file():
        found = [inventory]
    else:
        found = []
        for folder, dirs, files in os.walk(inventory):
            dirs[:] = sorted(d for d in dirs if not IGNORED.search(os.fsencode(d)))
            found += [Path(folder, f) for f in sorted(files) if not IGNORED.search(os.fsencode(f))]
    return [path for path in found if path.suffix in (".yml", ".yaml")]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def _where(exc: BaseException) -> str | None:
    """``file:line`` of the first error in ``exc``'s chain whose origin Ansible knows (a
    group_vars file's YAML error, say)."""
    for cause in _chain(exc):
        origin = getattr(cause, "obj", None)
        path, line = getattr(origin, "path", None), getattr(origin, "line_num", None)
        if isinstance(path, str) and isinstance(line, int):
            return location(Path(path), line)
    return None


def _problems(exc: BaseException) -> list[Problem]:
    """The located problems of a kijun error in ``exc``'s chain (none: not kijun's)."""
    for cause in _chain(exc):
        problems = getattr(cause, "problems", None)
        if (
            isinstance(problems, list)
            and problems
            and all(isinstance(p, Problem) for p in problems)
        ):
            return problems
    return []
