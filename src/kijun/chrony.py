"""chrony's configuration as chronyd reads it, each directive with the file and line it came from.

chronyd reads ``/etc/chrony/chrony.conf`` from the top; a ``confdir DIR...`` line is replaced,
where it stands, by the ``*.conf`` files of its directories (sorted by file name; of files with
the same name in several directories only the first directory's is read), an ``include GLOB``
line by the files it matches (sorted). For a directive that takes one value (``makestep``,
``minsources``, ``local``, ...) the last one read is in force; ``server``, ``pool``, ``peer``,
``allow`` and ``deny`` add up. The ``*.sources`` files of every ``sourcedir`` are read after the
configuration (and again on ``chronyc reload sources``); they hold ``server``/``pool``/``peer``.

The audit collects the files as ``### PATH`` followed by the file's text (``cat``), so that each
directive can be traced to its ``path:line``, and ``chronyd -p`` (the configuration as chronyd
itself expands it, without comments and without the ``confdir``/``include`` lines). :func:`read`
rebuilds chronyd's reading order from the files and takes it only when it agrees with
``chronyd -p``: a directive then names the file that set it; otherwise the directives are
``chronyd -p``'s, with no file named (``traced`` is False and says why).

    >>> conf = read(files_text, chronyd_p_text, sources_text)
    >>> conf.last("makestep").source
    '/etc/chrony/chrony.conf:14'
    >>> [d.source for d in conf.sources()]
    ['/etc/chrony/sources.d/50-kijun-servers.sources:3']
"""

from __future__ import annotations

import fnmatch
import posixpath
from dataclasses import dataclass, field

MAIN = "/etc/chrony/chrony.conf"
COMMENT = ("#", "%", ";", "!", "*")
SOURCE_DIRECTIVES = ("server", "pool", "peer")


@dataclass(frozen=True)
class Directive:
    """One directive: its name (lower case, as chronyd compares them) and arguments."""

    name: str
    args: tuple[str, ...]
    path: str = ""  # "" when not traced to a file
    line: int = 0

    @property
    def text(self) -> str:
        return " ".join((self.name, *self.args))

    @property
    def source(self) -> str:
        """``path:line`` of the directive, or "" when it could not be traced to a file."""
        return f"{self.path}:{self.line}" if self.path else ""


@dataclass(frozen=True)
class ChronyConfig:
    directives: tuple[Directive, ...]  # the configuration, in chronyd's reading order
    source_files: tuple[Directive, ...]  # the sourcedir files' directives
    traced: bool  # each directive names its file (the rebuilt order agrees with chronyd -p)
    why: str = ""  # why not traced
    files: dict[str, list[str]] = field(default_factory=dict)

    def all(self, name: str) -> list[Directive]:
        return [d for d in self.directives if d.name == name]

    def last(self, name: str) -> Directive | None:
        """The directive of that name in force (the last one read), or None."""
        found = self.all(name)
        return found[-1] if found else None

    def sources(self) -> list[Directive]:
        """Every server/pool/peer directive: the configuration's, then the sourcedir files'."""
        return [d for d in (*self.directives, *self.source_files) if d.name in SOURCE_DIRECTIVES]


def words(line: str) -> list[str] | None:
    """The words of a configuration line, the name lower-cased; None for comments and blanks."""
    text = line.strip()
    if not text or text.startswith(COMMENT):
        return None
    found = text.split()
    return [found[0].lower(), *found[1:]]


def files(text: str) -> dict[str, list[str]]:
    """``### PATH`` blocks of collected files as {path: lines}."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("### /"):
            current = out.setdefault(line[4:].strip(), [])
            continue
        if current is not None:
            current.append(line)
    return out


def parse_file(path: str, lines: list[str]) -> list[Directive]:
    out = []
    for number, line in enumerate(lines, start=1):
        found = words(line)
        if found:
            out.append(Directive(found[0], tuple(found[1:]), path, number))
    return out


def _confdir(dirs: tuple[str, ...], known: dict[str, list[str]]) -> list[str]:
    """The files a ``confdir`` line reads, in chronyd's order."""
    chosen: dict[str, str] = {}
    for directory in dirs:
        for path in known:
            name = posixpath.basename(path)
            if posixpath.dirname(path) == directory.rstrip("/") and name.endswith(".conf"):
                chosen.setdefault(name, path)
    return [chosen[name] for name in sorted(chosen)]


def expand(path: str, known: dict[str, list[str]], depth: int = 0) -> list[Directive]:
    """The directives of ``path`` with its ``confdir`` and ``include`` lines expanded."""
    if depth > 10:
        raise ValueError(f"{path}: confdir/include nested more than 10 deep")
    out: list[Directive] = []
    for d in parse_file(path, known.get(path, [])):
        if d.name == "confdir":
            for sub in _confdir(d.args, known):
                out.extend(expand(sub, known, depth + 1))
        elif d.name == "include" and d.args:
            for sub in sorted(p for p in known if fnmatch.fnmatchcase(p, d.args[0])):
                out.extend(expand(sub, known, depth + 1))
        else:
            out.append(d)
    return out


def read(config_files: str, printed: str, source_files: str = "") -> ChronyConfig:
    """chrony's configuration from the collected files and ``chronyd -p``'s output.

    ``printed`` (chronyd -p) decides the directives; the files only say where each came from.
    """
    known = files(config_files)
    truth = [w for w in (words(line) for line in printed.splitlines()) if w]
    sources = tuple(
        d for path, lines in files(source_files).items() for d in parse_file(path, lines)
    )
    why = ""
    rebuilt: list[Directive] = []
    if MAIN not in known:
        why = f"{MAIN} was not collected"
    else:
        try:
            rebuilt = expand(MAIN, known)
        except ValueError as exc:
            why = str(exc)
    if not why and [[d.name, *d.args] for d in rebuilt] == truth:
        return ChronyConfig(tuple(rebuilt), sources, True, files=known)
    why = why or "the files read do not rebuild chronyd -p's configuration"
    plain = tuple(Directive(w[0], tuple(w[1:])) for w in truth)
    return ChronyConfig(plain, sources, False, why, known)


def sources_of(directives: list[Directive]) -> str:
    """The ``path:line`` of each directive, joined for an audit's ``source``."""
    return ", ".join(d.source for d in directives if d.source)
