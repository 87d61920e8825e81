"""A run's results as a NIST OSCAL Assessment Results document (``assessment-results.json``).

:func:`assessment_results` is a pure function of a :class:`~kijun.results.RunDocument` and the
catalog: the same run always gives the same bytes (every UUID is a uuid5, every time comes from
the run). :func:`validate` checks a document with compliance-trestle's OSCAL models and with
kijun's own reference checks. The document is written for **OSCAL 1.1.3**, the version the
pinned compliance-trestle (3.12.x) validates.

How kijun's results map onto the OSCAL model:

* **metadata**: the title in Japanese and English (``"<ja> / <en>"``: OSCAL has one title);
  ``last-modified`` is the run's end; ``version`` is the kijun version that made the run;
  parties: the organisation of the profile (role ``prepared-for``) and the operator who ran
  kijun (role ``operator``, a person: ``user@host``). Either is left out when unknown.
* **import-ap**: OSCAL requires a reference to an assessment plan, and kijun writes none: the
  plan of a run is kijun's catalog, the profile, the inventory and the selection. ``href`` is
  therefore ``#<uuid>``, a relative reference to a *placeholder* resource in ``back-matter``
  that says so and names them. No file outside the document is referred to.
* **results**: one result per run (uuid from the run id; ``start``/``end`` from the run).
  ``local-definitions`` holds the hosts as ``inventory-items`` (prop ``asset-id`` = the host's
  inventory name; zones and groups as kijun props) and kijun itself as the assessment tool
  (a ``software`` component in ``assessment-assets``).
* **reviewed-controls**: every control with a result in the run, as ``include-controls``.
  OSCAL control ids are tokens and conventionally lower case, so kijun's ``PW-01`` is
  ``pw-01`` (:func:`control_token`). They are ids of kijun's catalog (``catalog/controls``),
  not of NIST SP 800-53; the original id is kept in the ``control`` prop everywhere.
* **observations**: one per host and control (``methods: ["TEST"]``, type
  ``control-objective``), with the host as subject, kijun as origin, ``relevant-evidence``
  linking the raw files collected from the host (bundle paths such as ``raw/<host>/<key>.txt``,
  relative to the bundle root where ``assessment-results.json`` is written; pass
  ``evidence_base`` if the document is placed elsewhere) and ``results.json``. The description
  gives the status, the message, expected and observed values and every check; the props
  ``status``, ``expected`` and ``observed`` (compact JSON) give the same to machines. A host
  that could not be assessed gets one more observation saying why.
* **findings**: one per host and control, except where the control does not apply to the host
  (``not_applicable``: the observation says so and there is no finding, as there is nothing to
  satisfy). The target is the control's objective: ``type: objective-id``,
  ``target-id: <control-token>_obj`` (e.g. ``pw-01_obj``; kijun's catalog has one requirement
  per control, which is its objective). ``status.state`` is ``satisfied`` only for ``pass`` on a
  host that was assessed. ``fail`` and ``waived`` are ``not-satisfied`` with reason ``fail``;
  ``error`` and ``not_assessed`` are ``not-satisfied`` with reason ``other`` and a remark
  saying the control could not be verified: OSCAL 1.1 has only satisfied/not-satisfied, and
  a control that was not checked must not be reported as satisfied; leaving the finding out
  would hide that it is unverified.
* **risks**: one per ``waived`` result, status ``deviation-approved``: the waiver's reason is the
  description, its compensating measure (代替措置) a ``mitigating-factor`` (and in the
  description), its approval a ``risk-log`` entry (start: the approval date), its expiry the
  ``deadline`` (the end of ``valid_until``, 23:59:59 JST, as the register's dates are dates in
  Japan), the exception id and approver in props. The finding links it in ``related-risks``.

Props kijun adds carry ``ns`` = :data:`NS`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any
from urllib.parse import quote

from kijun.catalog import Catalog, Control
from kijun.results import (
    STATUS_TEXT,
    CheckResult,
    ControlResult,
    HostResult,
    RunDocument,
    Status,
    Waiver,
)

__all__ = [
    "NS",
    "OSCAL_VERSION",
    "TrestleMissingError",
    "assessment_results",
    "control_token",
    "objective_id",
    "stable_uuid",
    "validate",
]

OSCAL_VERSION = "1.1.3"
NS = "https://kijun.invalid/ns/oscal"  # namespace of kijun's own props
# The namespace of every uuid5 kijun makes (itself uuid5(NAMESPACE_URL, NS)).
UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, NS)
JST_OFFSET = "+09:00"


_TOKEN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_VALUE_RE = re.compile(r"^\S(.*\S)?$")


class TrestleMissingError(RuntimeError):
    """compliance-trestle, which :func:`validate` uses, is not installed."""


def control_token(control_id: str) -> str:
    """The OSCAL control-id of a kijun control: ``PW-01`` -> ``pw-01``."""
    return control_id.lower()


def objective_id(control_id: str) -> str:
    """The finding target of a control: its objective, ``PW-01`` -> ``pw-01_obj``."""
    return f"{control_token(control_id)}_obj"


def stable_uuid(*parts: str) -> str:
    """A uuid5 over ``parts`` (e.g. run id, kind, host, control): the same parts, the same
    UUID, so a document made twice from the same run is identical."""
    return str(uuid.uuid5(UUID_NAMESPACE, "\x1f".join(parts)))


def _prop(name: str, value: str, *, cls: str | None = None, kijun: bool = True) -> dict[str, Any]:
    if not _VALUE_RE.match(value):  # OSCAL: no line breaks, no space at either end
        value = " ".join(value.split()) or "-"
    prop: dict[str, Any] = {"name": name, "value": value}
    if kijun:
        prop["ns"] = NS
    if cls is not None and _TOKEN_RE.match(cls):
        prop["class"] = cls
    return prop


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _fenced(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}json\n{text}\n{fence}"


def _code(text: str) -> str:
    """``text`` as Markdown inline code, whatever backticks it holds."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _words(status: Status) -> str:
    ja, en = STATUS_TEXT[status]
    return f"{ja} / {en}"


