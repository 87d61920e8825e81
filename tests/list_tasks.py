"""What ``ansible-playbook PLAYBOOK --list-tasks --tags T`` lists, for many tag selections in one
process (tests/test_tags.py): the playbook is loaded once and each selection is filtered the
way ansible-playbook filters it (``Block.filter_tagged_tasks`` with the play's ``only_tags``).

    python tests/list_tasks.py INVENTORY PLAYBOOK < selections.json > listings.json

``selections.json``: a list of tag lists (``[]``: no --tags). Output: one list per selection
of ``[role or null, task name, tags]``, in the order ansible-playbook prints them. Runs with the
project's Ansible (.venv); reading only, it connects to no host.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main(inventory: str, playbook: str, selections: list[list[str]]) -> list[list[Any]]:
    import os

    from ansible import constants as C
    from ansible.cli.playbook import PlaybookCLI
    from ansible.playbook import Playbook
    from ansible.playbook.block import Block
    from ansible.plugins.loader import add_all_plugin_dirs, init_plugin_loader

    # the set-up ansible-playbook does before it loads a playbook (PlaybookCLI.run)
    cli = PlaybookCLI(["ansible-playbook", "-i", inventory, playbook, "--list-tasks"])
    cli.parse()
    init_plugin_loader([])
    add_all_plugin_dirs(os.path.dirname(os.path.abspath(playbook)).encode())
    loader, _inventory, variable_manager = cli._play_prereqs()
    plays = Playbook.load(playbook, variable_manager=variable_manager, loader=loader).get_plays()
    out: list[list[Any]] = []
    for tags in selections:
        listed: list[Any] = []

        def walk(block: Block, play_tags: set[str], listed: list[Any] = listed) -> None:
            for task in block.block:
                if isinstance(task, Block):
                    walk(task, play_tags)
                    continue
                if task.action in C._ACTION_META and task.implicit:
                    continue
                role = task._role.get_name(include_role_fqcn=False) if task._role else None
                name = task.name or task.action
                listed.append([role, name, sorted(play_tags | set(task.tags))])

        for play in plays:
            play.only_tags = set(tags) or frozenset(("all",))
            all_vars = variable_manager.get_vars(play=play)
            for block in play.compile():
                block = block.filter_tagged_tasks(all_vars)
                if block.has_tasks():
                    walk(block, set(play.tags))
        out.append(listed)
    return out


if __name__ == "__main__":
    json.dump(main(sys.argv[1], sys.argv[2], json.load(sys.stdin)), sys.stdout)
