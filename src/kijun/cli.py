"""The ``kijun`` command: a thin layer over the engine's functions."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from kijun import __version__

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(
    name="kijun",
    help="kijun (基準): apply and audit security baselines for public bodies' policies.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kijun {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """kijun (基準): apply and audit security baselines for public bodies' policies."""


# --- set-up and the built-in lab ------------------------------------------------------------

lab_app = typer.Typer(help="The built-in lab: real Debian hosts in three zones under podman.")
app.add_typer(lab_app, name="lab")


def _console_progress(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[cyan]•[/cyan] {message}")


@app.command("setup")
def setup_cmd(
    rebuild_image: bool = typer.Option(False, "--rebuild-image", help="Build the lab image anew."),
) -> None:
    """Write kijun's containers.conf and make sure the lab image exists (idempotent)."""
    from kijun import image, podman

    if not podman.available():
        typer.echo(
            "podman is not installed: run `make setup` (as root) "
            "or `sudo apt-get install podman runc`",
            err=True,
        )
        raise typer.Exit(2)
    path, changed = podman.write_containers_conf()
    _console_progress(f"containers.conf {'written' if changed else 'unchanged'}: {path}")
    try:
        name, built = image.ensure(_console_progress, force=rebuild_image)
    except image.ImageBuildError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    _console_progress(f"lab image {name} {'built' if built else 'cached'}")


@lab_app.command("up")
def lab_up(
    extra_hosts: int = typer.Option(
        0, "--extra-hosts", min=0, max=150, help="Add N plain LGWAN hosts (for scaling runs)."
    ),
) -> None:
    """Bring the lab up (or repair it); a running, healthy lab is left unchanged."""
    from kijun import image, lab, podman

    try:
        report = lab.up(lab.default_spec(extra_hosts), progress=_console_progress)
    except (lab.LabError, image.ImageBuildError, podman.PodmanError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if report.changed:
        for host, why in report.recreated_hosts:
            _console_progress(f"recreated {host} ({why})")
        if report.created_hosts:
            _console_progress(f"created {', '.join(report.created_hosts)}")
        typer.echo(f"lab up: ready in {report.seconds:.1f} s; inventory {lab.inventory_path()}")
    else:
        typer.echo(
            f"lab up: unchanged, {len(report.kept_hosts)} hosts running ({report.seconds:.1f} s)"
        )


@lab_app.command("status")
def lab_status(
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Show each lab host and whether SSH answers. Exit 1 unless every host answers."""
    import json

    from rich.console import Console
    from rich.table import Table

    from kijun import lab

    rows = lab.status()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "host": r.host.name,
                        "zone": r.host.zone or "gateway",
                        "management_address": r.host.mgmt_address,
                        "zone_address": r.host.zone_address,
                        "container": r.container_state,
                        "ssh": r.ssh,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
    else:
        table = Table(title="kijun lab")
        for col in ("host", "zone", "management", "zone address", "container", "ssh"):
            table.add_column(col)
        for r in rows:
            zone = r.host.zone or "all (gateway)"
            table.add_row(
                r.host.name,
                zone,
                r.host.mgmt_address,
                r.host.zone_address or ".254 in each zone",
                r.container_state,
                "[green]answers[/green]" if r.ssh else "[red]no answer[/red]",
            )
        Console().print(table)
    if not all(r.ssh for r in rows):
        raise typer.Exit(1)


@lab_app.command("down")
def lab_down() -> None:
    """Remove every container and network the lab made (by label), and nothing else."""
    from kijun import lab

    removed = lab.down(progress=_console_progress)
    typer.echo(f"lab down: removed {len(removed)} object(s)" if removed else "lab down: no lab")


# --- the control catalog --------------------------------------------------------------------

catalog_app = typer.Typer(help="The control catalog (catalog/): controls, seeds and profiles.")
app.add_typer(catalog_app, name="catalog")


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def _catalog_failed(exc: Exception) -> NoReturn:
    """Report a catalog that does not load (or a name it does not have) and exit 2."""
    from kijun.catalog import CatalogError

    if isinstance(exc, CatalogError):
        count = len(exc.problems)
        typer.echo(f"catalog has {count} problem{'s' if count != 1 else ''}:", err=True)
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
    else:
        typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2) from exc


@app.command("controls")
def controls_cmd(
    profile: Annotated[
        str | None,
        typer.Option("--profile", "-p", help="Tailor values and clauses to this profile."),
    ] = None,
    area: Annotated[
        str | None, typer.Option("--area", "-a", help="Only this area's controls.")
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="Output format.")
    ] = OutputFormat.table,
) -> None:
    """List the catalog's controls. Exit 2 if the catalog or the profile has problems."""
    import json

    from rich.console import Console

    from kijun import catalog
    from kijun.paths import NotACheckoutError

    try:
        loaded = catalog.load_catalog()
        view = catalog.control_view(loaded, profile, area)
    except (catalog.CatalogError, catalog.UnknownNameError, NotACheckoutError) as exc:
        _catalog_failed(exc)
    if output is OutputFormat.json:
        typer.echo(json.dumps(view, ensure_ascii=False, indent=2, default=str))
    else:
        Console().print(_controls_table(view, profile))


def _controls_table(view: list[dict[str, Any]], profile: str | None) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"kijun controls ({profile})" if profile else "kijun controls")
    for column in ("id", "area", "title (ja / en)", "zones", "role"):
        table.add_column(column, no_wrap=column == "id")
    table.add_column(f"{profile} clauses" if profile else "references")
    if profile:
        table.add_column("applies")
    for control in view:
        references = [f"{r['seed']} {r['clause']}" for r in control["references"]]
        row = [
            control["id"],
            control["area"],
            f"{control['title']['ja']}\n{control['title']['en']}",
            ", ".join(control["zones"]),
            control["role"],
        ]
        if profile:
            tailoring = control["profile"]
            row.append(
                "\n".join(tailoring["clauses"])
                if tailoring["tailored"]
                else "\n".join(f"(catalog) {r}" for r in references)
            )
            reason = tailoring["reason"]["en"] if tailoring["reason"] else ""
            row.append("yes" if tailoring["applicable"] else f"no: {reason}")
        else:
            row.append("\n".join(references))
        table.add_row(*(Text(cell) for cell in row))  # Text: no rich markup in catalog content
    return table


@catalog_app.command("check")
def catalog_check(
    profiles: Annotated[
        list[str] | None,
        typer.Option("--profile", "-p", help="Check only this profile (repeatable); default: all."),
    ] = None,
) -> None:
    """Validate the catalog and its profiles; print every problem with file and line (exit 2)."""
    from kijun import catalog
    from kijun.paths import NotACheckoutError

    try:
        loaded = catalog.load_catalog()
        checked = catalog.load_profiles(loaded, profiles or None)
    except (catalog.CatalogError, catalog.UnknownNameError, NotACheckoutError) as exc:
        _catalog_failed(exc)
    typer.echo(
        f"catalog OK: {len(loaded.controls)} controls in {len(loaded.areas)} areas, "
        f"{len(checked)} profile{'s' if len(checked) != 1 else ''}"
    )


# --- the zone policy ------------------------------------------------------------------------

zones_app = typer.Typer(help="The zone policy of an inventory (zones.yml, inventories/ZONES.md).")
app.add_typer(zones_app, name="zones")


@zones_app.command("check")
def zones_check(
    inventory: Path = typer.Option(
        Path("inventories/lab"), "-i", "--inventory", help="Inventory file or directory."
    ),
) -> None:
    """Check the inventory's zone policy against the inventory; list its flows (exit 2: refused,
    every problem with file and line)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from kijun import zones
    from kijun.paths import NotACheckoutError

    try:
        policy, hosts = zones.load_inventory(inventory)
    except (zones.ZonePolicyError, NotACheckoutError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    table = Table("flow", "from", "to", "port", "over", "purpose", "clause")
    for flow in policy.flows:
        table.add_row(*(Text(str(cell)) for cell in (
            flow.name, flow.source, flow.destination, f"{flow.proto}/{flow.port}",
            flow.over, flow.purpose, flow.clause,
        )))  # fmt: skip
    Console().print(table)
    members = sum(1 for h in hosts.values() if h.zone in policy.zones)
    typer.echo(
        f"zone policy OK: {len(policy.zones)} zones, {members} hosts in them, "
        f"{len(policy.flows)} flows ({policy.path})"
    )


# --- applying the baseline -------------------------------------------------------------------


@app.command("apply")
def apply_cmd(
    inventory: Path = typer.Option(
        Path("inventories/lab"), "-i", "--inventory", help="Inventory file or directory."
    ),
    limit: str | None = typer.Option(None, "--limit", "-l", help="Ansible host pattern."),
    area: list[str] = typer.Option([], "--area", help="Only this area (repeatable)."),
    control: list[str] = typer.Option([], "--control", help="Only this control id (repeatable)."),
    check: bool = typer.Option(False, "--check", help="Change nothing: report what would change."),
    diff: bool = typer.Option(False, "--diff", help="Record the changes' differences."),
    out: Path | None = typer.Option(None, "--out", help="Directory for the run's bundle."),
) -> None:
    """Apply the baseline (playbooks/site.yml) through ansible-runner.

    Exit 0: every host applied. 1: a host failed, was unreachable or was stopped by the lockout
    guard. 2: wrong usage, or the playbook could not run.
    """
    from rich.console import Console
    from rich.live import Live

    from kijun import apply as apply_mod
    from kijun import catalog as catalog_mod

    err = Console(stderr=True)
    options = apply_mod.ApplyOptions(inventory, limit, area, control, check, diff, out)
    live = Live(console=err, transient=True, auto_refresh=False)

    def progress(tracker: apply_mod.Tracker, host: str) -> None:
        live.update(_apply_progress(tracker), refresh=True)

    try:
        with live:
            outcome = apply_mod.execute(options, progress)
    except (apply_mod.UsageError, catalog_mod.CatalogError) as exc:
        err.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    _print_apply(outcome, catalog_mod.load_catalog_cached())
    raise typer.Exit(outcome.code)


def _apply_progress(tracker: Any) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="kijun apply", title_justify="left")
    for col in ("host", "now", "ok", "changed", "failed", "unreachable"):
        table.add_column(col, overflow="ellipsis", no_wrap=True)
    for host in tracker.hosts():
        total = _sum_counts(tracker.recap.get(host, {}).values())
        table.add_row(
            host, Text(tracker.current.get(host, "")[:70]), str(total["ok"]),
            str(total["changed"]), str(total["failed"]), str(total["unreachable"]),
        )  # fmt: skip
    return table


def _sum_counts(counts: Any) -> dict[str, int]:
    total = {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0}
    for c in counts:
        for key in total:
            total[key] += getattr(c, key)
    return total


def _host_list(hosts: list[str], everyone: set[str], shown: int = 6) -> str:
    """``all 9 hosts``, or the names (the first few and how many more)."""
    if len(everyone) > 1 and set(hosts) == everyone:
        return f"all {len(everyone)} hosts"
    names = sorted(hosts)
    if len(names) <= shown + 1:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


def _print_apply(outcome: Any, cat: Any) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from kijun.apply import RUN_LEVEL

    console = Console()
    tracker = outcome.tracker
    mode = "check mode: nothing was changed" if outcome.check else "applied"
    console.print(f"kijun apply {outcome.run_id}: {mode}", soft_wrap=True, highlight=False)
    table = Table(title="recap per host and area", title_justify="left")
    for col in ("host", "area", "ok", "changed", "failed", "rescued", "unreachable", "host state"):
        table.add_column(col)
    for host in tracker.hosts():
        state = tracker.host_state(host)
        style = "green" if state == "ok" else "yellow" if state.startswith("ok") else "bold red"
        areas = sorted(tracker.recap.get(host, {}).items(), key=lambda kv: kv[0] == RUN_LEVEL)
        for i, (area, c) in enumerate(areas):
            table.add_row(
                host if i == 0 else "", area, str(c.ok),
                Text(str(c.changed), style="yellow" if c.changed else ""),
                Text(str(c.failed), style="red" if c.failed else ""),
                Text(str(c.rescued), style="yellow" if c.rescued else ""),
                Text(str(c.unreachable), style="red" if c.unreachable else ""),
                Text(state, style=style) if i == 0 else "",
            )  # fmt: skip
        if not areas:
            table.add_row(host, "", "0", "0", "0", "0", "0", Text(state, style=style))
    console.print(table)
    changes = tracker.by_control()
    verb = "would change" if outcome.check else "changed"
    if changes:
        # one row per control and task, with the hosts it changed (each host's changes are in
        # the run's summary.json)
        everyone = set(tracker.hosts())
        detail = Table(title=f"what {verb}, per control", title_justify="left")
        for col in ("control", "task", "hosts"):
            detail.add_column(col, overflow="fold")
        for control, items in changes.items():
            title = cat.controls[control].title.en if control in cat.controls else ""
            by_task: dict[str, list[str]] = {}
            for c in items:
                hosts = by_task.setdefault(c.task, [])
                if c.host not in hosts:
                    hosts.append(c.host)
            for i, (task, hosts) in enumerate(by_task.items()):
                detail.add_row(
                    Text(f"{control} {title}") if i == 0 else "", Text(task),
                    Text(_host_list(hosts, everyone)),
                )  # fmt: skip
        console.print(detail)
    else:
        console.print(f"nothing {verb}", highlight=False)
    if tracker.neutralised:
        # another file's line that assigned a setting a role owns: the role commented it out
        # (a copy of the file first), so that the role's value is the one in force
        done = "would neutralise (check mode)" if outcome.check else "neutralised"
        competing = Table(title=f"competing settings {done}", title_justify="left")
        for col in ("host", "control", "file:line", "was", "backup"):
            competing.add_column(col, overflow="fold")
        for n in tracker.neutralised:
            competing.add_row(
                n.host, " ".join(n.controls), f"{n.path}:{n.line}", Text(n.text),
                "" if outcome.check else n.backup,
            )  # fmt: skip
        console.print(competing)
    for f in tracker.rescued:
        console.print(
            Text(f"{f.host}: rescued (the role recovered, the host converged): {f.task}: "
                 f"{f.message}", style="yellow")
        )  # fmt: skip
    for host, message in sorted(tracker.lockout.items()):
        console.print(Text(f"{host}: stopped by the lockout guard: {message}", style="bold red"))
    for f in tracker.failures:
        if f.host not in tracker.lockout:
            kind = "unreachable" if f.unreachable else "failed"
            console.print(Text(f"{f.host}: {kind}: {f.task}: {f.message}", style="red"))
    if outcome.stdout_tail:
        console.print(Text(outcome.stdout_tail))
    if outcome.bundle:
        console.print(f"artifacts: {outcome.bundle}", soft_wrap=True, highlight=False)
        console.print(
            f"archive:   {outcome.archive} (check: kijun verify {outcome.bundle})",
            soft_wrap=True,
            highlight=False,
        )


# --- audits, evidence and history -----------------------------------------------------------

STATUS_STYLE = {
    "pass": ("green", "✓ pass"),
    "fail": ("red", "✗ fail"),
    "waived": ("yellow", "~ waived"),
    "error": ("magenta", "! error"),
    "not_assessed": ("bold red", "? not assessed"),
    "not_applicable": ("dim", "– n/a"),
}


@app.command("audit")
def audit_cmd(
    inventory: Path = typer.Option(
        Path("inventories/lab"), "-i", "--inventory", help="Inventory file or directory."
    ),
    limit: str | None = typer.Option(None, "--limit", "-l", help="Ansible host pattern."),
    profile: str | None = typer.Option(
        None, "--profile", help="Profile (default: the inventory's kijun.yml)."
    ),
    area: list[str] = typer.Option([], "--area", help="Only this area (repeatable)."),
    control: list[str] = typer.Option([], "--control", help="Only this control id (repeatable)."),
    out: Path | None = typer.Option(None, "--out", help="Directory for evidence bundles."),
    summary_json: Path | None = typer.Option(
        None, "--summary-json", help="Also write the run's summary as JSON to this file."
    ),
    wait: bool = typer.Option(
        False,
        "--wait/--no-wait",
        help="When another audit of the same inventory is running: wait for it to end "
        "(--wait), or refuse with exit 2 naming its PID and lock file (--no-wait, the default).",
    ),
) -> None:
    """Audit the hosts against the baseline and write an evidence bundle.

    Exit 0: every assessed control passes or is waived. 1: drift (a control fails or errs, or a
    host could not be assessed). 2: nothing could be assessed, the command was used wrongly,
    another audit of the inventory is running (without --wait), or the bundle or the history
    could not be written (a full disk says so, and where). Ctrl-C or SIGTERM stops the run with
    no bundle written and nothing recorded (exit 130 or 143).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from kijun import audit as audit_mod
    from kijun import catalog as catalog_mod
    from kijun import evidence, history, signing, tailoring, variables
    from kijun import exceptions as exceptions_mod

    err = Console(stderr=True)
    options = audit_mod.AuditOptions(
        inventory=inventory, limit=limit, profile=profile, areas=area, controls=control, out=out,
        wait=wait,
    )  # fmt: skip
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
        transient=True,
    )  # fmt: skip
    tasks: dict[str, Any] = {}

    def start(hosts: int, checks: int) -> None:
        tasks["hosts"] = bar.add_task("collecting host state", total=hosts)
        tasks["checks"] = bar.add_task("running checks", total=checks)

    def collected(host: str, error: str | None) -> None:
        if error:
            bar.console.print(f"[bold red]{host}: not assessed[/bold red] ({error})")
        if "hosts" in tasks:
            bar.advance(tasks["hosts"])

    def checked(record: dict[str, Any]) -> None:
        if "checks" in tasks:
            bar.advance(tasks["checks"])

    def waiting(message: str) -> None:
        bar.console.print(message, highlight=False, soft_wrap=True, markup=False)

    progress = audit_mod.Progress(start, collected, checked, waiting)
    try:
        with bar:
            outcome = audit_mod.execute(options, progress)
    except audit_mod.Interrupted as exc:
        message = (
            f"interrupted by {exc.name}: the audit stopped; no evidence bundle was written and "
            "nothing was recorded in the history"
        )
        err.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
        code = 128 + exc.signum
        if summary_json:
            _write_json(summary_json, {"status": "error", "exit_code": code, "message": message})
        raise typer.Exit(code) from None
    except (
        audit_mod.UsageError,
        audit_mod.AuditRunError,
        audit_mod.AuditLockedError,
        catalog_mod.CatalogError,
        exceptions_mod.ExceptionsError,
        variables.InventoryError,
        tailoring.SettingsError,
        evidence.EvidenceError,
        history.HistoryError,
        signing.SigningError,
        LookupError,
        OSError,
    ) as exc:
        text = _write_failure(exc) if isinstance(exc, OSError) else str(exc)
        err.print(f"[bold red]error:[/bold red] {text}", highlight=False, soft_wrap=True)
        if summary_json:
            _write_json(summary_json, {"status": "error", "exit_code": 2, "message": text})
        raise typer.Exit(2) from exc
    if outcome.late_signal:
        err.print(
            f"{outcome.late_signal} came while the run was being finished: it was finished first",
            highlight=False,
        )
    _print_summary(outcome)
    if summary_json:
        _write_json(summary_json, audit_mod.summary(outcome))
    raise typer.Exit(outcome.code)


def _write_failure(exc: OSError) -> str:
    """An OSError no part of the run expected, in words, with where when the error does not
    name the file."""
    from kijun.paths import state_dir, write_error_text

    if exc.filename:
        return write_error_text(exc)
    return f"{write_error_text(exc)} (kijun writes in its state directory {state_dir()})"


def _write_json(path: Path, data: Any) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def _print_summary(outcome: Any) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text  # values and titles are shown as they are, never as markup

    console = Console()
    doc = outcome.doc
    areas = sorted({r.area for r in doc.results})
    table = Table(title=f"kijun audit {doc.run.run_id}")
    table.add_column("host")
    for a in areas:
        table.add_column(a)
    order = ["not_assessed", "error", "fail", "waived", "pass", "not_applicable"]
    for h in doc.hosts:
        row: list[str | Text] = [h.host]
        for a in areas:
            statuses = [str(r.status) for r in doc.results if r.host == h.host and r.area == a]
            worst = min(statuses, key=order.index) if statuses else "not_applicable"
            style, label = STATUS_STYLE[worst]
            row.append(Text(label, style=style))
        table.add_row(*row)
    console.print(table)
    problems = [r for r in doc.results if str(r.status) in ("fail", "error", "not_assessed")]
    if problems:
        detail = Table(title="controls that need attention", show_lines=False)
        for col in ("host", "control", "status", "expected", "observed"):
            detail.add_column(col, overflow="fold")
        for r in problems:
            style, label = STATUS_STYLE[str(r.status)]
            detail.add_row(
                r.host, Text(f"{r.control} {r.title.get('en', '')}"), Text(label, style=style),
                Text(_short(r.expected)),
                Text(_short(r.observed if r.observed is not None else r.message)),
            )  # fmt: skip
        console.print(detail)
    waived = [r for r in doc.results if str(r.status) == "waived"]
    for r in waived:
        w = r.waiver
        console.print(
            f"[yellow]waived[/yellow] {r.host} {r.control}: {w.exception_id if w else ''} "
            f"until {w.valid_until if w else '?'} — {w.reason if w else ''}",
            highlight=False,
        )
    for u in doc.unused_exceptions:
        console.print(f"[dim]unused exception {u['id']}: {u['reason']}[/dim]", highlight=False)
    if outcome.not_covered:
        console.print(
            f"[dim]not audited yet (no audit module): {', '.join(outcome.not_covered)}[/dim]"
        )
    counts = doc.counts()
    console.print(
        "  ".join(f"{k}={v}" for k, v in counts.items() if v),
        highlight=False,
    )
    if outcome.new_key:
        console.print(f"made a signing key: {outcome.new_key} (kijun keys init)")
    if outcome.bundle:
        console.print(f"evidence: {outcome.bundle}", soft_wrap=True, highlight=False)
        console.print(
            f"report:   {outcome.bundle / 'report.html'}", soft_wrap=True, highlight=False
        )
        console.print(
            f"archive:  {outcome.archive} (check: kijun verify {outcome.bundle})",
            soft_wrap=True,
            highlight=False,
        )


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json_dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def json_dumps(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


@app.command("scheduled-audit")
def scheduled_audit_cmd(
    config: Path = typer.Option(
        Path("/etc/kijun/scheduled-audit.yml"), "--config", help="The schedule's settings."
    ),
    check_config: bool = typer.Option(
        False, "--check-config", help="Only check the settings file, then exit."
    ),
) -> None:
    """One scheduled audit (run by the kijun-audit systemd service): audit, verify the bundle,
    keep the declared number of bundles, log to the journal, notify on drift or error.

    Exit 0: no drift. 1: drift. 2: error (nothing assessed, the bundle does not verify, a
    notification failed, or the settings are wrong).
    """
    from kijun import schedule

    try:
        if check_config:
            typer.echo(schedule.check_config(config))
            return
        settings = schedule.load_config(config)
    except schedule.ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    from kijun.audit import Interrupted

    try:
        report = schedule.run(settings)
    except Interrupted as exc:
        typer.echo(
            f"error: interrupted by {exc.name}: the audit stopped; no evidence bundle was "
            "written and nothing was recorded in the history",
            err=True,
        )
        raise typer.Exit(128 + exc.signum) from None
    raise typer.Exit(report.exit_code)


keys_app = typer.Typer(help="The signing key for evidence bundles.")
app.add_typer(keys_app, name="keys")

collection_app = typer.Typer(help="The roles as the Ansible collection kijun.baseline.")
app.add_typer(collection_app, name="collection")


@collection_app.command("build")
def collection_build(
    output_path: Path = typer.Option(
        Path("build"), "--output-path", help="Directory for the collection's tarball."
    ),
) -> None:
    """Build the roles as the collection kijun.baseline (their modules in plugins/modules/)."""
    from kijun import collection

    try:
        tarball = collection.build(output_path)
    except collection.CollectionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"collection built: {tarball}")
    typer.echo(f"install it: ansible-galaxy collection install --force -p COLLECTIONS {tarball}")


@keys_app.command("init")
def keys_init(
    force: bool = typer.Option(False, "--force", help="Replace an existing key."),
) -> None:
    """Make the Ed25519 key that signs every evidence bundle's manifest."""
    from kijun import signing

    try:
        public = signing.init_keys(force=force)
    except signing.SigningError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"signing key made; public key (give it to your auditors): {public}")


