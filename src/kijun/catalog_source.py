"""Catalog files read with line numbers, and schema errors turned into located problems.

A catalog file is parsed like ``yaml.safe_load`` (plain YAML, no arbitrary tags), but from the
composed node tree, so every value keeps the line it was written on. Duplicate mapping keys,
which PyYAML silently accepts, are problems here. Locations are tuples of mapping keys and list
indexes (``("controls", 0, "parameters", 1, "default")``) and are shown to people as
``PW-01.parameters[1].default``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # jsonschema is imported only when a file is validated
    from jsonschema import Draft202012Validator, ValidationError

Loc = tuple[str | int, ...]

# Top-level lists and mappings whose items are named by their id (or seed key, or name) in
# locations.
_NAMED_COLLECTIONS = ("controls", "seeds", "exceptions", "flows", "services")

_SCALAR_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp")
}
_MAP_TAG = "tag:yaml.org,2002:map"
# libyaml's loader when PyYAML was built with it (about ten times faster), else the Python one.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SEQ_TAG = "tag:yaml.org,2002:seq"
# kijun's files nest a few levels; deeper nesting is a mistake (or an attack on the parser:
# libyaml's composer recurses once per level in C and crashes the process some 20,000 levels
# down, beyond the reach of Python's recursion limit).
MAX_DEPTH = 100
# A nesting this deep cannot hurt the composer; a file whose text could nest deeper (see
# _depth_bound) is scanned for its real depth before it is composed.
_SAFE_DEPTH = 2000
# How many values YAML aliases may repeat in one file: an alias of an alias of ... (a "billion
# laughs" file) would otherwise expand a few lines into billions of values.
MAX_ALIAS_VALUES = 10_000


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a catalog file: where it is and what to change."""

    file: Path
    line: int  # 1-based; 0 when the problem concerns the whole file
    message: str

    def __str__(self) -> str:
        """``file:line: message`` on one line: a value the message quotes with a line break,
        a control or an invisible character in it shows that character escaped."""
        return f"{location(self.file, self.line)}: {one_line(self.message)}"


def one_line(text: str) -> str:
    """``text`` with the characters that are not printable (line breaks, tabs, control and
    format characters, spaces other than ' ') written as escapes, e.g. ``\\n``, ``\\u200b``."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def location(file: Path, line: int = 0) -> str:
    """``file:line`` as people read it: relative to the working directory when inside it."""
    try:
        shown = str(file.relative_to(Path.cwd()))
    except ValueError:
        shown = str(file)
    return f"{shown}:{line}" if line else shown


@dataclass(frozen=True)
class SourceFile:
    """A parsed YAML file: its data, the line of each location and the text of each scalar."""

    path: Path
    data: Any
    lines: dict[Loc, int]
    texts: dict[Loc, str]

    def line(self, loc: Loc) -> int:
        """The line of ``loc``, or of its nearest enclosing location that has one."""
        while loc not in self.lines and loc:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def where(self, loc: Loc) -> str:
        """``loc`` as people read it, e.g. ``PW-01.parameters[0].default``."""
        text = ""
        node = self.data
        for depth, step in enumerate(loc):
            label = _label(node, step) if depth == 1 and loc[0] in _NAMED_COLLECTIONS else None
            if label is not None:
                text = label
            elif isinstance(step, int):
                text += f"[{step}]"
            else:
                text += f".{step}" if text else step
            node = _child(node, step)
        return text

    def problem(self, loc: Loc, message: str) -> Problem:
        where = self.where(loc)
        return Problem(self.path, self.line(loc), f"{where}: {message}" if where else message)


def _child(node: Any, step: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(step)
    if isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
        return node[step]
    return None


def _label(collection: Any, step: str | int) -> str | None:
    if isinstance(step, str):
        return step
    item = _child(collection, step)
    if isinstance(item, dict):
        for key in ("id", "key", "name"):
            if isinstance(item.get(key), str):
                return str(item[key])
    return None


def describe(value: object) -> str:
    """A value's YAML kind and, for scalars, the value: ``str '12'``, ``bool true``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"bool {str(value).lower()}"
    if isinstance(value, str):
        return f"str {value!r}"
    if isinstance(value, int | float):
        return f"{type(value).__name__} {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value}"


