"""The run document: ``RunDocument.from_dict`` reads back what ``as_dict`` wrote."""

from __future__ import annotations

import json

import pytest

from kijun.results import SCHEMA, Drift, DriftEntry, RunDocument, Status
from tests.rundocs import run_doc


def every_status() -> RunDocument:
    doc = run_doc(
        {
            ("lg-app01", "PW-01"): Status.FAIL,
            ("lg-app01", "TS-01"): Status.PASS,
            ("lg-app01", "LG-01"): Status.NOT_APPLICABLE,
            ("in-web01", "PW-01"): Status.WAIVED,
            ("in-web01", "TS-01"): Status.ERROR,
            ("mn-app01", "PW-01"): Status.NOT_ASSESSED,
        },
        unreachable={"mn-app01": "ssh: connection refused"},
    )
    doc.unused_exceptions = [{"id": "EX-1", "file": "x.yml", "line": 3, "reason": "unused"}]
    doc.drift = Drift(
        "20261120T000000Z-lab-0000",
        new_failures=[DriftEntry("lg-app01", "PW-01", "fail", "2026-11-21T23:38:02Z")],
        resolved=[DriftEntry("lg-app01", "TS-01", "pass")],
        still_failing=[DriftEntry("in-web01", "TS-01", "error", "2026-11-01T00:00:00Z")],
    )
    return doc


def test_round_trip_through_json() -> None:
    doc = every_status()
    data = json.loads(json.dumps(doc.as_dict(), ensure_ascii=False))
    again = RunDocument.from_dict(data)
    assert again == doc
    assert again.as_dict() == doc.as_dict()
    waived = next(r for r in again.results if r.status is Status.WAIVED)
    assert waived.waiver is not None and waived.waiver.exception_id == "EX-2026-001"
    assert isinstance(again.results[0].checks[0].evidence, tuple)


def test_round_trip_without_drift() -> None:
    doc = run_doc({("lg-app01", "PW-01"): Status.PASS})
    assert RunDocument.from_dict(doc.as_dict()) == doc


def test_another_schema_is_refused() -> None:
    data = run_doc({}).as_dict()
    data["schema"] = "kijun-results/2"
    with pytest.raises(ValueError, match=f"not a {SCHEMA} document"):
        RunDocument.from_dict(data)
