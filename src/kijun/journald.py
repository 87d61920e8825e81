"""journald's settings as journald reads them, and the file and line that set each one.

``systemd-analyze cat-config systemd/journald.conf`` prints every file journald reads, in the
order it reads them (the main file, then the drop-ins of ``/etc``, ``/run``, ``/usr/local/lib``
and ``/usr/lib`` sorted by file name, a drop-in in ``/etc`` hiding a same-named one further
down), each after a header line ``# /path``, and each file's lines as they are. The last
assignment of a key wins; an empty assignment (``Storage=``) restores the compiled-in default;
the main file's commented assignments (``#Storage=auto``) are the compiled-in defaults.

    >>> conf = read_cat_config(text)
    >>> conf.get("Storage"), conf.source("Storage")
    ('volatile', '/etc/systemd/journald.conf.d/99-local.conf:2')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# What an audit module collects (``COLLECT`` entry).
COLLECT = {"logging/journald_conf": "systemd-analyze cat-config systemd/journald.conf"}

_HEADER = re.compile(r"^# (/\S+\.conf)$")
_DEFAULT = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9]*)=(.*)$")


@dataclass(frozen=True)
class Setting:
    value: str
    source: str  # "path:line" of the assignment in force; "" for a compiled-in default


@dataclass
class Config:
    """The effective settings of one section, and the files read (none: nothing was read)."""

    settings: dict[str, Setting] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def get(self, key: str, default: str | None = None) -> str | None:
        setting = self.settings.get(key)
        return setting.value if setting is not None else default

    def source(self, key: str) -> str:
        """Where the value in force was set (``path:line``), "" for a compiled-in default."""
        setting = self.settings.get(key)
        return setting.source if setting is not None else ""


def read_cat_config(text: str, section: str = "Journal") -> Config:
    """The effective settings of ``section`` in ``systemd-analyze cat-config`` output."""
    conf = Config()
    defaults: dict[str, str] = {}
    path, number, current = "", 0, ""
    for raw in text.splitlines():
        header = _HEADER.match(raw.strip())
        if header:
            path, number, current = header.group(1), 0, ""
            conf.files.append(path)
            continue
        if not path:
            continue
        number += 1
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            continue
        if current != section:
            continue
        default = _DEFAULT.match(line)
        if default and ".conf.d/" not in path:
            # The main file's commented assignments document the compiled-in defaults.
            defaults[default.group(1)] = default.group(2).strip()
            continue
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if value:
            conf.settings[key] = Setting(value, f"{path}:{number}")
        else:  # "Key=" restores the default
            conf.settings.pop(key, None)
    for key, value in defaults.items():
        conf.settings.setdefault(key, Setting(value, ""))
    return conf
