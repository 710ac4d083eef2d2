"""``mloop dev up|down|status|clean``: the local stack (Kafka, Postgres, the five services)."""

from __future__ import annotations

import importlib.util
import json
from typing import Annotated

import typer

from mloop.cli._context import console, err_console, state

app = typer.Typer(help="The local stack: Kafka, Postgres and the five services.", no_args_is_help=True)


@app.callback()
def _needs_devstack() -> None:
    """The local stack ships as an optional extra: ``pip install 'mloop-cli[dev]'``."""
    if importlib.util.find_spec("mloop.devstack") is None:
        err_console.print("[red]error[/red] the local stack is not installed: pip install 'mloop-cli[dev]'")
        raise typer.Exit(2)


def _log(message: str) -> None:
    console.print(f"[dim]{message}[/dim]")


@app.command()
def up(
    services: Annotated[bool, typer.Option("--services/--no-services", help="also start the five services")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait for readiness")] = 120.0,
) -> None:
    """Start Kafka, Postgres and (by default) the services; idempotent, data is kept."""
    from mloop.devstack import format_status
    from mloop.devstack import up as stack_up

    try:
        with console.status("starting the local stack (the first start fetches the Kafka jars)..."):
            st = stack_up(services=services, timeout=timeout, log=_log)
    except (RuntimeError, OSError) as exc:
        err_console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from None
    typer.echo(format_status(st), nl=False)


@app.command()
def down() -> None:
    """Stop the services, Kafka and Postgres; the data is kept."""
    from mloop.devstack import down as stack_down

    stack_down(log=_log)


@app.command()
def status(ctx: typer.Context, json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """What runs where, then ``KEY=VALUE`` lines: ``eval "$(mloop dev status)"``."""
    from mloop.devstack import format_status
    from mloop.devstack import status as stack_status

    st = stack_status()
    if json_ or state(ctx).json:
        typer.echo(json.dumps(st, indent=2, default=str))
    else:
        typer.echo(format_status(st), nl=False)


@app.command()
def clean(yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False) -> None:
    """Stop everything and delete the stack's data, logs and secret."""
    from mloop.devstack import clean as stack_clean

    if not yes:
        typer.confirm("delete all local stack data?", abort=True)
    stack_clean(log=_log)
