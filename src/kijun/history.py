"""The history of audit runs: an embedded SQLite database, and drift since the previous run.

The database is ``.kijun/history.sqlite`` in the checkout (:func:`default_path`), created on
first use, in WAL mode (readers never wait for a writer). Its schema is versioned with
``PRAGMA user_version`` (:data:`SCHEMA_VERSION`); a database of a newer kijun is refused rather
than misread. Two tables:

* ``runs(run_id, inventory_id, started, finished, counts, bundle, kijun_version, profile)``:
  one row per run; ``counts`` is JSON ``{status: n}``; ``bundle`` the evidence bundle's path.
* ``results(run_id, host, control, status, expected, observed)``: one row per control per
  host; ``expected`` and ``observed`` are JSON.

:meth:`History.record` writes a run and all its results in one transaction: a run that is
interrupted (or fails) records nothing, never half.

Drift (:meth:`History.drift`) compares a run with the runs of the **same inventory** before it
(by start time). For each host and control, the state *before* is its status in the latest
earlier run that says something about it: runs without a result for it (another ``--limit``,
``--area`` or ``--control``) and runs in which it was ``not_assessed`` say nothing and are
skipped. Then:

* **new failure**: ``fail``/``error`` now, and ``pass``/``waived``/``not_applicable`` before, or
  no state before (a new host or control); ``since`` is this run's start;
* **resolved**: ``pass`` now and ``fail``/``error`` before;
* **still failing**: ``fail``/``error`` now and before; ``since`` is the start of the earliest
  run of the unbroken streak of ``fail``/``error`` (skipped runs, as above, do not break it);
* a control that was failing and whose host is **not assessed now** is none of these: nothing
  is known about it in this run (it stays out of ``resolved`` *and* of ``new_failures``; its
  streak goes on if the next run finds it failing again). ``waived`` or ``not_applicable`` now
  is not reported either: the failure is not resolved, and not failing as far as the run goes.

With no earlier run of the inventory there is nothing to compare: the drift has
``previous_run_id`` None and empty lists.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kijun import paths
from kijun.results import Drift, DriftEntry, RunDocument, Status

__all__ = [
    "SCHEMA_VERSION",
    "History",
    "HistoryError",
    "RunRow",
    "default_path",
]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE runs (
    run_id        TEXT PRIMARY KEY,
    inventory_id  TEXT NOT NULL,
    started       TEXT NOT NULL,   -- UTC, ISO 8601 with Z
    finished      TEXT NOT NULL,
    counts        TEXT NOT NULL,   -- JSON {status: n}
    bundle        TEXT,            -- evidence bundle path
    kijun_version TEXT NOT NULL,
    profile       TEXT             -- profile name, NULL without a profile
);
CREATE INDEX runs_by_inventory ON runs (inventory_id, started, run_id);
CREATE TABLE results (
    run_id   TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    host     TEXT NOT NULL,
    control  TEXT NOT NULL,
    status   TEXT NOT NULL,
    expected TEXT,                 -- JSON
    observed TEXT,                 -- JSON
    PRIMARY KEY (run_id, host, control)
);
CREATE INDEX results_by_pair ON results (host, control);
"""

_FAILING = frozenset({Status.FAIL, Status.ERROR})
_SILENT = frozenset({Status.NOT_ASSESSED})  # says nothing about the control: skipped


class HistoryError(RuntimeError):
    """The history database cannot be used (newer schema, not a kijun database, a run
    recorded twice); the message says what to do."""


@dataclass(frozen=True)
class RunRow:
    """One recorded run, as ``kijun history`` lists it."""

    run_id: str
    inventory_id: str
    started: str
    finished: str
    counts: dict[str, int]
    bundle: str | None
    kijun_version: str
    profile: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "inventory_id": self.inventory_id,
            "started": self.started,
            "finished": self.finished,
            "counts": dict(self.counts),
            "bundle": self.bundle,
            "kijun_version": self.kijun_version,
            "profile": self.profile,
        }


def default_path() -> Path:
    return paths.state_dir() / "history.sqlite"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


