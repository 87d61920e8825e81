"""Bad input to kijun's parsers, property-based (hypothesis).

The files an organisation writes (the catalog's areas and profiles, an inventory's
exceptions.yml, zones.yml and kijun.yml, its hosts.yml) are fed malformed YAML, wrong types,
unknown ids, bad dates, exceptions without an approver or outside their period, and zone
declarations that contradict each other. Every parser either accepts a document or refuses it
with its own error type, each problem as ``file:line: field: what to change``; a refused file
waives nothing (exceptions) and applies nothing (the zone_firewall variables), and the CLI exits
2 before any host is contacted.

Runs are reproducible (``derandomize=True``); the figures of each property are its
``max_examples``.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kijun import zones
from kijun.catalog import Catalog, CatalogError, load_catalog, load_profile
from kijun.catalog_source import MAX_ALIAS_VALUES, MAX_DEPTH, Loc, Problem, location, read_yaml
from kijun.exceptions import ExceptionsError, Register, load_register
from kijun.results import Status

from ..conftest import run_kijun
from ..test_catalog import PASSWORD, PROFILE, make_catalog
from ..test_exceptions import FIELDS, INVENTORY, result


def cases(count: int) -> settings:
    """``count`` examples, the same ones on every run."""
    return settings(
        max_examples=count,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- what a refusal must look like ------------------------------------------------------------


LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")  # how YAML 1.1 counts lines


def assert_located(problems: list[Problem], files: dict[Path, str]) -> None:
    """Every problem names one of ``files`` (path -> its text) and a line in it (1 to one past
    its last line: a YAML error at the end of the text), and says what is wrong."""
    assert problems, "refused without a problem"
    for problem in problems:
        assert problem.file in files, f"{problem} names a file that was not read"
        last = len(LINE_BREAK.findall(files[problem.file])) + 1
        assert 1 <= problem.line <= last, f"{problem}: line outside 1..{last}"
        assert problem.message.strip(), problem
        shown = str(problem)
        assert shown.startswith(f"{location(problem.file, problem.line)}: "), shown
        assert len(LINE_BREAK.split(shown)) == 1, f"{shown!r} is not one line"


def assert_lines_located(message: str, path: Path) -> None:
    """Each line of an error's text is ``path:LINE: ...``."""
    for line in message.splitlines():
        assert re.match(rf"{re.escape(location(path))}:[1-9][0-9]*: \S", line), line


@functools.lru_cache(maxsize=4)
def _composed(text: str) -> yaml.Node:
    return yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def node_line(text: str, loc: Loc) -> int:
    """The line of ``loc`` in the YAML ``text`` as PyYAML composes it: a mapping value's key, a
    list item's first line."""
    node = _composed(text)
    line = node.start_mark.line + 1
    for step in loc:
        if isinstance(node, yaml.MappingNode):
            key, node = next((k, v) for k, v in node.value if k.value == step)
            line = key.start_mark.line + 1
        else:
            node = node.value[step]
            line = node.start_mark.line + 1
    return line


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=1000)


# --- malformed YAML text ----------------------------------------------------------------------

# Pieces of YAML syntax, tags PyYAML's constructors fail on, aliases, characters YAML forbids.
YAML_BITS = st.sampled_from(
    [
        ": ", "- ", "-", "[", "]", "{", "}", ",", "#", "? ", "|", ">", "'", '"', "\\", "\t",
        "\n", "\n  ", "\n    ", "---\n", "...\n", "%YAML 1.1\n", "&a ", "*a", "<<: *a",
        "!!bool maybe", "!!int ''", "!!float ''", "!!timestamp soon", "!!int 1:x", "!!binary x",
        "!!python/object/apply:os.system [true]", "!!set {a}", "!custom x", "~", ".nan", "yes",
        "0x1F", "2027-02-30", "2027-03-31 10:00:00", "\x00", "\x07", "\ufeff", "\u3000",
        "\u200b", "日本語", "１２",
    ]
)  # fmt: skip
ARBITRARY_TEXT = st.lists(st.one_of(YAML_BITS, st.text(max_size=6)), max_size=30).map("".join)


@st.composite
def mangled(draw: st.DrawFn, base: str) -> str:
    """``base`` with one to three spans replaced by YAML syntax or arbitrary text."""
    text = base
    for _ in range(draw(st.integers(1, 3))):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 12)))
        text = (
            text[:start] + draw(st.one_of(st.just(""), YAML_BITS, st.text(max_size=4))) + text[end:]
        )
    return text


@pytest.fixture(scope="module")
def yaml_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("yaml") / "any.yml"


DEEP_FLOW = "a: " + "[" * 30_000 + "]" * 30_000 + "\n"  # crashed libyaml's composer (SIGSEGV)
DEEP_BLOCK = "a:\n" + "- " * (MAX_DEPTH + 5) + "x\n"
LAUGHS = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10)
)  # a billion values from ten lines


@cases(400)
@given(text=st.one_of(ARBITRARY_TEXT, mangled(PASSWORD), mangled(PROFILE)))
@example(text="a: !!bool maybe\n")  # was KeyError
@example(text="a: !!int ''\n")  # was IndexError
@example(text="a: !!float ''\n")  # was IndexError
@example(text="a: !!timestamp soon\n")  # was AttributeError
@example(text="b: 1\na: \x00\n")  # was a problem without a line
@example(text=DEEP_FLOW)  # was a segmentation fault
@example(text=DEEP_BLOCK)  # was RecursionError
@example(text=LAUGHS)  # was minutes and gigabytes
def test_read_yaml_parses_or_locates(yaml_path: Path, text: str) -> None:
    """The YAML reader under the catalog, exceptions and zone parsers never raises, and takes
    no time: it returns the data, or problems on lines of the file."""
    yaml_path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    source, problems = read_yaml(yaml_path)
    assert time.monotonic() - started < 10
    if source is None or problems:
        assert_located(problems, {yaml_path: text})


