"""Postfix's settings as they are in force, and the file and line that set each one.

Postfix takes a parameter from ``main.cf`` (the *last* assignment there wins) unless a service
of ``master.cf`` overrides it for that service with ``-o name=value`` (or
``-o { name = value }``): ``postconf -P`` lists those overrides, as ``service/type/name =
value``. The mail audits read what Postfix itself prints (``postconf -x``, ``postconf -Px``)
for the values, and the two files for the line each value came from::

    config = PostfixConfig.read(
        values=run("postconf -x ..."), overrides=run("postconf -Px"),
        main_cf=read("/etc/postfix/main.cf"), master_cf=read("/etc/postfix/master.cf"),
    )
    config.setting("mynetworks")
    # Setting(name='mynetworks', value='0.0.0.0/0', source='/etc/postfix/master.cf:13',
    #         service='smtp/inet')

A parameter that some service overrides is judged by the override (when several do, the first
one in master.cf that differs from main.cf): that service is where the relay is open or the
limit is lifted. An override Postfix reports but whose line cannot be found in master.cf is
still in force, and named by its file and service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAIN_CF = "/etc/postfix/main.cf"
MASTER_CF = "/etc/postfix/master.cf"

_NAME = r"[A-Za-z0-9_]+"
_OVERRIDE_LINE = re.compile(rf"^(?P<service>[^/\s]+/[^/\s]+)/(?P<name>{_NAME}) = ?(?P<value>.*)$")
_OPTION = re.compile(rf"(?<!\S)-o\s*(?:\{{\s*(?P<braced>{_NAME})\s*=|(?P<plain>{_NAME})=)")


class PostfixReadError(RuntimeError):
    """Postfix's configuration could not be read (postconf failed or printed what it never
    prints): the checks that need it report an error."""


@dataclass(frozen=True)
class Setting:
    """One parameter as it is in force: its value and where it was set (``path:line``; empty
    for Postfix's built-in default), and the master.cf service that overrides it, if any."""

    name: str
    value: str | None
    source: str
    service: str | None = None


def parse_values(text: str) -> dict[str, str]:
    """``postconf [-x] name...`` output: ``name = value`` per line (``name =`` when empty)."""
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            values[name.strip()] = value.strip()
        elif line.endswith(" ="):
            values[line[:-2].strip()] = ""
    return values


def parse_overrides(text: str) -> dict[str, dict[str, str]]:
    """``postconf -P[x]`` output: ``{"smtp/inet": {"mynetworks": "0.0.0.0/0"}}``.

    Raises ValueError on a line that is not ``service/type/name = value``: an override that
    cannot be read must never let a check pass."""
    services: dict[str, dict[str, str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _OVERRIDE_LINE.match(line.rstrip())
        if not match:
            raise ValueError(f"postconf -P, line {number}: cannot read {line!r}")
        services.setdefault(match["service"], {})[match["name"]] = match["value"].strip()
    return services


def main_cf_lines(text: str) -> dict[str, int]:
    """The line of the assignment of each parameter that Postfix uses: the last one in main.cf
    (an assignment starts a logical line at column 0; lines starting with whitespace continue
    it; comment lines are ignored)."""
    lines: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#") or raw[0].isspace():
            continue
        name, sep, _ = raw.partition("=")
        if sep and re.fullmatch(_NAME, name.strip()):
            lines[name.strip()] = number
    return lines


def master_cf_lines(text: str) -> dict[tuple[str, str], int]:
    """``(service/type, parameter) -> line`` of each ``-o`` option in master.cf (the last one of
    a service wins). An entry starts at column 0 (``name type ...``), lines starting with
    whitespace continue it, comment lines in between are skipped, as Postfix reads the file."""
    found: dict[tuple[str, str], int] = {}
    service: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not raw[0].isspace():
            fields = stripped.split()
            service = f"{fields[0]}/{fields[1]}" if len(fields) > 1 else None
        if service is None:
            continue
        for match in _OPTION.finditer(raw):
            found[(service, match["braced"] or match["plain"])] = number
    return found


@dataclass(frozen=True)
class PostfixConfig:
    values: dict[str, str]  # main.cf's values (or defaults) as Postfix uses them
    overrides: dict[str, dict[str, str]]  # service -> parameter -> value (postconf -P)
    main_lines: dict[str, int]
    master_lines: dict[tuple[str, str], int]
    main_path: str = MAIN_CF
    master_path: str = MASTER_CF

    @classmethod
    def read(
        cls, *, values: str, overrides: str, main_cf: str, master_cf: str,
        main_path: str = MAIN_CF, master_path: str = MASTER_CF,
    ) -> PostfixConfig:  # fmt: skip
        return cls(
            parse_values(values), parse_overrides(overrides), main_cf_lines(main_cf),
            master_cf_lines(master_cf), main_path, master_path,
        )  # fmt: skip

    def main_setting(self, name: str) -> Setting:
        line = self.main_lines.get(name)
        source = f"{self.main_path}:{line}" if line else ""
        return Setting(name, self.values.get(name), source)

    def setting(self, name: str) -> Setting:
        """The value in force: a service's override (the first that differs from main.cf,
        else the first) over main.cf's last assignment over Postfix's default."""
        main = self.main_setting(name)
        found = [(svc, params[name]) for svc, params in self.overrides.items() if name in params]
        if not found:
            return main
        differing = [(svc, value) for svc, value in found if value != main.value]
        service, value = (differing or found)[0]
        line = self.master_lines.get((service, name))
        source = f"{self.master_path}:{line}" if line else f"{self.master_path} ({service})"
        return Setting(name, value, source, service)

    def effective(self, names: tuple[str, ...] | list[str]) -> dict[str, str]:
        """``name -> value in force`` for each name Postfix printed a value for."""
        out = {}
        for name in names:
            value = self.setting(name).value
            if value is not None:
                out[name] = value
        return out

    def source(self, *names: str) -> str:
        """Where the first of ``names`` that a service overrides was set, else the first name's
        main.cf line: the file a reader must look at for these settings."""
        for name in names:
            setting = self.setting(name)
            if setting.service is not None:
                return setting.source
        return self.setting(names[0]).source if names else ""
