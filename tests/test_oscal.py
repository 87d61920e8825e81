"""The OSCAL Assessment Results document of a run: every status, waivers as approved deviations,
hosts that were not assessed, determinism, and validation with compliance-trestle's models."""

from __future__ import annotations

import copy
import json
import sys
import uuid
from typing import Any

import pytest

from kijun import oscal
from kijun.catalog import Catalog, load_catalog
from kijun.results import RunDocument, Status
from tests.rundocs import WAIVER, run_doc

S = Status
UNREACHABLE = {"mn-app01": "ssh: connect to host mn-app01 port 22: Connection refused"}
EVERY_STATUS = {
    ("lg-app01", "PW-01"): S.FAIL,
    ("lg-app01", "TS-01"): S.PASS,
    ("lg-app01", "LG-01"): S.NOT_APPLICABLE,
    ("in-web01", "PW-01"): S.WAIVED,
    ("in-web01", "TS-01"): S.ERROR,
    ("mn-app01", "PW-01"): S.NOT_ASSESSED,
    ("mn-app01", "TS-01"): S.NOT_ASSESSED,
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def every_status() -> RunDocument:
    return run_doc(EVERY_STATUS, unreachable=UNREACHABLE)


def body(doc: RunDocument, catalog: Catalog, **kwargs: Any) -> dict[str, Any]:
    document = oscal.assessment_results(doc, catalog, **kwargs)
    assert list(document) == ["assessment-results"]
    result: dict[str, Any] = document["assessment-results"]
    return result


def props(item: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for prop in item.get("props", []):
        out.setdefault(prop["name"], []).append(prop["value"])
    return out


def by_pair(items: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (props(i)["host"][0], props(i)["control"][0]): i for i in items if "control" in props(i)
    }


# --- validation -------------------------------------------------------------------------------


def test_a_run_with_every_status_validates(every_status: RunDocument, catalog: Catalog) -> None:
    document = oscal.assessment_results(every_status, catalog)
    assert oscal.validate(document) == []
    # and with trestle's own model, as an OSCAL tool would read it
    from trestle.oscal.assessment_results import AssessmentResults

    model = AssessmentResults.parse_obj(document["assessment-results"])
    assert str(model.uuid) == document["assessment-results"]["uuid"]
    assert len(model.results[0].findings or []) == 6
    json.dumps(document, ensure_ascii=False)  # plain JSON data


def test_a_run_with_zero_failures(catalog: Catalog) -> None:
    doc = run_doc({(h, c): S.PASS for h in ("lg-app01", "in-web01") for c in ("PW-01", "TS-01")})
    ar = body(doc, catalog)
    assert oscal.validate({"assessment-results": ar}) == []
    (result,) = ar["results"]
    assert "risks" not in result
    assert {f["target"]["status"]["state"] for f in result["findings"]} == {"satisfied"}
    assert {f["target"]["status"]["reason"] for f in result["findings"]} == {"pass"}
    assert len(result["observations"]) == 4  # no host-level observation: every host assessed


def test_an_empty_run_still_validates(catalog: Catalog) -> None:
    ar = body(run_doc({}), catalog)
    assert oscal.validate({"assessment-results": ar}) == []
    assert "findings" not in ar["results"][0] and "observations" not in ar["results"][0]


def test_the_oscal_version_is_the_one_trestle_validates() -> None:
    import trestle.oscal

    assert oscal.OSCAL_VERSION == trestle.oscal.OSCAL_VERSION


# --- statuses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state", "reason"),
    [
        (S.PASS, "satisfied", "pass"),
        (S.FAIL, "not-satisfied", "fail"),
        (S.WAIVED, "not-satisfied", "fail"),
        (S.ERROR, "not-satisfied", "other"),
        (S.NOT_ASSESSED, "not-satisfied", "other"),
    ],
)
def test_each_status_as_a_finding(
    every_status: RunDocument, catalog: Catalog, status: Status, state: str, reason: str
) -> None:
    (result,) = body(every_status, catalog)["results"]
    findings = by_pair(result["findings"])
    observations = by_pair(result["observations"])
    for pair, given in EVERY_STATUS.items():
        if given is not status:
            continue
        finding, observation = findings[pair], observations[pair]
        host, control = pair
        assert finding["target"]["type"] == "objective-id"
        assert finding["target"]["target-id"] == f"{control.lower()}_obj"
        assert finding["target"]["status"]["state"] == state
        assert finding["target"]["status"]["reason"] == reason
        assert props(finding)["status"] == [str(status)]
        assert props(observation)["status"] == [str(status)]
        assert observation["methods"] == ["TEST"]
        assert observation["subjects"][0]["type"] == "inventory-item"
        assert observation["subjects"][0]["title"] == host
        related = [r["observation-uuid"] for r in finding["related-observations"]]
        assert observation["uuid"] in related


def test_not_applicable_is_observed_but_not_a_finding(
    every_status: RunDocument, catalog: Catalog
) -> None:
    (result,) = body(every_status, catalog)["results"]
    assert ("lg-app01", "LG-01") not in by_pair(result["findings"])
    observation = by_pair(result["observations"])[("lg-app01", "LG-01")]
    assert "対象外 / Not applicable" in observation["description"]


def test_observed_and_expected_values(every_status: RunDocument, catalog: Catalog) -> None:
    (result,) = body(every_status, catalog)["results"]
    observation = by_pair(result["observations"])[("lg-app01", "PW-01")]
    assert props(observation)["expected"] == ['{"minlen": 12}']
    assert props(observation)["observed"] == ['{"minlen": 8}']
    text = observation["description"]
    assert "期待値 / Expected" in text and '{"minlen": 12}' in text
    assert "観測値 / Observed" in text and '{"minlen": 8}' in text
    assert "`password_check`: fail" in text
    assert "設定箇所 / set in `/etc/kijun-sample/password.conf:3`" in text
    assert props(observation)["policy-clause"] == ["第2章 7(7) 3", "第2章 7(7) 3"]


def test_evidence_links_the_bundle_files(every_status: RunDocument, catalog: Catalog) -> None:
    (result,) = body(every_status, catalog)["results"]
    observation = by_pair(result["observations"])[("lg-app01", "PW-01")]
    hrefs = [e["href"] for e in observation["relevant-evidence"]]
    assert hrefs == ["raw/lg-app01/password/config.txt", "results.json"]
    assert all(e["description"] for e in observation["relevant-evidence"])
    (result,) = body(every_status, catalog, evidence_base="../")["results"]
    observation = by_pair(result["observations"])[("lg-app01", "PW-01")]
    assert [e["href"] for e in observation["relevant-evidence"]] == [
        "../raw/lg-app01/password/config.txt",
        "../results.json",
    ]


def test_a_waiver_is_an_approved_deviation(every_status: RunDocument, catalog: Catalog) -> None:
    (result,) = body(every_status, catalog)["results"]
    (risk,) = result["risks"]
    finding = by_pair(result["findings"])[("in-web01", "PW-01")]
    observation = by_pair(result["observations"])[("in-web01", "PW-01")]
    assert finding["related-risks"] == [{"risk-uuid": risk["uuid"]}]
    assert risk["related-observations"] == [{"observation-uuid": observation["uuid"]}]
    assert risk["status"] == "deviation-approved"
    assert WAIVER.reason in risk["description"]
    assert WAIVER.compensating_measure in risk["description"]
    assert [m["description"] for m in risk["mitigating-factors"]] == [WAIVER.compensating_measure]
    assert risk["deadline"] == "2027-03-31T23:59:59+09:00"  # the end of valid_until, JST
    (entry,) = risk["risk-log"]["entries"]
    assert entry["start"] == "2026-03-25T00:00:00+09:00"
    assert entry["status-change"] == "deviation-approved"
    assert WAIVER.approved_by in entry["description"]
    assert props(risk)["exception-id"] == ["EX-2026-001"]
    assert props(risk)["approved-by"] == ["情報セキュリティ委員会"]
    assert props(risk)["valid-until"] == ["2027-03-31"]
    assert "EX-2026-001" in finding["target"]["status"]["remarks"]
    # only the waived result is linked to a risk
    others = [f for f in result["findings"] if f is not finding]
    assert not any("related-risks" in f for f in others)


def test_a_host_not_assessed_is_never_satisfied(catalog: Catalog) -> None:
    # A result claiming pass for a host the run marks as not assessed is not trusted.
    doc = run_doc(
        {("mn-app01", "PW-01"): S.NOT_ASSESSED, ("mn-app01", "TS-01"): S.PASS},
        unreachable=UNREACHABLE,
    )
    ar = body(doc, catalog)
    assert oscal.validate({"assessment-results": ar}) == []
    (result,) = ar["results"]
    for finding in result["findings"]:
        status = finding["target"]["status"]
        assert (status["state"], status["reason"]) == ("not-satisfied", "other")
        assert UNREACHABLE["mn-app01"] in status["remarks"]
        assert props(finding)["status"] == ["not_assessed"]
        assert len(finding["related-observations"]) == 2  # its own and the host's
    host_observations = [o for o in result["observations"] if "control" not in props(o)]
    (host_observation,) = host_observations
    assert "not assessed" in host_observation["title"]
    assert UNREACHABLE["mn-app01"] in host_observation["description"]
    (item,) = [
        i
        for i in result["local-definitions"]["inventory-items"]
        if props(i)["asset-id"] == ["mn-app01"]
    ]
    assert props(item)["assessed"] == ["false"]


# --- identity and determinism -----------------------------------------------------------------


def test_same_run_same_document(every_status: RunDocument, catalog: Catalog) -> None:
    first = oscal.assessment_results(every_status, catalog)
    again = oscal.assessment_results(copy.deepcopy(every_status), catalog)
    assert json.dumps(first, ensure_ascii=False) == json.dumps(again, ensure_ascii=False)


def test_uuids_are_uuid5_of_run_host_and_control(
    every_status: RunDocument, catalog: Catalog
) -> None:
    ar = body(every_status, catalog)
    run_id = every_status.run.run_id
    (result,) = ar["results"]
    finding = by_pair(result["findings"])[("lg-app01", "PW-01")]
    assert finding["uuid"] == oscal.stable_uuid(run_id, "finding", "lg-app01", "PW-01")
    assert uuid.UUID(finding["uuid"]).version == 5
    assert ar["uuid"] == oscal.stable_uuid(run_id, "assessment-results")
    assert result["uuid"] == oscal.stable_uuid(run_id, "result")


def test_another_run_other_uuids_same_hosts(every_status: RunDocument, catalog: Catalog) -> None:
    other = run_doc(EVERY_STATUS, unreachable=UNREACHABLE, run_id="20261122T010000Z-lab-9f9f")
    first, second = body(every_status, catalog), body(other, catalog)
    assert first["uuid"] != second["uuid"]
    ids = {f["uuid"] for f in first["results"][0]["findings"]}
    assert not ids & {f["uuid"] for f in second["results"][0]["findings"]}

    def items(ar: dict[str, Any]) -> list[str]:
        return [i["uuid"] for i in ar["results"][0]["local-definitions"]["inventory-items"]]

    assert items(first) == items(second)  # a host keeps its uuid across runs of an inventory


def test_reviewed_controls_are_lower_case_tokens_in_catalog_order(
    every_status: RunDocument, catalog: Catalog
) -> None:
    (result,) = body(every_status, catalog)["results"]
    (selection,) = result["reviewed-controls"]["control-selections"]
    ids = [c["control-id"] for c in selection["include-controls"]]
    order = [c.lower() for c in catalog.controls]
    assert ids == sorted({"pw-01", "ts-01", "lg-01"}, key=order.index)
    assert oscal.control_token("PW-01") == "pw-01"
    assert oscal.objective_id("TS-04") == "ts-04_obj"


# --- metadata, plan -----------------------------------------------------------------------------


def test_metadata(every_status: RunDocument, catalog: Catalog) -> None:
    ar = body(every_status, catalog)
    metadata = ar["metadata"]
    assert metadata["title"] == (
        "情報セキュリティ対策基準 監査結果（下條村） / "
        "Information security baseline assessment results (Shimojo Village)"
    )
    assert metadata["last-modified"] == every_status.run.finished
    assert metadata["oscal-version"] == oscal.OSCAL_VERSION
    assert metadata["version"] == "0.1.0"
    parties = {p["uuid"]: p for p in metadata["parties"]}
    roles = {r["role-id"]: r["party-uuids"] for r in metadata["responsible-parties"]}
    (org,) = roles["prepared-for"]
    (operator,) = roles["operator"]
    assert parties[org] == {"uuid": org, "type": "organization", "name": "下條村 (Shimojo Village)"}
    assert parties[operator]["name"] == "admin@ctrl01"
    (result,) = ar["results"]
    assert (result["start"], result["end"]) == (every_status.run.started, every_status.run.finished)


def test_without_a_profile_there_is_no_organisation(catalog: Catalog) -> None:
    ar = body(run_doc({("lg-app01", "PW-01"): S.PASS}, profile=None), catalog)
    assert oscal.validate({"assessment-results": ar}) == []
    assert [r["role-id"] for r in ar["metadata"]["responsible-parties"]] == ["operator"]
    assert ar["metadata"]["title"].endswith("assessment results")


def test_the_plan_is_a_placeholder_in_back_matter(
    every_status: RunDocument, catalog: Catalog
) -> None:
    ar = body(every_status, catalog)
    href = ar["import-ap"]["href"]
    assert href.startswith("#")
    (resource,) = ar["back-matter"]["resources"]
    assert resource["uuid"] == href[1:]
    assert "placeholder" in resource["title"]
    assert props(resource)["profile"] == ["shimojo"]


# --- what validate() reports ------------------------------------------------------------------


def broken(every_status: RunDocument, catalog: Catalog) -> dict[str, Any]:
    return oscal.assessment_results(every_status, catalog)


def test_validate_reports_model_errors(every_status: RunDocument, catalog: Catalog) -> None:
    document = broken(every_status, catalog)
    del document["assessment-results"]["metadata"]["title"]
    document["assessment-results"]["results"][0]["findings"][0]["target"]["status"]["state"] = "ok"
    problems = oscal.validate(document)
    assert any(p.startswith("assessment-results.metadata.title") for p in problems)
    assert any("findings.0.target.status.state" in p for p in problems)


def test_validate_reports_broken_references(every_status: RunDocument, catalog: Catalog) -> None:
    document = broken(every_status, catalog)
    ar = document["assessment-results"]
    result = ar["results"][0]
    dangling = str(uuid.uuid4())
    result["findings"][0]["related-observations"] = [{"observation-uuid": dangling}]
    result["findings"][1]["target"]["target-id"] = "zz-99_obj"
    result["observations"][0]["collected"] = "2026-11-21T23:38:02"  # no time zone
    result["observations"][1]["uuid"] = result["observations"][0]["uuid"]
    ar["import-ap"]["href"] = f"#{dangling}"
    problems = oscal.validate(document)
    assert any(f"observation {dangling} is not in this result" in p for p in problems)
    assert any(
        "zz-99_obj is not an objective or statement of a reviewed control" in p for p in problems
    )
    assert any("is not a date-time with a time zone" in p for p in problems)
    assert any("is also used at" in p for p in problems)
    assert any("import-ap.href" in p for p in problems)


def test_validate_wants_the_wrapper() -> None:
    assert oscal.validate({"uuid": "x"}) == [
        "the document must have exactly one key, 'assessment-results' (has: uuid)"
    ]


def test_validate_says_when_trestle_is_missing(
    monkeypatch: pytest.MonkeyPatch, every_status: RunDocument, catalog: Catalog
) -> None:
    monkeypatch.setitem(sys.modules, "trestle.oscal.assessment_results", None)
    with pytest.raises(oscal.TrestleMissingError, match="compliance-trestle is not installed"):
        oscal.validate(broken(every_status, catalog))


def test_awkward_values_stay_valid(catalog: Catalog) -> None:
    doc = run_doc({("lg-app01", "PW-01"): S.FAIL})
    r = doc.results[0]
    r.observed = {"line": "  minlen = 8\t# `set` by ```hand```  "}
    r.message = "  two\nlines  "
    doc.run.operator = "  root@ctrl01 (sudo from\nalice)  "
    ar = body(doc, catalog)
    assert oscal.validate({"assessment-results": ar}) == []
    observation = ar["results"][0]["observations"][0]
    assert json.loads(props(observation)["observed"][0]) == r.observed  # kept exactly
    assert "````json" in observation["description"]  # a fence longer than any run of backticks
    assert ar["metadata"]["parties"][1]["name"] == "root@ctrl01 (sudo from alice)"