def test_read_yaml_refusals_name_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "any.yml"
    expected = {
        DEEP_FLOW: (1, f"nests more than {MAX_DEPTH} levels deep"),
        DEEP_BLOCK: (2, f"nests more than {MAX_DEPTH} levels deep"),
        LAUGHS: (4, f"repeat more than {MAX_ALIAS_VALUES} values"),
        "b: 1\na: \x00\n": (2, "character #x0000 is not allowed"),
        "a: [x]\nb: !!python/name:os.system\n": (2, "unsupported YAML tag"),
    }
    for text, (line, words) in expected.items():
        path.write_text(text, encoding="utf-8")
        source, problems = read_yaml(path)
        assert [(p.line, words in p.message) for p in problems] == [(line, True)], problems
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    source, problems = read_yaml(path)
    assert source is None and [(p.line, "not UTF-8 text" in p.message) for p in problems] == [
        (2, True)
    ]
    # Aliases that repeat a few values are plain YAML, and read as such.
    path.write_text("hosts: &relays [lg-mail01, in-mail01]\nagain: *relays\n", encoding="utf-8")
    source, problems = read_yaml(path)
    assert source is not None and problems == []
    assert source.data == {"hosts": ["lg-mail01", "in-mail01"], "again": ["lg-mail01", "in-mail01"]}
    # A tagged value that is not of its tag is kept as text, for the parsers to refuse.
    path.write_text("a: !!bool maybe\n", encoding="utf-8")
    source, problems = read_yaml(path)
    assert source is not None and source.data == {"a": "maybe"} and problems == []


# --- one field of a sound document changed ----------------------------------------------------


def locations(doc: Any, prefix: Loc = ()) -> Iterator[Loc]:
    """Every location of a value below ``doc``."""
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    )
    for key, value in items:
        yield (*prefix, key)
        yield from locations(value, (*prefix, key))


def get(doc: Any, loc: Loc) -> Any:
    for step in loc:
        doc = doc[step]
    return doc


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, date):
        return "date"
    return type(value).__name__


_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "str": st.text(max_size=8),
    "int": st.integers(-(10**6), 10**6),
    "bool": st.booleans(),
    "NoneType": st.none(),
    "float": st.floats(-1e6, 1e6).filter(lambda f: not f.is_integer()),
    "list": st.lists(st.integers(0, 9), max_size=3),
    "dict": st.dictionaries(st.sampled_from(["a", "ja", "x1"]), st.integers(0, 9), max_size=2),
    "date": st.dates(date(1990, 1, 1), date(2099, 12, 31)),
}


def other_type(fits: set[str]) -> st.SearchStrategy[Any]:
    """A value of none of the YAML types ``fits``."""
    return st.one_of(*(strategy for name, strategy in _VALUES.items() if name not in fits))


def same_kind(loc: Loc, value: Any) -> set[str]:
    """The types that may stand where ``value`` is: its own."""
    return {kind(value)}


class Mutation:
    """One change to a sound document: what was changed, where, and the name to look for."""

    def __init__(self, doc: Any, what: str, loc: Loc, name: str, refused: bool = True) -> None:
        self.doc, self.what, self.loc, self.name, self.refused = doc, what, loc, name, refused

    def __repr__(self) -> str:
        return f"Mutation({self.what} at {self.loc!r}: {get_or(self.doc, self.loc)!r})"


def get_or(doc: Any, loc: Loc) -> Any:
    try:
        return get(doc, loc)
    except (KeyError, IndexError, TypeError):
        return "(removed)"


@st.composite
def mutations(
    draw: st.DrawFn,
    base: Any,
    optional: frozenset[str],
    bad_values: dict[str, st.SearchStrategy[Any]],
    fits: Callable[[Loc, Any], set[str]] = same_kind,
) -> Mutation:
    """``base`` with one field retyped, removed or misspelt, or given a bad value of its type:
    an id that names nothing, a date in another format, a blank approver.

    ``optional``: field names a document may leave out (removing one need not be refused);
    ``bad_values``: for a field name, values the parser must refuse (other than the value
    there); ``fits``: the types a value may have where it is."""
    doc = copy.deepcopy(base)
    where = sorted(locations(doc), key=repr)
    what = draw(st.sampled_from(["retype", "remove", "unknown field", "bad value"]))
    if what == "bad value":
        named = [
            loc
            for loc in where
            if _name_of(loc) in bad_values and not isinstance(get(doc, loc), dict | list)
        ]
        loc = draw(st.sampled_from(named))
        value = draw(bad_values[_name_of(loc)].filter(lambda new: new != get(doc, loc)))
        _set(doc, loc, value)
        return Mutation(doc, what, loc, _name_of(loc))
    if what == "remove":
        fields = [loc for loc in where if isinstance(loc[-1], str)]
        loc = draw(st.sampled_from(fields))
        del get(doc, loc[:-1])[loc[-1]]
        return Mutation(doc, what, loc, str(loc[-1]), refused=loc[-1] not in optional)
    if what == "unknown field":
        mappings = [()] + [loc for loc in where if isinstance(get(doc, loc), dict)]
        loc = draw(st.sampled_from(mappings))
        get(doc, loc)["colour"] = "red"
        return Mutation(doc, what, (*loc, "colour"), "colour")
    loc = draw(st.sampled_from(where))
    _set(doc, loc, draw(other_type(fits(loc, get(doc, loc)))))
    return Mutation(doc, what, loc, _name_of(loc))


def _name_of(loc: Loc) -> str:
    """The name of the field at ``loc`` (of its list, for a list item)."""
    return next((str(step) for step in reversed(loc) if isinstance(step, str)), "")


def _set(doc: Any, loc: Loc, value: Any) -> None:
    get(doc, loc[:-1])[loc[-1]] = value


