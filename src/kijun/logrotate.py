"""How long logrotate keeps each log, from its configuration as logrotate itself reads it.

Two inputs, both collected on the host without changing anything:

* ``logrotate -d /etc/logrotate.conf`` (debug mode: nothing is rotated, the state file is not
  written, no script runs). For every block it prints the patterns, the rotation criterion and
  the number of rotations: that is logrotate's own reading and the authority here
  (:func:`parse_debug`).
* The configuration files themselves (:func:`read_config`). logrotate 3.21 (Debian 12) does not
  print ``maxage``, ``compress`` or ``create``, so those come from kijun's reading of the files,
  which follows logrotate's rules (global options apply to the blocks after them, ``include``
  reads a directory's files in sorted order without the taboo extensions). :func:`combine`
  pairs both readings block by block and says where they disagree, so a misreading shows up as
  a finding instead of a wrong answer.

Effective retention (:func:`retention_days`) is what a log's rotation guarantees in steady state
(logrotate run daily, as Debian's timer does): right after a rotation the oldest kept copy
starts ``rotations x period`` ago, so that much history is always present. Periods: hourly 1/24
day, daily 1, weekly 7, yearly 365 days; ``monthly`` counts the fewest days that many
consecutive calendar months can have (one month 28, two 59, twelve 365), never an average
month, so a claimed retention is never longer than the real one. ``maxage N`` removes rotated
copies older than N days and bounds the retention; ``rotate -1`` never removes old copies.
Rotation by size (``size``, or ``maxsize`` that rotates early) depends on the log volume: no
retention can be guaranteed and the result is ``None``.
"""

from __future__ import annotations

import fnmatch
import math
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

# Frequencies with a fixed period in days ("monthly" is handled by month_days()).
# What an audit module collects to judge retention (``COLLECT`` entries, shared by the
# logging and mail modules so that each host runs them once per audit): logrotate's own reading
# of its configuration, and the configuration files it includes, each after a marker line.
COLLECT = {
    "logging/logrotate_debug": "logrotate -d /etc/logrotate.conf 2>&1",
    "logging/logrotate_files": r"""
for f in /etc/logrotate.conf $(awk '$1 == "include" {print $2}' /etc/logrotate.conf); do
  if [ -d "$f" ]; then
    for g in "$f"/* "$f"/.[!.]*; do
      [ -f "$g" ] && { printf '==> kijun-file: %s\n' "$g"; cat "$g"; echo; }
    done
  elif [ -f "$f" ]; then
    printf '==> kijun-file: %s\n' "$f"; cat "$f"; echo
  fi
done
""",
}

PERIOD_DAYS = {"hourly": 1 / 24, "daily": 1.0, "weekly": 7.0, "yearly": 365.0}
_MONTHS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def month_days(months: int) -> int:
    """The fewest days that ``months`` consecutive calendar months can span."""
    years, rest = divmod(months, 12)
    if rest == 0:
        return years * 365
    shortest = min(sum(_MONTHS[(start + i) % 12] for i in range(rest)) for start in range(12))
    return years * 365 + shortest


@dataclass(frozen=True)
class Rotation:
    """One block ("rotating pattern") of logrotate's configuration."""

    patterns: tuple[str, ...]
    frequency: str  # hourly | daily | weekly | monthly | yearly | size | minutes | forced
    rotations: int  # -1: old copies are never removed
    max_age: int = 0  # days; 0: not set
    max_size: int = 0  # bytes; rotated earlier when larger (0: not set)
    min_size: int = 0
    olddir: str | None = None
    mail: str | None = None
    # Known only from kijun's reading of the files (logrotate 3.21 does not print them):
    compress: bool | None = None
    create: tuple[str | None, str | None, str | None] | None = None  # (mode, owner, group)
    nocreate: bool | None = None
    copytruncate: bool | None = None
    verified: bool = False  # kijun's reading of the files agrees with logrotate's on this block
    source: str = ""  # "path:line" of the block in kijun's reading of the files ("": not found)

    def covers(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, p) for p in self.patterns)


