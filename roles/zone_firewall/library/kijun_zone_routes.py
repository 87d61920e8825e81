#!/usr/bin/python
# kijun zone_firewall role (FW-09): a host of the individual-number zone keeps no route to
# another zone that none of its declared flows needs, and none to the internet zone.
"""Remove the routes of an individual-number host that lead to other zones without need."""

from __future__ import annotations

DOCUMENTATION = r"""
module: kijun_zone_routes
short_description: Remove routes to other zones that no declared flow needs (FW-09)
description:
  - Reads the main IPv4 routing table (C(ip -j -4 route show table main)) and removes every
    route whose destination overlaps a network of O(other_zones) unless it is a route to a zone
    in O(allowed_zones) that contains one of O(needed). The default route is left alone.
  - Routes are runtime state; the module removes them at once (C(ip route del)). Check mode
    reports what would be removed without removing it.
options:
  other_zones:
    description: zone name -> its networks (the zones the host is not in).
    type: dict
    required: true
  needed:
    description: destination addresses the host's declared flows send to (FW-02).
    type: list
    elements: str
    default: []
  never:
    description: zones no route may ever lead to, needed or not (the internet zone).
    type: list
    elements: str
    default: [internet]
author: kijun
"""

EXAMPLES = r"""
- name: Ensure the individual-number host has no route to other zones it does not need
  kijun_zone_routes:
    other_zones: {lgwan: [198.18.20.0/24], internet: [198.18.30.0/24]}
    needed: [198.18.20.23, 198.18.20.24]
"""

RETURN = r"""
removed:
  description: the routes that were (or in check mode would be) removed, as ip shows them
  type: list
  returned: always
"""

import ipaddress  # noqa: E402
import json  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def unneeded(routes, other_zones, needed, never):
    """The routes to remove: (dst, description)."""
    zones = {z: [ipaddress.IPv4Network(n, strict=False) for n in nets]
             for z, nets in other_zones.items()}
    wanted = [ipaddress.IPv4Address(a.split("/")[0]) for a in needed]
    out = []
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("", "default") or ":" in dst:
            continue
        net = ipaddress.IPv4Network(dst, strict=False)
        for zone, networks in sorted(zones.items()):
            if not any(net.overlaps(n) for n in networks):
                continue
            if zone in never or not any(a in net for a in wanted):
                text = f"{dst} via {route.get('gateway', 'link')} dev {route.get('dev')} ({zone})"
                out.append((dst, text))
                break
    return out


def main():
    module = AnsibleModule(
        argument_spec={
            "other_zones": {"type": "dict", "required": True},
            "needed": {"type": "list", "elements": "str", "default": []},
            "never": {"type": "list", "elements": "str", "default": ["internet"]},
        },
        supports_check_mode=True,
    )
    rc, out, err = module.run_command(["ip", "-j", "-4", "route", "show", "table", "main"])
    if rc != 0:
        module.fail_json(msg=f"ip route failed: {err.strip()}")
    try:
        routes = json.loads(out or "[]")
        remove = unneeded(
            routes, module.params["other_zones"], module.params["needed"], module.params["never"]
        )
    except ValueError as exc:
        module.fail_json(msg=f"cannot read the routes or the zones' networks: {exc}")
    if remove and not module.check_mode:
        for dst, _ in remove:
            rc, _, err = module.run_command(["ip", "-4", "route", "del", dst])
            if rc != 0:
                module.fail_json(msg=f"ip route del {dst} failed: {err.strip()}")
    module.exit_json(changed=bool(remove), removed=[text for _, text in remove])


if __name__ == "__main__":
    main()