def assert_names_the_field(
    problems: list[Problem], path: Path, text: str, change: Mutation
) -> None:
    """Some problem in ``path`` is on the line of the changed field, of the entry holding it
    (a removed field is missing from its entry) or of a field beside it, or names one of those
    lines (a duplicate id is reported at its second place, naming the first), and names the
    field or its entry."""
    loc = change.loc if change.what != "remove" else change.loc[:-1]
    lines = {node_line(text, loc[:depth]) for depth in range(1, len(loc) + 1)}
    if len(loc) <= 1:
        lines.add(1)  # a top-level field, or missing from the document
    if change.what != "remove" and len(loc) > 1 and isinstance(get(change.doc, loc[:-1]), dict):
        lines |= {node_line(text, (*loc[:-1], key)) for key in get(change.doc, loc[:-1])}
    names = {str(step) for step in change.loc if isinstance(step, str)}
    top = get(change.doc, change.loc[:2]) if len(change.loc) > 2 else None
    if isinstance(top, dict):  # an entry of a list is named by its id or name
        names |= {str(top[key]) for key in ("id", "name", "key") if isinstance(top.get(key), str)}
    for problem in problems:
        here = problem.line in lines or any(
            re.search(rf":{n}\b|line {n}\b", problem.message) for n in lines
        )
        if problem.file == path and here and any(name in problem.message for name in names):
            return
    shown = "\n".join(map(str, problems))
    raise AssertionError(f"no problem on lines {sorted(lines)} naming {sorted(names)}:\n{shown}")


def check_outcome(outcome: object, path: Path, text: str, change: Mutation) -> None:
    """A change that must be refused was, naming the field on its line (its problems are
    located in any case: the loaders check that)."""
    problems = getattr(outcome, "problems", None)
    if problems is None:
        assert not change.refused, f"{change} was accepted"
    elif change.refused:
        assert_names_the_field(problems, path, text, change)


# --- the catalog: area files and profiles -----------------------------------------------------


class Quiet:
    """A catalog that hypothesis shows as its root, not as everything in it."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def __repr__(self) -> str:
        return f"Catalog({self.catalog.root})"


@pytest.fixture(scope="module")
def catalog_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog whose area file password.yml the tests rewrite."""
    return make_catalog(tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory: pytest.TempPathFactory) -> Quiet:
    """A sound catalog whose profile kou.yml the tests rewrite."""
    return Quiet(load_catalog(make_catalog(tmp_path_factory.mktemp("profiles"))))


def catalog_texts(root: Path) -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in root.rglob("*.yml")}


def write_area(root: Path, text: str) -> Path:
    path = root / "controls" / "password.yml"
    path.write_text(text, encoding="utf-8")
    return path


def load_area(root: Path, text: str) -> tuple[Path, Catalog | CatalogError]:
    path = write_area(root, text)
    try:
        return path, load_catalog(root)
    except CatalogError as err:
        assert_located(err.problems, catalog_texts(root))
        if all(p.file == path for p in err.problems):
            assert_lines_located(str(err), path)
        return path, err


@cases(150)
@given(text=mangled(PASSWORD))
@example(text=PASSWORD.replace("default: 12", "default: !!int ''"))
@example(text=PASSWORD.replace("type: int", "type: !!bool maybe"))
def test_area_file_text(catalog_root: Path, text: str) -> None:
    load_area(catalog_root, text)


AREA_OPTIONAL = frozenset({"note", "minimum", "maximum", "elements", "choices", "functions"})
AREA_UNKNOWN = {
    "seed": st.sampled_from(["S9", "S0", "S10"]),
    "id": st.sampled_from(["PW-01", "PW-02", "TM-01", "XX-01"]),  # a twin, another prefix
    "zones": st.sampled_from(["dmz", "LGWAN", "zone_lgwan"]),
    "type": st.sampled_from(["integer", "string", "float"]),
}


@cases(250)
@given(change=mutations(yaml.safe_load(PASSWORD), AREA_OPTIONAL, AREA_UNKNOWN))
def test_area_file_field(catalog_root: Path, change: Mutation) -> None:
    text = dump(change.doc)
    path, outcome = load_area(catalog_root, text)
    check_outcome(outcome, path, text, change)


def load_kou(catalog: Quiet, text: str) -> CatalogError | None:
    path = catalog.catalog.root / "profiles" / "kou.yml"
    path.write_text(text, encoding="utf-8")
    try:
        profile = load_profile("kou", catalog.catalog)
    except CatalogError as err:
        assert_located(err.problems, {path: text})
        assert_lines_located(str(err), path)
        return err
    assert profile.file == path
    return None


@cases(150)
@given(text=mangled(PROFILE))
@example(text=PROFILE.replace("applicable: false", "applicable: !!bool maybe"))
def test_profile_text(small_catalog: Quiet, text: str) -> None:
    load_kou(small_catalog, text)


PROFILE_UNKNOWN = {
    "based_on": st.sampled_from(["S9", "S2"]),
    "clauses": st.just(""),
}


@st.composite
def profile_changes(draw: st.DrawFn) -> Mutation:
    """A field of the profile changed, or an id it uses renamed to one the catalog lacks."""
    base = yaml.safe_load(PROFILE)
    if draw(st.booleans()):
        # Tailoring is optional: any control, parameter or zone may be left untailored.
        optional = {"parameters", "zone_parameters", "applicable", "reason", "PW-01", "TM-01"}
        optional |= {"password_policy_minlen", "mynumber"}
        return draw(mutations(base, frozenset(optional), PROFILE_UNKNOWN))
    doc = copy.deepcopy(base)
    pw01: Loc = ("controls", "PW-01")
    renames = [
        (("controls",), "PW-01", ["PW-09", "ZZ-01", "TM-02"]),
        ((*pw01, "parameters"), "password_policy_minlen", ["minlen", "time_sync_servers"]),
        ((*pw01, "zone_parameters"), "mynumber", ["dmz", "lgwan2"]),
    ]
    parent, old, new = draw(st.sampled_from(renames))
    name = draw(st.sampled_from(new))
    mapping = get(doc, parent)
    mapping[name] = mapping.pop(old)
    return Mutation(doc, "bad value", (*parent, name), name)


