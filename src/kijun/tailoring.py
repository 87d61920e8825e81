"""From an organisation's profile to the variables its roles and audits use.

An inventory names its profile in ``<inventory>/kijun.yml``::

    profile: shimojo        # catalog/profiles/shimojo.yml

The profile's tailored parameter values become group variables of the ``all`` group and its
``zone_parameters`` group variables of the zone groups (``zone_mynumber``, ...). Ansible loads
them through the ``kijun_profile`` vars plugin, *before* the inventory's own ``group_vars``, so
a value in ``group_vars/<group>.yml`` overrides the profile for that group; role defaults (the
catalog's defaults) lie beneath both. Audits ask Ansible for the same variables, so what is
expected is exactly what the roles applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kijun.catalog import Catalog, Profile, load_catalog, load_profile

SETTINGS_FILE = "kijun.yml"
_KEYS = {"profile"}


class SettingsError(ValueError):
    """An inventory's kijun.yml is malformed; the message names the file and what to change."""


@dataclass(frozen=True)
class InventorySettings:
    path: Path | None  # the kijun.yml read, or None when the inventory has none
    profile: str | None


def inventory_dir(source: Path) -> Path:
    return source if source.is_dir() else source.parent


def read_settings(inventory: Path) -> InventorySettings:
    path = inventory_dir(inventory) / SETTINGS_FILE
    if not path.is_file():
        return InventorySettings(None, None)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SettingsError(f"{path}{line}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected a mapping such as `profile: generic`")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise SettingsError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}"
        )
    profile = raw.get("profile")
    if profile is not None and not isinstance(profile, str):
        raise SettingsError(f"{path}: `profile` must be a profile name, e.g. `profile: generic`")
    return InventorySettings(path, profile)


def profile_group_vars(profile: Profile) -> dict[str, dict[str, Any]]:
    """Group variables from a profile: ``all`` and ``zone_<zone>``."""
    groups: dict[str, dict[str, Any]] = {"all": {}}
    for pc in profile.controls.values():
        if not pc.applicable:
            continue
        groups["all"].update(pc.parameters)
        for zone, values in pc.zone_parameters.items():
            groups.setdefault(f"zone_{zone}", {}).update(values)
    groups["all"]["kijun_profile"] = profile.name
    return groups


def group_vars_for_inventory(
    inventory: Path, catalog: Catalog | None = None
) -> dict[str, dict[str, Any]]:
    settings = read_settings(inventory)
    if settings.profile is None:
        return {}
    catalog = catalog or load_catalog()
    return profile_group_vars(load_profile(settings.profile, catalog))
