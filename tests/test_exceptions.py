"""The deviation register (逸脱管理): loading with located problems, matching and applying it to
an audit's results (waived, expired, not yet valid, unused; only failures are ever waived)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from kijun import lab
from kijun.catalog import Catalog, load_catalog
from kijun.catalog_source import Problem, read_yaml
from kijun.exceptions import (
    Coverage,
    ExceptionsError,
    Register,
    load_register,
    register_path,
)
from kijun.results import ControlResult, Status, Waiver

ROOT = Path(__file__).resolve().parents[1]

# The lab's hosts and their groups, as Ansible reports them for inventories/lab/hosts.yml.
INVENTORY: dict[str, set[str]] = {
    host.name: {"all", *([f"zone_{host.zone}"] if host.zone else []), *host.functions}
    for host in lab.default_spec().hosts
}

FIELDS = {
    "id": "EX-2026-001",
    "control": "PW-01",
    "hosts": "[lg-app01]",
    "groups": None,
    "reason": "業務システムの制約により最小文字数を 8 文字とする",
    "compensating_measure": "管理端末からのみ接続可能とし、ログインを毎日確認する",
    "valid_from": "2026-04-01",
    "valid_until": "2027-03-31",
    "approved_by": "情報セキュリティ委員会",
    "approved_on": "2026-03-25",
}

BEFORE = date(2026, 3, 31)
FIRST_DAY = date(2026, 4, 1)
DURING = date(2026, 10, 1)
LAST_DAY = date(2027, 3, 31)
AFTER = date(2027, 4, 1)


def entry(**changes: str | None) -> str:
    """One register entry as YAML text: ``FIELDS`` with ``changes`` (values are written
    verbatim; ``None`` leaves the field out)."""
    fields = {**FIELDS, **changes}
    lines = [f"{key}: {value}" for key, value in fields.items() if value is not None]
    return "  - " + "\n    ".join(lines) + "\n"


def write(tmp_path: Path, *entries: str, text: str | None = None) -> Path:
    path = tmp_path / "exceptions.yml"
    path.write_text(text if text is not None else "exceptions:\n" + "".join(entries), "utf-8")
    return path


def line_of(path: Path, needle: str, after: str = "") -> int:
    """The 1-based line of the first ``needle`` (after the first line containing ``after``)."""
    lines = path.read_text("utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines) if i >= start and needle in line) + 1


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def load(path: Path, catalog: Catalog) -> Register:
    return load_register(path, catalog, INVENTORY)


def problems_of(path: Path, catalog: Catalog) -> list[Problem]:
    with pytest.raises(ExceptionsError) as caught:
        load(path, catalog)
    assert str(caught.value) == "\n".join(map(str, caught.value.problems))
    return caught.value.problems


def assert_problem(problems: list[Problem], path: Path, line: int, *fragments: str) -> None:
    for problem in problems:
        if problem.line == line and all(f in problem.message for f in fragments):
            assert problem.file == path
            return
    shown = "\n".join(map(str, problems))
    pytest.fail(f"no problem at line {line} with {fragments}; problems:\n{shown}")


def result(host: str, control: str = "PW-01", status: Status = Status.FAIL) -> ControlResult:
    return ControlResult(
        host=host,
        control=control,
        area="password",
        title={"ja": "パスワードの長さと複雑さ", "en": "Password length and complexity"},
        status=status,
        expected=14,
        observed=8,
        message="minlen is 8, expected 14" if status is Status.FAIL else "",
    )


# --- loading --------------------------------------------------------------------------------


def test_good_register_loads(tmp_path: Path, catalog: Catalog) -> None:
    path = write(
        tmp_path,
        entry(),
        entry(
            id="EX-2026-002",
            control="TS-01",
            hosts=None,
            groups="[zone_internet, mail_relays]",
            reason="Upstream NTP unreachable from the internet zone",
            compensating_measure="'Clock checked weekly by hand'",
            valid_from="'2026-05-01'",  # a quoted date is read as well
            valid_until="2026-05-31",
            approved_on="2026-05-01",  # approval on the first day is fine
        ),
    )
    register = load(path, catalog)
    assert register.path == path
    first, second = register.exceptions
    assert (first.id, first.control, first.hosts, first.groups) == (
        "EX-2026-001",
        "PW-01",
        ("lg-app01",),
        (),
    )
    assert (first.valid_from, first.valid_until, first.approved_on) == (
        FIRST_DAY,
        LAST_DAY,
        date(2026, 3, 25),
    )
    assert first.approved_by == "情報セキュリティ委員会"
    assert (first.file, first.line) == (path, line_of(path, "EX-2026-001"))
    assert first.where.endswith(f"exceptions.yml:{first.line}")
    assert second.groups == ("zone_internet", "mail_relays")
    assert (second.valid_from, second.valid_until) == (date(2026, 5, 1), date(2026, 5, 31))
    assert second.compensating_measure == "Clock checked weekly by hand"
    assert first.waiver() == Waiver(
        exception_id="EX-2026-001",
        reason=FIELDS["reason"] or "",
        compensating_measure=FIELDS["compensating_measure"] or "",
        valid_from="2026-04-01",
        valid_until="2027-03-31",
        approved_by="情報セキュリティ委員会",
        approved_on="2026-03-25",
    )


def test_absent_register_is_empty(tmp_path: Path, catalog: Catalog) -> None:
    register = load(tmp_path / "exceptions.yml", catalog)
    assert (register.path, register.exceptions) == (None, ())
    assert register.match("lg-app01", "PW-01", None, DURING).coverage is Coverage.NONE


def test_inventory_directory_finds_its_register(tmp_path: Path, catalog: Catalog) -> None:
    path = write(tmp_path, entry())
    (tmp_path / "hosts.yml").write_text("all: {}\n")
    assert register_path(tmp_path) == path
    assert register_path(tmp_path / "hosts.yml") == path
    assert load(tmp_path, catalog).path == path


@pytest.mark.parametrize(
    "text",
    ["", "# nothing approved yet\n", "---\nexceptions: []\n"],
    ids=["empty", "comments", "[]"],
)
def test_register_without_entries(tmp_path: Path, catalog: Catalog, text: str) -> None:
    assert load(write(tmp_path, text=text), catalog).exceptions == ()


def test_lab_register_is_valid_and_empty(catalog: Catalog) -> None:
    """The lab's audits must pass without waivers: its register has no entries."""
    path = ROOT / "inventories" / "lab" / "exceptions.yml"
    register = load(path, catalog)
    assert register.path == path
    assert register.exceptions == ()
    assert "- id: EX-2026-001" in path.read_text("utf-8")  # the commented example