@cases(200)
@given(change=profile_changes())
def test_profile_field(small_catalog: Quiet, change: Mutation) -> None:
    text = dump(change.doc)
    err = load_kou(small_catalog, text)
    check_outcome(err, small_catalog.catalog.root / "profiles" / "kou.yml", text, change)


# --- the deviation register (exceptions.yml) -------------------------------------------------

TODAY = date(2026, 10, 1)
ENTRY: dict[str, Any] = {
    key: (yaml.safe_load(value) if key in ("hosts", "groups") else value)
    for key, value in FIELDS.items()
    if value is not None
}
REGISTER = {"exceptions": [ENTRY]}
DATE_FIELDS = ("valid_from", "valid_until", "approved_on")

# Dates as people write them that are not the register's YYYY-MM-DD.
BAD_DATES = st.one_of(
    st.sampled_from(
        [
            "2027/03/31",
            "31-03-2027",
            "2027-3-31",
            "2027-02-30",
            "2027-13-01",
            "R9.3.31",
            "令和9年3月31日",
            "2027年3月31日",
            "2027-03-31T00:00:00",
            "2027-W13",
            "20270331",
            "2027-03-31 10:00:00",
            "０２０２７-03-31",
            "2027-03-31\n",
            "",
            "  ",
            "soon",
        ]
    ),  # fmt: skip
    st.dates().map(lambda d: d.strftime("%d/%m/%Y")),
    st.dates().map(lambda d: d.strftime("%Y%m%d")),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z").filter(lambda text: not _is_date(text)),
)


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


# Approvers that are no one: absent, blank, or characters that show nothing.
NO_APPROVER = st.one_of(
    st.sampled_from(
        ["", " ", "\u3000", "\t", "\u200b", "\u200b\u200b", " \u2060 ", "\ufeff", "\u00ad"]
    ),
    st.text(alphabet=st.characters(categories=["Zs", "Cf", "Cc"]), min_size=1, max_size=4),
)

EXCEPTIONS_UNKNOWN = {
    "control": st.sampled_from(["PW-99", "PW-1", "pw-01", "ZZ-01", "ＰＷ－０１"]),
    "hosts": st.sampled_from(["lg-app1", "db-99", "LG-APP01"]),
    "valid_from": BAD_DATES,
    "valid_until": BAD_DATES,
    "approved_on": BAD_DATES,
    "approved_by": NO_APPROVER,
    "reason": NO_APPROVER,
    "compensating_measure": NO_APPROVER,
}


def load_exceptions(path: Path, text: str, catalog: Quiet) -> Register | ExceptionsError:
    path.write_text(text, encoding="utf-8")
    try:
        return load_register(path, catalog.catalog, INVENTORY)
    except ExceptionsError as err:
        assert_located(err.problems, {path: text})
        assert_lines_located(str(err), path)
        return err


@pytest.fixture(scope="module")
def real_catalog() -> Quiet:
    return Quiet(load_catalog())


@pytest.fixture(scope="module")
def register_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inventory") / "exceptions.yml"


@cases(200)
@given(text=st.one_of(ARBITRARY_TEXT, mangled(dump(REGISTER))))
@example(text="exceptions:\n- id: EX-1\n  valid_until: !!timestamp soon\n")
def test_register_text(real_catalog: Quiet, register_path: Path, text: str) -> None:
    outcome = load_exceptions(register_path, text, real_catalog)
    if isinstance(outcome, Register):  # what loads waives what it says, on its days only
        results, _ = outcome.apply([result(host) for host in sorted(INVENTORY)], TODAY)
        for got in results:
            valid = [
                e
                for e in outcome.exceptions
                if e.control == got.control
                and (got.host in e.hosts or set(e.groups) & (INVENTORY[got.host] | {"all"}))
                and e.valid_from <= TODAY <= e.valid_until
            ]
            assert (got.status is Status.WAIVED) == bool(valid), got
            assert got.waiver is None or got.waiver.approved_by.strip()


def dates_stay_text(loc: Loc, value: Any) -> set[str]:
    """A date written as a YAML date is as good as one written as text."""
    return {kind(value), "date"} if _name_of(loc) in DATE_FIELDS else {kind(value)}


@cases(300)
@given(
    change=mutations(REGISTER, frozenset({"groups"}), EXCEPTIONS_UNKNOWN, fits=dates_stay_text),
    sound_too=st.booleans(),
)
@example(
    change=Mutation(
        {"exceptions": [{**ENTRY, "approved_by": "\u200b"}]},
        "bad value",
        ("exceptions", 0, "approved_by"),
        "approved_by",
    ),  # fmt: skip
    sound_too=False,
)  # was accepted: an approver of a zero-width space
def test_register_field(
    real_catalog: Quiet, register_path: Path, change: Mutation, sound_too: bool
) -> None:
    """A changed field is refused with its line and name, and the whole register with it: a
    sound entry beside it waives nothing either."""
    doc = change.doc
    if sound_too and isinstance(doc.get("exceptions"), list):
        # A sound entry for the same failure, after the changed one.
        doc = {**doc, "exceptions": [*doc["exceptions"], {**ENTRY, "id": "EX-2026-999"}]}
    text = dump(doc)
    check_outcome(load_exceptions(register_path, text, real_catalog), register_path, text, change)


PERIOD_DATES = st.dates(date(2026, 1, 1), date(2027, 12, 31))


