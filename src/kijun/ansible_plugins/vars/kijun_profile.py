# kijun: the organisation's profile as group variables (see kijun/tailoring.py).
from __future__ import annotations

import os
from typing import Any

from ansible.errors import AnsibleError
from ansible.inventory.group import Group
from ansible.plugins.vars import BaseVarsPlugin

DOCUMENTATION = """
    name: kijun_profile
    short_description: the kijun profile named in an inventory's kijun.yml, as group variables
    description:
      - Reads C(kijun.yml) beside the inventory, loads the named profile from kijun's control
        catalog and provides its tailored parameters as variables of the C(all) group and its
        per-zone parameters as variables of the C(zone_<zone>) groups. Enable it before
        C(host_group_vars) so that the inventory's own group_vars override the profile.
"""


class VarsModule(BaseVarsPlugin):
    REQUIRES_ENABLED = True
    _cache: dict[str, dict[str, dict[str, Any]]] = {}

    def get_vars(self, loader: Any, path: str, entities: Any, cache: bool = True) -> dict[str, Any]:
        super().get_vars(loader, path, entities)
        if not isinstance(entities, list):
            entities = [entities]
        directory = path if os.path.isdir(path) else os.path.dirname(path)
        if not os.path.isfile(os.path.join(directory, "kijun.yml")):
            return {}
        if directory not in self._cache or not cache:
            from pathlib import Path

            from kijun.catalog import CatalogError
            from kijun.tailoring import SettingsError, group_vars_for_inventory

            try:
                self._cache[directory] = group_vars_for_inventory(Path(directory))
            except (CatalogError, SettingsError, LookupError) as exc:
                raise AnsibleError(f"kijun profile: {exc}") from exc
        groups = self._cache[directory]
        data: dict[str, Any] = {}
        for entity in entities:
            if isinstance(entity, Group) and entity.name in groups:
                data.update(groups[entity.name])
        return data