@dataclass(frozen=True)
class Debug:
    """What ``logrotate -d`` printed: the blocks in order, the files read, the errors."""

    rotations: tuple[Rotation, ...]
    files_read: tuple[str, ...]
    errors: tuple[str, ...]


def split_patterns(text: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(text))
    except ValueError:
        return tuple(text.split())


_HEADER = re.compile(
    r"^rotating pattern: (?P<pattern>.*?) "
    r"(?P<crit>hourly|weekly|monthly|yearly|forced from command line"
    r"|after (?P<days>\d+) days|after (?P<minutes>\d+) minutes|(?P<bytes>\d+) bytes) "
    r"(?P<rest>.*?)"
    r"(?P<end>old logs are removed(?: after (?P<maxage>\d+) days)?|old logs are kept forever"
    r"|(?<!\()no old logs will be kept(?!\))|old logs mailed to [^,\n]+)\n",
    re.S | re.M,
)


def parse_debug(output: str) -> Debug:
    """Parse the output of ``logrotate -d`` (logrotate 3.21 and later formats)."""
    text = output if output.endswith("\n") else output + "\n"
    rotations = []
    for m in _HEADER.finditer(text):
        crit = m.group("crit")
        if m.group("days"):
            frequency = "daily" if m.group("days") == "1" else f"after {m.group('days')} days"
        elif m.group("minutes"):
            frequency = "minutes"
        elif m.group("bytes"):
            frequency = "size"
        elif crit.startswith("forced"):
            frequency = "forced"
        else:
            frequency = crit
        header = m.group("rest") + m.group("end")
        count = re.search(r"\((\d+) rotations\)", header)
        if count:
            rotations_kept = int(count.group(1))
        elif "no old logs will be kept" in header:
            rotations_kept = 0
        else:  # "(unlimited rotations)", "kept forever", or 3.21 printing nothing for -1
            rotations_kept = -1
        olddir = re.search(r"olddir is (.*?), ", header)
        mail = re.search(r"old logs mailed to ([^,\n]+)", header)
        max_size = re.search(r"log files >= (\d+) are rotated earlier", header)
        min_size = re.search(r"only log files >= (\d+) bytes are rotated", header)
        rotations.append(
            Rotation(
                patterns=split_patterns(m.group("pattern")),
                frequency=frequency,
                rotations=rotations_kept,
                max_age=int(m.group("maxage") or 0),
                max_size=int(max_size.group(1)) if max_size else 0,
                min_size=int(min_size.group(1)) if min_size else 0,
                olddir=olddir.group(1) if olddir else None,
                mail=mail.group(1).strip() if mail else None,
            )
        )
    files = tuple(re.findall(r"^reading config file (.+)$", text, re.M))
    errors = tuple(line for line in text.splitlines() if line.startswith("error:"))
    return Debug(tuple(rotations), files, errors)


# --- kijun's reading of the configuration files ----------------------------------------------

TABOO_EXTENSIONS = (
    ",v", ".bak", ".cfsaved", ".disabled", ".dpkg-bak", ".dpkg-del", ".dpkg-dist", ".dpkg-new",
    ".dpkg-old", ".dpkg-tmp", ".rhn-cfg-tmp-*", ".rpmnew", ".rpmorig", ".rpmsave", ".swp",
    ".ucf-dist", ".ucf-new", ".ucf-old", "~",
)  # fmt: skip
_SCRIPTS = {"postrotate", "prerotate", "firstaction", "lastaction", "preremove"}
_KEYWORDS = _SCRIPTS | {
    "compress", "nocompress", "delaycompress", "nodelaycompress", "create", "nocreate",
    "copytruncate", "nocopytruncate", "copy", "nocopy", "rotate", "maxage", "minage",
    "hourly", "daily", "weekly", "monthly", "yearly", "size", "minsize", "maxsize",
    "missingok", "nomissingok", "ifempty", "notifempty", "olddir", "noolddir", "createolddir",
    "nocreateolddir", "sharedscripts", "nosharedscripts", "dateext", "nodateext", "dateformat",
    "dateyesterday", "datehourago", "extension", "addextension", "start", "mail", "nomail",
    "mailfirst", "maillast", "su", "shred", "noshred", "shredcycles", "compresscmd",
    "uncompresscmd", "compressext", "compressoptions", "tabooext", "taboopat", "renamecopy",
    "norenamecopy", "allowhardlink", "noallowhardlink", "ignoreduplicates", "include",
    "endscript",
}  # fmt: skip