def test_problem_shows_file_line_entry_field_and_hint(
    tmp_path: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, entry(valid_until="2027-02-30"))
    monkeypatch.chdir(tmp_path)
    line = line_of(path, "valid_until")
    with pytest.raises(ExceptionsError) as caught:
        load(path, catalog)
    assert str(caught.value) == (
        f"exceptions.yml:{line}: EX-2026-001.valid_until: 2027-02-30 is not a date "
        "(day is out of range for month); write a date like 2027-03-31"
    )


DATE_HINT = "write a date like 2027-03-31"


@pytest.mark.parametrize(
    ("changes", "needle", "fragments"),
    [
        # dates
        ({"valid_until": "2027-02-30"}, "valid_until", ("2027-02-30 is not a date", DATE_HINT)),
        ({"valid_until": "'2027-13-01'"}, "valid_until", ("is not a date", DATE_HINT)),
        ({"valid_until": "2027/03/31"}, "valid_until", ("does not match", DATE_HINT)),
        ({"valid_until": "2027-3-31"}, "valid_until", ("does not match", DATE_HINT)),
        ({"valid_until": "2027-03-31 10:00:00"}, "valid_until", ("got datetime", DATE_HINT)),
        ({"valid_until": "20270331"}, "valid_until", ("got int 20270331", DATE_HINT)),
        ({"valid_from": ""}, "valid_from", ("got nothing (null)", DATE_HINT)),
        (
            {"valid_until": "2026-03-31"},
            "valid_until",
            ("2026-03-31 is before valid_from 2026-04-01", "correct one of the dates"),
        ),
        (
            {"approved_on": "2026-04-05"},
            "approved_on",
            ("2026-04-05 is after valid_from 2026-04-01", "write valid_from: 2026-04-05"),
        ),
        # the control
        ({"control": "PW-1"}, "control", ("unknown control 'PW-1'", "did you mean 'PW-01'?")),
        ({"control": "pw-01"}, "control", ("unknown control", "did you mean 'PW-01'?")),
        ({"control": "ＰＷ－０１"}, "control", ("unknown control", "did you mean 'PW-01'?")),
        ({"control": "PX-01"}, "control", ("unknown control", "did you mean 'PW-01'?")),
        ({"control": "PW-99"}, "control", ("unknown control 'PW-99'", "the PW controls are")),
        ({"control": "ZZ-01"}, "control", ("unknown control 'ZZ-01'", "PW (password)")),
        # hosts and groups
        ({"hosts": "[lg-app1]"}, "hosts", ("host 'lg-app1' is not", "did you mean 'lg-app01'?")),
        ({"hosts": "[db-99]"}, "hosts", ("host 'db-99' is not in the inventory", "its hosts:")),
        (
            {"hosts": None, "groups": "[zone_internt]"},
            "groups",
            ("group 'zone_internt' is not in the inventory", "did you mean 'zone_internet'?"),
        ),
        ({"hosts": "[]"}, "hosts", ("must not be empty",)),
        ({"hosts": "lg-app01"}, "hosts", ("expected a list", "e.g. [lg-app01]")),
        ({"hosts": "[lg-app01, lg-app01]"}, "hosts", ("lists 'lg-app01' more than once",)),
        ({"hosts": None}, "- id", ("names no hosts or groups", "add hosts: [<host>, ...]")),
        # text fields
        ({"reason": "'  '"}, "reason", ("is blank", "理由")),
        ({"compensating_measure": "''"}, "compensating", ("must not be empty", "代替手段")),
        ({"approved_by": "true"}, "approved_by", ("expected text, got bool true", "承認者")),
        # the entry
        (
            {"compensating_measure": None},
            "- id",
            ("missing required field 'compensating_measure'",),
        ),
        ({"approvedby": "CISO"}, "approvedby", ("unknown field", "did you mean 'approved_by'?")),
        ({"id": "'EX 1'"}, "- id", ("does not match", "e.g. EX-2026-001")),
    ],
    ids=lambda value: "-".join(map(str, value)) if isinstance(value, dict) else None,
)
def test_malformed_entry(
    tmp_path: Path,
    catalog: Catalog,
    changes: dict[str, str | None],
    needle: str,
    fragments: tuple[str, ...],
) -> None:
    path = write(tmp_path, entry(**changes))
    problems = problems_of(path, catalog)
    assert_problem(problems, path, line_of(path, needle), *fragments)


