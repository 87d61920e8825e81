"""The run history (SQLite): recording all or nothing, listing, and drift across several
synthetic runs (streaks, resolution, new failures, hosts not assessed in between, inventories
kept apart)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kijun import history, paths
from kijun.history import History, HistoryError
from kijun.results import ControlResult, Drift, DriftEntry, RunDocument, Status
from tests.rundocs import INVENTORY, run_doc

S = Status
OTHER_INVENTORY = "/srv/kijun/inventories/myorg"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[History]:
    with History(tmp_path / "state" / "history.sqlite") as h:
        yield h


def run(
    day: int,
    statuses: dict[tuple[str, str], Status],
    *,
    inventory: str = INVENTORY,
    unreachable: dict[str, str] | None = None,
) -> RunDocument:
    """A run on 2026-11-<day> at 01:00 UTC."""
    name = Path(inventory).name
    return run_doc(
        statuses,
        unreachable=unreachable,
        run_id=f"202611{day:02d}T010000Z-{name}-{day:04x}",
        started=f"2026-11-{day:02d}T01:00:00Z",
        finished=f"2026-11-{day:02d}T01:05:00Z",
        inventory_id=inventory,
    )


def at(day: int) -> str:
    return f"2026-11-{day:02d}T01:00:00Z"


def record(db: History, *docs: RunDocument) -> None:
    for doc in docs:
        doc.drift = db.drift(doc)
        db.record(doc, f"/evidence/{doc.run.run_id}")


def entries(drift_entries: list[DriftEntry]) -> set[tuple[str, str, str, str | None]]:
    return {(e.host, e.control, e.status, e.since) for e in drift_entries}


# --- the database --------------------------------------------------------------------------


def test_created_on_first_use_versioned_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "new" / "history.sqlite"
    h = History(path)
    assert not path.exists()  # nothing happens until it is used
    assert h.list_runs() == []
    h.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"runs", "results"}
    conn.close()
    with History(path) as again:  # opening it again changes nothing
        assert again.list_runs() == []


def test_default_path_is_in_the_checkout_state_dir() -> None:
    assert History().path == paths.state_dir() / "history.sqlite"


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    History(path).list_runs()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(HistoryError, match="schema 99, written by a newer kijun"):
        History(path).list_runs()


@pytest.mark.parametrize("content", [b"not a database at all, just text\n" * 100, None])
def test_not_a_history_database_is_refused(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "history.sqlite"
    if content is None:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE something (x)")
        conn.commit()
        conn.close()
    else:
        path.write_bytes(content)
    with pytest.raises(HistoryError, match="not (a kijun history database|kijun's history)"):
        History(path).list_runs()


# --- recording -----------------------------------------------------------------------------


def test_record_and_list(db: History) -> None:
    first = run(1, {("lg-app01", "PW-01"): S.FAIL, ("lg-app01", "TS-01"): S.PASS})
    second = run(2, {("lg-app01", "PW-01"): S.PASS}, inventory=OTHER_INVENTORY)
    db.record(first, Path("/evidence/first"))
    db.record(second, None)
    rows = db.list_runs()
    assert [r.run_id for r in rows] == [second.run.run_id, first.run.run_id]  # newest first
    row = rows[1]
    assert row.inventory_id == INVENTORY
    assert (row.started, row.finished) == (first.run.started, first.run.finished)
    assert row.counts == first.counts() and row.counts["fail"] == 1
    assert row.bundle == "/evidence/first"
    assert (row.kijun_version, row.profile) == ("0.1.0", "shimojo")
    assert rows[0].bundle is None
    assert [r.run_id for r in db.list_runs(OTHER_INVENTORY)] == [second.run.run_id]
    assert [r.run_id for r in db.list_runs(limit=1)] == [second.run.run_id]
    assert json.loads(json.dumps(row.as_dict()))["counts"]["pass"] == 1


def test_results_keep_expected_and_observed(db: History, tmp_path: Path) -> None:
    doc = run(1, {("lg-app01", "PW-01"): S.FAIL})
    db.record(doc, None)
    conn = sqlite3.connect(db.path)
    (row,) = conn.execute("SELECT host, control, status, expected, observed FROM results")
    conn.close()
    assert row[:3] == ("lg-app01", "PW-01", "fail")
    assert (json.loads(row[3]), json.loads(row[4])) == ({"minlen": 12}, {"minlen": 8})


def test_a_run_is_recorded_once(db: History) -> None:
    doc = run(1, {("lg-app01", "PW-01"): S.FAIL})
    db.record(doc, None)
    with pytest.raises(HistoryError, match="already recorded"):
        db.record(doc, None)
    assert len(db.list_runs()) == 1


class _BreaksOnSecondPass(list[ControlResult]):
    """Results that can be counted once, then break half-way (as a run interrupted while
    being recorded would)."""

    passes = 0

    def __iter__(self) -> Iterator[ControlResult]:
        self.passes += 1
        for index, item in enumerate(super().__iter__()):
            if self.passes > 1 and index == 1:
                raise KeyboardInterrupt
            yield item


def test_an_interrupted_record_leaves_nothing(db: History) -> None:
    db.record(run(1, {("lg-app01", "PW-01"): S.PASS}), None)
    doc = run(2, {("lg-app01", "PW-01"): S.FAIL, ("lg-app01", "TS-01"): S.FAIL})
    doc.results = _BreaksOnSecondPass(doc.results)
    with pytest.raises(KeyboardInterrupt):
        db.record(doc, None)
    assert [r.run_id for r in db.list_runs()] == ["20261101T010000Z-lab-0001"]
    conn = sqlite3.connect(db.path)
    assert conn.execute("SELECT count(*) FROM results").fetchone()[0] == 1
    conn.close()


def test_a_failing_record_leaves_nothing(db: History) -> None:
    doc = run(1, {("lg-app01", "PW-01"): S.FAIL})
    doc.results.append(doc.results[0])  # the same host and control twice
    with pytest.raises(sqlite3.IntegrityError):
        db.record(doc, None)
    assert db.list_runs() == []


# --- previous run ----------------------------------------------------------------------------


def test_previous_run_of_the_same_inventory(db: History) -> None:
    one, two = run(1, {}), run(3, {})
    other = run(2, {}, inventory=OTHER_INVENTORY)
    for doc in (two, other, one):  # recorded in any order: ordered by start
        db.record(doc, None)
    previous = db.previous_run(INVENTORY, two.run.run_id)
    assert previous is not None and previous.run_id == one.run.run_id
    assert db.previous_run(INVENTORY, one.run.run_id) is None
    latest = db.previous_run(INVENTORY, "not-recorded-yet")  # the run being made
    assert latest is not None and latest.run_id == two.run.run_id
    assert db.previous_run(OTHER_INVENTORY, None) is not None
    assert db.previous_run("/elsewhere", None) is None


# --- drift -----------------------------------------------------------------------------------

PW = ("lg-app01", "PW-01")
TS = ("lg-app01", "TS-01")
MAIL = ("lg-mail01", "PW-01")


def test_the_first_run_has_nothing_to_compare(db: History) -> None:
    assert db.drift(run(1, {PW: S.FAIL})) == Drift(previous_run_id=None)


def test_new_failures_resolved_and_still_failing(db: History) -> None:
    record(db, run(1, {PW: S.FAIL, TS: S.PASS, MAIL: S.FAIL}))
    now = run(2, {PW: S.FAIL, TS: S.FAIL, MAIL: S.PASS, ("in-web01", "PW-01"): S.ERROR})
    drift = db.drift(now)
    assert drift.previous_run_id == "20261101T010000Z-lab-0001"
    assert entries(drift.new_failures) == {
        ("lg-app01", "TS-01", "fail", at(2)),
        ("in-web01", "PW-01", "error", at(2)),  # absent before: a new host
    }
    assert entries(drift.resolved) == {("lg-mail01", "PW-01", "pass", None)}
    assert entries(drift.still_failing) == {("lg-app01", "PW-01", "fail", at(1))}


def test_drift_is_the_same_before_and_after_recording(db: History) -> None:
    record(db, run(1, {PW: S.FAIL}))
    now = run(2, {PW: S.FAIL})
    before = db.drift(now)
    db.record(now, None)
    assert db.drift(now) == before


def test_a_streak_starts_at_its_earliest_failing_run(db: History) -> None:
    record(
        db,
        run(1, {PW: S.FAIL}),
        run(2, {PW: S.PASS}),  # breaks the streak
        run(3, {PW: S.FAIL}),
        run(4, {PW: S.ERROR}),  # error continues it
        run(5, {PW: S.FAIL}),
    )
    assert entries(db.drift(run(6, {PW: S.FAIL})).still_failing) == {
        ("lg-app01", "PW-01", "fail", at(3))
    }


@pytest.mark.parametrize("breaker", [S.PASS, S.WAIVED, S.NOT_APPLICABLE])
def test_what_breaks_a_streak(db: History, breaker: Status) -> None:
    record(db, run(1, {PW: S.FAIL}), run(2, {PW: breaker}), run(3, {PW: S.FAIL}))
    drift = db.drift(run(4, {PW: S.FAIL}))
    assert entries(drift.still_failing) == {("lg-app01", "PW-01", "fail", at(3))}


def test_after_a_waiver_a_failure_is_new(db: History) -> None:
    record(db, run(1, {PW: S.FAIL}), run(2, {PW: S.WAIVED}))  # the exception expired after run 2
    drift = db.drift(run(3, {PW: S.FAIL}))
    assert entries(drift.new_failures) == {("lg-app01", "PW-01", "fail", at(3))}
    assert drift.still_failing == []


def test_not_assessed_now_is_neither_resolved_nor_new(db: History) -> None:
    record(db, run(1, {PW: S.FAIL, TS: S.PASS}))
    down = {"lg-app01": "ssh: connection timed out"}
    drift = db.drift(run(2, {PW: S.NOT_ASSESSED, TS: S.NOT_ASSESSED}, unreachable=down))
    assert drift.previous_run_id is not None
    assert (drift.new_failures, drift.resolved, drift.still_failing) == ([], [], [])


def test_not_assessed_in_between_neither_breaks_nor_ends_a_streak(db: History) -> None:
    down = {"lg-app01": "ssh: connection timed out"}
    record(
        db,
        run(1, {PW: S.FAIL, TS: S.PASS, MAIL: S.FAIL}),
        run(2, {PW: S.NOT_ASSESSED, TS: S.NOT_ASSESSED, MAIL: S.FAIL}, unreachable=down),
        run(3, {PW: S.NOT_ASSESSED, TS: S.NOT_ASSESSED, MAIL: S.FAIL}, unreachable=down),
    )
    drift = db.drift(run(4, {PW: S.FAIL, TS: S.FAIL, MAIL: S.PASS}))
    assert drift.previous_run_id == "20261103T010000Z-lab-0003"
    # compared with the last run that assessed lg-app01 (run 1)
    assert entries(drift.still_failing) == {("lg-app01", "PW-01", "fail", at(1))}
    assert entries(drift.new_failures) == {("lg-app01", "TS-01", "fail", at(4))}
    assert entries(drift.resolved) == {("lg-mail01", "PW-01", "pass", None)}


def test_resolved_after_a_gap_of_not_assessed(db: History) -> None:
    down = {"lg-app01": "ssh: connection timed out"}
    record(db, run(1, {PW: S.FAIL}), run(2, {PW: S.NOT_ASSESSED}, unreachable=down))
    assert entries(db.drift(run(3, {PW: S.PASS})).resolved) == {("lg-app01", "PW-01", "pass", None)}


def test_runs_that_did_not_select_a_control_are_skipped(db: History) -> None:
    record(
        db,
        run(1, {PW: S.FAIL, TS: S.FAIL}),
        run(2, {TS: S.FAIL}),  # e.g. --area time: says nothing about PW-01
    )
    drift = db.drift(run(3, {PW: S.FAIL, TS: S.PASS}))
    assert entries(drift.still_failing) == {("lg-app01", "PW-01", "fail", at(1))}
    assert entries(drift.resolved) == {("lg-app01", "TS-01", "pass", None)}


def test_two_inventories_are_kept_apart(db: History) -> None:
    record(
        db,
        run(1, {PW: S.FAIL}),
        run(2, {PW: S.PASS}, inventory=OTHER_INVENTORY),
        run(3, {PW: S.FAIL}, inventory=OTHER_INVENTORY),
    )
    mine = db.drift(run(4, {PW: S.FAIL}))
    assert mine.previous_run_id == "20261101T010000Z-lab-0001"
    assert entries(mine.still_failing) == {("lg-app01", "PW-01", "fail", at(1))}
    theirs = db.drift(run(5, {PW: S.PASS}, inventory=OTHER_INVENTORY))
    assert theirs.previous_run_id == "20261103T010000Z-myorg-0003"
    assert entries(theirs.resolved) == {("lg-app01", "PW-01", "pass", None)}
    assert theirs.still_failing == [] and theirs.new_failures == []


def test_drift_over_recorded_runs_is_what_each_run_stored(db: History) -> None:
    docs = [
        run(1, {PW: S.PASS}),
        run(2, {PW: S.FAIL}),
        run(3, {PW: S.FAIL}),
        run(4, {PW: S.PASS}),
    ]
    record(db, *docs)
    summary: list[dict[str, Any]] = [
        {
            "new": entries(d.drift.new_failures),
            "still": entries(d.drift.still_failing),
            "resolved": entries(d.drift.resolved),
        }
        for d in docs
        if d.drift is not None
    ]
    assert summary == [
        {"new": set(), "still": set(), "resolved": set()},
        {"new": {("lg-app01", "PW-01", "fail", at(2))}, "still": set(), "resolved": set()},
        {"new": set(), "still": {("lg-app01", "PW-01", "fail", at(2))}, "resolved": set()},
        {"new": set(), "still": set(), "resolved": {("lg-app01", "PW-01", "pass", None)}},
    ]