@cases(300)
@given(
    valid_from=PERIOD_DATES,
    length=st.integers(-30, 400),
    approved_before=st.integers(-10, 60),
    today=PERIOD_DATES,
    as_text=st.booleans(),
)
@example(
    valid_from=date(2026, 4, 1),
    length=364,
    approved_before=7,
    today=date(2027, 4, 1),
    as_text=False,
)
@example(
    valid_from=date(2026, 4, 1),
    length=364,
    approved_before=7,
    today=date(2026, 3, 31),
    as_text=True,
)
def test_only_an_exception_valid_today_waives(
    real_catalog: Quiet,
    register_path: Path,
    valid_from: date,
    length: int,
    approved_before: int,
    today: date,
    as_text: bool,
) -> None:
    """Expired and future-dated exceptions load but waive nothing; an exception whose period
    runs backwards or that was approved after its first day is refused."""
    valid_until = valid_from + timedelta(days=length)
    approved_on = valid_from - timedelta(days=approved_before)
    dates = {"valid_from": valid_from, "valid_until": valid_until, "approved_on": approved_on}
    fields = {**ENTRY, **{k: v.isoformat() if as_text else v for k, v in dates.items()}}
    text = dump({"exceptions": [fields]})
    outcome = load_exceptions(register_path, text, real_catalog)
    if length < 0 or approved_before < 0:
        assert isinstance(outcome, ExceptionsError)
        field = "valid_until" if length < 0 else "approved_on"
        assert any(
            p.line == node_line(text, ("exceptions", 0, field)) and f"{field}:" in p.message
            for p in outcome.problems
        ), outcome.problems
        return
    assert isinstance(outcome, Register)
    failing = result("lg-app01")
    (got,), unused = outcome.apply([failing], today)
    if valid_from <= today <= valid_until:
        assert got.status is Status.WAIVED and got.waiver is not None
        assert got.waiver.approved_by == ENTRY["approved_by"]
    else:
        assert got.status is Status.FAIL and got.waiver is None
        word = "expired on" if today > valid_until else "is not yet valid"
        assert word in got.message
    assert unused == []


# --- the zone policy (zones.yml) --------------------------------------------------------------

NETWORKS = {
    "mynumber": "198.18.10.0/24",
    "lgwan": "198.18.20.0/24",
    "internet": "198.18.30.0/24",
    "management": "198.18.0.0/24",
}


def _zone_host(
    groups: set[str], zone: str | None, management: str
) -> tuple[set[str], dict[str, Any]]:
    """A host's groups and its addresses: in its zone and on the management network."""
    hostvars = {"ansible_host": management}
    if zone is not None:
        hostvars["kijun_zone_address"] = zone
    return groups, hostvars


# One host per zone, a relay on each side of the sanitising gateway, and the gateway.
ZONE_HOSTS: dict[str, tuple[set[str], dict[str, Any]]] = {
    "gw": _zone_host({"gateways"}, None, "198.18.0.10"),
    "mn1": _zone_host({"zone_mynumber"}, "198.18.10.11", "198.18.0.11"),
    "lg1": _zone_host({"zone_lgwan"}, "198.18.20.21", "198.18.0.21"),
    "lgmail": _zone_host({"zone_lgwan", "mail_relays"}, "198.18.20.22", "198.18.0.22"),
    "in1": _zone_host({"zone_internet"}, "198.18.30.31", "198.18.0.31"),
    "inmail": _zone_host({"zone_internet", "mail_relays"}, "198.18.30.32", "198.18.0.32"),
}
POLICY: dict[str, Any] = {
    "zones": {zone: {"networks": [NETWORKS[zone]]} for zone in ("mynumber", "lgwan", "internet")},
    "management": {"networks": [NETWORKS["management"]], "admin_hosts": ["198.18.0.1"]},
    "sanitising_hosts": ["lgmail"],
    "public_servers": ["in1"],
    "services": [
        {"name": "smtp", "on": ["mail_relays"], "proto": "tcp", "port": 25},
        {"name": "ntp", "on": ["lg1"], "proto": "udp", "port": 123},
    ],
    "flows": [
        {"name": "mail-out", "from": "lgmail", "to": "inmail", "proto": "tcp", "port": 25,
         "purpose": "メール送信", "clause": "5(2)ア"},
        {"name": "ntp-mn", "from": "mynumber", "to": "lg1", "proto": "udp", "port": 123,
         "purpose": {"ja": "時刻同期", "en": "time"}, "clause": "5(1)"},
    ],
}  # fmt: skip


def zone_hosts(
    changes: dict[str, tuple[set[str], dict[str, Any]]] | None = None,
) -> dict[str, zones.InventoryHost]:
    merged = {**ZONE_HOSTS, **(changes or {})}
    return {n: zones.InventoryHost.of(n, {"all", *g}, v) for n, (g, v) in merged.items()}


def load_policy(
    path: Path, text: str, hosts: dict[str, zones.InventoryHost] | None = None
) -> zones.ZonePolicy | zones.ZonePolicyError:
    path.write_text(text, encoding="utf-8")
    try:
        return zones.load(path, hosts if hosts is not None else zone_hosts())
    except zones.ZonePolicyError as err:
        assert_located(err.problems, {path: text})
        assert_lines_located(str(err), path)
        return err


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zones") / "zones.yml"


def test_the_sound_policy_loads(policy_path: Path) -> None:
    policy = load_policy(policy_path, dump(POLICY))
    assert isinstance(policy, zones.ZonePolicy)
    assert [f.name for f in policy.flows] == ["mail-out", "ntp-mn"]


@cases(200)
@given(text=st.one_of(ARBITRARY_TEXT, mangled(dump(POLICY))))
@example(text="zones: {lgwan: {networks: [198.18.20.0/24]}}\nmanagement: !!bool maybe\nflows: []\n")
@example(text="# only a comment\n")
def test_policy_text(policy_path: Path, text: str) -> None:
    load_policy(policy_path, text)


