"""The catalog engine: loading, validation problems (file, line, hint), views and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kijun.catalog import (
    CatalogError,
    Problem,
    UnknownNameError,
    control_view,
    list_profiles,
    load_catalog,
    load_profile,
    load_profiles,
)
from kijun.cli import app

REAL_CATALOG = Path(__file__).resolve().parents[1] / "catalog"
CORE_AREAS = {"password", "time", "logging", "mail", "wireless", "firewall"}

SEEDS = """\
seeds:
  - key: S1
    organisation: {ja: 甲市, en: Kō City}
    document: {ja: 甲市情報セキュリティポリシー, en: Kō City information security policy}
    file: 001_example.txt
    contains: {ja: 対策基準, en: standards}
"""

SEED_FILE = "001_example.txt"

# The text of seed S1 (catalog/seeds/001_example.txt): every quote below is in it verbatim.
SEED_TEXT = """\
甲市情報セキュリティ対策基準

第3条（パスワード）
２　パスワードは十分な長さとする。
３　初期パスワードは変更する。

第5条（時刻）
　情報システムの時刻を同期する。
"""

PASSWORD = """\
area: password
prefix: PW
title: {ja: パスワード管理, en: Password policy}
controls:
  - id: PW-01
    title: {ja: パスワードの長さと複雑さ, en: Password length and complexity}
    requirement:
      ja: パスワードは十分な長さとする。
      en: Passwords have a sufficient minimum length.
    zones: [mynumber, lgwan, internet]
    role: password_policy
    audit:
      module: password
      checks: [pwquality_minlen]
    parameters:
      - name: password_policy_minlen
        type: int
        default: 12
        minimum: 8
        rationale: {ja: 十分な長さ, en: long enough}
      - name: password_policy_owner
        type: str
        default: root
        rationale: {ja: 所有者, en: owner}
    references:
      - seed: S1
        clause: "第3条 2"
        quote: パスワードは十分な長さとする
  - id: PW-02
    title: {ja: 初期パスワードの変更, en: Change initial passwords}
    requirement: {ja: 初期パスワードは変更する。, en: Initial passwords are changed.}
    zones: [lgwan]
    role: password_policy
    audit: {module: password, checks: [chage_forced]}
    parameters: []
    references:
      - {seed: S1, clause: "第3条 3", quote: 初期パスワードは変更する}
"""

TIME = """\
area: time
prefix: TM
title: {ja: 時刻同期, en: Time synchronisation}
controls:
  - id: TM-01
    title: {ja: 時刻の同期, en: Clock synchronisation}
    requirement: {ja: 時刻を同期する。, en: Clocks are synchronised.}
    zones: [lgwan, internet]
    functions: [ntp_servers]
    role: time_sync
    audit: {module: time, checks: [chrony_sources]}
    parameters:
      - name: time_sync_servers
        type: list
        elements: str
        default: [ntp.example.lg.jp]
        rationale: {ja: 庁内の時刻源, en: the internal time source}
    references:
      - {seed: S1, clause: "第5条", quote: 時刻を同期する}