class History:
    """The run history in ``path`` (default :func:`default_path`), opened on first use."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else default_path()
        self._conn: sqlite3.Connection | None = None

    # --- the connection ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA journal_mode = WAL")
            self._migrate(conn)
        except sqlite3.OperationalError as exc:  # the file is fine; using it is not
            conn.close()
            raise HistoryError(f"cannot use the history {self.path}: {_why(exc)}") from None
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise HistoryError(
                f"{self.path} is not a kijun history database ({exc}); move it away and "
                "kijun starts a new one"
            ) from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with _transaction(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryError(
                    f"{self.path} has history schema {version}, written by a newer kijun; "
                    f"this kijun reads schema {SCHEMA_VERSION}: upgrade kijun"
                )
            if version == 0:
                tables = conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                ).fetchall()
                if tables:
                    raise HistoryError(
                        f"{self.path} is an SQLite database but not kijun's history "
                        f"(tables: {', '.join(t[0] for t in tables)}); move it away"
                    )
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            # later schema versions: migrate from `version` here, in this transaction

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing -----------------------------------------------------------------------------

    def record(self, doc: RunDocument, bundle_path: Path | str | None) -> None:
        """Record a run and every result of it, all or nothing. A run id already recorded is
        refused (HistoryError), and the history is left as it was."""
        conn = self._connect()
        run = doc.run
        bundle = str(Path(bundle_path).resolve()) if bundle_path is not None else None
        try:
            with _transaction(conn):
                try:
                    conn.execute(
                        "INSERT INTO runs (run_id, inventory_id, started, finished, counts, bundle,"
                        " kijun_version, profile) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            run.run_id,
                            run.inventory_id,
                            run.started,
                            run.finished,
                            _json(doc.counts()),
                            bundle,
                            run.kijun_version,
                            run.profile.get("name") or None,
                        ),
                    )
                except sqlite3.IntegrityError as exc:
                    raise HistoryError(
                        f"run {run.run_id} is already recorded in {self.path}"
                    ) from exc
                conn.executemany(
                    "INSERT INTO results (run_id, host, control, status, expected, observed)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        (
                            run.run_id,
                            r.host,
                            r.control,
                            str(r.status),
                            _json(r.expected),
                            _json(r.observed),
                        )
                        for r in doc.results
                    ),
                )
        except sqlite3.OperationalError as exc:  # nothing was recorded: the transaction is undone
            raise HistoryError(
                f"cannot record run {run.run_id} in {self.path}: {_why(exc)}"
            ) from None

    # --- reading -----------------------------------------------------------------------------

    def list_runs(self, inventory_id: str | None = None, limit: int = 20) -> list[RunRow]:
        """The latest ``limit`` runs (of ``inventory_id``, if given), newest first."""
        conn = self._connect()
        where, args = ("WHERE inventory_id = ?", [inventory_id]) if inventory_id else ("", [])
        rows = conn.execute(
            f"SELECT * FROM runs {where} ORDER BY started DESC, run_id DESC LIMIT ?",
            [*args, max(limit, 0)],
        ).fetchall()
        return [_run_row(row) for row in rows]

    def run(self, run_id: str) -> RunRow | None:
        row = self._connect().execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).fetchone()
        return _run_row(row) if row is not None else None

    def previous_run(self, inventory_id: str, before_run_id: str | None = None) -> RunRow | None:
        """The latest run of ``inventory_id`` that started before run ``before_run_id``.

        A ``before_run_id`` that is not recorded (yet: the run being made) or None means
        "before now": the latest recorded run of the inventory.
        """
        before = self.run(before_run_id) if before_run_id is not None else None
        if before is None:
            runs = self.list_runs(inventory_id, limit=1)
            return runs[0] if runs else None
        return self._previous(inventory_id, before.started, before.run_id)

    def _previous(self, inventory_id: str, started: str, run_id: str) -> RunRow | None:
        row = (
            self._connect()
            .execute(
                "SELECT * FROM runs WHERE inventory_id = ? AND run_id != ?"
                " AND (started < ? OR (started = ? AND run_id < ?))"
                " ORDER BY started DESC, run_id DESC LIMIT 1",
                [inventory_id, run_id, started, started, run_id],
            )
            .fetchone()
        )
        return _run_row(row) if row is not None else None

    def _earlier(self, doc: RunDocument) -> dict[tuple[str, str], list[tuple[Status, str]]]:
        """For each host and control of ``doc``: (status, run start) in the earlier runs of its
        inventory that say something about it, newest first."""
        run = doc.run
        pairs = {(r.host, r.control) for r in doc.results}
        rows = (
            self._connect()
            .execute(
                "SELECT r.host, r.control, r.status, runs.started FROM results AS r"
                " JOIN runs USING (run_id)"
                " WHERE runs.inventory_id = ? AND runs.run_id != ?"
                " AND (runs.started < ? OR (runs.started = ? AND runs.run_id < ?))"
                " ORDER BY runs.started DESC, runs.run_id DESC",
                [run.inventory_id, run.run_id, run.started, run.started, run.run_id],
            )
            .fetchall()
        )
        out: dict[tuple[str, str], list[tuple[Status, str]]] = {}
        for row in rows:
            pair = (row["host"], row["control"])
            status = Status(row["status"])
            if pair in pairs and status not in _SILENT:
                out.setdefault(pair, []).append((status, row["started"]))
        return out

    def drift(self, doc: RunDocument) -> Drift:
        """What changed in ``doc`` since the runs of its inventory before it (see the module's
        documentation). ``doc`` may be recorded already or not."""
        run = doc.run
        previous = self._previous(run.inventory_id, run.started, run.run_id)
        if previous is None:
            return Drift(previous_run_id=None)
        drift = Drift(previous_run_id=previous.run_id)
        earlier = self._earlier(doc)
        for r in doc.results:
            past = earlier.get((r.host, r.control), [])
            before = past[0][0] if past else None
            if r.status in _FAILING:
                if before in _FAILING:
                    since = run.started
                    for status, started in past:
                        if status not in _FAILING:
                            break
                        since = started
                    drift.still_failing.append(DriftEntry(r.host, r.control, str(r.status), since))
                else:
                    drift.new_failures.append(
                        DriftEntry(r.host, r.control, str(r.status), run.started)
                    )
            elif r.status is Status.PASS and before in _FAILING:
                drift.resolved.append(DriftEntry(r.host, r.control, str(r.status)))
        return drift


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (Ctrl-C included)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # SQLite ends it by itself on some errors (a full disk)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _why(exc: sqlite3.OperationalError) -> str:
    text = str(exc)
    return f"the disk is full ({text})" if "disk is full" in text else text


def _run_row(row: sqlite3.Row) -> RunRow:
    return RunRow(
        run_id=row["run_id"],
        inventory_id=row["inventory_id"],
        started=row["started"],
        finished=row["finished"],
        counts=json.loads(row["counts"]),
        bundle=row["bundle"],
        kijun_version=row["kijun_version"],
        profile=row["profile"],
    )