def _prune(value: Any) -> Any:
    """Without keys whose value is None or empty: OSCAL arrays and objects are never empty."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _end_of_day_jst(day: str) -> str | None:
    try:
        return f"{date.fromisoformat(day).isoformat()}T23:59:59{JST_OFFSET}"
    except ValueError:
        return None


def _start_of_day_jst(day: str) -> str | None:
    try:
        return f"{date.fromisoformat(day).isoformat()}T00:00:00{JST_OFFSET}"
    except ValueError:
        return None


class _Builder:
    def __init__(self, doc: RunDocument, catalog: Catalog, evidence_base: str) -> None:
        self.doc = doc
        self.catalog = catalog
        self.base = evidence_base
        self.run_id = doc.run.run_id
        self.inventory_id = doc.run.inventory_id or doc.run.inventory
        self.tool_uuid = stable_uuid("tool", "kijun", doc.run.kijun_version)
        self.hosts: dict[str, HostResult] = {h.host: h for h in doc.hosts}
        for r in doc.results:  # a result for a host the run did not list: still a subject
            self.hosts.setdefault(r.host, HostResult(r.host, [], [], True))
        self.host_uuid = {h: stable_uuid("host", self.inventory_id, h) for h in self.hosts}

    def uuid(self, kind: str, *parts: str) -> str:
        return stable_uuid(self.run_id, kind, *parts)

    # --- metadata -------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        run = self.doc.run
        org = run.profile.get("organisation") or {}
        org_ja, org_en = org.get("ja", ""), org.get("en", "")
        title_ja = "情報セキュリティ対策基準 監査結果"
        title_en = "Information security baseline assessment results"
        if org_ja or org_en:
            title_ja += f"（{org_ja or org_en}）"
            title_en += f" ({org_en or org_ja})"
        roles, parties, responsible = [], [], []
        if org_ja or org_en:
            party = stable_uuid("party", "organisation", org_ja, org_en)
            name = f"{org_ja} ({org_en})" if org_ja and org_en else org_ja or org_en
            roles.append({"id": "prepared-for", "title": "対象組織 / Organisation assessed"})
            parties.append({"uuid": party, "type": "organization", "name": name})
            responsible.append({"role-id": "prepared-for", "party-uuids": [party]})
        if run.operator.strip():
            party = stable_uuid("party", "operator", run.operator)
            roles.append({"id": "operator", "title": "実行者 / Operator who ran kijun"})
            parties.append(
                {"uuid": party, "type": "person", "name": " ".join(run.operator.split())}
            )
            responsible.append({"role-id": "operator", "party-uuids": [party]})
        return {
            "title": f"{title_ja} / {title_en}",
            "last-modified": run.finished or run.started,
            "version": run.kijun_version,
            "oscal-version": OSCAL_VERSION,
            "props": [_prop("run-id", self.run_id)],
            "roles": roles,
            "parties": parties,
            "responsible-parties": responsible,
        }

    # --- the placeholder plan ----------------------------------------------------------------

    def plan_uuid(self) -> str:
        return self.uuid("assessment-plan")

    def back_matter(self) -> dict[str, Any]:
        run = self.doc.run
        profile = run.profile.get("name") or "(none: catalog defaults)"
        selection = ", ".join(
            f"{k}={_json(v)}" for k, v in sorted(run.selection.items()) if v not in (None, [], "")
        )
        return {
            "resources": [
                {
                    "uuid": self.plan_uuid(),
                    "title": "評価計画（代替） / Assessment plan (placeholder)",
                    "description": (
                        "kijun は OSCAL の評価計画を作成しない。この実行の計画は kijun の"
                        "カタログ (catalog/controls)、プロファイル、インベントリ及び"
                        "選択である。\n\n"
                        "kijun writes no OSCAL assessment plan. The plan of this run is kijun's "
                        f"catalog (catalog/controls), the profile `{profile}`, the inventory "
                        f"`{run.inventory}` and the selection ({selection or 'everything'})."
                    ),
                    "props": [
                        _prop("profile", profile),
                        _prop("inventory", run.inventory or "-"),
                        _prop("kijun-version", run.kijun_version),
                        *(
                            [_prop("git-commit", run.git["commit"])]
                            if run.git.get("commit")
                            else []
                        ),
                    ],
                }
            ]
        }

    # --- local definitions -------------------------------------------------------------------

    def local_definitions(self) -> dict[str, Any]:
        items = []
        for name, host in self.hosts.items():
            zones = ", ".join(host.zones) or "-"
            groups = ", ".join(host.groups) or "-"
            state = (
                "評価済み / assessed" if host.assessed else f"未評価 / not assessed: {host.reason}"
            )
            items.append(
                {
                    "uuid": self.host_uuid[name],
                    "description": (
                        f"{name}: ゾーン / zones {zones}; グループ / groups {groups}; {state}"
                    ),
                    "props": [
                        _prop("asset-id", name, kijun=False),
                        *(_prop("zone", z) for z in host.zones),
                        *(_prop("group", g) for g in host.groups),
                        _prop("assessed", "true" if host.assessed else "false"),
                    ],
                    "remarks": host.reason or None,
                }
            )
        platform = self.uuid("assessment-platform")
        return {
            "inventory-items": items,
            "assessment-assets": {
                "components": [
                    {
                        "uuid": self.tool_uuid,
                        "type": "software",
                        "title": f"kijun {self.doc.run.kijun_version}",
                        "description": (
                            "kijun: 情報セキュリティポリシーの技術的対策の基準設定と逸脱監査 / "
                            "configuration baseline and drift auditor (Ansible, testinfra)"
                        ),
                        "props": [_prop("version", self.doc.run.kijun_version, kijun=False)],
                        "status": {"state": "operational"},
                    }
                ],
                "assessment-platforms": [
                    {
                        "uuid": platform,
                        "title": "kijun",
                        "uses-components": [{"component-uuid": self.tool_uuid}],
                    }
                ],
            },
        }

    # --- reviewed controls -------------------------------------------------------------------

    def control_ids(self) -> list[str]:
        seen = {r.control for r in self.doc.results}
        ordered = [cid for cid in self.catalog.controls if cid in seen]
        return ordered + sorted(seen - set(ordered))

    def reviewed_controls(self) -> dict[str, Any]:
        ids = self.control_ids()
        return {
            "description": (
                "この実行で監査した kijun カタログの管理策 / The controls of kijun's catalog "
                "audited in this run (control-id: the kijun id in lower case)"
            ),
            "control-selections": [
                {
                    "description": f"{len(ids)} controls: {', '.join(ids) or '-'}",
                    "include-controls": [{"control-id": control_token(c)} for c in ids],
                }
            ],
        }

    # --- per host and control ----------------------------------------------------------------

    def subject(self, host: str) -> dict[str, Any]:
        return {"subject-uuid": self.host_uuid[host], "type": "inventory-item", "title": host}

    def origins(self) -> list[dict[str, Any]]:
        return [{"actors": [{"type": "tool", "actor-uuid": self.tool_uuid}]}]

    def effective(self, r: ControlResult) -> Status:
        """The status reported: never a pass for a host the run says was not assessed."""
        host = self.hosts[r.host]
        if not host.assessed and r.status is Status.PASS:
            return Status.NOT_ASSESSED
        return r.status

    def control_props(self, r: ControlResult, status: Status) -> list[dict[str, Any]]:
        return [
            _prop("host", r.host),
            _prop("control", r.control),
            _prop("area", r.area),
            _prop("status", str(status)),
            *(_prop("policy-clause", c.clause, cls=c.source) for c in r.references),
        ]

    def title(self, r: ControlResult) -> str:
        ja, en = r.title.get("ja", ""), r.title.get("en", "")
        names = f"{ja} / {en}" if ja and en else ja or en
        return f"{r.control} {names} — {r.host}"

    def observation(self, r: ControlResult) -> dict[str, Any]:
        status = self.effective(r)
        lines = [f"**{self.title(r)}**", "", f"結果 / Result: {_words(status)}"]
        if r.message:
            lines += ["", r.message]
        if status is Status.NOT_ASSESSED and not self.hosts[r.host].assessed:
            lines += ["", f"ホスト未評価 / host not assessed: {self.hosts[r.host].reason}"]
        if r.expected is not None or r.observed is not None:
            lines += ["", "期待値 / Expected:", "", _fenced(_json(r.expected))]
            lines += ["", "観測値 / Observed:", "", _fenced(_json(r.observed))]
        if r.checks:
            lines += ["", "検査 / Checks:", ""]
            lines += [_check_line(c) for c in r.checks]
        if r.waiver is not None:
            lines += ["", f"承認済み逸脱 / Approved deviation: {r.waiver.exception_id}"]
        props = self.control_props(r, status)
        if r.expected is not None:
            props.append(_prop("expected", _json(r.expected)))
        if r.observed is not None:
            props.append(_prop("observed", _json(r.observed)))
        evidence = [
            {
                "href": quote(self.base + path, safe="/"),
                "description": f"{r.host} から収集した出力 / output collected from {r.host}: "
                + path,
            }
            for path in r.evidence
        ]
        evidence.append(
            {
                "href": quote(self.base + "results.json", safe="/"),
                "description": (
                    "kijun の結果（検査ごとの期待値と観測値） / kijun's results "
                    f"(every check with expected and observed values): {r.host} {r.control}"
                ),
            }
        )
        return {
            "uuid": self.uuid("observation", r.host, r.control),
            "title": self.title(r),
            "description": "\n".join(lines),
            "props": props,
            "methods": ["TEST"],
            "types": ["control-objective"],
            "origins": self.origins(),
            "subjects": [self.subject(r.host)],
            "relevant-evidence": evidence,
            "collected": self.doc.run.started,
        }

    def host_observation(self, host: HostResult) -> dict[str, Any]:
        return {
            "uuid": self.uuid("host-observation", host.host),
            "title": f"{host.host}: 未評価 / not assessed",
            "description": (
                f"ホスト {host.host} は評価されなかった。このホストの管理策は検証されていない。\n\n"
                f"Host {host.host} was not assessed; none of its controls was verified.\n\n"
                f"理由 / Reason: {host.reason or '-'}"
            ),
            "props": [_prop("host", host.host), _prop("status", str(Status.NOT_ASSESSED))],
            "methods": ["TEST"],
            "origins": self.origins(),
            "subjects": [self.subject(host.host)],
            "collected": self.doc.run.started,
        }

    def finding(self, r: ControlResult, risk: str | None) -> dict[str, Any]:
        status = self.effective(r)
        state, reason, remarks = _objective_status(status, r, self.hosts[r.host])
        control = self.catalog.controls.get(r.control)
        related = [{"observation-uuid": self.uuid("observation", r.host, r.control)}]
        if status is Status.NOT_ASSESSED and not self.hosts[r.host].assessed:
            related.append({"observation-uuid": self.uuid("host-observation", r.host)})
        description = f"{r.control} on {r.host}: {_words(status)}"
        if r.message:
            description += f"\n\n{r.message}"
        return {
            "uuid": self.uuid("finding", r.host, r.control),
            "title": self.title(r),
            "description": description,
            "props": self.control_props(r, status),
            "origins": self.origins(),
            "target": {
                "type": "objective-id",
                "target-id": objective_id(r.control),
                "title": f"{r.control} {r.title.get('en', '')}".strip(),
                "description": _requirement(control),
                "status": {"state": state, "reason": reason, "remarks": remarks},
            },
            "related-observations": related,
            "related-risks": [{"risk-uuid": risk}] if risk else None,
        }

    def risk(self, r: ControlResult, waiver: Waiver) -> dict[str, Any]:
        risk_uuid = self.uuid("risk", r.host, r.control)
        approved = _start_of_day_jst(waiver.approved_on)
        return {
            "uuid": risk_uuid,
            "title": f"承認済み逸脱 / Approved deviation {waiver.exception_id}: {self.title(r)}",
            "description": (
                f"理由 / Reason: {waiver.reason}\n\n"
                f"代替措置 / Compensating measure: {waiver.compensating_measure}\n\n"
                f"承認 / Approved by {waiver.approved_by} ({waiver.approved_on}); "
                f"有効期間 / valid {waiver.valid_from} – {waiver.valid_until}"
            ),
            "statement": (
                f"{r.control} は {r.host} で満たされていない（逸脱 {waiver.exception_id} として"
                f"承認済み）。 / {r.control} is not met on {r.host}; the deviation is approved "
                f"as {waiver.exception_id}." + (f"\n\n{r.message}" if r.message else "")
            ),
            "props": [
                _prop("exception-id", waiver.exception_id),
                _prop("approved-by", waiver.approved_by),
                _prop("approved-on", waiver.approved_on),
                _prop("valid-from", waiver.valid_from),
                _prop("valid-until", waiver.valid_until),
                _prop("host", r.host),
                _prop("control", r.control),
            ],
            "status": "deviation-approved",
            "origins": self.origins(),
            "mitigating-factors": [
                {
                    "uuid": self.uuid("mitigating-factor", r.host, r.control),
                    "description": waiver.compensating_measure,
                    "subjects": [self.subject(r.host)],
                }
            ],
            "deadline": _end_of_day_jst(waiver.valid_until),
            "risk-log": (
                {
                    "entries": [
                        {
                            "uuid": self.uuid("risk-log", r.host, r.control),
                            "title": "逸脱承認 / Deviation approved",
                            "description": (
                                f"{waiver.exception_id}: {waiver.approved_by} が承認 / "
                                f"approved by {waiver.approved_by}"
                            ),
                            "start": approved,
                            "status-change": "deviation-approved",
                        }
                    ]
                }
                if approved
                else None
            ),
            "related-observations": [
                {"observation-uuid": self.uuid("observation", r.host, r.control)}
            ],
        }

    # --- the whole ---------------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        run = self.doc.run
        observations, findings, risks = [], [], []
        for r in self.doc.results:
            observations.append(self.observation(r))
            status = self.effective(r)
            if status is Status.NOT_APPLICABLE:
                continue
            risk = None
            if status is Status.WAIVED and r.waiver is not None:
                risks.append(self.risk(r, r.waiver))
                risk = risks[-1]["uuid"]
            findings.append(self.finding(r, risk))
        observations += [self.host_observation(h) for h in self.hosts.values() if not h.assessed]
        counts = self.doc.counts()
        summary = ", ".join(f"{STATUS_TEXT[Status(k)][1]} {v}" for k, v in counts.items() if v)
        assessed = sum(1 for h in self.hosts.values() if h.assessed)
        props = [
            _prop("run-id", self.run_id),
            _prop("kijun-version", run.kijun_version),
            _prop("inventory", run.inventory or "-"),
            *([_prop("profile", run.profile["name"])] if run.profile.get("name") else []),
            *([_prop("git-commit", run.git["commit"])] if run.git.get("commit") else []),
            *(_prop(f"count-{k.replace('_', '-')}", str(v)) for k, v in counts.items()),
        ]
        return {
            "uuid": self.uuid("result"),
            "title": f"kijun 監査 {self.run_id} / kijun audit run {self.run_id}",
            "description": (
                f"{len(self.hosts)} ホスト（評価 {assessed}）、{len(self.control_ids())} 管理策 / "
                f"{len(self.hosts)} hosts ({assessed} assessed), {len(self.control_ids())} "
                f"controls: {summary or 'no results'}"
            ),
            "start": run.started,
            "end": run.finished or None,
            "props": props,
            "local-definitions": self.local_definitions(),
            "reviewed-controls": self.reviewed_controls(),
            "observations": observations,
            "risks": risks,
            "findings": findings,
        }

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = _prune(
            {
                "assessment-results": {
                    "uuid": self.uuid("assessment-results"),
                    "metadata": self.metadata(),
                    "import-ap": {
                        "href": f"#{self.plan_uuid()}",
                        "remarks": (
                            "kijun writes no assessment plan; this refers to the placeholder "
                            "resource in back-matter, which names the catalog, profile, inventory "
                            "and selection that were the plan of this run."
                        ),
                    },
                    "results": [self.result()],
                    "back-matter": self.back_matter(),
                }
            }
        )
        return document


def _check_line(check: CheckResult) -> str:
    line = f"- {_code(check.check)}: {check.outcome}"
    if check.expected is not None or check.observed is not None:
        line += (
            f" — expected {_code(_json(check.expected))}, observed {_code(_json(check.observed))}"
        )
    if check.source:
        line += f" — 設定箇所 / set in {_code(check.source)}"
    if check.message:
        line += f" ({' '.join(check.message.split())})"
    return line


def _requirement(control: Control | None) -> str | None:
    if control is None:
        return None
    return f"{control.requirement.ja}\n\n{control.requirement.en}"


def _objective_status(
    status: Status, r: ControlResult, host: HostResult
) -> tuple[str, str, str | None]:
    """(state, reason, remarks) of a finding's target."""
    if status is Status.PASS:
        return "satisfied", "pass", None
    if status is Status.FAIL:
        return "not-satisfied", "fail", None
    if status is Status.WAIVED:
        exception = r.waiver.exception_id if r.waiver else "?"
        return (
            "not-satisfied",
            "fail",
            f"承認済み逸脱 {exception}（関連リスク参照） / "
            f"deviation approved as {exception} (see the related risk)",
        )
    if status is Status.ERROR:
        return (
            "not-satisfied",
            "other",
            "検査を実行できず、検証されていない / a check could not run; the control is "
            f"not verified: {r.message or '-'}",
        )
    why = host.reason if not host.assessed else r.message
    return (
        "not-satisfied",
        "other",
        f"未評価のため検証されていない / not assessed, so not verified: {why or '-'}",
    )