def _read_text(path: Path) -> tuple[str | None, list[Problem]]:
    try:
        return path.read_text(encoding="utf-8"), []
    except FileNotFoundError:
        return None, [Problem(path, 0, "file is missing; create it (see catalog/FORMAT.md)")]
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1
        return None, [Problem(path, line, f"not UTF-8 text ({err.reason}); save it as UTF-8")]


def _yaml_problem(path: Path, text: str, err: yaml.YAMLError) -> Problem:
    """A YAML error of the parser as a problem on its line."""
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        reason = " ".join(part for part in (err.problem, err.context) if part)
        hint = "check the indentation, colons and quoting here and on the line above"
        # At the end of the text libyaml's mark may stand on the line after the last one.
        line = min(mark.line + 1, _line_at(text, len(text))) if mark else 0
        return Problem(path, line, f"YAML syntax error: {reason}; {hint}")
    if isinstance(err, yaml.reader.ReaderError):
        return _reader_problem(path, text, err)
    return Problem(path, 0, f"YAML error: {err}")


def check_syntax(path: Path) -> list[Problem]:
    """The YAML syntax problems of ``path`` (not UTF-8, a syntax error, nesting too deep),
    without building its data: for YAML that other readers read (an Ansible inventory, whose
    tags such as ``!vault`` are theirs)."""
    text, problems = _read_text(path)
    if text is None:
        return problems
    try:
        too_deep = _too_deep(text, always=True)
    except yaml.YAMLError as err:
        return [_yaml_problem(path, text, err)]
    return [Problem(path, too_deep, _TOO_DEEP)] if too_deep else []


def read_yaml(path: Path) -> tuple[SourceFile | None, list[Problem]]:
    """Parse ``path``; the file is ``None`` when it cannot be parsed at all."""
    text, problems = _read_text(path)
    if text is None:
        return None, problems
    loader = _Loader(text)
    builder = _Builder(path, loader)
    try:
        too_deep = _too_deep(text)
        if too_deep:
            return None, [Problem(path, too_deep, _TOO_DEEP)]
        node = loader.get_single_node()
        data = builder.build(node, ()) if node is not None else None
    except yaml.YAMLError as err:
        return None, [_yaml_problem(path, text, err)]
    except _AliasesExpandTooFar as err:
        message = (
            f"YAML aliases (*name) repeat more than {MAX_ALIAS_VALUES} values in this file; "
            "write the values out instead of aliasing aliases"
        )
        return None, [Problem(path, err.line, message)]
    finally:
        loader.dispose()
    return SourceFile(path, data, builder.lines, builder.texts), builder.problems


_TOO_DEEP = (
    f"the YAML nests more than {MAX_DEPTH} levels deep here; check for unclosed [ or {{ "
    "and the indentation"
)


def _depth_bound(text: str) -> int:
    """More than the deepest nesting ``text`` can have: a block collection in another is
    indented further (a sequence as a mapping's value may stay at its key's column), and a flow
    collection opens with [ or { (a `key: value` in [ ] is a mapping of its own)."""
    longest = max((len(line) for line in text.splitlines()), default=0)
    return 2 * (longest + text.count("[")) + text.count("{") + 2


def _too_deep(text: str, always: bool = False) -> int:
    """The line where ``text`` nests deeper than :data:`MAX_DEPTH`, or 0. Unless ``always``,
    only a text that could nest deeper than the composer can take is scanned (the scan parses
    the file once more); shallower ones are left to :class:`_Builder`, which refuses the same
    depth. Raises the parser's error on a text that is not YAML (when it is scanned)."""
    if not always and _depth_bound(text) <= _SAFE_DEPTH:
        return 0
    depth = 0
    starts = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
    ends = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, starts):
            depth += 1
            if depth > MAX_DEPTH:
                return event.start_mark.line + 1 if event.start_mark is not None else 1
        elif isinstance(event, ends):
            depth -= 1
    return 0


