"""Replay the ledger straight from Postgres against a pinned public key (an operator's tool on the audit host).

    python -m mloop.audit.cli --database-url postgresql://... --public-key audit.pub [--checkpoint-dir DIR]

Every chain is replayed row by row; checkpoints are trusted only when the
pinned key signed them, and ``--checkpoint``/``--checkpoint-dir`` add the
copies kept outside the database: they are what exposes a ledger cut short.
Evidence bundles, and the live ledger through the audit API, are verified by
``mloop audit verify`` (the CLI); both use the same library functions of
``mloop.ledger``.

Exit status: 0 verified, 1 not verified (the report names the first bad
seq of each broken chain), 2 the database, a key or a checkpoint could not be read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mloop.audit.live_verify import LedgerVerification, verify_ledger
from mloop.ledger.checkpoint import (
    CheckpointFormatError,
    SignedCheckpoint,
    read_checkpoint_dir,
    read_checkpoint_file,
    resolve_public_key,
)

__all__ = ["main", "verify"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mloop.audit.cli",
        description="Replay the audit ledger in Postgres against a pinned public key.",
    )
    parser.add_argument("--database-url", required=True, help="the Postgres database holding the ledger")
    parser.add_argument("--public-key", required=True, action="append",
                        help="pinned Ed25519 key: a file or a literal (PEM, base64 or C2SP vkey); repeatable")
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="a file of signed checkpoints kept outside the database; repeatable")
    parser.add_argument("--checkpoint-dir", action="append", default=[],
                        help="a folder of checkpoint files (as the service writes them); repeatable")
    parser.add_argument("--schema", default="audit", help="database schema of the ledger")
    parser.add_argument("--chain", help="only this chain")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


async def _verify_database(
    url: str, schema: str, keys: list[Ed25519PublicKey], outside: list[SignedCheckpoint], chain: str | None
) -> LedgerVerification:
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        return await verify_ledger(conn, keys, outside, chain=chain)
    finally:
        await conn.close()


def verify(argv: Sequence[str] | None = None) -> int:
    """Run the replay with ``argv``; return the exit status (0, 1 or 2)."""
    args = _parser().parse_args(argv)
    try:
        keys = [resolve_public_key(k) for k in args.public_key]
    except (CheckpointFormatError, OSError) as exc:
        print(f"cannot load public key: {exc}", file=sys.stderr)
        return 2
    try:
        outside = [cp for f in args.checkpoint for cp in read_checkpoint_file(f)]
        for directory in args.checkpoint_dir:
            outside += read_checkpoint_dir(directory)
    except (CheckpointFormatError, OSError, UnicodeDecodeError) as exc:
        print(f"cannot load checkpoints: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_verify_database(args.database_url, args.schema, keys, outside, args.chain))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"cannot read the ledger: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0 if report.ok else 1


def main() -> None:
    raise SystemExit(verify(sys.argv[1:]))


if __name__ == "__main__":  # pragma: no cover
    main()