ZONES_OPTIONAL = frozenset(
    {"sanitising_hosts", "public_servers", "external_interface", "services", "title", "over", "en"}
)
ZONES_UNKNOWN = {
    "from": st.sampled_from(["lg2", "inmial", "dmz", "zone_dmz", "198.18.20.21", "any"]),
    "to": st.sampled_from(["lg2", "inmial", "dmz", "198.18.30.32", "any", "admin_hosts"]),
    "on": st.sampled_from(["ntp_server", "lg9"]),
    "sanitising_hosts": st.sampled_from(["lg9", "mn1", "gw"]),
    "public_servers": st.sampled_from(["in9", "lg1"]),
    "admin_hosts": st.sampled_from(["198.18.20.5", "any", "198.18.0.0/24", "198.18.0.300"]),
    "networks": st.sampled_from(["all", "*", "198.18.0.7/24", "198.18.0.0/33", "lgwan"]),
    "proto": st.sampled_from(["any", "icmp", "TCP/UDP"]),
    "port": st.sampled_from([0, 65536, "any", "25-26"]),
}


def texts_or_mappings(loc: Loc, value: Any) -> set[str]:
    """A flow's purpose is a sentence or {ja: ..., en: ...}."""
    return {"str", "dict"} if loc[-1] == "purpose" else {kind(value)}


@cases(250)
@given(change=mutations(POLICY, ZONES_OPTIONAL, ZONES_UNKNOWN, fits=texts_or_mappings))
def test_policy_field(policy_path: Path, change: Mutation) -> None:
    text = dump(change.doc)
    check_outcome(load_policy(policy_path, text), policy_path, text, change)


@st.composite
def contradictions(draw: st.DrawFn) -> tuple[Any, dict[str, Any], str, list[Loc]]:
    """A sound policy and inventory made to contradict each other: the policy, the inventory's
    changed hosts, words of the problem and the places in the file one of its lines must be."""
    doc = copy.deepcopy(POLICY)
    case = draw(st.sampled_from(["overlap", "two zones", "mynumber-internet", "outside"]))
    if case == "overlap":  # a network of one zone (or of management) overlapping another's
        first, second = draw(st.permutations(["mynumber", "lgwan", "internet", "management"]))[:2]
        wider = draw(st.integers(15, 24))  # holding the other network, or inside it
        prefix = draw(st.sampled_from([wider, 24, 25, 28]))
        address = NETWORKS[second].split("/")[0]
        network = str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
        owners = {"management": ("management", "networks")}
        at, other = (owners.get(o, ("zones", o, "networks")) for o in (first, second))
        get(doc, at).append(network)
        return doc, {}, "overlaps", [(*at, 1), (*other, 0)]
    if case == "two zones":  # a host in the groups of two zones
        host = draw(st.sampled_from(["mn1", "lg1", "lgmail", "in1", "inmail"]))
        groups, hostvars = ZONE_HOSTS[host]
        zones_ = [z for z in ("mynumber", "lgwan", "internet") if f"zone_{z}" not in groups]
        other = draw(st.sampled_from(zones_))
        changed = {host: ({*groups, f"zone_{other}"}, hostvars)}
        return doc, changed, f"host {host} is in the groups of several zones", [("zones",)]
    if case == "mynumber-internet":  # a flow between the individual-number and internet zones
        mine = draw(st.sampled_from(["mn1", "mynumber", "zone_mynumber"]))
        theirs = draw(st.sampled_from(["in1", "inmail", "internet"]))
        ends = (mine, theirs) if draw(st.booleans()) else (theirs, mine)
        proto, port = draw(st.sampled_from([("tcp", 25), ("udp", 123), ("tcp", 443)]))
        doc["flows"].append(
            {"name": "forbidden", "from": ends[0], "to": ends[1], "proto": proto, "port": port,
             "purpose": "x", "clause": "x"}
        )  # fmt: skip
        zone_to_zone = all(end.removeprefix("zone_") in NETWORKS for end in ends)
        words = "must name its destination host" if zone_to_zone else "never communicate (FW-09"
        return doc, {}, words, [("flows", 2), ("flows", 2, "to")]
    host = draw(st.sampled_from(["mn1", "lg1", "in1"]))  # a host's address outside its zone
    groups, hostvars = ZONE_HOSTS[host]
    elsewhere = draw(st.sampled_from(["198.18.40.1", "198.18.0.50", "198.19.255.254"]))
    zone = next(g.removeprefix("zone_") for g in groups if g.startswith("zone_"))
    changed = {host: (groups, {**hostvars, "kijun_zone_address": elsewhere})}
    return doc, changed, f"{elsewhere} is outside zone {zone}", [("zones", zone, "networks")]


@cases(200)
@given(case=contradictions())
def test_contradictory_zone_declarations_are_refused(
    policy_path: Path, case: tuple[Any, dict[str, Any], str, list[Loc]]
) -> None:
    """Overlapping networks, a host in two zones, a flow between the individual-number and
    internet zones, an address outside its zone: refused, on the line where it is declared."""
    doc, changes, words, places = case
    text = dump(doc)
    outcome = load_policy(policy_path, text, zone_hosts(changes))
    assert isinstance(outcome, zones.ZonePolicyError), "a contradictory policy was accepted"
    lines = {node_line(text, loc) for loc in places}
    assert any(p.line in lines and words in p.message for p in outcome.problems), (
        lines,
        outcome.problems,
    )


# --- nothing is applied: the zone_firewall variables ------------------------------------------


