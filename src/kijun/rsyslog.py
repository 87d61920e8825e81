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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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
    legacy: dict[str, str] = {}
    next_action: dict[str, str] = {}
    stack: list[tuple[str, str | None]] = []  # ("ruleset", name) | ("if", condition) | ...
    pending: list[str] = []  # conditions of the single statement after `if ... then`
    i = 0

    def add(kind: str, params: dict[str, str], at: int, is_legacy: bool) -> None:
        ruleset = next((name for k, name in reversed(stack) if k == "ruleset"), None)
        conditions = tuple(c for k, c in stack if k == "if" and c is not None) + tuple(pending)
        conf.actions.append(
            Action(kind, params, ruleset, conditions, text.count("\n", 0, at) + 1, is_legacy)
        )

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
            if word in _PERSISTENT:
                legacy[word] = value
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
                conf.modules[params.pop("load").lower()] = params
            elif kind == "input":
                conf.inputs.append(params)
            elif kind == "global":
                conf.settings.update({f"global.{k}": v for k, v in params.items()})
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
            if kind == "omfile":
                for key in ("fileowner", "filegroup", "filecreatemode", "dircreatemode"):
                    if f"${key}" in legacy:
                        params.setdefault(key, legacy[f"${key}"])
            add(kind, params, start, True)
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
