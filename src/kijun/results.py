"""The audit's results: one status per control per host, with what was expected and found.

This is the model behind ``results.json`` in an evidence bundle (schema ``kijun-results/1``,
documented in ``audits/RESULTS.md``) and behind every report made from it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

SCHEMA = "kijun-results/1"

# Japan Standard Time: the date an organisation's register and reports speak of.
JST = dt.timezone(dt.timedelta(hours=9), "JST")


class Status(StrEnum):
    PASS = "pass"  # every applicable check of the control passed
    FAIL = "fail"  # at least one check failed (and no valid exception covers it)
    WAIVED = "waived"  # failing, but covered by a valid approved exception (逸脱承認)
    ERROR = "error"  # a check could not run (the host answered, the check broke)
    NOT_ASSESSED = "not_assessed"  # the host was unreachable
    NOT_APPLICABLE = "not_applicable"  # the control does not apply to this host


# Worst first: a control's status is the worst of its checks' outcomes.
SEVERITY = [
    Status.NOT_ASSESSED,
    Status.ERROR,
    Status.FAIL,
    Status.WAIVED,
    Status.PASS,
    Status.NOT_APPLICABLE,
]


@dataclass(frozen=True)
class CheckResult:
    check: str
    outcome: str  # pass | fail | error | not_applicable | not_assessed
    expected: Any = None
    observed: Any = None
    message: str = ""
    evidence: tuple[str, ...] = ()  # snapshot keys the check read
    source: str = ""  # where the effective value was set ("path:line"), when the check knows


@dataclass(frozen=True)
class Clause:
    """A policy clause the control serves: the profile's own clause, or a seed reference."""

    clause: str
    source: str  # profile name, or seed key (S0..S4)
    quote: str = ""


@dataclass(frozen=True)
class Waiver:
    exception_id: str
    reason: str
    compensating_measure: str
    valid_from: str
    valid_until: str
    approved_by: str
    approved_on: str


@dataclass
class ControlResult:
    host: str
    control: str
    area: str
    title: dict[str, str]
    status: Status
    expected: Any = None
    observed: Any = None
    message: str = ""
    references: list[Clause] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)  # bundle paths, e.g. raw/lg-app01/time/...
    waiver: Waiver | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        return data


@dataclass
class HostResult:
    host: str
    zones: list[str]
    groups: list[str]
    assessed: bool
    reason: str = ""  # why not assessed


# Status -> (Japanese, English), the words of a 自己点検表 and their English.
STATUS_TEXT: dict[Status, tuple[str, str]] = {
    Status.PASS: ("適合", "Pass"),
    Status.FAIL: ("不適合", "Fail"),
    Status.WAIVED: ("承認済み逸脱", "Waived"),
    Status.ERROR: ("エラー", "Error"),
    Status.NOT_ASSESSED: ("未評価", "Not assessed"),
    Status.NOT_APPLICABLE: ("対象外", "Not applicable"),
}


def worst(outcomes: list[Status]) -> Status:
    return min(outcomes, key=SEVERITY.index) if outcomes else Status.NOT_APPLICABLE


@dataclass
class RunInfo:
    run_id: str
    started: str  # UTC, ISO 8601 with Z
    finished: str
    kijun_version: str
    inventory: str  # the inventory path as given
    inventory_id: str  # stable identity of the inventory for history (its resolved path)
    profile: dict[str, Any]  # {name, title{ja,en}, organisation{ja,en}} or {} without profile
    operator: str
    git: dict[str, Any]  # {commit, dirty}
    selection: dict[str, Any] = field(default_factory=dict)  # limit, area, control given


@dataclass
class DriftEntry:
    host: str
    control: str
    status: str
    since: str | None = None  # run start (UTC) since which the control has been failing


@dataclass
class Drift:
    """What changed since the previous run of the same inventory."""

    previous_run_id: str | None
    new_failures: list[DriftEntry] = field(default_factory=list)
    resolved: list[DriftEntry] = field(default_factory=list)
    still_failing: list[DriftEntry] = field(default_factory=list)


@dataclass
class RunDocument:
    """The whole of ``results.json``."""

    run: RunInfo
    hosts: list[HostResult]
    results: list[ControlResult]
    unused_exceptions: list[dict[str, Any]] = field(
        default_factory=list
    )  # {id, file, line, reason}
    drift: Drift | None = None

    def counts(self) -> dict[str, int]:
        out = {str(s): 0 for s in Status}
        for r in self.results:
            out[str(r.status)] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "run": asdict(self.run),
            "summary": self.counts(),
            "hosts": [asdict(h) for h in self.hosts],
            "results": [r.as_dict() for r in self.results],
            "unused_exceptions": self.unused_exceptions,
            "drift": asdict(self.drift) if self.drift else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunDocument:
        """The document that :meth:`as_dict` gave ``data`` (e.g. ``results.json`` read back).

        ``summary`` is not read: it is always recomputed from the results. A document of
        another schema raises ValueError; a missing field raises KeyError or TypeError.
        """
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} document (schema: {data.get('schema')!r})")
        drift = data.get("drift")
        return cls(
            run=RunInfo(**data["run"]),
            hosts=[HostResult(**h) for h in data["hosts"]],
            results=[_control_result(r) for r in data["results"]],
            unused_exceptions=list(data.get("unused_exceptions") or []),
            drift=_drift(drift) if drift is not None else None,
        )


def _control_result(data: dict[str, Any]) -> ControlResult:
    fields = dict(data)
    fields["status"] = Status(data["status"])
    fields["references"] = [Clause(**c) for c in data.get("references", [])]
    fields["checks"] = [
        CheckResult(**{**c, "evidence": tuple(c.get("evidence", ()))})
        for c in data.get("checks", [])
    ]
    fields["evidence"] = list(data.get("evidence", []))
    waiver = data.get("waiver")
    fields["waiver"] = Waiver(**waiver) if waiver is not None else None
    return ControlResult(**fields)


def _drift(data: dict[str, Any]) -> Drift:
    def entries(key: str) -> list[DriftEntry]:
        return [DriftEntry(**e) for e in data.get(key, [])]

    return Drift(
        previous_run_id=data["previous_run_id"],
        new_failures=entries("new_failures"),
        resolved=entries("resolved"),
        still_failing=entries("still_failing"),
    )
