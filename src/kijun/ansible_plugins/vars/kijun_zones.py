# kijun: the zone policy of an inventory (zones.yml) as the zone_firewall role's variables.
from __future__ import annotations

import hashlib
import os
from typing import Any

from ansible.errors import AnsibleError
from ansible.inventory.host import Host
from ansible.plugins.vars import BaseVarsPlugin

DOCUMENTATION = """
    name: kijun_zones
    short_description: the zone policy in an inventory's zones.yml, as each host's variables
    description:
      - Reads C(zones.yml) beside the inventory, checks it against the inventory (zone groups,
        hosts, addresses) and gives every host the variables of the zone_firewall role that the
        policy determines (kijun/zones.py, role_vars). A policy with any problem stops the run
        before anything is applied, naming the file and line of each problem.
      - Only hosts of a zone group (zone_*) or of the gateways group get variables from the
        policy; other hosts (the control node) get none and do not make it load.
      - The values are host variables, so they override group_vars; the zone policy is declared
        once, in zones.yml, and nowhere else.
"""


class VarsModule(BaseVarsPlugin):
    REQUIRES_ENABLED = True
    # (directory, digest of zones.yml, the inventory's hosts) -> each host's variables. The
    # digest, not the file's mtime: a policy rewritten within the same clock tick, or with its
    # old mtime put back, is read again.
    _cache: dict[tuple[str, bytes, Any], dict[str, dict[str, Any]]] = {}

    def get_vars(self, loader: Any, path: str, entities: Any, cache: bool = True) -> dict[str, Any]:
        super().get_vars(loader, path, entities)
        if not isinstance(entities, list):
            entities = [entities]
        directory = path if os.path.isdir(path) else os.path.dirname(path)
        policy_file = os.path.join(directory, "zones.yml")
        if not os.path.isfile(policy_file):
            return {}
        data: dict[str, Any] = {}
        for entity in entities:
            if isinstance(entity, Host):
                data.update(self._host_vars(directory, policy_file, entity))
        return data

    def _host_vars(self, directory: str, policy_file: str, host: Host) -> dict[str, Any]:
        from pathlib import Path

        from kijun import zones
        from kijun.catalog import CatalogError

        own = {g.name for g in host.get_groups()}
        if not own & {"gateways"} and not any(g.startswith("zone_") for g in own):
            return {}  # the policy is about the zones' hosts and gateways (not the control node)
        everyone = next((g for g in host.get_groups() if g.name == "all"), None)
        members = everyone.get_hosts() if everyone is not None else [host]
        inventory = {
            h.name: zones.InventoryHost.of(h.name, (g.name for g in h.get_groups()), h.vars)
            for h in members
        }
        with open(policy_file, "rb") as policy_bytes:
            digest = hashlib.sha256(policy_bytes.read()).digest()
        key = (directory, digest, frozenset(inventory.values()))
        if key not in self._cache:
            try:
                policy = zones.load(Path(policy_file), inventory)
            except (zones.ZonePolicyError, CatalogError, OSError) as exc:
                raise AnsibleError(f"kijun zone policy refused:\n{exc}") from exc
            self._cache[key] = {
                name: zones.role_vars(policy, inventory, name) for name in inventory
            }
        return self._cache[key].get(host.name, {})
