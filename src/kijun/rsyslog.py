"""rsyslog's configuration as rsyslog reads it: the statements of its full configuration.

``rsyslogd -N1 -o FILE`` checks the configuration and writes it out with every include
expanded in reading order, without starting anything. :func:`parse` turns that text into what
audits ask about: the modules loaded, the inputs, the templates, every action with the ruleset
and filter it runs under, and the legacy ``$`` settings in effect where it appears.

Both syntaxes are read: RainerScript objects (``module(...)``, ``action(...)``,
``ruleset(...) { }``, ``if ... then``) and legacy lines (``$Directive value``,
``facility.priority  /file``, ``@@host:port``). The attributes of a file action follow rsyslog's
rules (checked against rsyslogd 8.2302): a legacy action takes the legacy ``$FileCreateMode``,
``$FileOwner``, ``$FileGroup`` in effect above it; a RainerScript ``action(type="omfile")``
ignores them and takes its own parameters, else those of ``module(load="builtin:omfile")``, else
rsyslog's defaults (0644, the daemon's user and group). Legacy ``$Action...`` queue settings apply
to the next legacy action only.

Where each statement comes from: the output marks each file it reads (``##### BEGIN CONFIG:
PATH``, ``##### END   CONFIG: PATH``; an include's files are announced together and then read in
name order, each ending at its END line). :func:`origins` maps the output's lines back to
``path:line``, so that an action (``Action.source``), a legacy setting (``Config.sources``) and
the file attributes of an action (``Config.file_attribute_sources``) name the file and line that
set them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

OBJECTS = (
    "module", "input", "action", "template", "global", "ruleset", "main_queue", "parser",
    "timezone", "include", "lookup_table", "dyn_stats", "percentile_stats", "ratelimit",
)  # fmt: skip
_OBJECT_RE = re.compile(rf"({'|'.join(OBJECTS)})\s*\(", re.I)
# Legacy settings that apply to every later legacy action (lower-cased names).
_PERSISTENT = (
    "$fileowner", "$filegroup", "$filecreatemode", "$dirowner", "$dirgroup", "$dircreatemode",
    "$umask", "$workdirectory",
)  # fmt: skip
# Legacy queue settings of the next legacy action, as RainerScript parameter names.
_NEXT_ACTION = {
    "$actionqueuetype": "queue.type",
    "$actionqueuefilename": "queue.filename",
    "$actionqueuemaxdiskspace": "queue.maxdiskspace",
    "$actionqueuesaveonshutdown": "queue.saveonshutdown",
    "$actionresumeretrycount": "action.resumeretrycount",
    "$actionresumeinterval": "action.resumeinterval",
}
FILE_DEFAULTS = {"filecreatemode": "0644", "fileowner": "root", "filegroup": "root"}


# rsyslog's effective configuration as an audit module collects it (``COLLECT`` entry, shared
# by the logging and mail modules so that each host runs it once per audit).
COLLECT = {"logging/rsyslog_conf": "rsyslogd -N1 -o /dev/stdout"}


@dataclass(frozen=True)
class Action:
    type: str  # omfile, omfwd, omusrmsg, ompipe, discard, ...
    params: dict[str, str]  # parameter names lower-cased
    ruleset: str | None  # None: the default ruleset (RSYSLOG_DefaultRuleset)
    conditions: tuple[str, ...]  # selectors and if-conditions it runs under; () means none
    line: int
    legacy: bool
    source: str = ""  # "path:line" of the statement in its configuration file
    # "path:line" of the legacy $File... settings a legacy omfile action took (lower-cased key).
    attribute_sources: dict[str, str] = field(default_factory=dict)

    @property
    def file(self) -> str | None:
        """The file of a static omfile action."""
        return self.params.get("file") if self.type == "omfile" else None

    @property
    def unconditional(self) -> bool:
        """Runs for every message that reaches its ruleset."""
        return all(c.replace(" ", "") in ("*.*", "*.debug") for c in self.conditions)


@dataclass
class Config:
    modules: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> params
    inputs: list[dict[str, str]] = field(default_factory=list)
    templates: dict[str, dict[str, str]] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)  # last $Directive / global() values
    allowed_senders: dict[str, list[str]] = field(default_factory=dict)  # protocol -> senders
    problems: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # setting -> "path:line" (last one)
    module_sources: dict[str, str] = field(default_factory=dict)  # module -> "path:line"

    @property
    def work_directory(self) -> str | None:
        return self.settings.get("global.workdirectory") or self.settings.get("$workdirectory")

    def files(self) -> list[Action]:
        """The static file actions (the logs rsyslog writes)."""
        return [a for a in self.actions if a.file]

    def file_attributes(self, action: Action) -> dict[str, str]:
        """Create mode, owner and group of the files an omfile action creates."""
        module = self.modules.get("builtin:omfile", {})
        return {
            key: action.params.get(key) or module.get(key) or default
            for key, default in FILE_DEFAULTS.items()
        }

    def file_attribute_sources(self, action: Action) -> dict[str, str]:
        """Where each of :meth:`file_attributes` was set (``path:line``; "" for rsyslog's
        default): the action itself, the legacy setting in force above it, or the module."""
        module = self.modules.get("builtin:omfile", {})
        out = {}
        for key in FILE_DEFAULTS:
            if key in action.attribute_sources:
                out[key] = action.attribute_sources[key]
            elif action.params.get(key):
                out[key] = action.source
            elif module.get(key):
                out[key] = self.module_sources.get("builtin:omfile", "")
            else:
                out[key] = ""
        return out


_BEGIN = re.compile(r"^##### BEGIN CONFIG: (\S+)")
_END = re.compile(r"^##### END\s+CONFIG: (\S+)")
_INCLUDE = re.compile(r"^\s*(\$includeconfig\b|include\s*\()", re.I)


def origins(text: str) -> list[str]:
    """For each line of ``rsyslogd -N1 -o`` output, the ``path:line`` it was read from ("" for
    the markers and the blank lines rsyslog adds around them).

    rsyslog announces an include's files together (BEGIN lines, in reverse name order), then
    reads them in name order, each ending at its END line, and then goes on with the including
    file, whose include line ends in the first line after the last END."""
    lines = text.splitlines()
    out = [""] * len(lines)
    stack: list[list[Any]] = []  # [path, lines counted, last line was an include statement]
    resumed = False
    for i, line in enumerate(lines):
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            stack.append([begin.group(1), 0, False])
            continue
        if end:
            while stack and stack.pop()[0] != end.group(1):
                pass
            resumed = bool(stack) and stack[-1][2]
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if not stack or (not line.strip() and (_BEGIN.match(following) or _END.match(following))):
            continue
        if resumed:
            resumed = False
            if not line.strip():  # the rest of the include line
                continue
        top = stack[-1]
        top[1] += 1
        top[2] = bool(_INCLUDE.match(line))
        out[i] = f"{top[0]}:{top[1]}"
    return out


def _read_value(text: str, i: int) -> tuple[str, int]:
    if text[i] in "\"'":
        quote, i, out = text[i], i + 1, []
        while i < len(text) and text[i] != quote:
            if text[i] == "\\" and i + 1 < len(text):
                i += 1
            out.append(text[i])
            i += 1
        return "".join(out), i + 1
    if text[i] == "[":
        end = text.index("]", i)
        items = re.findall(r'"((?:[^"\\]|\\.)*)"', text[i + 1 : end])
        return ",".join(items), end + 1
    m = re.compile(r"[^\s)]+").match(text, i)
    assert m is not None
    return m.group(0), m.end()


def _read_params(text: str, i: int) -> tuple[dict[str, str], int]:
    """Parameters ``name="value" ...`` from just after ``(`` to just after ``)``."""
    params: dict[str, str] = {}
    name = re.compile(r"\s*([A-Za-z0-9_.]+)\s*=\s*")
    while i < len(text):
        i = _skip_space(text, i)
        if i >= len(text) or text[i] == ")":
            return params, i + 1
        m = name.match(text, i)
        if not m:  # not a parameter: skip one character
            i += 1
            continue
        value, i = _read_value(text, m.end())
        params[m.group(1).lower()] = value
    return params, i


def _skip_space(text: str, i: int) -> int:
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text[i] == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i)
            i = len(text) if end < 0 else end + 2
        else:
            break
    return i


def _line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _matching(text: str, i: int, open_: str, close: str) -> int:
    """Index just after the bracket closing the one at ``i``."""
    depth, quote = 0, ""
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _legacy_action(text: str) -> tuple[str, dict[str, str]]:
    action = text.strip()
    if action.startswith(("-/", "/")):
        file, _, template = action.lstrip("-").partition(";")
        params = {"file": file.strip()}
        if template:
            params["template"] = template.strip()
        return "omfile", params
    if action.startswith("?"):
        return "omfile", {"dynafile": action[1:].split(";")[0].strip()}
    if action.startswith("@"):
        protocol = "tcp" if action.startswith("@@") else "udp"
        rest = re.sub(r"^@@?(\([^)]*\))?", "", action).split(";")[0]
        m = re.match(r"^\[([^\]]+)\](?::(\d+))?$|^([^:]+)(?::(\d+))?$", rest)
        target = (m.group(1) or m.group(3)) if m else rest
        port = (m.group(2) or m.group(4)) if m else None
        return "omfwd", {"target": target or "", "port": port or "514", "protocol": protocol}
    if action.startswith("|"):
        return "ompipe", {"pipe": action[1:]}
    if action in ("~", "stop"):
        return "discard", {}
    m = re.match(r"^:(\w+):(.*)$", action)
    if m:
        return m.group(1).lower(), {"value": m.group(2)}
    return "omusrmsg", {"users": action}


_WORD = re.compile(r"[A-Za-z_]+")
_SELECTOR = re.compile(r"^(?:[\w*,]+\.[!=<>]*[\w*]+;?)+$")


def parse(text: str) -> Config:
    """The statements of a full rsyslog configuration (``rsyslogd -N1 -o FILE``)."""
    conf = Config()
    where = origins(text)

    def origin(at: int) -> str:
        index = text.count("\n", 0, at)
        return where[index] if index < len(where) else ""

    legacy: dict[str, str] = {}
    legacy_sources: dict[str, str] = {}
    next_action: dict[str, str] = {}
    stack: list[tuple[str, str | None]] = []  # ("ruleset", name) | ("if", condition) | ...
    pending: list[str] = []  # conditions of the single statement after `if ... then`
    i = 0

    def add(
        kind: str,
        params: dict[str, str],
        at: int,
        is_legacy: bool,
        attribute_sources: dict[str, str] | None = None,
    ) -> None:
        ruleset = next((name for k, name in reversed(stack) if k == "ruleset"), None)
        conditions = tuple(c for k, c in stack if k == "if" and c is not None) + tuple(pending)
        conf.actions.append(
            Action(
                kind, params, ruleset, conditions, text.count("\n", 0, at) + 1, is_legacy,
                origin(at), attribute_sources or {},
            )
        )  # fmt: skip

    while True:
        i = _skip_space(text, i)
        if i >= len(text):
            break
        start = i
        if text[i] == "$":
            end = _line_end(text, i)
            word, _, value = text[i:end].strip().partition(" ")
            word, value = word.lower(), value.strip()
            conf.settings[word] = value
            conf.sources[word] = origin(i)
            if word in _PERSISTENT:
                legacy[word] = value
                legacy_sources[word] = origin(i)
            elif word in _NEXT_ACTION:
                next_action[_NEXT_ACTION[word]] = value
            elif word == "$allowedsender":
                protocol, _, senders = value.partition(",")
                conf.allowed_senders.setdefault(protocol.strip().upper(), []).extend(
                    s.strip() for s in senders.split(",") if s.strip()
                )
            i = end
            continue
        if text[i] == "}":
            if stack:
                stack.pop()
            i += 1
            continue
        if text[i] == "{":
            stack.append(("block", None))
            i += 1
            continue
        m = _OBJECT_RE.match(text, i)
        if m:
            kind = m.group(1).lower()
            params, i = _read_params(text, m.end())
            if kind == "module" and "load" in params:
                loaded = params.pop("load").lower()
                conf.modules[loaded] = params
                conf.module_sources[loaded] = origin(start)
            elif kind == "input":
                conf.inputs.append(params)
            elif kind == "global":
                conf.settings.update({f"global.{k}": v for k, v in params.items()})
                conf.sources.update({f"global.{k}": origin(start) for k in params})
            elif kind == "template":
                conf.templates[params.get("name", "")] = params
                j = _skip_space(text, i)
                if j < len(text) and text[j] == "{":
                    i = _matching(text, j, "{", "}")
            elif kind == "ruleset":
                j = _skip_space(text, i)
                if j < len(text) and text[j] == "{":
                    stack.append(("ruleset", params.get("name")))
                    i = j + 1
            elif kind == "action":
                add(params.get("type", "").lower(), params, start, False)
                pending = []
            continue
        keyword = _WORD.match(text, i)
        if keyword and keyword.group(0) in ("if", "else"):
            if keyword.group(0) == "if":
                then = re.compile(r"\bthen\b").search(text, i)
                j = then.end() if then else _line_end(text, i)
                condition = " ".join(text[i + 2 : then.start() if then else j].split())
            else:
                j, condition = i + 4, "else"
            k = _skip_space(text, j)
            if k < len(text) and text[k] == "{":
                stack.append(("if", condition))
                i = k + 1
            else:
                pending = [*pending, condition]
                i = k
            continue
        if keyword and keyword.group(0) in ("stop", "call", "set", "unset", "reset", "continue"):
            end = _line_end(text, i)
            semi = text.find(";", i, end)
            if keyword.group(0) == "stop":
                add("discard", {}, start, False)
            i = semi + 1 if semi >= 0 else end
            pending = []
            continue
        end = _line_end(text, i)
        line = text[i:end].split(" #")[0].strip()
        selector, rest = ([*re.split(r"\s+", line, maxsplit=1), ""])[:2]
        if line.startswith("&") and conf.actions:  # same filter as the action above
            pending = [*pending, *conf.actions[-1].conditions]
            selector = "*.*"
        elif line.startswith(":"):  # property-based filter
            m2 = re.match(r'^(:[^,]+,\s*!?[\w-]+,\s*"(?:[^"\\]|\\.)*")\s*(.*)$', line)
            selector, rest = (m2.group(1), m2.group(2)) if m2 else (line, "")
        elif not _SELECTOR.match(selector.strip()):
            conf.problems.append(f"line {text.count(chr(10), 0, i) + 1}: not understood: {line}")
            i = end
            continue
        rest = rest.strip()
        pending = [*pending, selector.strip()]
        obj = _OBJECT_RE.match(rest)
        if obj and obj.group(1).lower() == "action":
            offset = i + text[i:end].index(rest)
            params, i = _read_params(text, offset + obj.end())
            add(params.get("type", "").lower(), params, start, False)
        else:
            kind, params = _legacy_action(rest)
            params = {**params, **next_action}
            taken: dict[str, str] = {}
            if kind == "omfile":
                for key in ("fileowner", "filegroup", "filecreatemode", "dircreatemode"):
                    if f"${key}" in legacy and key not in params:
                        params[key] = legacy[f"${key}"]
                        taken[key] = legacy_sources[f"${key}"]
            add(kind, params, start, True, taken)
            next_action = {}
            i = end
        pending = []
    return conf


def selector_facilities(selector: str) -> dict[str, str]:
    """Facilities a legacy selector sends to its action, with the priority
    (``auth,authpriv.*`` -> {auth: *, authpriv: *}; ``none`` removes a facility)."""
    chosen: dict[str, str] = {}
    for part in selector.replace(" ", "").split(";"):
        facilities, _, priority = part.partition(".")
        for facility in facilities.split(","):
            if priority == "none":
                chosen.pop(facility, None)
                if facility == "*":
                    chosen.clear()
            elif facility:
                chosen[facility] = priority
    return chosen
