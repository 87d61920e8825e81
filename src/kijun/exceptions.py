"""The deviation register (逸脱管理): approved exceptions that waive a failing control.

An inventory may hold ``exceptions.yml`` (format in ``inventories/EXCEPTIONS.md``, schema in
``catalog/schema/exceptions.schema.json``): each entry names a control, the hosts and/or
inventory groups it covers, the reason, the compensating measure (代替手段), the period it is
valid for and who approved it and when, as the policies require of a deviation (e.g. S3
「逸脱する事項について、期間、理由、代替手段等を…報告」, approved by the committee).

The register is read as a whole: a malformed entry makes :func:`load_register` refuse the file
with every problem listed (:class:`ExceptionsError`), so a register with a mistake in it never
waives anything. Applied to an audit's results (:meth:`Register.apply`), a *failing* result
covered by an exception valid on the day becomes ``waived`` and carries a :class:`Waiver`; a
failing result covered only by an expired or not yet valid exception stays ``fail`` and says
so. Results that are not failures (``error``, ``not_assessed``, ...) are never waived: an
exception does not make a host that could not be checked look fine. Exceptions that waived
nothing in a run are reported as unused, with the reason.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from kijun import paths
from kijun.catalog import Catalog
from kijun.catalog_source import (
    Loc,
    Problem,
    SchemaCheck,
    SourceFile,
    check_schema,
    load_validator,
    location,
    read_yaml,
)
from kijun.results import ControlResult, Status, Waiver

__all__ = [
    "REGISTER_FILE",
    "Coverage",
    "Deviation",
    "ExceptionsError",
    "Match",
    "Problem",
    "Register",
    "UnusedException",
    "load_register",
    "register_path",
]

REGISTER_FILE = "exceptions.yml"
_DATE_FIELDS = ("valid_from", "valid_until", "approved_on")
_TEXT_FIELDS = {
    "reason": "write why the control cannot be met (理由)",
    "compensating_measure": "write the compensating measure taken instead (代替手段)",
    "approved_by": "write who approved the exception (承認者)",
}
_DATE_HINT = "write a date like 2027-03-31"


class ExceptionsError(Exception):
    """The register is invalid; ``problems`` lists everything found. Nothing is waived."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (str(p.file), p.line))
        super().__init__("\n".join(map(str, self.problems)))


class Coverage(StrEnum):
    """How exceptions cover a host's control on a given day."""

    VALID = "valid"  # an exception is valid today: a failure is waived
    EXPIRED = "expired"  # only exceptions whose period has ended (none valid)
    NOT_YET_VALID = "not_yet_valid"  # only exceptions whose period has not begun (none valid)
    NONE = "none"  # no exception names this control for this host


@dataclass(frozen=True)
class Deviation:
    """One approved exception of the register."""

    id: str
    control: str
    hosts: tuple[str, ...]
    groups: tuple[str, ...]
    reason: str
    compensating_measure: str
    valid_from: date
    valid_until: date  # the last day it is valid (inclusive)
    approved_by: str
    approved_on: date
    file: Path
    line: int

    def covers(self, host: str, control: str, groups: Iterable[str] = ()) -> bool:
        """Whether this exception names ``control`` for ``host`` (by name, by one of its
        ``groups``, or by the group ``all``, which has every host as in Ansible)."""
        if control != self.control:
            return False
        return host in self.hosts or "all" in self.groups or not set(self.groups).isdisjoint(groups)

    def state(self, today: date) -> Coverage:
        """``VALID`` from ``valid_from`` to ``valid_until`` (both included), else
        ``NOT_YET_VALID`` before and ``EXPIRED`` after."""
        if today < self.valid_from:
            return Coverage.NOT_YET_VALID
        if today > self.valid_until:
            return Coverage.EXPIRED
        return Coverage.VALID

    def describe(self, today: date) -> str:
        """One phrase about its validity on ``today``, e.g. ``exception EX-2026-001 expired on
        2026-03-31``."""
        state = self.state(today)
        if state is Coverage.EXPIRED:
            return f"exception {self.id} expired on {self.valid_until.isoformat()}"
        if state is Coverage.NOT_YET_VALID:
            return f"exception {self.id} is not yet valid (valid from {self.valid_from})"
        return f"waived by exception {self.id} (valid until {self.valid_until.isoformat()})"

    def waiver(self) -> Waiver:
        return Waiver(
            exception_id=self.id,
            reason=self.reason,
            compensating_measure=self.compensating_measure,
            valid_from=self.valid_from.isoformat(),
            valid_until=self.valid_until.isoformat(),
            approved_by=self.approved_by,
            approved_on=self.approved_on.isoformat(),
        )

    @property
    def where(self) -> str:
        """``file:line`` of the entry."""
        return location(self.file, self.line)