@dataclass
class _Settings:
    frequency: str = "size"  # logrotate's built-in default: rotate by size (1 MiB)
    rotations: int = 0
    max_age: int = 0
    compress: bool = False
    create: tuple[str | None, str | None, str | None] | None = None
    nocreate: bool = False
    copytruncate: bool = False

    def copy(self) -> _Settings:
        return replace(self)


@dataclass(frozen=True)
class ConfigBlock:
    file: str
    line: int
    patterns: tuple[str, ...]
    frequency: str
    rotations: int
    max_age: int
    compress: bool
    create: tuple[str | None, str | None, str | None] | None
    nocreate: bool
    copytruncate: bool


def _apply(settings: _Settings, word: str, args: list[str]) -> None:
    if word in ("hourly", "daily", "weekly", "monthly", "yearly"):
        settings.frequency = word
    elif word == "size":
        settings.frequency = "size"
    elif word == "rotate" and args:
        settings.rotations = _int(args[0], settings.rotations)
    elif word == "maxage" and args:
        settings.max_age = _int(args[0], settings.max_age)
    elif word in ("compress", "nocompress"):
        settings.compress = word == "compress"
    elif word == "create":
        padded = [*args[:3], None, None, None]
        settings.create = (padded[0], padded[1], padded[2])
        settings.nocreate = False
    elif word == "nocreate":
        settings.create, settings.nocreate = None, True
    elif word in ("copytruncate", "nocopytruncate"):
        settings.copytruncate = word == "copytruncate"


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


@dataclass
class _Reader:
    files: Mapping[str, str]
    blocks: list[ConfigBlock] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    taboo: list[str] = field(default_factory=lambda: [f"*{e}" for e in TABOO_EXTENSIONS])

    def include(self, path: str, settings: _Settings) -> None:
        path = path.rstrip("/") or "/"
        if path in self.files:
            self.read(path, settings)
            return
        inside = sorted(
            p for p in self.files if p.startswith(path + "/") and "/" not in p[len(path) + 1 :]
        )
        if not inside:
            self.problems.append(f"include {path}: not collected")
        for p in inside:
            name = p[len(path) + 1 :]
            # logrotate matches taboo patterns with FNM_PERIOD: "*" never matches a leading dot.
            if not name.startswith(".") and any(fnmatch.fnmatchcase(name, t) for t in self.taboo):
                continue
            self.read(p, settings)

    def read(self, path: str, settings: _Settings) -> None:
        block: _Settings | None = None
        pending: list[str] = []
        start = 0
        script = False
        for number, raw in enumerate(self.files[path].splitlines(), 1):
            line = raw.strip()
            if script:
                script = line != "endscript"
                continue
            if not line or line.startswith("#"):
                continue
            if block is None and "{" in line:
                before, _, after = line.partition("{")
                pending.append(before)
                start = start or number
                block = settings.copy()
                line = after.strip()
                if not line:
                    continue
            if block is not None and line.startswith("}"):
                patterns = split_patterns(" ".join(pending))
                self.blocks.append(
                    ConfigBlock(
                        path, start, patterns, block.frequency, block.rotations,
                        block.max_age, block.compress, block.create, block.nocreate,
                        block.copytruncate,
                    )
                )  # fmt: skip
                block, pending, start = None, [], 0
                continue
            words = line.split()
            word = words[0]
            if word not in _KEYWORDS:
                if block is None:
                    pending.append(line)
                    start = start or number
                continue
            if word in _SCRIPTS:
                script = True
            elif word == "include" and block is None and len(words) > 1:
                self.include(words[1], settings)
            elif word == "tabooext" and block is None:
                exts = [e for w in words[1:] for e in w.split(",") if e and e != "+"]
                if len(words) > 1 and words[1] != "+":
                    self.taboo = []
                self.taboo += [f"*{e}" for e in exts]
            else:
                _apply(block if block is not None else settings, word, words[1:])


