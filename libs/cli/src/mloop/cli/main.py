"""The ``mloop`` command line: the local stack, tokens, and every service's API.

Endpoints come from ``MLOOP_REGISTRY_URL`` ... ``MLOOP_AUDIT_URL`` (``eval
"$(mloop dev status)"``; the local stack's ports otherwise). The bearer token
is ``--token`` or ``MLOOP_TOKEN``; against the local stack, with neither, a
short-lived admin token for ``--as NAME`` (default: you) is minted from the
stack's secret, so ``mloop --as bob promotion approve ...`` acts as a second
person.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mloop.cli import audit, dev, operations, registry
from mloop.cli._context import CliState, err_console, local_jwt_secret

app = typer.Typer(
    name="mloop",
    help="mloop: the machine-learning lifecycle as an event-driven loop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(dev.app, name="dev")
app.add_typer(registry.models, name="models")
app.add_typer(registry.versions, name="versions")
app.add_typer(registry.promotion, name="promotion")
app.add_typer(operations.rollout, name="rollout")
app.add_typer(operations.drift, name="drift")
app.add_typer(operations.retrain, name="retrain")
app.add_typer(audit.audit, name="audit")


@app.callback()
def root(
    ctx: typer.Context,
    token: Annotated[str | None, typer.Option(envvar="MLOOP_TOKEN", help="bearer token", show_default=False)] = None,
    as_: Annotated[
        str | None, typer.Option("--as", help="local stack only: act as this user (minted admin token)")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="print JSON (for scripts)")] = False,
) -> None:
    ctx.obj = CliState(token=token, acting_as=as_, json=json_)


@app.command("token")
def token(
    sub: Annotated[str, typer.Option("--sub", help="who the token names")],
    role: Annotated[list[str], typer.Option("--role", help="a role; repeatable")],
    ttl: Annotated[int, typer.Option(help="seconds the token stays valid")] = 12 * 3600,
    secret: Annotated[
        str | None,
        typer.Option(envvar="MLOOP_JWT_SECRET", help="signing secret (default: the local stack's)", show_default=False),
    ] = None,
) -> None:
    """Print a bearer token signed with the local stack's secret.

    Roles: viewer, data-scientist, reviewer, operator, admin, service.
    Example: export MLOOP_TOKEN=$(mloop token --sub alice --role data-scientist)
    """
    from mloop.contracts.tokens import issue_token

    key = secret or local_jwt_secret()
    if not key:
        err_console.print(
            "[red]error[/red] no signing secret: set MLOOP_JWT_SECRET or start the local stack (mloop dev up)"
        )
        raise typer.Exit(2)
    try:
        typer.echo(issue_token(key, sub, role, ttl_s=ttl))
    except ValueError as exc:
        err_console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2) from None


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