@dataclass(frozen=True)
class Match:
    """What the register says about one host's control on one day.

    ``exception`` is the deciding exception: the valid one (the one valid longest, if
    several), else the one that expired last, else the one that starts first; ``others`` are
    the rest that name this host and control. ``message`` says what it means for a failure
    (empty for ``NONE``)."""

    coverage: Coverage
    exception: Deviation | None = None
    others: tuple[Deviation, ...] = ()
    message: str = ""

    @property
    def waiver(self) -> Waiver | None:
        """The waiver for a failure, when an exception is valid."""
        if self.coverage is Coverage.VALID and self.exception is not None:
            return self.exception.waiver()
        return None


@dataclass(frozen=True)
class UnusedException:
    """An exception that decided nothing in a run, and why."""

    exception: Deviation
    reason: str

    def __str__(self) -> str:
        return f"{self.exception.where}: exception {self.exception.id} is unused: {self.reason}"


@dataclass(frozen=True)
class Register:
    """An inventory's deviation register (empty when the inventory has none)."""

    path: Path | None  # the exceptions.yml read; None when the inventory has none
    exceptions: tuple[Deviation, ...] = ()
    inventory: Mapping[str, frozenset[str]] = field(default_factory=dict)  # host -> groups

    def match(self, host: str, control: str, groups: Iterable[str] | None, today: date) -> Match:
        """The exceptions covering ``control`` on ``host`` (in ``groups``; ``None``: the
        host's groups in the inventory the register was loaded with) on ``today``."""
        member_of = self.inventory.get(host, frozenset()) if groups is None else set(groups)
        covering = [e for e in self.exceptions if e.covers(host, control, member_of)]
        if not covering:
            return Match(Coverage.NONE)
        valid = [e for e in covering if e.state(today) is Coverage.VALID]
        expired = [e for e in covering if e.state(today) is Coverage.EXPIRED]
        pending = [e for e in covering if e.state(today) is Coverage.NOT_YET_VALID]
        if valid:
            chosen = max(valid, key=lambda e: (e.valid_until, e.id))
            others = tuple(e for e in covering if e is not chosen)
            return Match(Coverage.VALID, chosen, others, chosen.describe(today))
        # No valid exception: the failure stays, and every covering exception is named.
        expired.sort(key=lambda e: (e.valid_until, e.id), reverse=True)
        pending.sort(key=lambda e: (e.valid_from, e.id))
        ordered = expired + pending
        coverage = Coverage.EXPIRED if expired else Coverage.NOT_YET_VALID
        message = "; ".join(e.describe(today) for e in ordered)
        return Match(coverage, ordered[0], tuple(ordered[1:]), message)

    def apply(
        self, results: list[ControlResult], today: date
    ) -> tuple[list[ControlResult], list[UnusedException]]:
        """``results`` with every failure covered by a valid exception waived, and the
        exceptions that decided nothing.

        Only ``fail`` results change: to ``waived`` with the :class:`Waiver` when an exception
        is valid on ``today``; else, when exceptions cover them that have expired or are not
        yet valid, they stay ``fail`` and their message says so. Every other result is
        returned as it is. The inputs are not modified."""
        decided: dict[str, int] = {e.id: 0 for e in self.exceptions}  # failures decided
        matched: dict[str, list[ControlResult]] = {e.id: [] for e in self.exceptions}
        waived_by: dict[str, set[str]] = {e.id: set() for e in self.exceptions}
        out: list[ControlResult] = []
        for result in results:
            groups = self.inventory.get(result.host, frozenset())
            covering = [e for e in self.exceptions if e.covers(result.host, result.control, groups)]
            for exception in covering:
                matched[exception.id].append(result)
            if result.status is Status.WAIVED and result.waiver is not None:
                # Already applied (by this register or another run): count it as used.
                if result.waiver.exception_id in decided:
                    decided[result.waiver.exception_id] += 1
                out.append(result)
                continue
            if result.status is not Status.FAIL or not covering:
                out.append(result)
                continue
            found = self.match(result.host, result.control, groups, today)
            if found.exception is None:  # not reached: covering is not empty
                out.append(result)
                continue
            if found.coverage is Coverage.VALID:
                decided[found.exception.id] += 1
                for other in found.others:
                    waived_by[other.id].add(found.exception.id)
                result = dataclasses.replace(
                    result,
                    status=Status.WAIVED,
                    waiver=found.waiver,
                    message=_join(result.message, found.message),
                )
            else:
                for exception in (found.exception, *found.others):
                    decided[exception.id] += 1
                result = dataclasses.replace(result, message=_join(result.message, found.message))
            out.append(result)
        unused = [
            UnusedException(e, _unused_reason(e, matched[e.id], waived_by[e.id], today))
            for e in self.exceptions
            if not decided[e.id]
        ]
        return out, unused


