"""Reports from a run document: the HTML page (also as Chromium shows it), the CSV sheet
(自己点検表) and junit.xml."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kijun.catalog import Area, Audit, Catalog, Control, Text
from kijun.report import (
    CHECKLIST_HEADER,
    evidence_href,
    format_time,
    render_checklist_csv,
    render_html,
    render_junit,
    verdict,
)
from kijun.results import (
    CheckResult,
    Clause,
    ControlResult,
    Drift,
    DriftEntry,
    HostResult,
    RunDocument,
    RunInfo,
    Status,
    Waiver,
)

# -- a run with every status -------------------------------------------------------------------

TITLES = {
    "PW-01": {"ja": "パスワードの長さと複雑さ", "en": "Password length and complexity"},
    "TS-01": {"ja": "時刻の同期", "en": "Time synchronisation"},
    "LG-01": {"ja": "ログの保存期間", "en": "Log retention period"},
    "ML-01": {"ja": "メールの不正中継の禁止", "en": "No open mail relay"},
}
AREAS = {"PW-01": "password", "TS-01": "time", "LG-01": "logging", "ML-01": "mail"}
CLAUSES = {
    "PW-01": [Clause("第2章 7(7) 3", "shimojo"), Clause("第2章 7(7) 3", "S3", "パスワードの長さ")],
    "TS-01": [Clause("第2章 8(1) 6", "shimojo")],
    "LG-01": [Clause("第2章 8(1) 7", "shimojo")],
    "ML-01": [Clause("第2章 8(1) 9", "shimojo")],
}
EVIL = 'server <script>alert("x")</script> & ntp.example.jp iburst'
WAIVER = Waiver(
    exception_id="EX-2026-001",
    reason="業務システムの制約により最小文字数を 8 文字とする",
    compensating_measure="管理端末からのみ接続可能とし、ログインを毎日確認する",
    valid_from="2026-04-01",
    valid_until="2026-12-15",
    approved_by="情報セキュリティ委員会",
    approved_on="2026-03-25",
)
UNREACHABLE = "SSH に接続できません: Connection timed out (198.18.10.11:22)"


def result(host: str, control: str, status: Status, **kw: object) -> ControlResult:
    return ControlResult(
        host=host,
        control=control,
        area=AREAS[control],
        title=TITLES[control],
        status=status,
        references=CLAUSES[control],
        **kw,  # type: ignore[arg-type]
    )


def sample_doc(*, drift: Drift | None = None, first_run: bool = False) -> RunDocument:
    run = RunInfo(
        run_id="20261121T232000Z-lab-1a2b",
        started="2026-11-21T23:20:00Z",
        finished="2026-11-21T23:23:12Z",
        kijun_version="0.1.0",
        inventory="inventories/lab",
        inventory_id="/srv/kijun/inventories/lab",
        profile={
            "name": "shimojo",
            "title": {"ja": "下條村 情報セキュリティ対策基準", "en": "Shimojo security standards"},
            "organisation": {"ja": "下條村", "en": "Shimojo Village"},
        },
        operator="root@ctl01 (sudo from tanaka)",
        git={"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": True},
        selection={"limit": None, "areas": [], "controls": [], "hosts": ["lg-app01", "in-web01"]},
    )
    hosts = [
        HostResult("lg-app01", ["lgwan"], ["zone_lgwan"], True),
        HostResult("in-web01", ["internet"], ["zone_internet"], True),
        HostResult("mn-app01", ["mynumber"], ["zone_mynumber"], False, UNREACHABLE),
    ]
    results = [
        result(
            "lg-app01",
            "PW-01",
            Status.FAIL,
            expected=14,
            observed=8,
            message="minlen = 8 in /etc/security/pwquality.conf",
            checks=[
                CheckResult(
                    "pwquality_minlen",
                    "fail",
                    14,
                    8,
                    "minlen is 8",
                    ("password/pwq",),
                    "/etc/security/pwquality.conf.d/99-local.conf:1",
                ),
                CheckResult("pwquality_dictcheck", "pass", 1, 1),
            ],
            evidence=["raw/lg-app01/password/pwq.txt"],
        ),
        result(
            "lg-app01",
            "TS-01",
            Status.PASS,
            expected="lg-ntp01",
            observed="lg-ntp01",
            checks=[CheckResult("chrony_sources", "pass", "lg-ntp01", "lg-ntp01")],
            evidence=["raw/lg-app01/time/chrony.txt"],
        ),
        result(
            "lg-app01",
            "LG-01",
            Status.ERROR,
            expected={"rotate": 52, "当初": "週次"},
            observed="権限がありません <root only>",
            message="logrotate の設定を読めません",
            checks=[CheckResult("logrotate_weeks", "error", 52, None, "permission denied")],
        ),
        result("lg-app01", "ML-01", Status.NOT_APPLICABLE, message="not a mail relay"),
        result(
            "in-web01",
            "PW-01",
            Status.WAIVED,
            expected=14,
            observed=8,
            waiver=WAIVER,
            evidence=["raw/in-web01/password/pwq.txt", "../../etc/shadow"],
        ),
        result(
            "in-web01",
            "TS-01",
            Status.FAIL,
            expected="server lg-ntp01 iburst",
            observed=EVIL,
            checks=[CheckResult("chrony_sources", "fail", "server lg-ntp01 iburst", EVIL)],
            evidence=["raw/in-web01/time/chrony conf & <x>.txt"],
        ),
        result("in-web01", "LG-01", Status.PASS, expected=52, observed=52),
        result("in-web01", "ML-01", Status.NOT_APPLICABLE, message="not a mail relay"),
        result("mn-app01", "PW-01", Status.NOT_ASSESSED, message=UNREACHABLE),
        result("mn-app01", "TS-01", Status.NOT_ASSESSED, message=UNREACHABLE),
        result("mn-app01", "LG-01", Status.NOT_ASSESSED, message=UNREACHABLE),
    ]
    if drift is None and not first_run:
        drift = Drift(
            previous_run_id="20261114T232000Z-lab-9f9f",
            new_failures=[DriftEntry("in-web01", "TS-01", "fail")],
            resolved=[DriftEntry("in-web01", "LG-01", "pass")],
            still_failing=[DriftEntry("lg-app01", "PW-01", "fail", since="2026-11-07T15:30:00Z")],
        )
    return RunDocument(
        run=run,
        hosts=hosts,
        results=results,
        unused_exceptions=[
            {
                "id": "EX-2026-007",
                "file": "inventories/lab/exceptions.yml",
                "line": 14,
                "reason": "no host it covers fails ML-01",
            }
        ],
        drift=drift,
    )


def tiny_catalog() -> Catalog:
    def control(cid: str) -> Control:
        return Control(
            id=cid,
            area=AREAS[cid],
            title=Text(**TITLES[cid]),
            requirement=Text(ja=f"{cid} の要求事項。", en=f"Requirement of {cid}."),
            zones=("mynumber", "lgwan", "internet"),
            functions=None,
            role="r",
            audit=Audit("m", ("c",)),
            parameters=(),
            references=(),
            file=Path("x.yml"),
            line=1,
        )

    area = Area("all", "XX", Text("全部", "all"), tuple(control(c) for c in TITLES), Path("x"))
    return Catalog(root=Path("."), seeds={}, areas={"all": area})


# -- small pieces ------------------------------------------------------------------------------


def test_times_are_shown_in_jst_with_utc() -> None:
    assert format_time("2026-11-21T23:20:00Z") == "2026年11月22日 08:20 JST (2026-11-21 23:20 UTC)"
    assert format_time("2026-01-05T03:04:00+00:00").startswith("2026年1月5日 12:04 JST")
    assert format_time("not a time") == "not a time"
    assert format_time(None) == "—"


def test_verdicts() -> None:
    doc = sample_doc()
    v = verdict(doc)
    assert (v.ja, v.status) == (
        "不適合あり・評価できないホストあり・評価エラーあり",
        Status.FAIL,
    )
    doc.hosts = [h for h in doc.hosts if h.assessed]
    doc.results = [r for r in doc.results if r.status is not Status.NOT_ASSESSED]
    assert verdict(doc).ja == "不適合あり・評価エラーあり"
    doc.results = [r for r in doc.results if r.status not in (Status.FAIL, Status.ERROR)]
    assert verdict(doc).ja == "適合（承認済み逸脱あり）"
    doc.results = [r for r in doc.results if r.status is not Status.WAIVED]
    assert (verdict(doc).ja, verdict(doc).en) == ("適合", "Conformant")
    doc.results = [r for r in doc.results if r.status is Status.NOT_APPLICABLE]
    assert verdict(doc).ja == "評価対象なし"
    # A host marked unassessed counts even with no results at all.
    doc.hosts.append(HostResult("gw01", [], [], False, "unreachable"))
    assert (verdict(doc).ja, verdict(doc).status) == ("評価できないホストあり", Status.NOT_ASSESSED)


def test_evidence_links_stay_in_the_bundle() -> None:
    assert evidence_href("raw/lg-app01/time/chrony.txt") == "raw/lg-app01/time/chrony.txt"
    assert evidence_href("raw/h/a b&<c>.txt") == "raw/h/a%20b%26%3Cc%3E.txt"
    assert evidence_href("javascript:alert(1)") == "javascript%3Aalert%281%29"
    assert evidence_href("../../etc/shadow") is None
    assert evidence_href("/etc/shadow") is None


# -- the HTML page -----------------------------------------------------------------------------


class _Refs(HTMLParser):
    """Every tag and every URL-ish attribute in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "action", "srcset")]