def _reader_problem(path: Path, text: str, err: yaml.reader.ReaderError) -> Problem:
    """A character YAML does not allow (a control character, say), on its line."""
    found = text.find(chr(err.character)) if isinstance(err.character, int) else -1
    line = _line_at(text, found) if found >= 0 else 0
    shown = f"#x{err.character:04x}" if isinstance(err.character, int) else repr(err.character)
    return Problem(
        path, line, f"character {shown} is not allowed in YAML ({err.reason}); remove it"
    )


_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # YAML 1.1's line breaks


def _line_at(text: str, index: int) -> int:
    """The line of ``text[index]`` as YAML counts lines; the last line for the text's end."""
    line = len(_LINE_BREAK.findall(text, 0, index)) + 1
    return min(line, len(_LINE_BREAK.findall(text.rstrip("\r\n\x85\u2028\u2029"))) + 1)


class _AliasesExpandTooFar(Exception):
    """Raised by :class:`_Builder` when aliases repeat more than MAX_ALIAS_VALUES values."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _Builder:
    """Builds plain data from composed YAML nodes, recording lines and refusing what
    ``safe_load`` would silently accept or what is not plain YAML."""

    def __init__(self, path: Path, loader: Any) -> None:
        self.path = path
        self.loader = loader
        self.lines: dict[Loc, int] = {}
        self.texts: dict[Loc, str] = {}
        self.problems: list[Problem] = []
        self._open: set[int] = set()  # nodes being built, to catch recursive aliases
        self._built: set[int] = set()  # nodes built once: building one again repeats an alias
        self._repeated = 0
        self._alias_at: Loc | None = None  # where the alias being expanded is used

    def _fail(self, node: yaml.Node, message: str) -> None:
        self.problems.append(Problem(self.path, node.start_mark.line + 1, message))

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if id(node) in self._open:
            self._fail(node, "recursive YAML alias; write the value out instead")
            return None
        if len(loc) > MAX_DEPTH:
            self._fail(node, _TOO_DEEP)
            return None
        repeat = id(node) in self._built
        if repeat:
            self._repeated += 1
            if self._repeated > MAX_ALIAS_VALUES:
                raise _AliasesExpandTooFar(self._line_of_alias())
            if self._alias_at is None:
                self._alias_at = loc
        self._built.add(id(node))
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc)
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, loc)
            return self._scalar(node, loc)
        finally:
            self._open.discard(id(node))
            if self._alias_at == loc:
                self._alias_at = None

    def _line_of_alias(self) -> int:
        """The line of the alias being expanded: its key's, or its list's (the node's own
        marks are its anchor's)."""
        loc = self._alias_at or ()
        if loc and isinstance(loc[-1], int):
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any] | None:
        if node.tag != _MAP_TAG:
            self._fail(node, f"unsupported YAML tag {node.tag!r}; remove it")
            return None
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._fail(key_node, "a mapping key must be plain text; write a name")
                continue
            key = str(key_node.value)  # keys are names: `no:` or `1:` stay text
            child = (*loc, key)
            if key in result:
                first = self.lines[child]
                self._fail(key_node, f"duplicate key '{key}' (first at line {first}); keep one")
                continue
            self.lines[child] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, child)
        return result

    def _sequence(self, node: yaml.SequenceNode, loc: Loc) -> list[Any] | None:
        if node.tag != _SEQ_TAG:
            self._fail(node, f"unsupported YAML tag {node.tag!r}; remove it")
            return None
        return [self.build(item, (*loc, index)) for index, item in enumerate(node.value)]

    def _scalar(self, node: yaml.Node, loc: Loc) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self._fail(node, f"unsupported YAML tag {node.tag!r}; remove it")
            return None
        self.texts[loc] = str(node.value)
        try:
            return self.loader.construct_object(node)
        except (ValueError, LookupError, AttributeError):
            # A scalar that looks like a timestamp but is no real date (2027-02-30) or an
            # explicitly tagged one that is not of its tag (`!!bool maybe`, `!!int ''`,
            # `!!timestamp soon`, on which PyYAML's constructors fail with ValueError, KeyError,
            # IndexError or AttributeError): keep its text, for the reader's checks to refuse
            # with their own hint (``safe_load`` would crash here).
            self.loader.recursive_objects.pop(node, None)
            return str(node.value)


