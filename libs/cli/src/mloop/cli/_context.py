"""What every command needs: endpoints, a token, output mode, and error handling."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.table import Table

from mloop.client import ApiError, Endpoints, MloopClient, TransportError

__all__ = [
    "CliState",
    "JsonOpt",
    "console",
    "err_console",
    "local_jwt_secret",
    "run_api",
    "show",
    "state",
]

T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON (for scripts)")]

console = Console()
err_console = Console(stderr=True)

#: The HTTP transport of every API call; tests replace it with ``httpx.MockTransport``.
transport: httpx.AsyncBaseTransport | None = None

#: A token minted from the local stack's secret when no token is given lives this long.
LOCAL_TOKEN_TTL_S = 15 * 60


def local_jwt_secret(env: Mapping[str, str] | None = None) -> str | None:
    """``MLOOP_JWT_SECRET``, else the secret of the local stack (``make up``), else None."""
    env = os.environ if env is None else env
    if env.get("MLOOP_JWT_SECRET"):
        return env["MLOOP_JWT_SECRET"]
    try:
        from mloop.devstack import StackPaths
        from mloop.devstack.stack import read_jwt_secret

        return read_jwt_secret(StackPaths.default())
    except (ImportError, RuntimeError, OSError):  # no local stack installed, or none started
        return None


@dataclass
class CliState:
    """Global options: ``--token``, ``--as``, ``--json``."""

    token: str | None = None
    acting_as: str | None = None
    json: bool = False

    def endpoints(self) -> Endpoints:
        return Endpoints.from_env(os.environ)

    def bearer(self) -> str | None:
        """The token to send: ``--token``/``MLOOP_TOKEN``, else one minted from the local stack's secret.

        The minted token names ``--as`` (default: the OS user) with the ``admin`` role and
        lives 15 minutes: a convenience for the local stack only.
        """
        if self.token:
            return self.token
        secret = local_jwt_secret()
        if secret is None:
            return None
        from mloop.contracts.tokens import issue_token

        sub = self.acting_as or _os_user()
        return issue_token(secret, sub, ["admin"], ttl_s=LOCAL_TOKEN_TTL_S)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = CliState()
        ctx.find_root().obj = obj
    return obj


def run_api(ctx: typer.Context, call: Callable[[MloopClient], Awaitable[T]]) -> T:
    """Run ``call`` with a client; turn API and connection errors into a message and an exit code."""
    st = state(ctx)

    async def go() -> T:
        async with MloopClient(st.endpoints(), st.bearer(), transport=transport) as api:
            return await call(api)

    return run(go())


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except ApiError as exc:
        err_console.print(f"[red]error[/red] {exc.status} {exc.problem.get('title', '')}: {exc.detail or ''}")
        for e in exc.errors:
            err_console.print(f"  [yellow]{e.get('field', '?')}[/yellow]: {e.get('message', '')}")
        raise typer.Exit(1) from None
    except TransportError as exc:
        err_console.print(f"[red]error[/red] {exc}\n  is the stack up? try [bold]mloop dev status[/bold]")
        raise typer.Exit(2) from None


# --------------------------------------------------------------------------- output


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        text = json.dumps(value, default=str, separators=(",", ":"))
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)


def show(
    ctx: typer.Context,
    data: Any,
    columns: Sequence[str] | None = None,
    *,
    title: str | None = None,
    json_flag: bool = False,
) -> None:
    """Print ``data``: JSON with ``--json``, else a table (a list of objects) or key/value rows (an object)."""
    if json_flag or state(ctx).json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    if isinstance(data, list):
        if not data:
            console.print(f"[dim]no {title or 'items'}[/dim]")
            return
        cols = list(columns or [k for k in data[0] if not isinstance(data[0][k], dict | list)][:8])
        table = Table(title=title, show_lines=False, header_style="bold")
        for c in cols:
            table.add_column(c)
        for item in data:
            table.add_row(*(_cell(_get(item, c)) for c in cols))
        console.print(table)
        return
    if isinstance(data, dict):
        table = Table(title=title, show_header=False, box=None, padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for k in columns or list(data):
            table.add_row(k, _cell(_get(data, k)))
        console.print(table)
        return
    console.print(data)


def _get(item: Mapping[str, Any], dotted: str) -> Any:
    value: Any = item
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value