def assessment_results(
    doc: RunDocument, catalog: Catalog, *, evidence_base: str = ""
) -> dict[str, Any]:
    """The OSCAL Assessment Results document (``{"assessment-results": {...}}``) of a run.

    ``evidence_base`` is put before every evidence href (bundle paths such as
    ``raw/<host>/<key>.txt`` and ``results.json``); the default suits a document written at the
    bundle's root.
    """
    return _Builder(doc, catalog, evidence_base).document()


# --- validation ------------------------------------------------------------------------------

_DATETIME_KEYS = {"published", "last-modified", "start", "end", "collected", "expires", "deadline"}
_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def validate(document: dict[str, Any]) -> list[str]:
    """What is wrong with an OSCAL Assessment Results document; ``[]`` if nothing.

    The document is parsed with compliance-trestle's OSCAL models (``AssessmentResults``), then
    checked for what the models do not check: unique UUIDs, references that resolve
    (observations, risks, subjects, tool, parties, roles, the placeholder plan, finding targets
    among the reviewed controls) and date-times with a time zone.
    Raises :class:`TrestleMissingError` when compliance-trestle is not installed.
    """
    try:
        from pydantic.v1 import ValidationError
        from trestle.oscal import OSCAL_VERSION_REGEX
        from trestle.oscal.assessment_results import AssessmentResults
    except ImportError as exc:
        raise TrestleMissingError(
            "cannot validate OSCAL: compliance-trestle is not installed; install kijun's "
            "development dependencies: .venv/bin/pip install -c requirements.lock -e '.[dev]'"
        ) from exc
    if not isinstance(document, dict) or set(document) != {"assessment-results"}:
        keys = ", ".join(map(str, document)) if isinstance(document, dict) else type(document)
        return [f"the document must have exactly one key, 'assessment-results' (has: {keys})"]
    body = document["assessment-results"]
    problems: list[str] = []
    try:
        AssessmentResults.parse_obj(body)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            problems.append(f"assessment-results.{where}: {error['msg']}")
    version = body.get("metadata", {}).get("oscal-version") if isinstance(body, dict) else None
    if isinstance(version, str) and not re.match(OSCAL_VERSION_REGEX, version):
        problems.append(f"oscal-version {version} is not one compliance-trestle validates")
    if isinstance(body, dict):
        problems += _reference_problems(body)
    return problems


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) of every key in nested dicts and lists."""
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else key
            yield here, key, item
            yield from _walk(item, here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def _uuids(items: Iterable[Any]) -> set[str]:
    return {i["uuid"] for i in items if isinstance(i, dict) and "uuid" in i}


def _reference_problems(body: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    for path, key, value in _walk(body, "assessment-results"):
        if key == "uuid" and isinstance(value, str):
            if value in seen:
                problems.append(f"{path}: uuid {value} is also used at {seen[value]}")
            seen.setdefault(value, path)
        if key in _DATETIME_KEYS and isinstance(value, str) and not _DATETIME_RE.match(value):
            problems.append(f"{path}: {value!r} is not a date-time with a time zone")
    metadata = body.get("metadata") or {}
    parties = _uuids(metadata.get("parties") or [])
    roles = {r.get("id") for r in metadata.get("roles") or [] if isinstance(r, dict)}
    for index, rp in enumerate(metadata.get("responsible-parties") or []):
        where = f"assessment-results.metadata.responsible-parties[{index}]"
        if rp.get("role-id") not in roles:
            problems.append(f"{where}: role {rp.get('role-id')!r} is not in metadata.roles")
        for party in rp.get("party-uuids") or []:
            if party not in parties:
                problems.append(f"{where}: party {party} is not in metadata.parties")
    resources = _uuids((body.get("back-matter") or {}).get("resources") or [])
    href = (body.get("import-ap") or {}).get("href", "")
    if isinstance(href, str) and href.startswith("#") and href[1:] not in resources:
        problems.append(f"assessment-results.import-ap.href: {href} names no back-matter resource")
    for index, result in enumerate(body.get("results") or []):
        problems += _result_problems(result, f"assessment-results.results[{index}]", parties)
    return problems


def _result_problems(result: dict[str, Any], where: str, parties: set[str]) -> list[str]:
    problems: list[str] = []
    local = result.get("local-definitions") or {}
    assets = local.get("assessment-assets") or {}
    components = _uuids(local.get("components") or []) | _uuids(assets.get("components") or [])
    subjects = components | _uuids(local.get("inventory-items") or []) | parties
    subjects |= _uuids(local.get("users") or [])
    observations = _uuids(result.get("observations") or [])
    risks = _uuids(result.get("risks") or [])
    selections = (result.get("reviewed-controls") or {}).get("control-selections") or []
    include_all = any("include-all" in s for s in selections)
    controls = {c.get("control-id") for s in selections for c in s.get("include-controls") or []}
    for path, key, value in _walk(result, where):
        if key == "observation-uuid" and value not in observations:
            problems.append(f"{path}: observation {value} is not in this result")
        elif key == "risk-uuid" and value not in risks:
            problems.append(f"{path}: risk {value} is not in this result")
        elif key == "subject-uuid" and value not in subjects:
            problems.append(f"{path}: subject {value} is not defined in local-definitions")
        elif key == "actors" and isinstance(value, list):
            for index, actor in enumerate(value):
                known = components if actor.get("type") == "tool" else parties | components
                if actor.get("actor-uuid") not in known:
                    problems.append(
                        f"{path}[{index}]: actor {actor.get('actor-uuid')} "
                        f"({actor.get('type')}) is not defined"
                    )
    for index, finding in enumerate(result.get("findings") or []):
        target = finding.get("target") or {}
        target_id = str(target.get("target-id", ""))
        control = re.sub(r"_(obj|smt)(\..*)?$", "", target_id)
        if not include_all and control not in controls:
            problems.append(
                f"{where}.findings[{index}].target.target-id: {target_id} is not an objective or "
                "statement of a reviewed control"
            )
        if "status" not in target:
            problems.append(f"{where}.findings[{index}].target: status is required by OSCAL")
    return problems