@app.command("verify")
def verify_cmd(
    bundle: Path = typer.Argument(..., help="Bundle directory or .tar.gz."),
    trusted_key: Path | None = typer.Option(
        None, "--trusted-key", help="The public key the bundle must be signed with."
    ),
) -> None:
    """Check every file hash and the signature of an evidence bundle, offline."""
    from kijun import signing

    if not bundle.exists():
        typer.echo(f"error: {bundle} does not exist", err=True)
        raise typer.Exit(2)
    report = signing.verify_bundle(bundle, trusted_key)
    typer.echo(report.text())
    raise typer.Exit(0 if report.ok else 1)


@app.command("history")
def history_cmd(
    inventory: Path | None = typer.Option(None, "-i", "--inventory", help="Only this inventory."),
    limit: int = typer.Option(20, "--last", help="How many runs to show."),
) -> None:
    """List recorded audit runs with their counts per status."""
    from rich.console import Console
    from rich.table import Table

    from kijun import history

    runs = history.History().list_runs(str(inventory.resolve()) if inventory else None, limit=limit)
    table = Table(title="kijun audit history")
    for col in ("run", "started (UTC)", "inventory", "profile", "pass", "fail", "waived",
                "error", "not assessed", "bundle"):  # fmt: skip
        table.add_column(col)
    for r in runs:
        c = r.counts
        table.add_row(
            r.run_id, r.started, Path(r.inventory_id).name, r.profile or "",
            str(c.get("pass", 0)), str(c.get("fail", 0)), str(c.get("waived", 0)),
            str(c.get("error", 0)), str(c.get("not_assessed", 0)), r.bundle or "",
        )  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    app()
