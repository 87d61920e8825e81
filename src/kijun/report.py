"""Reports made from a run's results: an HTML page for people, a CSV sheet, junit.xml for CI.

* :func:`render_html` — one self-contained page (inline CSS; no scripts, fonts, images or
  anything else fetched), in Japanese with English, for the IT section and the auditor (監査).
  It sits at the top of an evidence bundle: evidence links are relative bundle paths
  (``raw/<host>/...``) that work when the page is opened from the bundle's directory.
* :func:`render_checklist_csv` — the self-inspection sheet (自己点検表): one row per host and
  control, UTF-8 with BOM and CRLF, for Excel.
* :func:`render_junit` — ``junit.xml``: a testsuite per host, a testcase per control.
* :func:`render_probe_matrix_csv` — ``probe-matrix.csv``: every real connection the audits
  tried between zones (from, to, port, expected, observed), when a check made any.

All three are pure functions of a :class:`~kijun.results.RunDocument` (the catalog, when
given, adds each control's requirement text); the caller adds their output to the bundle::

    bundle.add_text("report.html", render_html(doc, catalog))
    bundle.add_bytes("checklist.csv", render_checklist_csv(doc, catalog))
    bundle.add_bytes("junit.xml", render_junit(doc))
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import jinja2

from kijun import paths
from kijun.catalog import Catalog
from kijun.evidence import EvidenceError, check_relpath
from kijun.results import JST, STATUS_TEXT, Clause, ControlResult, HostResult, RunDocument, Status

__all__ = [
    "CHECKLIST_HEADER",
    "STATUS_TEXT",
    "Verdict",
    "format_time",
    "format_value",
    "host_results",
    "render_checklist_csv",
    "render_html",
    "render_junit",
    "render_probe_matrix_csv",
    "probe_rows",
    "status_label",
    "verdict",
]

# A mark beside the words (never instead of them): ○ × △ as on a Japanese checklist.
STATUS_MARK: dict[Status, str] = {
    Status.PASS: "○",
    Status.FAIL: "×",
    Status.WAIVED: "△",
    Status.ERROR: "!",
    Status.NOT_ASSESSED: "?",
    Status.NOT_APPLICABLE: "－",
}
# Column order for counts: the usual reading order, not severity.
STATUS_ORDER = [
    Status.PASS,
    Status.FAIL,
    Status.WAIVED,
    Status.ERROR,
    Status.NOT_ASSESSED,
    Status.NOT_APPLICABLE,
]
ZONE_TEXT: dict[str, tuple[str, str]] = {
    "mynumber": ("マイナンバー利用事務系", "individual number zone"),
    "lgwan": ("LGWAN接続系", "LGWAN zone"),
    "internet": ("インターネット接続系", "internet zone"),
}
EXPIRES_SOON_DAYS = 30


def status_label(status: Status | str) -> str:
    """``不適合 (Fail)``: the words for a status, Japanese then English."""
    ja, en = STATUS_TEXT[Status(status)]
    return f"{ja} ({en})"


def _as_status(value: object) -> Status | None:
    try:
        return Status(str(value))
    except ValueError:
        return None


def _status_text(value: object) -> tuple[str, str]:
    """The words for a status; a value that is no status (a check's odd outcome) as given."""
    status = _as_status(value)
    return STATUS_TEXT[status] if status is not None else (str(value), "")


def _mark(value: object) -> str:
    status = _as_status(value)
    return STATUS_MARK[status] if status is not None else "·"


def zone_label(zone: str) -> str:
    """``LGWAN接続系 (lgwan)`` for ``lgwan`` or ``zone_lgwan``; unknown names as given."""
    name = zone.removeprefix("zone_")
    return f"{ZONE_TEXT[name][0]} ({name})" if name in ZONE_TEXT else zone


def _utc(iso: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def format_time(iso: str | None) -> str:
    """A UTC ISO time as ``2026年11月22日 08:20 JST (2026-11-21 23:20 UTC)``.

    Text that is not an ISO time is returned as it is (``—`` for none): a report shows what it
    was given rather than fail.
    """
    if not iso:
        return "—"
    moment = _utc(iso)
    if moment is None:
        return iso
    jst = moment.astimezone(JST)
    utc = moment.astimezone(UTC)
    return f"{jst.year}年{jst.month}月{jst.day}日 {jst:%H:%M} JST ({utc:%Y-%m-%d %H:%M} UTC)"


def _duration(started: str, finished: str) -> str:
    start, end = _utc(started), _utc(finished)
    if start is None or end is None or end < start:
        return ""
    seconds = int((end - start).total_seconds())
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}時間{minutes}分 ({hours} h {minutes} min)"
    return f"{minutes}分{seconds}秒 ({minutes} min {seconds} s)"


def format_value(value: Any) -> str:
    """An expected or observed value as text: strings as they are, the rest as JSON."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def clause_text(clause: Clause) -> str:
    return f"{clause.clause} ({clause.source})" if clause.source else clause.clause


def evidence_href(path: str) -> str | None:
    """A relative link to a bundle file, or None when ``path`` is not a bundle path.

    Every character but ``/`` and the unreserved ones is percent-encoded, so a path can never
    become a link with a scheme (``javascript:``) or leave the bundle.
    """
    try:
        check_relpath(path)
    except EvidenceError:
        return None
    return quote(path, safe="/")


# -- the verdict -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The run's overall verdict: a headline in both languages and its worst status."""

    ja: str
    en: str
    status: Status
    findings: tuple[tuple[str, str], ...] = ()  # (ja, en) reasons, worst first


def unassessed_hosts(doc: RunDocument) -> list[str]:
    """Hosts not (fully) assessed: marked so, or with a control left ``not_assessed``."""
    names = [h.host for h in doc.hosts if not h.assessed]
    names += [
        r.host for r in doc.results if r.status is Status.NOT_ASSESSED and r.host not in names
    ]
    return list(dict.fromkeys(names))


def verdict(doc: RunDocument) -> Verdict:
    """適合 only when nothing failed, errored or went unassessed and something was assessed."""
    counts = doc.counts()
    unassessed = unassessed_hosts(doc)
    findings: list[tuple[str, str]] = []
    if counts[Status.FAIL]:
        findings.append(("不適合あり", "non-conformities found"))
    if unassessed:
        findings.append(("評価できないホストあり", "hosts could not be assessed"))
    if counts[Status.ERROR]:
        findings.append(("評価エラーあり", "checks could not run"))
    if findings:
        # The colour and mark follow the first finding (the list is worst first for a reader).
        worst = Status.FAIL
        if not counts[Status.FAIL]:
            worst = Status.NOT_ASSESSED if unassessed else Status.ERROR
        return Verdict(
            "・".join(ja for ja, _ in findings),
            "; ".join(en for _, en in findings).capitalize(),
            worst,
            tuple(findings),
        )
    if counts[Status.WAIVED]:
        return Verdict(
            "適合（承認済み逸脱あり）", "Conformant, with approved exceptions", Status.WAIVED
        )
    if counts[Status.PASS]:
        return Verdict("適合", "Conformant", Status.PASS)
    return Verdict("評価対象なし", "Nothing was assessed", Status.NOT_APPLICABLE)


# -- the view the template renders -------------------------------------------------------------


@dataclass
class _ControlRow:
    control: str
    title: dict[str, str]
    area: str
    requirement: dict[str, str] | None
    clauses: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class _Host:
    host: str
    zones: list[str]
    groups: list[str]
    assessed: bool
    reason: str
    results: list[ControlResult]
    counts: dict[str, int]


def host_results(doc: RunDocument) -> list[tuple[HostResult, list[ControlResult]]]:
    """Every host with its results: the run's hosts in order, then any only in the results."""
    by_host: dict[str, list[ControlResult]] = {}
    for result in doc.results:
        by_host.setdefault(result.host, []).append(result)
    hosts = list(doc.hosts)
    known = {h.host for h in hosts}
    hosts += [HostResult(name, [], [], True) for name in by_host if name not in known]
    return [(h, by_host.get(h.host, [])) for h in hosts]


def _controls(doc: RunDocument, catalog: Catalog | None) -> list[_ControlRow]:
    rows: dict[str, _ControlRow] = {}
    for result in doc.results:
        row = rows.get(result.control)
        if row is None:
            control = catalog.controls.get(result.control) if catalog else None
            row = rows[result.control] = _ControlRow(
                result.control,
                result.title,
                result.area,
                control.requirement.as_dict() if control else None,
                counts={str(s): 0 for s in Status},
            )
        row.counts[str(result.status)] += 1
        for clause in result.references:
            text = clause_text(clause)
            if text not in row.clauses:
                row.clauses.append(text)
    return list(rows.values())


def _hosts(doc: RunDocument) -> list[_Host]:
    out = []
    for host, results in host_results(doc):
        counts = {str(s): 0 for s in Status}
        for result in results:
            counts[str(result.status)] += 1
        out.append(
            _Host(host.host, host.zones, host.groups, host.assessed, host.reason, results, counts)
        )
    return out


@dataclass
class _Exception:
    exception_id: str
    control: str
    title: dict[str, str]
    hosts: list[str]
    reason: str
    compensating_measure: str
    valid_from: str
    valid_until: str
    approved_by: str
    approved_on: str
    days_left: int | None
    expires_soon: bool


def _exceptions(doc: RunDocument) -> list[_Exception]:
    started = _utc(doc.run.started)
    today = started.astimezone(JST).date() if started else None
    out: dict[tuple[str, str], _Exception] = {}
    for result in doc.results:
        waiver = result.waiver
        if result.status is not Status.WAIVED or waiver is None:
            continue
        key = (waiver.exception_id, result.control)
        if key in out:
            if result.host not in out[key].hosts:
                out[key].hosts.append(result.host)
            continue
        days_left = None
        try:
            if today is not None:
                days_left = (date.fromisoformat(str(waiver.valid_until)) - today).days
        except ValueError:
            pass
        out[key] = _Exception(
            waiver.exception_id,
            result.control,
            result.title,
            [result.host],
            waiver.reason,
            waiver.compensating_measure,
            str(waiver.valid_from),
            str(waiver.valid_until),
            waiver.approved_by,
            str(waiver.approved_on),
            days_left,
            days_left is not None and days_left <= EXPIRES_SOON_DAYS,
        )
    return list(out.values())


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """Like jinja's, but one that cannot be written (a full disk) costs a compile, not the run."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept in ``.kijun/cache/jinja`` (jinja checks each template's source
    checksum, so an edited template is compiled again)."""
    from kijun import cache

    if not cache.enabled():
        return None
    directory = paths.state_dir() / "cache" / "jinja"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return _BytecodeCache(str(directory))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kijun", "data/templates"),
        bytecode_cache=_bytecode_cache(),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["jst"] = format_time
    env.filters["value"] = format_value
    env.filters["status_ja"] = lambda s: _status_text(s)[0]
    env.filters["status_en"] = lambda s: _status_text(s)[1]
    env.filters["mark"] = _mark
    env.filters["zone"] = zone_label
    env.filters["href"] = evidence_href
    env.filters["clause"] = clause_text
    return env


def narrowing(doc: RunDocument) -> dict[str, Any]:
    """What the run was limited to (``limit``, ``areas``, ``controls``), if anything.

    ``hosts`` in the selection is the resolved list of hosts audited, not a narrowing."""
    return {k: v for k, v in (doc.run.selection or {}).items() if v and k != "hosts"}


def render_html(doc: RunDocument, catalog: Catalog | None = None) -> str:
    """The run as one self-contained HTML page (``catalog``: to show each requirement)."""
    titles = {r.control: r.title for r in doc.results}
    hosts = _hosts(doc)
    git = doc.run.git or {}
    template = _environment().get_template("report.html.j2")
    return template.render(
        doc=doc,
        run=doc.run,
        verdict=verdict(doc),
        counts=doc.counts(),
        statuses=[str(s) for s in STATUS_ORDER],
        controls=_controls(doc, catalog),
        hosts=hosts,
        unassessed=[h for h in hosts if h.host in unassessed_hosts(doc)],
        exceptions=_exceptions(doc),
        findings=[r for r in doc.results if r.status in (Status.FAIL, Status.ERROR)],
        titles=titles,
        duration=_duration(doc.run.started, doc.run.finished),
        git=git,
        selection=narrowing(doc),
        selected_hosts=list((doc.run.selection or {}).get("hosts") or []),
        not_assessed=str(Status.NOT_ASSESSED),
        problem_statuses={str(Status.FAIL), str(Status.ERROR), str(Status.NOT_ASSESSED)},
        probes=_probe_tables(probe_rows(doc)),
        probe_text=_PROBE_TEXT,
    )


# -- the probe matrix --------------------------------------------------------------------------

# A check that tried real connections reports them as ``observed["probe matrix"]``: a list of
# {from, to, port, expected: connects|blocked, observed: connected|refused|blocked|...}.
PROBE_KEY = "probe matrix"
# "refused": the packet passed every firewall and found the port closed (a flow that connects).
_PASSES = ("connected", "refused")
_PROBE_TEXT = {
    "connected": ("接続", "connected"),
    "refused": ("到達（ポート閉）", "reached, port closed"),
    "blocked": ("遮断", "blocked"),
    "connects": ("接続可", "connects"),
}


@dataclass(frozen=True)
class ProbeRow:
    """One real connection an audit tried: which check on which host, and what it found."""

    host: str  # the host whose check ran the probe (the zone gateway, or the source host)
    control: str
    check: str
    source: str
    target: str
    address: str
    port: int
    expected: str  # connects | blocked
    observed: str  # connected | refused | blocked | not probed

    @property
    def as_declared(self) -> bool:
        return (self.observed in _PASSES) == (self.expected == "connects")


def probe_rows(doc: RunDocument) -> list[ProbeRow]:
    """Every probe of the run, in the order of the results."""
    rows = []
    for result in doc.results:
        for check in result.checks:
            observed = check.observed
            matrix = observed.get(PROBE_KEY) if isinstance(observed, dict) else None
            if not isinstance(matrix, list):
                continue
            for item in matrix:
                if not isinstance(item, dict):
                    continue
                rows.append(
                    ProbeRow(
                        host=result.host,
                        control=result.control,
                        check=check.check,
                        source=str(item.get("from", result.host)),
                        target=str(item.get("to", "")),
                        address=str(item.get("address", "")),
                        port=int(item.get("port", 0)),
                        expected=str(item.get("expected", "")),
                        observed=str(item.get("observed", "")),
                    )
                )
    return rows


@dataclass
class _ProbeTable:
    """The probes of one check on one host, as source→target rows and port columns."""

    host: str
    control: str
    check: str
    ports: list[int]
    rows: list[tuple[str, str, list[ProbeRow | None]]]  # (from, to, a cell per port)
    total: int
    not_as_declared: int


def _probe_tables(rows: list[ProbeRow]) -> list[_ProbeTable]:
    grouped: dict[tuple[str, str, str], list[ProbeRow]] = {}
    for row in rows:
        grouped.setdefault((row.host, row.control, row.check), []).append(row)
    tables = []
    for (host, control, check), probes in grouped.items():
        ports = sorted({p.port for p in probes})
        pairs: dict[tuple[str, str], dict[int, ProbeRow]] = {}
        for p in probes:
            pairs.setdefault((p.source, p.target), {})[p.port] = p
        tables.append(
            _ProbeTable(
                host=host,
                control=control,
                check=check,
                ports=ports,
                rows=[
                    (a, b, [cells.get(port) for port in ports]) for (a, b), cells in pairs.items()
                ],
                total=len(probes),
                not_as_declared=sum(not p.as_declared for p in probes),
            )
        )
    return tables


PROBE_HEADER = [
    "確認したホスト (checked on)",
    "管理策 (control)",
    "確認項目 (check)",
    "接続元 (from)",
    "接続先 (to)",
    "宛先アドレス (address)",
    "ポート (TCP port)",
    "期待 (expected)",
    "実測 (observed)",
    "宣言どおり (as declared)",
]


def render_probe_matrix_csv(doc: RunDocument) -> bytes | None:
    """``probe-matrix.csv``: one row per connection tried (UTF-8 with BOM, CRLF, for Excel),
    or None when no check tried any."""
    rows = probe_rows(doc)
    if not rows:
        return None
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    writer.writerow(PROBE_HEADER)
    for r in rows:
        cells = [r.host, r.control, r.check, r.source, r.target, r.address, str(r.port)]
        cells += [r.expected, r.observed, "yes" if r.as_declared else "NO"]
        writer.writerow([_cell(c) for c in cells])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# -- junit.xml ---------------------------------------------------------------------------------

# Characters XML 1.0 cannot carry (control characters from a host's output, for instance).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: _xml_text(v) for k, v in attrs.items()})
    if text:
        element.text = _xml_text(text)
    return element


def _details(result: ControlResult) -> str:
    lines = [
        f"status: {status_label(result.status)}",
        f"expected: {format_value(result.expected)}",
        f"observed: {format_value(result.observed)}",
    ]
    if result.message:
        lines.append(f"message: {result.message}")
    for check in result.checks:
        line = f"check {check.check}: {check.outcome}"
        if check.outcome not in ("pass", "not_applicable"):
            line += (
                f" (expected {format_value(check.expected)},"
                f" observed {format_value(check.observed)})"
            )
        if check.source:
            line += f" [set in {check.source}]"
        if check.message:
            line += f" — {check.message}"
        lines.append(line)
    lines += [f"evidence: {path}" for path in result.evidence]
    return "\n".join(lines) + "\n"


def _testcase(suite: ET.Element, result: ControlResult) -> str:
    title = result.title.get("ja") or result.title.get("en", "")
    if result.title.get("en") and result.title.get("en") != title:
        title += f" ({result.title['en']})"
    case = _sub(
        suite, "testcase", classname=result.host, name=f"{result.control} {title}", time="0"
    )
    props = _sub(case, "properties")
    values = {
        "status": str(result.status),
        "area": result.area,
        "expected": format_value(result.expected),
        "observed": format_value(result.observed),
        "clauses": "; ".join(clause_text(c) for c in result.references),
        "evidence": " ".join(result.evidence),
    }
    for name, value in values.items():
        _sub(props, "property", name=name, value=value)
    first_line = result.message.splitlines()[0] if result.message else ""
    if result.status is Status.FAIL:
        message = first_line or (
            f"expected {format_value(result.expected)}, observed {format_value(result.observed)}"
        )
        _sub(case, "failure", _details(result), message=message, type="fail")
    elif result.status in (Status.ERROR, Status.NOT_ASSESSED):
        message = first_line or status_label(result.status)
        _sub(case, "error", _details(result), message=message, type=str(result.status))
    elif result.status is Status.WAIVED:
        waiver = result.waiver
        message = status_label(result.status)
        if waiver is not None:
            message = (
                f"waived by {waiver.exception_id} until {waiver.valid_until}: {waiver.reason}"
                f" (compensating measure: {waiver.compensating_measure};"
                f" approved by {waiver.approved_by} on {waiver.approved_on})"
            )
        _sub(case, "skipped", message=message)
    elif result.status is Status.NOT_APPLICABLE:
        _sub(case, "skipped", message=result.message or status_label(result.status))
    return str(result.status)


def render_junit(doc: RunDocument) -> bytes:
    """``junit.xml``: a testsuite per host, a testcase per control (UTF-8, with declaration).

    ``fail`` is a failure; ``error`` and ``not_assessed`` are errors (a host that could not be
    checked must not look green); ``waived`` and ``not_applicable`` are skipped, with the
    waiver's reason. A host that was not assessed and has no results gets one erroring
    testcase, so it is never an empty (green) suite.
    """
    root = ET.Element("testsuites", name=f"kijun {doc.run.run_id}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for host, results in host_results(doc):
        suite = _sub(
            root,
            "testsuite",
            name=host.host,
            timestamp=doc.run.started.removesuffix("Z"),
            hostname=host.host,
        )
        props = _sub(suite, "properties")
        for name, text in (
            ("run_id", doc.run.run_id),
            ("zones", " ".join(host.zones)),
            ("assessed", str(host.assessed).lower()),
            ("reason", host.reason),
        ):
            _sub(props, "property", name=name, value=text)
        outcomes = [_testcase(suite, result) for result in results]
        if not host.assessed and not results:
            case = _sub(
                suite, "testcase", classname=host.host, name="host not assessed (未評価)", time="0"
            )
            reason = host.reason or "not assessed"
            _sub(case, "error", reason + "\n", message=reason, type=str(Status.NOT_ASSESSED))
            outcomes.append(str(Status.NOT_ASSESSED))
        counts = {
            "tests": len(outcomes),
            "failures": outcomes.count(Status.FAIL),
            "errors": outcomes.count(Status.ERROR) + outcomes.count(Status.NOT_ASSESSED),
            "skipped": outcomes.count(Status.WAIVED) + outcomes.count(Status.NOT_APPLICABLE),
        }
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", "0")
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


# -- the self-inspection sheet (自己点検表, CSV) ----------------------------------------------

CHECKLIST_HEADER = [
    "ホスト (host)",
    "ゾーン (zone)",
    "管理策ID (control id)",
    "管理策名 (control title)",
    "規程の条項 (policy clauses)",
    "要求事項 (requirement)",
    "結果 (result)",
    "期待値 (expected)",
    "実測値 (observed)",
    "証跡ファイル (evidence files)",
    "例外ID (exception id)",
    "例外の有効期限 (exception valid until)",
    "備考 (notes)",
]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _cell(text: str) -> str:
    if text.startswith(_FORMULA_START) and not _NUMBER.match(text):
        return "'" + text
    return text


def _value(value: object) -> str:
    return "" if value is None else format_value(value)


def render_checklist_csv(doc: RunDocument, catalog: Catalog | None = None) -> bytes:
    """自己点検表 as CSV bytes: one row per host and control, hosts in the run's order.

    ``catalog`` gives each control's requirement (要求事項); without it that column is empty.
    A host that was not assessed and has no results still gets one row, saying so.
    """
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    writer.writerow(CHECKLIST_HEADER)
    controls = catalog.controls if catalog is not None else {}
    for host, results in host_results(doc):
        zones = ", ".join(zone_label(z) for z in host.zones)
        if not results and not host.assessed:
            row = [host.host, zones, "", "", "", "", status_label(Status.NOT_ASSESSED)]
            row += ["", "", "", "", "", host.reason]
            writer.writerow([_cell(c) for c in row])
            continue
        for result in results:
            control = controls.get(result.control)
            notes = [result.message] if result.message else []
            if not host.assessed and host.reason and host.reason not in result.message:
                notes.insert(0, host.reason)
            waiver = result.waiver
            row = [
                result.host,
                zones,
                result.control,
                result.title.get("ja", ""),
                "; ".join(clause_text(c) for c in result.references),
                control.requirement.ja if control is not None else "",
                status_label(result.status),
                _value(result.expected),
                _value(result.observed),
                "\n".join(result.evidence),
                waiver.exception_id if waiver else "",
                str(waiver.valid_until) if waiver else "",
                "\n".join(notes),
            ]
            writer.writerow([_cell(c) for c in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