def load_validator(path: Path) -> tuple[Draft202012Validator | None, list[Problem]]:
    """The JSON Schema validator in ``path`` (a catalog/schema/*.schema.json file)."""
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, [Problem(path, 0, "schema file is missing; restore catalog/schema/")]
    except json.JSONDecodeError as err:
        return None, [Problem(path, err.lineno, f"invalid JSON: {err.msg}")]
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema), []


@dataclass(frozen=True)
class SchemaCheck:
    """The schema problems of a file, and where they are."""

    problems: list[Problem]
    error_locs: frozenset[Loc]

    def valid(self, loc: Loc = ()) -> bool:
        """Whether nothing at or under ``loc`` breaks the schema."""
        return not any(error[: len(loc)] == loc for error in self.error_locs)


def check_schema(source: SourceFile, validator: Draft202012Validator) -> SchemaCheck:
    """Every schema error in ``source``, located and explained, in line order."""
    problems: dict[Problem, None] = {}  # ordered and without repeats
    locs = set()
    for error in validator.iter_errors(source.data):
        locs.add(_error_loc(error))
        problems.update(dict.fromkeys(_explain(source, error)))
    return SchemaCheck(sorted(problems, key=lambda p: p.line), frozenset(locs))


def _error_loc(error: ValidationError) -> Loc:
    loc: Loc = tuple(error.absolute_path)
    if "propertyNames" in error.absolute_schema_path:  # the error is about a key, not a value
        loc = (*loc, str(error.instance))
    return loc


_TYPE_WORDS = {
    "object": ("a mapping", "write field: value lines"),
    "array": ("a list", "write a YAML list, e.g. [a, b]"),
    "string": ("text", "quote it"),
    "integer": ("a whole number", "write a number without quotes"),
    "boolean": ("true or false", "write true or false without quotes"),
}


def _explain(source: SourceFile, error: ValidationError) -> Iterator[Problem]:
    loc = _error_loc(error)
    schema = error.schema if isinstance(error.schema, dict) else {}
    hint = schema.get("description")
    kind, expected, instance = error.validator, error.validator_value, error.instance

    if kind == "additionalProperties" and expected is False:
        allowed = list(schema.get("properties", {}))
        for key in instance:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                fix = f"did you mean '{close[0]}'?" if close else "remove it"
                if instance[key] is None and " " in key:  # `{en: a, b}` reads b as a field
                    fix = "if it is part of the text before it, quote that text (a comma in {} "
                    fix += "separates fields)"
                yield source.problem(
                    (*loc, key), f"unknown field '{key}' (allowed: {', '.join(allowed)}); {fix}"
                )
        return
    if kind == "required":
        missing = [name for name in expected if name not in instance]
        names = ", ".join(f"'{name}'" for name in missing)
        noun = "field" if len(missing) == 1 else "fields"
        pronoun = "it" if len(missing) == 1 else "them"
        yield source.problem(loc, f"missing required {noun} {names}; add {pronoun}")
        return
    if kind == "type":
        word, default_hint = _TYPE_WORDS.get(str(expected), (str(expected), f"write {expected}"))
        if expected == "string" and loc in source.texts:
            default_hint = f'quote it: "{source.texts[loc]}"'
        message = f"expected {word}, got {describe(instance)}; {hint or default_hint}"
    elif kind == "pattern":
        message = f"{instance!r} does not match {expected}" + (f"; {hint}" if hint else "")
    elif kind == "enum":
        message = f"{instance!r} is not allowed; use one of: {', '.join(map(str, expected))}"
    elif kind in ("minItems", "minLength", "minProperties"):
        message = "must not be empty" + (f"; {hint}" if hint else "; add a value")
    elif kind == "uniqueItems":
        repeated = next(x for i, x in enumerate(instance) if x in instance[:i])
        message = f"lists {repeated!r} more than once; keep one"
    else:
        message = error.message + (f"; {hint}" if hint else "")
    yield source.problem(loc, message)