def plugin_hosts(changes: dict[str, tuple[set[str], dict[str, Any]]]) -> dict[str, Any]:
    """The zone hosts as Ansible's inventory holds them (Host and Group objects)."""
    from ansible.inventory.group import Group
    from ansible.inventory.host import Host

    everyone, groups, hosts = Group("all"), {}, {}
    for name, (member_of, hostvars) in {**ZONE_HOSTS, **changes}.items():
        host = Host(name)
        for key, value in hostvars.items():
            host.set_variable(key, value)
        everyone.add_host(host)
        for group in sorted(member_of):
            groups.setdefault(group, Group(group)).add_host(host)
        hosts[name] = host
    return hosts


@pytest.fixture(scope="module")
def plugin_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plugin")


@cases(60)
@given(case=contradictions())
def test_the_vars_plugin_applies_nothing_from_a_refused_policy(
    plugin_inventory: Path, case: tuple[Any, dict[str, Any], str, list[Loc]]
) -> None:
    """The kijun_zones vars plugin gives no host any zone_firewall variable from a policy with
    a problem: every host of the zones stops the run, naming zones.yml and the line."""
    from ansible.errors import AnsibleError

    from kijun.ansible_plugins.vars.kijun_zones import VarsModule

    doc, changes, _, _ = case
    policy = plugin_inventory / "zones.yml"
    policy.write_text(dump(doc), encoding="utf-8")
    for name, host in plugin_hosts(changes).items():
        with pytest.raises(AnsibleError) as refused:
            VarsModule().get_vars(None, str(plugin_inventory), [host])
        assert "kijun zone policy refused" in str(refused.value), name
        assert re.search(rf"{re.escape(location(policy))}:[1-9][0-9]*: ", str(refused.value))


