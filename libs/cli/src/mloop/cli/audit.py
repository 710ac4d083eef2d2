"""``mloop audit``: query the ledger, follow a version's lifecycle, export and verify evidence."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from mloop.cli._context import JsonOpt, console, err_console, run_api, show, state

audit = typer.Typer(help="The tamper-evident ledger: query, lifecycle, export, verify.", no_args_is_help=True)

_RECORD_COLUMNS = ["chain", "seq", "topic", "model", "version", "actor", "time"]


@audit.command("query")
def query(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="only this model")] = None,
    version: Annotated[str | None, typer.Option(help="only this version")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="event type or topic, e.g. model-promoted")] = None,
    actor: Annotated[str | None, typer.Option(help="who caused it, e.g. user:alice")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 100,
    json_: JsonOpt = False,
) -> None:
    """Ledger records, filtered."""
    found = run_api(
        ctx,
        lambda api: api.audit.records(
            limit=limit, model=model, version=version, type=type_, actor=actor, since=since, until=until
        ),
    )
    show(ctx, found, _RECORD_COLUMNS, title="audit records", json_flag=json_)


@audit.command("lifecycle")
def lifecycle(ctx: typer.Context, model: str, version: str, json_: JsonOpt = False) -> None:
    """A version's lifecycle: registered, validated, reviewed, promoted, rollout steps, outcome."""
    found = run_api(ctx, lambda api: api.audit.lifecycle(model, version))
    if json_ or state(ctx).json:
        show(ctx, found, json_flag=True)
        return
    steps = found.get("steps", []) if isinstance(found, dict) else found
    show(ctx, steps, title=f"lifecycle of {model} v{version}")


@audit.command("approvals")
def approvals(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="only this model")] = None,
    json_: JsonOpt = False,
) -> None:
    """Who approved what."""
    show(ctx, run_api(ctx, lambda api: api.audit.approvals(model=model)), title="approvals", json_flag=json_)


def _export(ctx: typer.Context, out: Path, filters: dict[str, Any]) -> Path:
    """Download an evidence bundle (tar.gz) to ``out``; returns its path."""
    wanted = {k: v for k, v in filters.items() if v is not None}
    if out.is_dir() or not out.name.endswith((".tar.gz", ".tgz", ".tar")):
        out = out / "mloop-audit-evidence.tar.gz"
    return run_api(ctx, lambda api: api.audit.export(out, **wanted))


@audit.command("export")
def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="archive path (.tar.gz) or a directory to put it in")],
    model: Annotated[str | None, typer.Option(help="only this model")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time")] = None,
) -> None:
    """Export a signed evidence bundle (JSON Lines, checkpoints, proofs) for offline verification."""
    with console.status("exporting evidence..."):
        path = _export(ctx, out, {"model": model, "since": since, "until": until})
    console.print(f"evidence bundle written to [bold]{path}[/bold]")


@audit.command("verify")
def verify(
    ctx: typer.Context,
    bundle: Annotated[
        Path | None, typer.Option(help="bundle directory or archive (default: export the live ledger)")
    ] = None,
    public_key: Annotated[
        list[str] | None, typer.Option(help="trusted Ed25519 key (file or literal); repeatable")
    ] = None,
    checkpoint: Annotated[list[Path] | None, typer.Option(help="signed checkpoints kept outside the database")] = None,
    checkpoint_dir: Annotated[
        list[Path] | None, typer.Option(help="a folder of checkpoint files, as the audit service writes them")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Verify an evidence bundle offline against a pinned public key.

    Without ``--bundle``, the live ledger is exported first; without ``--public-key``,
    the audit service's key is fetched (pin it instead for a real audit).
    Exit status: 0 verified, 1 not verified, 2 a bundle, key or checkpoint could not be read.
    """
    from mloop.ledger.checkpoint import (
        CheckpointFormatError,
        read_checkpoint_dir,
        read_checkpoint_file,
        resolve_public_key,
    )
    from mloop.ledger.verify import BundleFormatError, verify_bundle

    key_texts = list(public_key or [])
    with tempfile.TemporaryDirectory(prefix="mloop-audit-") as tmp:
        if bundle is None:
            with console.status("exporting the live ledger..."):
                run_api(ctx, lambda api: api.audit.sign_checkpoints())  # cover the newest rows
                bundle = _export(ctx, Path(tmp) / "bundle.tar.gz", {})
        if not key_texts:
            key_doc = run_api(ctx, lambda api: api.audit.public_key())
            key = key_doc.get("base64") or key_doc.get("pem")
            if not key:
                err_console.print("[red]error[/red] the audit service did not return a public key; pass --public-key")
                raise typer.Exit(2)
            key_texts = [str(key)]
        try:
            keys = [resolve_public_key(k) for k in key_texts]
        except (CheckpointFormatError, OSError) as exc:
            err_console.print(f"[red]error[/red] cannot load public key: {exc}")
            raise typer.Exit(2) from None
        try:
            outside = [cp for f in checkpoint or [] for cp in read_checkpoint_file(f)]
            for directory in checkpoint_dir or []:
                outside += read_checkpoint_dir(directory)
        except (CheckpointFormatError, OSError, UnicodeDecodeError) as exc:
            err_console.print(f"[red]error[/red] cannot load checkpoints: {exc}")
            raise typer.Exit(2) from None
        try:
            report = verify_bundle(bundle, keys, outside)
        except BundleFormatError as exc:
            err_console.print(f"[red]error[/red] cannot read bundle: {exc}")
            raise typer.Exit(2) from None
    if json_ or state(ctx).json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(report.summary())
    raise typer.Exit(0 if report.ok else 1)