def test_schema_is_valid_draft_2020_12() -> None:
    schema = json.loads((ROOT / "catalog" / "schema" / "exceptions.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["exception"]["additionalProperties"] is False


def test_approved_on_the_first_day_is_fine(tmp_path: Path, catalog: Catalog) -> None:
    register = load(write(tmp_path, entry(approved_on="2026-04-01")), catalog)
    assert register.exceptions[0].approved_on == FIRST_DAY


def test_one_day_period_is_fine(tmp_path: Path, catalog: Catalog) -> None:
    register = load(write(tmp_path, entry(valid_until="2026-04-01")), catalog)
    assert register.match("lg-app01", "PW-01", None, FIRST_DAY).coverage is Coverage.VALID


def test_duplicate_id_names_the_first(tmp_path: Path, catalog: Catalog) -> None:
    path = write(tmp_path, entry(), entry(control="PW-02"))
    problems = problems_of(path, catalog)
    assert len(problems) == 1
    first = line_of(path, "EX-2026-001")
    second = line_of(path, "EX-2026-001", after="PW-01")
    assert_problem(
        problems, path, second, f"duplicate exception id EX-2026-001 (first at line {first})"
    )


@pytest.mark.parametrize(
    ("text", "line", "fragments"),
    [
        ("- id: EX-1\n", 1, ("expected a mapping",)),
        ("exceptions:\n  id: EX-1\n", 1, ("expected a list",)),
        ("exception: []\n", 1, ("unknown field 'exception'", "did you mean 'exceptions'?")),
        ("exceptions:\n  - id: EX-1\n   control: PW-01\n", 3, ("YAML syntax error",)),
        ("exceptions:\n  - EX-2026-001\n", 2, ("expected a mapping",)),
    ],
    ids=["list", "mapping", "typo", "syntax", "scalar-entry"],
)
def test_malformed_file(
    tmp_path: Path, catalog: Catalog, text: str, line: int, fragments: tuple[str, ...]
) -> None:
    path = write(tmp_path, text=text)
    assert_problem(problems_of(path, catalog), path, line, *fragments)


def test_duplicate_key_in_an_entry(tmp_path: Path, catalog: Catalog) -> None:
    path = write(tmp_path, entry() + "    control: PW-02\n")
    problems = problems_of(path, catalog)
    assert_problem(problems, path, line_of(path, "PW-02"), "duplicate key 'control'")


def test_every_problem_of_every_entry_is_listed(tmp_path: Path, catalog: Catalog) -> None:
    path = write(
        tmp_path,
        entry(control="PW-1", valid_until="2027-02-30"),
        entry(id="EX-2026-002", hosts="[lg-app1]", colour="red"),
        entry(id="EX-2026-003", reason=None),
    )
    problems = problems_of(path, catalog)
    assert len(problems) == 5
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    assert_problem(problems, path, line_of(path, "PW-1"), "did you mean 'PW-01'?")
    assert_problem(problems, path, line_of(path, "2027-02-30"), "is not a date")
    assert_problem(problems, path, line_of(path, "lg-app1]"), "did you mean 'lg-app01'?")
    assert_problem(problems, path, line_of(path, "colour"), "unknown field 'colour'")
    assert_problem(problems, path, line_of(path, "EX-2026-003"), "missing required field 'reason'")


def test_one_bad_entry_waives_nothing(tmp_path: Path, catalog: Catalog) -> None:
    """The sound entry is not applied on its own: the register is refused as a whole."""
    path = write(tmp_path, entry(), entry(id="EX-2026-002", hosts="[lg-mail1]"))
    problems = problems_of(path, catalog)
    assert len(problems) == 1
    assert_problem(problems, path, line_of(path, "lg-mail1"), "did you mean 'lg-mail01'?")


def test_unreal_yaml_date_does_not_crash_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "any.yml"
    path.write_text("when: 2027-02-30\nreal: 2027-03-31\n")
    source, problems = read_yaml(path)
    assert problems == [] and source is not None
    assert source.data == {"when": "2027-02-30", "real": date(2027, 3, 31)}


# --- matching -------------------------------------------------------------------------------


def register_of(tmp_path: Path, catalog: Catalog, *entries: str) -> Register:
    return load(write(tmp_path, *entries), catalog)


@pytest.mark.parametrize(
    ("today", "coverage", "message"),
    [
        (
            BEFORE,
            Coverage.NOT_YET_VALID,
            "exception EX-2026-001 is not yet valid (valid from 2026-04-01)",
        ),
        (FIRST_DAY, Coverage.VALID, "waived by exception EX-2026-001 (valid until 2027-03-31)"),
        (DURING, Coverage.VALID, "waived by exception EX-2026-001 (valid until 2027-03-31)"),
        (LAST_DAY, Coverage.VALID, "waived by exception EX-2026-001 (valid until 2027-03-31)"),
        (AFTER, Coverage.EXPIRED, "exception EX-2026-001 expired on 2027-03-31"),
    ],
    ids=["before", "first-day", "during", "last-day", "after"],
)
def test_match_by_date(
    tmp_path: Path, catalog: Catalog, today: date, coverage: Coverage, message: str
) -> None:
    register = register_of(tmp_path, catalog, entry())
    found = register.match("lg-app01", "PW-01", [], today)
    assert (found.coverage, found.message) == (coverage, message)
    assert found.exception is register.exceptions[0]
    assert (found.waiver is not None) == (coverage is Coverage.VALID)


def test_match_by_host_group_and_control(tmp_path: Path, catalog: Catalog) -> None:
    register = register_of(tmp_path, catalog, entry(hosts="[gw01]", groups="[zone_internet]"))
    assert register.match("gw01", "PW-01", [], DURING).coverage is Coverage.VALID
    assert register.match("in-web01", "PW-01", None, DURING).coverage is Coverage.VALID  # inventory
    assert register.match("other", "PW-01", ["zone_internet"], DURING).coverage is Coverage.VALID
    assert register.match("in-web01", "PW-01", ["zone_lgwan"], DURING).coverage is Coverage.NONE
    assert register.match("lg-app01", "PW-01", None, DURING).coverage is Coverage.NONE
    assert register.match("in-web01", "PW-02", None, DURING).coverage is Coverage.NONE


def test_group_all_covers_every_host(tmp_path: Path, catalog: Catalog) -> None:
    register = load_register(
        write(tmp_path, entry(hosts=None, groups="[all]")), catalog, {"lg-app01": {"zone_lgwan"}}
    )
    assert register.match("lg-app01", "PW-01", None, DURING).coverage is Coverage.VALID
    assert register.match("unlisted", "PW-01", [], DURING).coverage is Coverage.VALID


def test_match_prefers_a_valid_exception_and_names_all_others(
    tmp_path: Path, catalog: Catalog
) -> None:
    old = entry(id="EX-2025-003", valid_from="2025-04-01", valid_until="2026-03-31",
                approved_on="2025-03-20")  # fmt: skip
    renewal = entry()
    later = entry(id="EX-2027-001", valid_from="2027-04-01", valid_until="2028-03-31",
                  approved_on="2027-03-01")  # fmt: skip
    register = register_of(tmp_path, catalog, old, renewal, later)
    found = register.match("lg-app01", "PW-01", None, DURING)
    assert found.coverage is Coverage.VALID
    assert found.exception is not None and found.exception.id == "EX-2026-001"
    assert {e.id for e in found.others} == {"EX-2025-003", "EX-2027-001"}
    # Between the periods only the expired and the coming one cover it: both are named.
    register = register_of(tmp_path, catalog, old, later)
    found = register.match("lg-app01", "PW-01", None, DURING)
    assert found.coverage is Coverage.EXPIRED
    assert found.message == (
        "exception EX-2025-003 expired on 2026-03-31; "
        "exception EX-2027-001 is not yet valid (valid from 2027-04-01)"
    )


# --- applying to results --------------------------------------------------------------------


def test_valid_exception_waives_a_failure(tmp_path: Path, catalog: Catalog) -> None:
    register = register_of(tmp_path, catalog, entry())
    failing = result("lg-app01")
    other = result("lg-mail01")
    results, unused = register.apply([failing, other], DURING)
    waived, untouched = results
    assert waived.status is Status.WAIVED
    assert waived.waiver == register.exceptions[0].waiver()
    assert waived.message == (
        "minlen is 8, expected 14; waived by exception EX-2026-001 (valid until 2027-03-31)"
    )
    assert (waived.expected, waived.observed) == (14, 8)
    assert untouched is other and untouched.status is Status.FAIL
    assert unused == []
    assert failing.status is Status.FAIL and failing.waiver is None  # inputs unchanged
    assert waived.as_dict()["waiver"]["exception_id"] == "EX-2026-001"


def test_expired_exception_keeps_the_failure(tmp_path: Path, catalog: Catalog) -> None:
    register = register_of(tmp_path, catalog, entry())
    (kept,), unused = register.apply([result("lg-app01")], AFTER)
    assert kept.status is Status.FAIL and kept.waiver is None
    assert kept.message == "minlen is 8, expected 14; exception EX-2026-001 expired on 2027-03-31"
    assert unused == []  # it still names a live deviation


def test_not_yet_valid_exception_keeps_the_failure(tmp_path: Path, catalog: Catalog) -> None:
    register = register_of(tmp_path, catalog, entry())
    (kept,), unused = register.apply([result("lg-app01")], BEFORE)
    assert kept.status is Status.FAIL and kept.waiver is None
    assert kept.message.endswith("exception EX-2026-001 is not yet valid (valid from 2026-04-01)")
    assert unused == []


def test_group_exception_waives_each_member(tmp_path: Path, catalog: Catalog) -> None:
    register = register_of(
        tmp_path, catalog, entry(control="ML-01", hosts=None, groups="[mail_relays]")
    )
    results, unused = register.apply(
        [
            result("lg-mail01", "ML-01"),
            result("in-mail01", "ML-01"),
            result("lg-app01", "ML-01"),  # not a mail relay
            result("in-mail01", "PW-01"),  # another control
        ],
        DURING,
    )
    assert [r.status for r in results] == [Status.WAIVED, Status.WAIVED, Status.FAIL, Status.FAIL]
    assert unused == []


@pytest.mark.parametrize(
    "status", [Status.ERROR, Status.NOT_ASSESSED, Status.PASS, Status.NOT_APPLICABLE]
)
def test_only_failures_are_ever_waived(tmp_path: Path, catalog: Catalog, status: Status) -> None:
    register = register_of(tmp_path, catalog, entry(hosts="[lg-app01]", groups="[all]"))
    given = result("lg-app01", status=status)
    (same,), unused = register.apply([given], DURING)
    assert same is given and same.status is status and same.waiver is None
    assert [u.exception.id for u in unused] == ["EX-2026-001"]
    assert unused[0].reason == f"covers nothing failing (PW-01: {status} on lg-app01)"


def test_unused_when_the_control_passes(tmp_path: Path, catalog: Catalog) -> None:
    register = register_of(tmp_path, catalog, entry(hosts=None, groups="[zone_lgwan]"))
    results = [result(h, status=Status.PASS) for h in ("lg-app01", "lg-mail01")]
    results.append(result("lg-ntp01", status=Status.NOT_ASSESSED))
    out, (unused,) = register.apply(results, DURING)
    assert out == results
    assert unused.exception.id == "EX-2026-001"
    assert unused.reason == (
        "covers nothing failing (PW-01: pass on lg-app01, lg-mail01; not_assessed on lg-ntp01)"
    )
    assert str(unused).endswith(
        f"exceptions.yml:{unused.exception.line}: exception EX-2026-001 is unused: " + unused.reason
    )


def test_unused_when_it_matches_no_host(tmp_path: Path, catalog: Catalog) -> None:
    register = register_of(tmp_path, catalog, entry(hosts="[lg-app01]", groups="[gateways]"))
    _, (unused,) = register.apply([result("in-web01"), result("lg-app01", "PW-02")], DURING)
    assert unused.reason == (
        "matches no host audited in this run (no PW-01 result for lg-app01, group gateways)"
    )


def test_unused_when_another_exception_waives_everything(tmp_path: Path, catalog: Catalog) -> None:
    old = entry(id="EX-2025-003", valid_from="2025-04-01", valid_until="2026-03-31",
                approved_on="2025-03-20")  # fmt: skip
    register = register_of(tmp_path, catalog, old, entry())
    (waived,), (unused,) = register.apply([result("lg-app01")], DURING)
    assert waived.waiver is not None and waived.waiver.exception_id == "EX-2026-001"
    assert unused.exception.id == "EX-2025-003"
    assert unused.reason == (
        "covers nothing failing that is not already waived by EX-2026-001; "
        "exception EX-2025-003 expired on 2026-03-31"
    )


def test_applying_twice_changes_nothing_more(tmp_path: Path, catalog: Catalog) -> None:
    register = register_of(tmp_path, catalog, entry())
    once, _ = register.apply([result("lg-app01")], DURING)
    twice, unused = register.apply(once, DURING)
    assert twice == once and unused == []


def test_empty_register_changes_nothing(catalog: Catalog) -> None:
    given = [result("lg-app01"), result("lg-mail01", status=Status.ERROR)]
    out, unused = Register(None).apply(given, DURING)
    assert out == given and unused == []