def _some(names: list[str], shown: int = 8) -> str:
    """``names`` joined by commas, the first ``shown`` of them if there are many."""
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _join(message: str, addition: str) -> str:
    return f"{message}; {addition}" if message else addition


def _unused_reason(
    exception: Deviation, matched: list[ControlResult], waived_by: set[str], today: date
) -> str:
    """Why ``exception`` decided nothing, given the results it ``matched`` and the other
    exceptions that waived the failures among them."""
    if not matched:
        names = [*exception.hosts, *(f"group {g}" for g in exception.groups)]
        return (
            f"matches no host audited in this run (no {exception.control} result for "
            f"{', '.join(names)})"
        )
    if waived_by:
        reason = "covers nothing failing that is not already waived by " + ", ".join(
            sorted(waived_by)
        )
    else:
        by_status: dict[str, list[str]] = {}
        for result in matched:
            by_status.setdefault(str(result.status), []).append(result.host)
        found = "; ".join(f"{status} on {_some(hosts)}" for status, hosts in by_status.items())
        reason = f"covers nothing failing ({exception.control}: {found})"
    if exception.state(today) is not Coverage.VALID:
        reason += f"; {exception.describe(today)}"
    return reason


# --- loading --------------------------------------------------------------------------------


def register_path(inventory: Path) -> Path:
    """Where an inventory (a directory, or a file in it) keeps its register."""
    folder = inventory if inventory.is_dir() else inventory.parent
    return folder / REGISTER_FILE


def load_register_cached(
    path: Path, catalog: Catalog, hosts: Mapping[str, Collection[str]]
) -> Register:
    """:func:`load_register`, from kijun's cache while the register, the catalog and the
    inventory's groups are unchanged (whether an exception is valid is decided at use, by
    date, never cached)."""
    from kijun import cache

    schema = paths.catalog_dir() / "schema" / "exceptions.schema.json"
    file = path / REGISTER_FILE if path.is_dir() else path
    groups = sorted((h, sorted(g)) for h, g in hosts.items())
    key = cache.fingerprint(
        [file, schema, catalog.root, *cache.kijun_sources()],
        extra=[str(file.resolve()), repr(groups)],
    )
    return cache.cached("exceptions", key, lambda: load_register(path, catalog, hosts))


