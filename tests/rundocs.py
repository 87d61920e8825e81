"""Synthetic run documents (``results.json`` models) for tests that need no lab."""

from __future__ import annotations

from typing import Any

from kijun.results import (
    CheckResult,
    Clause,
    ControlResult,
    HostResult,
    RunDocument,
    RunInfo,
    Status,
    Waiver,
)

INVENTORY = "/srv/kijun/inventories/lab"

TITLES = {
    "PW-01": {"ja": "パスワードの長さと文字種", "en": "Password length and character classes"},
    "TS-01": {"ja": "時刻同期", "en": "Time synchronisation"},
    "LG-01": {"ja": "ログの保存", "en": "Log retention"},
}

WAIVER = Waiver(
    exception_id="EX-2026-001",
    reason="業務システムの制約により最小文字数を 8 文字とする",
    compensating_measure="管理端末からのみ接続可能とし、ログインを毎日確認する",
    valid_from="2026-04-01",
    valid_until="2027-03-31",
    approved_by="情報セキュリティ委員会",
    approved_on="2026-03-25",
)


def run_info(
    run_id: str = "20261121T233802Z-lab-1a2b",
    started: str = "2026-11-21T23:38:02Z",
    finished: str = "2026-11-21T23:39:40Z",
    inventory_id: str = INVENTORY,
    profile: str | None = "shimojo",
) -> RunInfo:
    return RunInfo(
        run_id=run_id,
        started=started,
        finished=finished,
        kijun_version="0.1.0",
        inventory="inventories/lab",
        inventory_id=inventory_id,
        profile=(
            {
                "name": profile,
                "title": {"ja": "下條村 対策基準", "en": "Shimojo Village standards"},
                "organisation": {"ja": "下條村", "en": "Shimojo Village"},
            }
            if profile
            else {}
        ),
        operator="admin@ctrl01",
        git={"commit": "84f5b96784b79385266f448e9681f34743093dbd", "dirty": False},
        selection={"limit": None, "areas": [], "controls": []},
    )


def result(
    host: str,
    control: str,
    status: Status,
    *,
    expected: Any = None,
    observed: Any = None,
    message: str = "",
) -> ControlResult:
    area = {"PW": "password", "TS": "time", "LG": "logging"}[control.split("-")[0]]
    evidence = []
    checks = []
    if status in (Status.PASS, Status.FAIL, Status.WAIVED, Status.ERROR):
        key = f"{area}/config"
        evidence = [f"raw/{host}/{key}.txt"]
        outcome = "fail" if status is Status.WAIVED else str(status)
        source = f"/etc/kijun-sample/{area}.conf:3"  # the file that set the value in force
        checks = [
            CheckResult(f"{area}_check", outcome, expected, observed, message, (key,), source)
        ]
    return ControlResult(
        host=host,
        control=control,
        area=area,
        title=TITLES[control],
        status=status,
        expected=expected,
        observed=observed,
        message=message,
        references=[Clause("第2章 7(7) 3", "shimojo"), Clause("第2章 7(7) 3", "S3", "引用")],
        checks=checks,
        evidence=evidence,
        waiver=WAIVER if status is Status.WAIVED else None,
    )


def host(name: str, assessed: bool = True, reason: str = "") -> HostResult:
    zone = {"mn": "mynumber", "lg": "lgwan", "in": "internet"}[name[:2]]
    return HostResult(name, [zone], [f"zone_{zone}"], assessed, reason)


def run_doc(
    statuses: dict[tuple[str, str], Status],
    *,
    unreachable: dict[str, str] | None = None,
    **info: Any,
) -> RunDocument:
    """A run with one result per ``(host, control): status``; hosts in ``unreachable``
    (name: reason) are marked not assessed."""
    unreachable = unreachable or {}
    names = sorted({h for h, _ in statuses} | set(unreachable))
    hosts = [host(n, n not in unreachable, unreachable.get(n, "")) for n in names]
    results = [
        result(
            h,
            c,
            s,
            expected={"minlen": 12} if c == "PW-01" else None,
            observed={"minlen": 8 if s in (Status.FAIL, Status.WAIVED) else 12}
            if c == "PW-01"
            else None,
            message=unreachable.get(h, ""),
        )
        for (h, c), s in statuses.items()
    ]
    return RunDocument(run_info(**info), hosts, results)
