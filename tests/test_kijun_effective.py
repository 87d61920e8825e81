"""roles/kijun_common's kijun_effective module, run by Ansible on files of the test's own: the
competing assignments of a role's keys are commented out with a backup kept outside the
drop-in directory; check mode changes nothing; the role's own files are never touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import run_module


def module(args: dict[str, Any], *flags: str) -> dict[str, Any]:
    return run_module("kijun_effective", args, *flags)


def journald(tmp_path: Path) -> tuple[Path, Path, Path]:
    d = tmp_path / "journald.conf.d"
    d.mkdir()
    own = d / "50-kijun-retention.conf"
    own.write_text("[Journal]\nStorage=persistent\n")
    other = d / "99-local.conf"
    other.write_text("# local\n[Journal]\nStorage=volatile\nRateLimitBurst=1\n")
    other.chmod(0o640)
    outside = d / "10-nosection.conf"
    outside.write_text("Storage=auto\n[Other]\nStorage=none\n")
    return own, other, outside


def test_check_mode_reports_what_would_be_neutralised_and_changes_nothing(
    tmp_path: Path,
) -> None:
    own, other, outside = journald(tmp_path)
    before = {p: p.read_text() for p in (own, other, outside)}
    args = {"paths": [f"{own.parent}/*.conf"], "own": [str(own)], "keys": ["Storage"],
            "section": "Journal", "label": "log_retention LG-01",
            "backup_dir": str(tmp_path / "backups")}  # fmt: skip
    res = module(args, "--check", "--diff")
    assert res["changed"] is True
    assert [(n["path"], n["line"], n["text"]) for n in res["neutralised"]] == [
        (str(other), 3, "Storage=volatile")
    ]
    assert {p: p.read_text() for p in before} == before
    assert not (tmp_path / "backups").exists()
    [diff] = res["diff"]
    assert "# kijun(log_retention LG-01) neutralised: Storage=volatile\n" in diff["after"]
    assert diff["before"] == before[other]


def test_a_competing_line_is_commented_out_with_a_backup_and_the_second_run_changes_nothing(
    tmp_path: Path,
) -> None:
    own, other, outside = journald(tmp_path)
    original = other.read_text()
    args = {"paths": [f"{own.parent}/*.conf"], "own": [str(own)], "keys": ["Storage"],
            "section": "Journal", "label": "log_retention LG-01",
            "backup_dir": str(tmp_path / "backups")}  # fmt: skip
    res = module(args)
    assert res["changed"] is True
    assert other.read_text() == (
        "# local\n[Journal]\n# kijun(log_retention LG-01) neutralised: Storage=volatile\n"
        "RateLimitBurst=1\n"
    )
    assert oct(other.stat().st_mode & 0o777) == "0o640"  # the file keeps its mode
    [entry] = res["neutralised"]
    backup = Path(entry["backup"])
    assert backup.read_text() == original
    assert backup.is_relative_to(tmp_path / "backups") and backup.name == other.name
    # journald ignores an assignment outside [Journal]: not a competitor, left alone
    assert outside.read_text() == "Storage=auto\n[Other]\nStorage=none\n"
    assert own.read_text() == "[Journal]\nStorage=persistent\n"
    again = module(args)
    assert again["changed"] is False and again["neutralised"] == []


def test_keyword_lines_compare_without_case_when_the_service_does(tmp_path: Path) -> None:
    conf = tmp_path / "sshd_config.d"
    conf.mkdir()
    (conf / "00-local.conf").write_text("passwordauthentication yes\nPort 22\n")
    args = {"paths": [f"{conf}/*.conf"], "keys": ["PasswordAuthentication"], "format": "space",
            "ignore_case": True, "label": "role XX-01",
            "backup_dir": str(tmp_path / "b")}  # fmt: skip
    res = module(args)
    assert [n["key"] for n in res["neutralised"]] == ["passwordauthentication"]
    assert (conf / "00-local.conf").read_text() == (
        "# kijun(role XX-01) neutralised: passwordauthentication yes\nPort 22\n"
    )


def test_without_keys_it_refuses_and_says_what_to_give(tmp_path: Path) -> None:
    res = module({"paths": [str(tmp_path / "x")], "label": "role XX-01"})
    assert res.get("failed") is True
    assert "keys is empty" in res["msg"]


def test_a_change_that_would_break_the_files_syntax_is_refused_and_named(tmp_path: Path) -> None:
    """A shell branch whose only statement is the competing line: commented out, the branch
    would be empty and bash would refuse the whole profile file. The module leaves it and says
    what to do; a file where the line can go is changed."""
    profile = tmp_path / "profile.d"
    profile.mkdir()
    branch = profile / "10-branch.sh"
    branch.write_text('if [ -n "$SSH_TTY" ]; then\n  readonly TMOUT=0\nfi\n')
    args = {"paths": [str(branch)], "format": "pattern", "pattern": r"\bTMOUT=", "comment": "#",
            "validate": "bash -n %s", "label": "password_policy PW-09",
            "backup_dir": str(tmp_path / "b")}  # fmt: skip
    res = module(args)
    assert res.get("failed") is True, res
    assert f"{branch} would not pass `bash -n %s` once line 2 is neutralised" in res["msg"]
    assert "Edit the file by hand" in res["msg"]
    assert branch.read_text() == 'if [ -n "$SSH_TTY" ]; then\n  readonly TMOUT=0\nfi\n'
    plain = profile / "20-plain.sh"
    plain.write_text("readonly TMOUT=0\nexport PATH\n")
    res = module({**args, "paths": [str(plain)]})
    assert res["changed"] is True
    assert plain.read_text().startswith("# kijun(password_policy PW-09) neutralised: ")