def test_html_is_self_contained_and_escaped() -> None:
    html = render_html(sample_doc())
    assert html.startswith("<!DOCTYPE html>")
    refs = _Refs()
    refs.feed(html)
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(refs.tags)
    for url in refs.urls:
        assert url.startswith("#") or not re.match(r"^[a-z][a-z0-9+.-]*:|^//", url, re.I), url
    assert not re.search(r"https?://", html)
    assert "url(" not in html and "@import" not in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    # The host's output is shown, escaped.
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; ntp.example.jp" in html
    assert "権限がありません &lt;root only&gt;" in html
    # Evidence: relative links, encoded; a path outside the bundle is shown but not linked.
    assert 'href="raw/lg-app01/password/pwq.txt"' in html
    assert 'href="raw/in-web01/time/chrony%20conf%20%26%20%3Cx%3E.txt"' in html
    assert "../../etc/shadow" in html and 'href="../../etc/shadow"' not in html


def test_html_content() -> None:
    html = render_html(sample_doc(), tiny_catalog())
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "不適合あり・評価できないホストあり・評価エラーあり" in text
    assert "2026年11月22日 08:20 JST (2026-11-21 23:20 UTC)" in text
    assert "0123456789abcdef0123456789abcdef01234567" in text
    assert "未コミットの変更あり" in text
    assert "root@ctl01 (sudo from tanaka)" in text
    assert "第2章 7(7) 3 (shimojo)" in text and "第2章 7(7) 3 (S3)" in text
    assert "PW-01 の要求事項。" in text  # from the catalog
    # the file that set the value in force, for the check that read it
    assert "設定箇所 set in /etc/security/pwquality.conf.d/99-local.conf:1" in text
    assert "EX-2026-007" in text and "no host it covers fails ML-01" in text
    assert "2026年11月8日 00:30 JST (2026-11-07 15:30 UTC)" in text
    assert "まもなく期限切れ" in text  # 2026-12-15 is 23 days after the run
    first = render_html(sample_doc(first_run=True))
    assert "初回の実行です" in first and "First run" in first