def load_register(
    path: Path,
    catalog: Catalog,
    hosts: Mapping[str, Collection[str]],
    schema: Path | None = None,
) -> Register:
    """Read and check the register ``path`` (an ``exceptions.yml``, or an inventory directory
    holding one) against ``catalog`` and the inventory's ``hosts`` (host name -> its group
    names). A register that does not exist is empty; one with any problem is refused as a
    whole (:class:`ExceptionsError`)."""
    if path.is_dir():
        path = path / REGISTER_FILE
    inventory = {host: frozenset(groups) for host, groups in hosts.items()}
    if not path.exists():
        return Register(None, (), inventory)
    schema = schema or paths.catalog_dir() / "schema" / "exceptions.schema.json"
    validator, problems = load_validator(schema)
    if validator is None:
        raise ExceptionsError(problems)
    source, problems = read_yaml(path)
    if source is None:
        raise ExceptionsError(problems)
    if source.data is None:  # an empty file, or comments only
        if problems:
            raise ExceptionsError(problems)
        return Register(path, (), inventory)
    source = _dates_as_text(source)
    check = check_schema(source, validator)
    problems += check.problems
    exceptions = _entries(source, check, catalog, inventory, problems)
    if problems:
        raise ExceptionsError(problems)
    return Register(path, tuple(exceptions), inventory)