def test_the_vars_plugin_reads_a_policy_rewritten_with_its_old_mtime(tmp_path: Path) -> None:
    """A sound policy's variables are cached per process; a broken policy written over it is
    refused, even with the old file's mtime (the cache was keyed on the mtime: the old rules
    stayed applied)."""
    from ansible.errors import AnsibleError

    from kijun.ansible_plugins.vars.kijun_zones import VarsModule

    policy = tmp_path / "zones.yml"
    policy.write_text(dump(POLICY), encoding="utf-8")
    hosts = plugin_hosts({})
    sound = VarsModule().get_vars(None, str(tmp_path), [hosts["gw"]])
    expected = zones.role_vars(zones.load(policy, zone_hosts()), zone_hosts(), "gw")
    assert sound == expected and sound["zone_firewall_flows"]
    before = policy.stat()
    broken = copy.deepcopy(POLICY)
    broken["flows"][0]["to"] = "in1"  # a port in1 does not serve
    policy.write_text(dump(broken), encoding="utf-8")
    os.utime(policy, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(AnsibleError, match=rf"{re.escape(location(policy))}:[0-9]+: mail-out"):
        VarsModule().get_vars(None, str(tmp_path), [hosts["gw"]])


# --- an inventory's kijun.yml and hosts -------------------------------------------------------

HOSTS_YML = """\
all:
  hosts:
    lg-app01:
      ansible_host: 198.18.255.254
      kijun_zone_address: 198.18.20.21
  children:
    zone_lgwan:
      hosts:
        lg-app01:
"""


@pytest.fixture(scope="module")
def settings_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("settings")


@cases(200)
@given(text=st.one_of(ARBITRARY_TEXT, mangled("profile: generic\n")))
@example(text="profile: !!bool maybe\n")  # was KeyError, reported without file or line
@example(text="profil: generic\n")
@example(text="profile: [generic]\n")
def test_kijun_yml(settings_inventory: Path, text: str) -> None:
    """kijun.yml names the inventory's profile: read, or refused by file, line and field."""
    from kijun.tailoring import SettingsError, group_vars_for_inventory, read_settings

    path = settings_inventory / "kijun.yml"
    path.write_text(text, encoding="utf-8")
    try:
        settings = read_settings(settings_inventory)
        group_vars = group_vars_for_inventory(settings_inventory)
    except SettingsError as err:
        assert_located(err.problems, {path: text})
        assert_lines_located(str(err), path)
        return
    assert settings.profile is None or group_vars["all"]["kijun_profile"] == settings.profile


def test_kijun_yml_names_the_field(tmp_path: Path) -> None:
    from kijun.tailoring import SettingsError, read_settings

    path = tmp_path / "kijun.yml"
    for text, expected in {
        "profil: generic\n": "kijun.yml:1: profil: unknown setting (known: profile); did you mean",
        "# settings\nprofile: [generic]\n": "kijun.yml:2: profile: expected a profile name",
        "profile: ''\n": "kijun.yml:1: profile: expected a profile name",
        "- generic\n": "kijun.yml:1: expected a mapping such as `profile: generic`",
    }.items():
        path.write_text(text, encoding="utf-8")
        with pytest.raises(SettingsError) as err:
            read_settings(tmp_path)
        assert str(err.value).startswith(f"{path}:") and expected in str(err.value), text
    path.write_bytes(b"# \xe9\nprofile: generic\n")
    with pytest.raises(SettingsError, match=rf"{re.escape(str(path))}:1: not UTF-8 text"):
        read_settings(tmp_path)


@pytest.fixture(scope="module")
def hosts_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hosts")


@cases(100)
@given(text=mangled(HOSTS_YML))
@example(text=HOSTS_YML.replace("198.18.255.254", "{198.18.255.254"))
@example(text="all: " + "[" * 30_000 + "]" * 30_000 + "\n")  # deep enough to crash libyaml
def test_hosts_yml(hosts_inventory: Path, text: str) -> None:
    """A hosts.yml that is not YAML is refused by file and line before Ansible reads it (Ansible
    would skip it with a warning, leaving its hosts out of the run)."""
    from kijun import variables

    path = hosts_inventory / "hosts.yml"
    path.write_text(text, encoding="utf-8")
    not_yaml = not_yaml_or_too_deep(text)
    try:
        hosts = variables.load(hosts_inventory)
    except variables.InventoryError as err:
        if not_yaml:
            assert_lines_located(str(err), path)
        return
    assert not not_yaml and all(name in text for name in hosts)


def not_yaml_or_too_deep(text: str) -> bool:
    """Whether PyYAML's pure-Python parser refuses ``text``, or finds it nested more than
    MAX_DEPTH levels deep."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return True
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return True
    return False


def test_group_vars_error_names_the_file_and_line(tmp_path: Path) -> None:
    from kijun import variables

    (tmp_path / "hosts.yml").write_text(HOSTS_YML, encoding="utf-8")
    (tmp_path / "group_vars").mkdir()
    group_vars = tmp_path / "group_vars" / "zone_lgwan.yml"
    group_vars.write_text("# zone vars\ntime_sync_servers: ntp: 1\n", encoding="utf-8")
    with pytest.raises(variables.InventoryError) as err:
        variables.load(tmp_path)
    assert str(err.value).startswith(f"{location(group_vars)}:2: YAML parsing failed")


# --- the CLI: exit 2, the file and line on stderr, no host contacted --------------------------


def kijun(*args: str, home: Path | None = None, state: Path) -> subprocess.CompletedProcess[str]:
    """`kijun` with its state (caches, evidence, history) in ``state``, of the checkout
    ``home`` (default: this one)."""
    env = {**os.environ, "KIJUN_STATE_DIR": str(state), "COLUMNS": "300"}
    if home is not None:
        env["KIJUN_HOME"] = str(home)
    return run_kijun(*args, timeout=120, env=env)


def test_cli_catalog_check_refuses_a_broken_area_file(tmp_path: Path) -> None:
    root = make_catalog(tmp_path)
    area = root / "controls" / "password.yml"
    area.write_text(PASSWORD.replace("type: int", "type: !!bool maybe"), encoding="utf-8")
    proc = kijun("catalog", "check", home=tmp_path, state=tmp_path / "state")
    assert proc.returncode == 2, proc.stderr
    line = PASSWORD.splitlines().index("        type: int") + 1
    assert f"{area}:{line}: PW-01.parameters[0].type: 'maybe' is not allowed" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def cli_inventory(tmp_path: Path, **files: str) -> Path:
    """An inventory whose one host, at 198.18.255.254, nothing answers for."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(HOSTS_YML, encoding="utf-8")
    for name, text in files.items():
        (inventory / f"{name}.yml").write_text(text, encoding="utf-8")
    return inventory


CLI_POLICY = dump(
    {
        **POLICY,
        "sanitising_hosts": [],
        "public_servers": [],
        "services": [{"name": "ntp", "on": ["lg-app01"], "proto": "udp", "port": 123}],
        "flows": [
            {"name": "ntp-mn", "from": "mynumber", "to": "lg-app01", "proto": "udp",
             "port": 123, "purpose": "時刻同期", "clause": "5(1)"},
        ],
    }
)  # fmt: skip


def test_cli_zones_check_refuses_a_contradictory_policy(tmp_path: Path) -> None:
    state = tmp_path / "state"
    sound = cli_inventory(tmp_path, zones=CLI_POLICY)
    proc = kijun("zones", "check", "-i", str(sound), state=state)
    assert proc.returncode == 0, proc.stderr
    assert "zone policy OK: 3 zones, 1 hosts in them, 1 flows" in proc.stdout
    policy = sound / "zones.yml"
    policy.write_text(CLI_POLICY.replace("to: lg-app01", "to: internet"), encoding="utf-8")
    proc = kijun("zones", "check", "-i", str(sound), state=state)
    assert proc.returncode == 2
    line = node_line(policy.read_text(encoding="utf-8"), ("flows", 0, "to"))
    message = "ntp-mn.to: flow ntp-mn is from zone mynumber to zone internet; a flow between zones"
    assert f"{policy}:{line}: {message}" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("name", "text", "field"),
    [
        ("exceptions", dump({"exceptions": [{**ENTRY, "approved_by": " "}]}),
         ("exceptions", 0, "approved_by")),
        ("exceptions", dump({"exceptions": [{**ENTRY, "valid_until": "2027/03/31"}]}),
         ("exceptions", 0, "valid_until")),
        ("zones", CLI_POLICY.replace("198.18.0.0/24", "198.18.0.0/15"),
         ("management", "networks", 0)),
        ("kijun", "# settings\nprofile: !!bool maybe\n", ("profile",)),
        ("hosts", HOSTS_YML.replace("      kijun_zone", "     kijun_zone"),
         "     kijun_zone_address: 198.18.20.21"),
    ],
    ids=["approver-blank", "date-format", "zones-overlap", "profile-tag", "hosts-indent"],
)  # fmt: skip
def test_cli_audit_stops_before_any_host(
    tmp_path: Path, name: str, text: str, field: Loc | str
) -> None:
    """`kijun audit` on an inventory with a broken exceptions.yml, zones.yml, kijun.yml or
    hosts.yml exits 2 at once, naming the file and line, and reaches no host: it writes nothing
    but the caches of what it read (no evidence, history or SSH configuration)."""
    inventory = cli_inventory(tmp_path, **{name: text})
    state = tmp_path / "state"
    started = time.monotonic()
    proc = kijun("audit", "-i", str(inventory), state=state)
    took = time.monotonic() - started
    assert proc.returncode == 2, proc.stdout + proc.stderr
    path = inventory / f"{name}.yml"
    # The field's line, or the line that breaks the YAML.
    line = text.splitlines().index(field) + 1 if isinstance(field, str) else node_line(text, field)
    assert f"{path}:{line}: " in " ".join(proc.stderr.split()), proc.stderr
    assert "Traceback" not in proc.stderr
    assert took < 30
    written = [p.relative_to(state) for p in state.rglob("*") if p.is_file()]
    assert all(p.parts[0] == "cache" for p in written), written