def read_config(
    files: Mapping[str, str], main: str = "/etc/logrotate.conf"
) -> tuple[list[ConfigBlock], list[str]]:
    """The blocks of logrotate's configuration (main file and its includes), in reading order,
    and what could not be read. ``files`` maps every collected file's path to its text."""
    reader = _Reader(files)
    if main not in files:
        return [], [f"{main}: not collected"]
    reader.read(main, _Settings())
    return reader.blocks, reader.problems


def parse_files(dump: str, marker: str = "==> kijun-file: ") -> dict[str, str]:
    """Split a dump of files (each one preceded by a line ``<marker><path>``)."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in dump.splitlines():
        if line.startswith(marker):
            current = files.setdefault(line[len(marker) :].strip(), [])
        elif current is not None:
            current.append(line)
    return {path: "\n".join(lines) + "\n" for path, lines in files.items()}


def combine(debug: Debug, blocks: Iterable[ConfigBlock]) -> tuple[list[Rotation], list[str]]:
    """logrotate's blocks, completed with what only kijun's reading knows (compress, create,
    maxage on logrotate 3.21) and marked ``verified`` where both readings agree; and where they
    do not."""
    remaining = list(blocks)
    result: list[Rotation] = []
    problems: list[str] = []
    for rot in debug.rotations:
        match = next((b for b in remaining if b.patterns == rot.patterns), None)
        if match is None:
            problems.append(f"{' '.join(rot.patterns)}: block not found in the files read")
            result.append(rot)
            continue
        remaining.remove(match)
        agree = match.frequency == rot.frequency and match.rotations == rot.rotations
        if not agree:
            problems.append(
                f"{match.file}:{match.line}: kijun reads {match.frequency}/{match.rotations}, "
                f"logrotate {rot.frequency}/{rot.rotations}"
            )
        result.append(
            replace(
                rot,
                max_age=rot.max_age or match.max_age,
                compress=match.compress,
                create=match.create,
                nocreate=match.nocreate,
                copytruncate=match.copytruncate,
                verified=agree,
                source=f"{match.file}:{match.line}",
            )
        )
    for b in remaining:
        problems.append(
            f"{b.file}:{b.line}: block {' '.join(b.patterns)} is not in logrotate's own reading"
        )
    return result, problems


def rotation_for(path: str, rotations: Iterable[Rotation]) -> Rotation | None:
    """The block logrotate uses for ``path`` (the first whose pattern matches it)."""
    return next((r for r in rotations if r.covers(path)), None)


def retention_days(rot: Rotation) -> float | None:
    """Days of history the block guarantees (``math.inf``: never removed; ``None``: depends on
    the log volume, see the module docstring)."""
    if rot.max_size or rot.frequency not in (*PERIOD_DAYS, "monthly"):
        return None
    if rot.rotations < 0:
        kept = math.inf
    elif rot.frequency == "monthly":
        kept = float(month_days(rot.rotations))
    else:
        kept = rot.rotations * PERIOD_DAYS[rot.frequency]
    if rot.max_age > 0:
        kept = min(kept, float(rot.max_age))
    return kept
