"""modprobe's configuration as kmod reads it: which ``install`` command is in force per module.

kmod (Debian 12: kmod 30) reads every ``*.conf`` file of ``/etc/modprobe.d``,
``/run/modprobe.d``, ``/usr/local/lib/modprobe.d`` and ``/lib/modprobe.d`` as one list sorted by
file name; a file name found in an earlier directory hides the same name in the later ones.
For a module, the **first** ``install`` line whose module pattern matches (``fnmatch``) is the
command modprobe runs instead of loading the module; later ``install`` lines are ignored
(checked with ``modprobe -c`` and ``modprobe -n -v`` on the lab image: a file
``00-local.conf`` with ``install cfg80211 /sbin/modprobe --ignore-install cfg80211`` beats
``kijun-no-wireless.conf``'s ``install cfg80211 /bin/false``).

Audits collect ``SHOWCONFIG`` and ``FILES``: ``modprobe --showconfig``'s install lines
(modprobe's own reading, which decides) and the install and blacklist lines of each file with
its path and line number (which names the file that set the command in force).

    >>> lines = read_files("/etc/modprobe.d/00-local.conf:1:install cfg80211 /bin/true\\n")
    >>> effective_install("cfg80211", lines).source
    '/etc/modprobe.d/00-local.conf:1'
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from dataclasses import dataclass

# kmod's configuration directories, in priority order.
DIRECTORIES = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/lib/modprobe.d")

# What an audit collects (under keys of its own): modprobe's reading, and the files' lines.
SHOWCONFIG = "modprobe --showconfig 2>/dev/null | grep -E '^(install|blacklist) ' || true"
FILES = (
    f'for d in {" ".join(DIRECTORIES)}; do for f in "$d"/*.conf; do '
    '[ -f "$f" ] && { echo "### $f"; '
    "grep -HnE '^[[:space:]]*(install|blacklist)[[:space:]]' \"$f\"; }; "
    "done; done; true"
)


@dataclass(frozen=True)
class Line:
    """One ``install`` or ``blacklist`` line of a modprobe configuration file."""

    path: str
    number: int
    directive: str  # install | blacklist
    module: str  # the module name or fnmatch pattern
    command: str  # install: the command; blacklist: ""

    @property
    def source(self) -> str:
        return f"{self.path}:{self.number}"

    def matches(self, module: str) -> bool:
        return fnmatch.fnmatchcase(_underscores(module), _underscores(self.module))


def _underscores(name: str) -> str:
    return name.replace("-", "_")


_GREP = re.compile(r"^(?P<path>/[^:]+):(?P<number>\d+):(?P<text>.*)$")


def read_files(text: str) -> list[Line]:
    """The lines of ``grep -Hn`` over the configuration files, in the order kmod reads them
    (files sorted by name; a name in an earlier directory hides the same name later)."""
    by_file: dict[str, list[Line]] = {}
    for raw in text.splitlines():
        if raw.startswith("### "):  # every file, also one without such lines (it hides others)
            by_file.setdefault(raw[4:].strip(), [])
            continue
        m = _GREP.match(raw)
        if not m:
            continue
        words = m["text"].split()
        if len(words) < 2 or words[0] not in ("install", "blacklist"):
            continue
        command = " ".join(words[2:]) if words[0] == "install" else ""
        by_file.setdefault(m["path"], []).append(
            Line(m["path"], int(m["number"]), words[0], words[1], command)
        )
    chosen: dict[str, str] = {}  # file name -> the path kmod reads under that name
    for path in by_file:
        name = posixpath.basename(path)
        if name not in chosen or _rank(path) < _rank(chosen[name]):
            chosen[name] = path
    return [line for name in sorted(chosen) for line in by_file[chosen[name]]]


def _rank(path: str) -> int:
    directory = posixpath.dirname(path)
    return DIRECTORIES.index(directory) if directory in DIRECTORIES else len(DIRECTORIES)


def showconfig_installs(text: str) -> list[tuple[str, str]]:
    """(module pattern, command) of each ``install`` line of ``modprobe --showconfig``, in order."""
    out = []
    for raw in text.splitlines():
        words = raw.split()
        if len(words) >= 3 and words[0] == "install":
            out.append((words[1], " ".join(words[2:])))
    return out


@dataclass(frozen=True)
class Install:
    """The install command in force for a module and where it was set."""

    module: str
    command: str | None  # None: no install line, the module loads normally
    source: str  # path:line, or "" when no file sets it or the files disagree with modprobe


def effective_install(
    module: str, lines: list[Line], showconfig: list[tuple[str, str]] | None = None
) -> Install:
    """The first matching ``install`` line. With modprobe's own reading (``showconfig``), its
    first matching command decides and the file line is named only when it says the same."""
    first = next((ln for ln in lines if ln.directive == "install" and ln.matches(module)), None)
    if showconfig is None:
        return Install(module, first.command if first else None, first.source if first else "")
    shown = next(
        (cmd for pattern, cmd in showconfig
         if fnmatch.fnmatchcase(_underscores(module), _underscores(pattern))),
        None,
    )  # fmt: skip
    if first is not None and shown is not None and " ".join(shown.split()) == first.command:
        return Install(module, shown, first.source)
    return Install(module, shown, "")
