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

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kijun.catalog import Catalog, Profile, UnknownNameError, load_catalog, load_profile
from kijun.catalog_source import Problem, describe, read_yaml

SETTINGS_FILE = "kijun.yml"
_KEYS = ("profile",)


class SettingsError(ValueError):
    """An inventory's kijun.yml is malformed; each line of the message is a problem, as
    ``file:line: field: what to change``."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(map(str, problems)))


@dataclass(frozen=True)
class InventorySettings:
    path: Path | None  # the kijun.yml read, or None when the inventory has none
    profile: str | None
    profile_line: int = 0  # the line of `profile:` in it


def inventory_dir(source: Path) -> Path:
    return source if source.is_dir() else source.parent


def read_settings(inventory: Path) -> InventorySettings:
    path = inventory_dir(inventory) / SETTINGS_FILE
    if not path.is_file():
        return InventorySettings(None, None)
    source, problems = read_yaml(path)
    if source is None or problems:
        raise SettingsError(problems)
    raw = source.data if source.data is not None else {}
    if not isinstance(raw, dict):
        raise SettingsError(
            [
                source.problem(
                    (), f"expected a mapping such as `profile: generic`, got {describe(raw)}"
                )
            ]
        )
    for key in raw:
        if key not in _KEYS:
            close = difflib.get_close_matches(key, _KEYS, n=1)
            fix = f"did you mean '{close[0]}'?" if close else "remove it"
            problems.append(
                source.problem((key,), f"unknown setting (known: {', '.join(_KEYS)}); {fix}")
            )
    profile = raw.get("profile")
    if "profile" in raw and not (isinstance(profile, str) and profile.strip()):
        problems.append(
            source.problem(
                ("profile",),
                f"expected a profile name such as `profile: generic`, got {describe(profile)}",
            )
        )
    if problems:
        raise SettingsError(problems)
    return InventorySettings(path, profile, source.line(("profile",)) if "profile" in raw else 0)


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
    if settings.profile is None or settings.path is None:
        return {}
    catalog = catalog or load_catalog()
    try:
        profile = load_profile(settings.profile, catalog)
    except UnknownNameError as err:
        raise SettingsError(
            [Problem(settings.path, settings.profile_line, f"profile: {err}")]
        ) from err
    return profile_group_vars(profile)