def _dates_as_text(source: SourceFile) -> SourceFile:
    """``source`` with the YAML dates of the date fields as ``YYYY-MM-DD`` text, the form the
    schema checks (a date with a time stays a datetime, which the schema refuses)."""
    data = copy.deepcopy(source.data)
    entries = data.get("exceptions") if isinstance(data, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        for name in _DATE_FIELDS:
            value = entry.get(name)
            if isinstance(value, date) and not isinstance(value, datetime):
                entry[name] = value.isoformat()
    return dataclasses.replace(source, data=data)


def _entries(
    source: SourceFile,
    check: SchemaCheck,
    catalog: Catalog,
    inventory: Mapping[str, frozenset[str]],
    problems: list[Problem],
) -> list[Deviation]:
    """The entries that are sound; the problems of all of them are added to ``problems``."""
    raw_entries = source.data.get("exceptions") if isinstance(source.data, dict) else None
    if not isinstance(raw_entries, list):
        return []
    all_groups = sorted({"all", *(g for groups in inventory.values() for g in groups)})
    first_id: dict[str, int] = {}
    found: list[Deviation] = []
    for index, raw in enumerate(raw_entries):
        loc: Loc = ("exceptions", index)
        if not isinstance(raw, dict):
            continue  # the schema has said what is wrong

        def valid(name: str, loc: Loc = loc, raw: dict[str, Any] = raw) -> bool:
            return name in raw and check.valid((*loc, name))

        trouble: list[Problem] = []
        if valid("id"):
            first = first_id.setdefault(raw["id"], index)
            if first != index:
                first_line = source.line(("exceptions", first, "id"))
                trouble.append(
                    source.problem(
                        (*loc, "id"),
                        f"duplicate exception id {raw['id']} (first at line {first_line}); "
                        "give this one a new number",
                    )
                )
        if valid("control") and raw["control"] not in catalog.controls:
            trouble.append(source.problem((*loc, "control"), _unknown_control(catalog, raw)))
        if "hosts" not in raw and "groups" not in raw:
            trouble.append(
                source.problem(
                    loc,
                    "names no hosts or groups; add hosts: [<host>, ...] and/or "
                    "groups: [<group>, ...] from the inventory",
                )
            )
        for kind, known in (("hosts", sorted(inventory)), ("groups", all_groups)):
            if not valid(kind):
                continue
            for item, name in enumerate(raw[kind]):
                if name not in known:
                    trouble.append(
                        source.problem((*loc, kind, item), _unknown_name(kind, name, known))
                    )
        for name, hint in _TEXT_FIELDS.items():
            if valid(name) and _blank(raw[name]):
                trouble.append(source.problem((*loc, name), f"is blank; {hint}"))
        dates: dict[str, date] = {}
        for name in _DATE_FIELDS:
            if valid(name):
                try:
                    dates[name] = date.fromisoformat(raw[name])
                except ValueError as err:
                    trouble.append(
                        source.problem(
                            (*loc, name), f"{raw[name]} is not a date ({err}); {_DATE_HINT}"
                        )
                    )
        trouble += _period_problems(source, loc, dates)
        problems += trouble
        if trouble or not check.valid(loc):
            continue
        found.append(
            Deviation(
                id=raw["id"],
                control=raw["control"],
                hosts=tuple(raw.get("hosts", ())),
                groups=tuple(raw.get("groups", ())),
                reason=raw["reason"],
                compensating_measure=raw["compensating_measure"],
                valid_from=dates["valid_from"],
                valid_until=dates["valid_until"],
                approved_by=raw["approved_by"],
                approved_on=dates["approved_on"],
                file=source.path,
                line=source.line(loc),
            )
        )
    return found


def _blank(text: str) -> bool:
    """Whether ``text`` shows nothing: only spaces, line breaks, control and format characters
    (a zero-width space is no approver)."""
    return all(char.isspace() or unicodedata.category(char)[0] in "CZ" for char in text)


def _period_problems(source: SourceFile, loc: Loc, dates: dict[str, date]) -> list[Problem]:
    """The period runs forward, and the approval comes no later than the period's start."""
    problems = []
    start, end = dates.get("valid_from"), dates.get("valid_until")
    approved = dates.get("approved_on")
    if start is not None and end is not None and end < start:
        problems.append(
            source.problem(
                (*loc, "valid_until"),
                f"{end} is before valid_from {start}; the period must end on or after its "
                "first day: correct one of the dates",
            )
        )
    if start is not None and approved is not None and approved > start:
        problems.append(
            source.problem(
                (*loc, "approved_on"),
                f"{approved} is after valid_from {start}; an exception cannot cover days "
                f"before it was approved: write valid_from: {approved} (or later), or correct "
                "approved_on",
            )
        )
    return problems


def _suggest(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The candidate closest to ``name`` (ignoring case), if one is close."""
    folded = {c.casefold(): c for c in candidates}
    close = difflib.get_close_matches(name.casefold(), list(folded), n=1, cutoff=cutoff)
    return folded[close[0]] if close else None


def _control_key(control_id: str) -> tuple[str, int] | None:
    """A control id without its spelling: ``pw-1``, ``PW01`` and ``ＰＷ－０１`` are
    ``("PW", 1)``."""
    found = re.fullmatch(
        r"\s*([A-Za-z]+)\s*[-_ ]?\s*([0-9]+)\s*", unicodedata.normalize("NFKC", control_id)
    )
    return (found[1].upper(), int(found[2])) if found else None


def _unknown_control(catalog: Catalog, raw: dict[str, Any]) -> str:
    control_id: str = raw["control"]
    message = f"unknown control '{control_id}'"
    key = _control_key(control_id)
    same = [cid for cid in catalog.controls if key is not None and _control_key(cid) == key]
    if same:
        return f"{message}; did you mean '{same[0]}'?"
    prefix = key[0] if key else control_id.split("-")[0].upper()
    same_area = [cid for cid in catalog.controls if cid.split("-")[0] == prefix]
    if same_area:
        return f"{message}; the {prefix} controls are {', '.join(same_area)}"
    close = _suggest(control_id, catalog.controls, cutoff=0.75)  # ids differ by a character
    if close:
        return f"{message}; did you mean '{close}'?"
    prefixes = ", ".join(f"{a.prefix} ({a.name})" for a in catalog.areas.values())
    return f"{message}; write a control id from the catalog (prefixes: {prefixes})"


def _unknown_name(kind: str, name: str, known: list[str]) -> str:
    noun = kind[:-1]  # host | group
    message = f"{noun} '{name}' is not in the inventory"
    close = _suggest(name, known)
    if close:
        return f"{message}; did you mean '{close}'?"
    if not known:
        return f"{message}, which has no {kind}"
    return f"{message}; its {kind}: {_some(known)}"