def test_html_with_a_selection_and_without_profile() -> None:
    doc = sample_doc()
    doc.run.selection = {"limit": "lg-app01", "areas": ["password"], "hosts": ["lg-app01"]}
    doc.run.profile = {}
    doc.run.git = {"commit": None, "dirty": None, "error": "not a git repository"}
    html = render_html(doc)
    assert "この実行は一部だけを対象としています" in html
    assert "limit=lg-app01" in html and "areas=[&#34;password&#34;]" in html
    assert "プロファイルなし" in html and "not a git repository" in html
    assert "この実行は一部だけを対象としています" not in render_html(sample_doc())


def test_html_of_an_empty_run() -> None:
    doc = sample_doc(first_run=True)
    doc.hosts, doc.results, doc.unused_exceptions = [], [], []
    html = render_html(doc)
    assert "評価対象なし" in html and "結果はありません" in html


# -- the HTML page in a browser ----------------------------------------------------------------

CHROMIUM = next(
    (p for p in ("chromium", "chromium-browser", "google-chrome") if shutil.which(p)), None
)
# The set-up step installs Chromium (bootstrap.sh), so a missing browser is a failure here.
needs_chromium = pytest.mark.usefixtures("browser")


@pytest.fixture(scope="session")
def browser() -> str:
    assert CHROMIUM is not None, "needs Chromium: run `make setup` (apt-get install chromium)"
    return CHROMIUM


def chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on ``page`` offline, as root as well (CI); stdout is the DOM."""
    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # CI runs as root, where the sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--mute-audio",
        "--lang=ja",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=3000",
        *extra,
        page.as_uri(),
    ]
    env = {**os.environ, "HOME": str(tmp_path), "LANG": "ja_JP.UTF-8"}
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"chromium did not finish in 120 s: {exc.stderr!r}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


class _Visible(HTMLParser):
    """The text a person sees: everything outside <head>, <style> and <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = 0
        self.parts: list[str] = []

    BLOCKS = frozenset(
        (
            "p",
            "div",
            "li",
            "ul",
            "ol",
            "tr",
            "td",
            "th",
            "dt",
            "dd",
            "br",
            "h1",
            "h2",
            "h3",
            "h4",
            "table",
            "section",
        )
    )

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("head", "style", "script", "title"):
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append(" ")  # cells and blocks are apart on the screen

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "style", "script", "title"):
            self.hidden -= 1
        elif tag in self.BLOCKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)

    def text(self) -> str:
        return re.sub(r"\s+", " ", "".join(self.parts))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The sample report opened in Chromium: (page, screenshot, visible DOM text)."""
    assert CHROMIUM is not None, "needs Chromium: run `make setup` (apt-get install chromium)"
    tmp = tmp_path_factory.mktemp("report")
    bundle = tmp / "20261121T232000Z-lab-1a2b"
    (bundle / "raw" / "lg-app01" / "password").mkdir(parents=True)
    (bundle / "raw" / "lg-app01" / "password" / "pwq.txt").write_text("minlen = 8\n")
    page = bundle / "report.html"
    page.write_text(render_html(sample_doc(), tiny_catalog()), encoding="utf-8")
    dom = chromium(tmp, page, "--dump-dom").stdout
    shot = tmp / "report.png"
    chromium(tmp, page, f"--screenshot={shot}", "--window-size=1280,2000")
    visible = _Visible()
    visible.feed(dom)
    return page, shot, visible.text()


@needs_chromium
def test_chromium_shows_what_an_auditor_needs(rendered: tuple[Path, Path, str]) -> None:
    _, _, text = rendered
    # the verdict
    assert "総合判定 / Overall verdict" in text
    assert "不適合あり・評価できないホストあり・評価エラーあり" in text
    assert "Non-conformities found; hosts could not be assessed; checks could not run" in text
    # JST times
    assert "2026年11月22日 08:20 JST (2026-11-21 23:20 UTC)" in text
    assert "2026年11月22日 08:23 JST (2026-11-21 23:23 UTC)" in text
    # a failing control's expected and observed values, as text (escaped in the source)
    assert "期待値 Expected server lg-ntp01 iburst" in text
    assert f"実測値 Observed {EVIL}" in text
    assert "期待値 Expected 14 実測値 Observed 8" in text
    # the waiver's reason and expiry
    assert WAIVER.reason in text and WAIVER.compensating_measure in text
    assert "有効期限 Expires 2026-12-15" in text and "情報セキュリティ委員会" in text
    # the host that was not assessed, unmistakably
    assert "評価できなかったホストがあります / Hosts that could NOT be assessed" in text
    assert "mn-app01 — ? 未評価 Not assessed 理由 Reason: " + UNREACHABLE in text
    assert "このホストは評価されていません / This host was NOT assessed" in text
    # statuses carry words, not only colours
    for words in ("× 不適合 Fail", "○ 適合 Pass", "△ 承認済み逸脱 Waived", "! エラー Error"):
        assert words in text
    assert "－ 対象外 Not applicable" in text
    # drift
    assert "新たな不適合 New failures（1）" in text
    assert "2026年11月8日 00:30 JST (2026-11-07 15:30 UTC)" in text


@needs_chromium
def test_chromium_screenshot(rendered: tuple[Path, Path, str]) -> None:
    _, shot, _ = rendered
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 2000)
    assert len(data) > 50_000  # a page with content, not a blank one
    if out := os.environ.get("KIJUN_REPORT_SCREENSHOT"):
        shutil.copy(shot, out)  # to look at it


@needs_chromium
def test_evidence_link_resolves_inside_the_bundle(rendered: tuple[Path, Path, str]) -> None:
    page, _, _ = rendered
    html = page.read_text(encoding="utf-8")
    href = re.search(r'href="(raw/lg-app01/password/pwq\.txt)"', html)
    assert href and (page.parent / href.group(1)).read_text() == "minlen = 8\n"


# -- the self-inspection sheet (CSV) -----------------------------------------------------------


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_checklist_csv_for_excel() -> None:
    data = render_checklist_csv(sample_doc(), tiny_catalog())
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.endswith(b"\r\n")
    rows = read_csv(data)
    # every record ends in CRLF; a bare LF is only a line break inside a quoted cell
    assert data.count(b"\r\n") == len(rows)
    assert all(line.endswith(b'"') for line in data.split(b"\r\n")[:-1])
    assert rows[0] == CHECKLIST_HEADER
    assert rows[0][0] == "ホスト (host)"
    body = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert len(body) == len(sample_doc().results)
    by = {(r["ホスト (host)"], r["管理策ID (control id)"]): r for r in body}
    fail = by[("lg-app01", "PW-01")]
    assert fail["結果 (result)"] == "不適合 (Fail)"
    assert (fail["期待値 (expected)"], fail["実測値 (observed)"]) == ("14", "8")
    assert fail["ゾーン (zone)"] == "LGWAN接続系 (lgwan)"
    assert fail["管理策名 (control title)"] == "パスワードの長さと複雑さ"
    assert fail["規程の条項 (policy clauses)"] == "第2章 7(7) 3 (shimojo); 第2章 7(7) 3 (S3)"
    assert fail["要求事項 (requirement)"] == "PW-01 の要求事項。"
    assert fail["証跡ファイル (evidence files)"] == "raw/lg-app01/password/pwq.txt"
    waived = by[("in-web01", "PW-01")]
    assert waived["結果 (result)"] == "承認済み逸脱 (Waived)"
    assert waived["例外ID (exception id)"] == "EX-2026-001"
    assert waived["例外の有効期限 (exception valid until)"] == "2026-12-15"
    assert by[("in-web01", "TS-01")]["実測値 (observed)"] == EVIL
    assert by[("lg-app01", "LG-01")]["実測値 (observed)"] == "権限がありません <root only>"
    assert by[("lg-app01", "LG-01")]["期待値 (expected)"] == '{"rotate": 52, "当初": "週次"}'
    assert by[("lg-app01", "ML-01")]["結果 (result)"] == "対象外 (Not applicable)"
    unassessed = by[("mn-app01", "PW-01")]
    assert unassessed["結果 (result)"] == "未評価 (Not assessed)"
    assert unassessed["備考 (notes)"] == UNREACHABLE
    results = {r["結果 (result)"] for r in body}
    assert results == {
        "適合 (Pass)",
        "不適合 (Fail)",
        "承認済み逸脱 (Waived)",
        "エラー (Error)",
        "未評価 (Not assessed)",
        "対象外 (Not applicable)",
    }
    # without a catalog the requirement column is empty, the rest the same
    plain = read_csv(render_checklist_csv(sample_doc()))
    assert {row[5] for row in plain[1:]} == {""}


def test_checklist_csv_defuses_formulas_and_lists_unassessed_hosts() -> None:
    doc = sample_doc()
    doc.results = [
        result("lg-app01", "PW-01", Status.FAIL, expected=-1, observed='=HYPERLINK("x")'),
        result("lg-app01", "TS-01", Status.FAIL, expected="-rw-r-----", observed="@SUM(A1)"),
    ]
    rows = read_csv(render_checklist_csv(doc))
    assert [(r[0], r[7], r[8]) for r in rows[1:3]] == [
        ("lg-app01", "-1", '\'=HYPERLINK("x")'),
        ("lg-app01", "'-rw-r-----", "'@SUM(A1)"),
    ]
    # mn-app01 has no results but was not assessed: it still has a row.
    assert rows[3][0] == "mn-app01" and rows[3][6] == "未評価 (Not assessed)"
    assert rows[3][12] == UNREACHABLE
    assert len(rows) == 4  # in-web01 (assessed, no results) has none


# -- junit.xml ---------------------------------------------------------------------------------


def test_junit_xml() -> None:
    data = render_junit(sample_doc())
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(data)
    assert root.tag == "testsuites"
    assert [s.get("name") for s in root.iter("testsuite")] == ["lg-app01", "in-web01", "mn-app01"]
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "11",
        "2",
        "4",
        "3",
    )
    cases = {(c.get("classname"), c.get("name", "").split()[0]): c for c in root.iter("testcase")}
    fail = cases[("lg-app01", "PW-01")]
    assert fail.get("name") == "PW-01 パスワードの長さと複雑さ (Password length and complexity)"
    failure = fail.find("failure")
    assert failure is not None and failure.get("message") == (
        "minlen = 8 in /etc/security/pwquality.conf"
    )
    props = {p.get("name"): p.get("value") for p in fail.iter("property")}
    assert (props["expected"], props["observed"], props["status"]) == ("14", "8", "fail")
    assert "[set in /etc/security/pwquality.conf.d/99-local.conf:1]" in (failure.text or "")
    evil = cases[("in-web01", "TS-01")]
    assert {p.get("name"): p.get("value") for p in evil.iter("property")}["observed"] == EVIL
    assert cases[("lg-app01", "LG-01")].find("error") is not None
    unassessed = cases[("mn-app01", "PW-01")].find("error")
    assert unassessed is not None and unassessed.get("type") == "not_assessed"
    assert unassessed.get("message") == UNREACHABLE
    skipped = cases[("in-web01", "PW-01")].find("skipped")
    assert skipped is not None and WAIVER.reason in (skipped.get("message") or "")
    assert "EX-2026-001" in (skipped.get("message") or "") and "2026-12-15" in (
        skipped.get("message") or ""
    )
    assert cases[("lg-app01", "ML-01")].find("skipped") is not None
    assert cases[("lg-app01", "TS-01")].find("failure") is None


def test_junit_xml_unassessed_host_without_results_and_control_characters() -> None:
    doc = sample_doc()
    doc.results = [
        result("lg-app01", "PW-01", Status.FAIL, expected="x", observed="\x1b[31mred\x1b[0m\x00"),
    ]
    root = ET.fromstring(render_junit(doc))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    mn = suites["mn-app01"]
    assert (mn.get("tests"), mn.get("errors")) == ("1", "1")
    error = mn.find("testcase/error")
    assert error is not None and error.get("message") == UNREACHABLE
    assert suites["in-web01"].get("tests") == "0"
    observed = {p.get("name"): p.get("value") for p in root.iter("property")}["observed"]
    assert observed == "\\x1b[31mred\\x1b[0m\\x00"


# -- the probe matrix --------------------------------------------------------------------------


def probe_doc() -> RunDocument:
    doc = sample_doc()
    matrix = [
        {"from": "in-mail01", "to": "lg-mail01", "port": 25, "expected": "connects",
         "observed": "connected"},
        {"from": "in-mail01", "to": "lg-mail01", "port": 22, "expected": "blocked",
         "observed": "blocked"},
        # drift: the gateway lets the internet zone through to an undeclared port
        {"from": "in-web01", "to": "lg-app01", "port": 8080, "expected": "blocked",
         "observed": "refused"},
        {"from": "in-web01", "to": "=cmd|' /C calc'!A0", "port": 443, "expected": "connects",
         "observed": "blocked"},
    ]  # fmt: skip
    doc.results.append(
        ControlResult(
            host="gw01",
            control="FW-06",
            area="firewall",
            title={"ja": "特定通信のみの許可", "en": "Only the declared flows"},
            status=Status.FAIL,
            checks=[
                CheckResult(
                    "declared_flows_effective",
                    "fail",
                    "declared flows connect",
                    {"probes not as declared": ["..."], "probe matrix": matrix},
                )
            ],
        )
    )
    return doc


def test_probe_rows_say_which_connections_are_not_as_declared() -> None:
    from kijun.report import probe_rows

    rows = probe_rows(probe_doc())
    assert [(r.source, r.target, r.port, r.as_declared) for r in rows] == [
        ("in-mail01", "lg-mail01", 25, True),
        ("in-mail01", "lg-mail01", 22, True),
        ("in-web01", "lg-app01", 8080, False),  # refused = passed the firewalls
        ("in-web01", "=cmd|' /C calc'!A0", 443, False),
    ]
    assert {r.host for r in rows} == {"gw01"} and {r.control for r in rows} == {"FW-06"}
    assert probe_rows(sample_doc()) == []


def test_probe_matrix_csv_for_excel() -> None:
    from kijun.report import PROBE_HEADER, render_probe_matrix_csv

    assert render_probe_matrix_csv(sample_doc()) is None  # no probes, no file
    data = render_probe_matrix_csv(probe_doc())
    assert data is not None and data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[0] == PROBE_HEADER
    assert rows[3] == ["gw01", "FW-06", "declared_flows_effective", "in-web01", "lg-app01", "",
                       "8080", "blocked", "refused", "NO"]  # fmt: skip
    assert rows[4][4].startswith("'=")  # a formula from a host name is defused
    assert len(rows) == 5


def test_html_shows_the_probe_matrix_as_a_table() -> None:
    html = render_html(probe_doc())
    section = html[html.index('<section id="probes">') : html.index('<section id="exceptions">')]
    assert "gw01 FW-06" in section and "tcp/8080" in section and "tcp/25" in section
    assert "宣言と異なる 2 件" in section  # two probes not as declared
    # the cell that should have been blocked: marked, observed and expected both shown
    cell = re.search(r'<td class="num probe s-fail"[^>]*>(.*?)</td>', section, re.S)
    assert cell is not None and "✗" in cell.group(1) and "期待" in cell.group(1)
    assert section.count('class="num probe ok"') == 1  # tcp/22, blocked as declared
    assert section.count('class="num probe ok declared"') == 1  # tcp/25, a declared flow
    assert section.count('class="num probe s-fail declared"') == 1  # tcp/443 blocked
    assert "=cmd|&#39; /C calc&#39;!A0" in section  # host names are escaped
    assert "この実行では通信の実測はありません" in render_html(sample_doc())
