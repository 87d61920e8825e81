"""The ``kijun`` command: a thin layer over the engine's functions."""

from __future__ import annotations

from enum import StrEnum
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