"""

PROFILE = """\
profile: kou
title: {ja: 甲市プロファイル, en: Kō City profile}
organisation: {ja: 甲市, en: Kō City}
based_on: [S1]
description: {ja: 甲市の対策基準, en: Kō City's standards}
controls:
  PW-01:
    clauses: ["第7条 1"]
    parameters:
      password_policy_minlen: 14
    zone_parameters:
      mynumber: {password_policy_minlen: 16}
  TM-01:
    clauses: ["第9条"]
    applicable: false
    reason: {ja: 時刻サーバなし, en: no time server of its own}
"""


def make_catalog(
    tmp_path: Path,
    areas: dict[str, str] | None = None,
    profiles: dict[str, str] | None = None,
    seeds: str = SEEDS,
    seed_files: dict[str, str] | None = None,
) -> Path:
    """A catalog in ``tmp_path/catalog`` (with the real schemas and the seed texts
    ``seed_files``, default S1's); also a checkout root there."""
    root = tmp_path / "catalog"
    shutil.copytree(REAL_CATALOG / "schema", root / "schema")
    (root / "controls").mkdir()
    (root / "profiles").mkdir()
    (root / "seeds").mkdir()
    (root / "seeds.yml").write_text(seeds, encoding="utf-8")
    for name, text in (seed_files if seed_files is not None else {SEED_FILE: SEED_TEXT}).items():
        (root / "seeds" / name).write_text(text, encoding="utf-8")
    for name, text in (
        areas if areas is not None else {"password": PASSWORD, "time": TIME}
    ).items():
        (root / "controls" / f"{name}.yml").write_text(text, encoding="utf-8")
    for name, text in (profiles if profiles is not None else {"kou": PROFILE}).items():
        (root / "profiles" / f"{name}.yml").write_text(text, encoding="utf-8")
    (tmp_path / "ansible.cfg").write_text("[defaults]\n", encoding="utf-8")
    return root


def line_of(text: str, needle: str, after: str = "") -> int:
    """The 1-based line of the first ``needle`` in ``text`` (after the first ``after``)."""
    start = text.index(after) if after else 0
    return text.count("\n", 0, text.index(needle, start)) + 1


def catalog_problems(root: Path) -> list[Problem]:
    with pytest.raises(CatalogError) as info:
        load_catalog(root)
    return info.value.problems


def profile_problems(root: Path, name: str = "kou") -> list[Problem]:
    catalog = load_catalog(root)
    with pytest.raises(CatalogError) as info:
        load_profile(name, catalog)
    return info.value.problems


def assert_problem(problems: list[Problem], file: Path, line: int, *fragments: str) -> Problem:
    """Some problem is at ``file:line`` and its message contains every fragment."""
    for problem in problems:
        at = problem.file == file and problem.line == line
        if at and all(fragment in problem.message for fragment in fragments):
            return problem
    listing = "\n".join(str(p) for p in problems)
    raise AssertionError(f"no problem at {file.name}:{line} with {fragments}; got:\n{listing}")


# --- a good catalog ---------------------------------------------------------------------------


def test_schemas_are_valid_draft_2020_12() -> None:
    from jsonschema import Draft202012Validator

    for name in ("seeds", "area", "profile"):
        schema = json.loads((REAL_CATALOG / "schema" / f"{name}.schema.json").read_text())
        Draft202012Validator.check_schema(schema)
        assert schema["additionalProperties"] is False


def test_good_catalog_loads(tmp_path: Path) -> None:
    catalog = load_catalog(make_catalog(tmp_path))
    assert list(catalog.areas) == ["password", "time"]
    assert list(catalog.controls) == ["PW-01", "PW-02", "TM-01"]
    assert catalog.seeds["S1"].organisation.ja == "甲市"
    pw01 = catalog.controls["PW-01"]
    assert pw01.title.ja == "パスワードの長さと複雑さ"
    assert pw01.functions is None
    minlen = pw01.parameter("password_policy_minlen")
    assert minlen is not None and minlen.default == 12 and minlen.minimum == 8
    assert catalog.controls["TM-01"].functions == ("ntp_servers",)
    assert pw01.references[0].clause == "第3条 2"


def test_profile_loads_and_tailors_the_view(tmp_path: Path) -> None:
    root = make_catalog(tmp_path)
    catalog = load_catalog(root)
    assert list_profiles(root) == ["kou"]
    profile = load_profile("kou", catalog)
    assert profile.controls["TM-01"].applicable is False

    view = {c["id"]: c for c in control_view(catalog, profile)}
    minlen = view["PW-01"]["parameters"][0]
    assert (minlen["default"], minlen["value"]) == (12, 14)
    assert minlen["zone_values"] == {"mynumber": 16}
    assert view["PW-01"]["profile"] == {
        "name": "kou",
        "tailored": True,
        "clauses": ["第7条 1"],
        "applicable": True,
        "reason": None,
    }
    assert view["PW-02"]["profile"]["tailored"] is False
    assert view["PW-02"]["profile"]["clauses"] == []
    assert view["TM-01"]["profile"]["applicable"] is False
    assert view["TM-01"]["profile"]["reason"]["en"] == "no time server of its own"


def test_view_without_profile_uses_defaults_and_filters_by_area(tmp_path: Path) -> None:
    catalog = load_catalog(make_catalog(tmp_path))
    view = control_view(catalog, area="time")
    assert [c["id"] for c in view] == ["TM-01"]
    (tm01,) = view
    assert "profile" not in tm01
    assert tm01["parameters"][0]["value"] == ["ntp.example.lg.jp"]
    assert tm01["references"] == [
        {"seed": "S1", "clause": "第5条", "quote": "時刻を同期する", "note": None}
    ]
    assert tm01["audit"] == {"module": "time", "checks": ["chrony_sources"]}


def test_unknown_area_and_profile_name_the_valid_ones(tmp_path: Path) -> None:
    catalog = load_catalog(make_catalog(tmp_path))
    with pytest.raises(UnknownNameError, match="unknown area 'pasword'; areas: password, time"):
        control_view(catalog, area="pasword")
    with pytest.raises(UnknownNameError, match="unknown profile 'otsu'; profiles: kou"):
        control_view(catalog, "otsu")


# --- problems: file, line and hint -----------------------------------------------------------


def test_unknown_field(tmp_path: Path) -> None:
    text = PASSWORD.replace(
        "    role: password_policy\n", "    role: password_policy\n    colour: red\n", 1
    )
    text = text.replace("        rationale: {ja: 所有者", "        rationle: {ja: 所有者")
    root = make_catalog(tmp_path, {"password": text, "time": TIME})
    problems = catalog_problems(root)
    file = root / "controls" / "password.yml"
    assert_problem(
        problems, file, line_of(text, "colour"), "PW-01.colour", "unknown field", "remove it"
    )
    assert_problem(
        problems,
        file,
        line_of(text, "rationle"),
        "unknown field 'rationle'",
        "did you mean 'rationale'?",
    )
    assert_problem(
        problems,
        file,
        line_of(text, "- name: password_policy_owner"),
        "missing required field 'rationale'",
    )


def test_duplicate_id_across_two_area_files_names_both_places(tmp_path: Path) -> None:
    time = TIME.replace("id: TM-01", "id: PW-01")
    root = make_catalog(tmp_path, {"password": PASSWORD, "time": time})
    problems = catalog_problems(root)
    first = f"password.yml:{line_of(PASSWORD, 'id: PW-01')}"
    problem = assert_problem(
        problems,
        root / "controls" / "time.yml",
        line_of(time, "id: PW-01"),
        "duplicate control id PW-01",
    )
    assert first in problem.message and "new number" in problem.message
    assert_problem(
        problems, root / "controls" / "time.yml", line_of(time, "id: PW-01"), "prefix TM"
    )


def test_reference_to_unknown_seed(tmp_path: Path) -> None:
    text = PASSWORD.replace("      - seed: S1", "      - seed: S9")
    root = make_catalog(tmp_path, {"password": text, "time": TIME})
    assert_problem(
        catalog_problems(root),
        root / "controls" / "password.yml",
        line_of(text, "seed: S9"),
        "PW-01.references[0].seed: unknown seed 'S9'",
        "use a key from seeds.yml: S1",
    )


def test_quote_not_in_the_seed_text(tmp_path: Path) -> None:
    text = PASSWORD.replace("quote: 初期パスワードは変更する", "quote: 初期パスワードを変更する")
    text = text.replace("quote: パスワードは十分な長さとする", "quote: パスワードは十分な長さとし")
    time = TIME.replace("quote: 時刻を同期する", "quote: 時刻を 同期する")
    root = make_catalog(tmp_path, {"password": text, "time": time})
    problems = catalog_problems(root)
    seed = root / "seeds" / SEED_FILE
    problem = assert_problem(
        problems,
        root / "controls" / "password.yml",
        line_of(text, "quote: パスワードは十分な長さとし"),
        f"PW-01.references[0].quote: not found verbatim in S1 ({seed})",
        "copy the words exactly as the seed shows them",
        "the seed has 'パスワードは十分な長さと' but not what follows it",
    )
    assert str(problem).startswith(f"{root / 'controls' / 'password.yml'}:{problem.line}: PW-01")
    assert_problem(
        problems,
        root / "controls" / "password.yml",
        line_of(text, "初期パスワードを変更する"),
        "PW-02.references[0].quote: not found verbatim in S1",
    )
    assert_problem(
        problems,
        root / "controls" / "time.yml",
        line_of(time, "quote:"),
        "TM-01.references[0].quote: not found verbatim in S1",
        "differs only in spaces or line breaks",
    )
    assert len(problems) == 3


def test_quote_spanning_a_line_break_must_keep_it(tmp_path: Path) -> None:
    quote = "quote: パスワードは十分な長さとする"
    text = PASSWORD.replace(quote, 'quote: "パスワードは十分な長さとする。\\n３　初期パスワード"')
    root = make_catalog(tmp_path, {"password": text, "time": TIME})
    assert load_catalog(root).controls["PW-01"].references[0].quote.endswith("\n３　初期パスワード")
    text = PASSWORD.replace(quote, 'quote: "パスワードは十分な長さとする。 ３　初期パスワード"')
    root = make_catalog(tmp_path / "2", {"password": text, "time": TIME})
    assert_problem(
        catalog_problems(root),
        root / "controls" / "password.yml",
        line_of(text, "quote:"),
        "not found verbatim",
        "differs only in spaces or line breaks",
    )


def test_seed_file_missing(tmp_path: Path) -> None:
    seeds = SEEDS + SEEDS.replace("seeds:\n", "").replace("S1", "S2").replace("001_", "002_")
    seeds += SEEDS.replace("seeds:\n", "").replace("S1", "S3").replace("001_", "../003_")
    root = make_catalog(tmp_path, seeds=seeds)
    problems = catalog_problems(root)
    assert_problem(
        problems,
        root / "seeds.yml",
        line_of(seeds, "file: 002_example.txt"),
        f"S2.file: {root / 'seeds' / '002_example.txt'} does not exist",
        "put the seed's text there or correct the name",
    )
    assert_problem(
        problems,
        root / "seeds.yml",
        line_of(seeds, "file: ../003_"),
        "S3.file: '../003_example.txt' is not a file name",
    )
    assert len(problems) == 2  # the quotes citing S1 are still checked, and are fine


def test_quotes_of_a_seed_without_text_are_not_checked(tmp_path: Path) -> None:
    text = PASSWORD.replace("quote: 初期パスワードは変更する", "quote: どこにもない")
    root = make_catalog(tmp_path, {"password": text, "time": TIME}, seed_files={})
    problems = catalog_problems(root)
    assert_problem(problems, root / "seeds.yml", line_of(SEEDS, "file:"), "does not exist")
    assert len(problems) == 1


@pytest.mark.parametrize(
    ("written", "got", "hint"),
    [
        ('"12"', "expected int, got str '12'", "write a number without quotes"),
        ("true", "expected int, got bool true", "true/false is a bool"),
        ("12.5", "expected int, got float 12.5", "write a whole number"),
        ("6", "6 is below the minimum 8", "use 8 or more"),
    ],
)
def test_parameter_default_of_wrong_type(tmp_path: Path, written: str, got: str, hint: str) -> None:
    text = PASSWORD.replace("default: 12", f"default: {written}")
    root = make_catalog(tmp_path, {"password": text, "time": TIME})
    problem = assert_problem(
        catalog_problems(root),
        root / "controls" / "password.yml",
        line_of(text, f"default: {written}"),
        f"PW-01.parameters[0].default: {got}",
        hint,
    )
    assert str(problem).endswith(f"password.yml:{problem.line}: {problem.message}")


def test_str_parameter_read_as_bool_says_to_quote_it(tmp_path: Path) -> None:
    text = PASSWORD.replace("default: root", "default: yes")
    root = make_catalog(tmp_path, {"password": text, "time": TIME})
    assert_problem(
        catalog_problems(root),
        root / "controls" / "password.yml",
        line_of(text, "default: yes"),
        "expected str, got bool true",
        'quote it: "yes"',
    )


def test_parameter_name_prefix_and_duplicates(tmp_path: Path) -> None:
    text = PASSWORD.replace("name: password_policy_minlen", "name: minlen")
    text = text.replace("name: password_policy_owner", "name: minlen")
    root = make_catalog(tmp_path, {"password": text, "time": TIME})
    problems = catalog_problems(root)
    file = root / "controls" / "password.yml"
    first = line_of(text, "name: minlen")
    second = line_of(text, "name: minlen", after="default: 12")
    assert_problem(
        problems,
        file,
        first,
        "'minlen' does not start with the role name",
        "password_policy_minlen",
    )
    assert_problem(problems, file, second, "declared twice", f"first at line {first}")


def test_area_and_file_name_and_prefix(tmp_path: Path) -> None:
    text = PASSWORD.replace("area: password", "area: passwords").replace("id: PW-02", "id: PX-02")
    root = make_catalog(tmp_path, {"password": text, "time": TIME})
    problems = catalog_problems(root)
    file = root / "controls" / "password.yml"
    assert_problem(
        problems, file, 1, "area: 'passwords' differs from the file name", "area: password"
    )
    assert_problem(problems, file, line_of(text, "id: PX-02"), "PX-02.id", "prefix PW", "PW-NN")


def test_schema_pattern_and_enum_problems(tmp_path: Path) -> None:
    text = PASSWORD.replace("id: PW-02", "id: PW-2").replace(
        "zones: [lgwan]", "zones: [lgwan, dmz]"
    )
    root = make_catalog(tmp_path, {"password": text, "time": TIME})
    problems = catalog_problems(root)
    file = root / "controls" / "password.yml"
    assert_problem(problems, file, line_of(text, "id: PW-2"), "'PW-2' does not match", "e.g. PW-01")
    assert_problem(
        problems, file, line_of(text, "dmz"), "'dmz' is not allowed", "mynumber, lgwan, internet"
    )


def test_yaml_syntax_error(tmp_path: Path) -> None:
    text = PASSWORD.replace("    role: password_policy\n", "    role: password: policy\n", 1)
    root = make_catalog(tmp_path, {"password": text, "time": TIME})
    assert_problem(
        catalog_problems(root),
        root / "controls" / "password.yml",
        line_of(text, "role: password: policy"),
        "YAML syntax error",
        "check the indentation",
    )


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    text = PASSWORD.replace("    zones: [lgwan]\n", "    zones: [lgwan]\n    zones: [internet]\n")
    root = make_catalog(tmp_path, {"password": text, "time": TIME})
    assert_problem(
        catalog_problems(root),
        root / "controls" / "password.yml",
        line_of(text, "zones: [internet]"),
        "duplicate key 'zones'",
        f"first at line {line_of(text, 'zones: [lgwan]')}",
    )


def test_python_tags_are_refused(tmp_path: Path) -> None:
    text = PASSWORD.replace("default: root", "default: !!python/name:os.system")
    root = make_catalog(tmp_path, {"password": text, "time": TIME})
    assert_problem(
        catalog_problems(root),
        root / "controls" / "password.yml",
        line_of(text, "!!python"),
        "unsupported YAML tag",
    )


def test_all_problems_are_collected_across_files(tmp_path: Path) -> None:
    password = PASSWORD.replace("default: 12", 'default: "12"').replace("seed: S1", "seed: S7", 1)
    password = password.replace("zones: [lgwan]", "zones: [lgwan]\n    colour: red")
    time = TIME.replace("prefix: TM", "prefix: TM\nowner: me")
    root = make_catalog(tmp_path, {"password": password, "time": time})
    with pytest.raises(CatalogError) as info:
        load_catalog(root)
    lines = str(info.value).splitlines()
    # semantic problems of PW-01 are found although PW-02 (same file) breaks the schema
    expected = [
        (f"password.yml:{line_of(password, 'default: ')}: ", "expected int, got str '12'"),
        (f"password.yml:{line_of(password, 'seed: S7')}: ", "unknown seed 'S7'"),
        (f"password.yml:{line_of(password, 'colour')}: ", "PW-02.colour: unknown field"),
        (f"time.yml:{line_of(time, 'owner')}: ", "owner: unknown field 'owner'"),
    ]
    assert len(lines) == len(expected)
    for line, (where, what) in zip(lines, expected, strict=True):
        assert where in line and what in line, line


def test_problems_in_a_broken_file_do_not_crash_the_checks(tmp_path: Path) -> None:
    areas = {"password": "area: [password]\ncontrols: {PW-01: x}\n", "time": "- just a list\n"}
    profile = "profile: kou\ncontrols: [PW-01]\n"
    root = make_catalog(tmp_path, areas, {"kou": profile}, seeds="seeds: []\n")
    problems = catalog_problems(root)
    assert {p.file.name for p in problems} == {"seeds.yml", "password.yml", "time.yml"}
    assert_problem(problems, root / "controls" / "time.yml", 1, "expected a mapping, got a list")
    catalog = load_catalog(make_catalog(tmp_path / "good"))
    bad = tmp_path / "good" / "catalog" / "profiles" / "kou.yml"
    bad.write_text(profile, encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        load_profile("kou", catalog)
    assert_problem(info.value.problems, bad, 2, "controls: expected a mapping, got a list")


# --- profile problems ---------------------------------------------------------------------------


def test_profile_naming_an_unknown_control(tmp_path: Path) -> None:
    text = PROFILE.replace("  TM-01:", "  PW-09:")
    root = make_catalog(tmp_path, profiles={"kou": text})
    assert_problem(
        profile_problems(root),
        root / "profiles" / "kou.yml",
        line_of(text, "PW-09:"),
        "unknown control 'PW-09'",
        "the PW controls are PW-01, PW-02",
    )


def test_profile_parameter_of_wrong_type(tmp_path: Path) -> None:
    text = PROFILE.replace("password_policy_minlen: 14", "password_policy_minlen: '14'")
    text = text.replace("{password_policy_minlen: 16}", "{password_policy_minlen: true}")
    root = make_catalog(tmp_path, profiles={"kou": text})
    problems = profile_problems(root)
    file = root / "profiles" / "kou.yml"
    assert_problem(
        problems,
        file,
        line_of(text, "password_policy_minlen: '14'"),
        "PW-01.parameters.password_policy_minlen: expected int, got str '14'",
        "write a number without quotes",
    )
    assert_problem(
        problems,
        file,
        line_of(text, "mynumber:"),
        "PW-01.zone_parameters.mynumber.password_policy_minlen: expected int, got bool true",
    )


def test_profile_unknown_parameter(tmp_path: Path) -> None:
    text = PROFILE.replace("password_policy_minlen: 14", "password_policy_minlength: 14")
    root = make_catalog(tmp_path, profiles={"kou": text})
    assert_problem(
        profile_problems(root),
        root / "profiles" / "kou.yml",
        line_of(text, "password_policy_minlength"),
        "PW-01 has no parameter 'password_policy_minlength'",
        "did you mean 'password_policy_minlen'?",
    )


def test_profile_schema_problems(tmp_path: Path) -> None:
    text = PROFILE.replace("      mynumber: {password", "      dmz: {password")
    text += "  PW-02:\n    clauses: []\n    zone_parameters: {lgwan: {}}\n"
    root = make_catalog(tmp_path, profiles={"kou": text})
    problems = profile_problems(root)
    file = root / "profiles" / "kou.yml"
    assert_problem(problems, file, line_of(text, "clauses: []"), "PW-02.clauses: must not be empty")
    assert_problem(
        problems, file, line_of(text, "dmz"), "PW-01.zone_parameters.dmz: 'dmz' is not allowed"
    )
    assert_problem(problems, file, line_of(text, "{lgwan: {}}"), "lgwan: must not be empty")


def test_profile_semantic_problems(tmp_path: Path) -> None:
    text = (
        PROFILE.replace("profile: kou", "profile: otsu")
        .replace("based_on: [S1]", "based_on: [S1, S5]")
        .replace("    reason: {ja: 時刻サーバなし, en: no time server of its own}\n", "")
    )
    text += "  PW-02:\n    clauses: [x]\n    reason: {ja: 不要, en: not needed}\n"
    root = make_catalog(tmp_path, profiles={"kou": text})
    problems = profile_problems(root)
    file = root / "profiles" / "kou.yml"
    assert_problem(problems, file, 1, "profile: 'otsu' differs from the file name", "profile: kou")
    assert_problem(problems, file, line_of(text, "based_on"), "based_on[1]: unknown seed 'S5'")
    assert_problem(
        problems, file, line_of(text, "applicable: false"), "TM-01.applicable", "needs a reason"
    )
    assert_problem(
        problems, file, line_of(text, "not needed"), "PW-02.reason", "only for applicable: false"
    )
    assert len(problems) == 4


def test_profile_zone_the_control_does_not_cover(tmp_path: Path) -> None:
    text = PROFILE + "  PW-02:\n    clauses: [x]\n    zone_parameters:\n"
    text += "      internet: {password_policy_x: 1}\n"
    root = make_catalog(tmp_path, profiles={"kou": text})
    problems = profile_problems(root)
    file = root / "profiles" / "kou.yml"
    assert_problem(
        problems, file, line_of(text, "internet: {"), "PW-02 does not apply to zone internet"
    )
    assert_problem(
        problems, file, line_of(text, "internet: {"), "PW-02 has no parameter", "it has none"
    )


def test_load_profiles_collects_problems_of_every_profile(tmp_path: Path) -> None:
    bad = PROFILE.replace("profile: kou", "profile: otsu").replace("  TM-01:", "  TM-07:")
    root = make_catalog(
        tmp_path, profiles={"kou": PROFILE, "otsu": bad, "hei": bad.replace("otsu", "hei")}
    )
    catalog = load_catalog(root)
    with pytest.raises(CatalogError) as info:
        load_profiles(catalog)
    assert {p.file.name for p in info.value.problems} == {"otsu.yml", "hei.yml"}


# --- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    make_catalog(tmp_path)
    monkeypatch.setenv("KIJUN_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def test_cli_controls_json(runner: CliRunner) -> None:
    result = runner.invoke(app, ["controls", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "パスワードの長さと複雑さ" in result.stdout  # ensure_ascii=False
    view = json.loads(result.stdout)
    assert [c["id"] for c in view] == ["PW-01", "PW-02", "TM-01"]
    keys = {"id", "area", "title", "requirement", "zones", "functions", "role", "audit"}
    assert keys | {"parameters", "references"} <= set(view[0])
    assert set(view[0]["parameters"][0]) >= {"name", "type", "default", "value", "rationale"}
    assert set(view[0]["references"][0]) >= {"seed", "clause", "quote"}


def test_cli_controls_json_with_profile_and_area(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["controls", "--profile", "kou", "--area", "password", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert [c["id"] for c in view] == ["PW-01", "PW-02"]
    assert view[0]["parameters"][0]["value"] == 14
    assert view[0]["profile"]["clauses"] == ["第7条 1"]


def test_cli_controls_table(runner: CliRunner) -> None:
    result = runner.invoke(app, ["controls"])
    assert result.exit_code == 0, result.output
    assert "パスワードの長さと複雑さ" in result.stdout
    assert "Password length and complexity" in result.stdout
    assert "S1 第3条 2" in result.stdout

    result = runner.invoke(app, ["controls", "--profile", "kou", "--area", "time"])
    assert result.exit_code == 0, result.output
    assert "TM-01" in result.stdout and "PW-01" not in result.stdout
    assert "第9条" in result.stdout and "no time server of its own" in result.stdout


def test_cli_unknown_names_exit_2(runner: CliRunner) -> None:
    result = runner.invoke(app, ["controls", "--area", "dns"])
    assert result.exit_code == 2
    assert "unknown area 'dns'; areas: password, time" in result.stderr
    result = runner.invoke(app, ["controls", "--profile", "otsu"])
    assert result.exit_code == 2
    assert "profiles: kou" in result.stderr


def test_cli_catalog_check(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["catalog", "check"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "catalog OK: 3 controls in 2 areas, 1 profile"

    area = tmp_path / "catalog" / "controls" / "password.yml"
    area.write_text(PASSWORD.replace("default: 12", 'default: "12"'), encoding="utf-8")
    for command in (["catalog", "check"], ["controls"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2
        assert "catalog has 1 problem:" in result.stderr
        assert (
            f"password.yml:{line_of(PASSWORD, 'default: 12')}: PW-01.parameters[0].default"
            in result.stderr
        )
        assert result.stdout == ""


# --- the real catalog -------------------------------------------------------------------------


def test_real_catalog_and_profiles_validate() -> None:
    catalog = load_catalog(REAL_CATALOG)
    assert set(catalog.areas) >= CORE_AREAS
    profiles = load_profiles(catalog)
    assert profiles, "the catalog has no profiles yet"
    assert [p.name for p in profiles] == list_profiles(REAL_CATALOG)
    for profile in profiles:
        assert control_view(catalog, profile)


def test_prefix_used_by_two_areas(tmp_path: Path) -> None:
    other = TIME.replace("area: time", "area: clock").replace("prefix: TM", "prefix: PW")
    other = other.replace("id: TM-01", "id: PW-03")
    root = make_catalog(tmp_path, {"password": PASSWORD, "clock": other})
    assert_problem(
        catalog_problems(root),
        root / "controls" / "password.yml",
        line_of(PASSWORD, "prefix: PW"),
        "PW is already the prefix at ",
        "clock.yml:2; choose another",
    )
