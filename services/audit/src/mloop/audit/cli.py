"""``mloop audit verify``: check an evidence bundle or the live ledger against a pinned public key.

Three sources, one verdict::

    mloop audit verify --bundle evidence.tar.gz --public-key audit.pub [--checkpoint-dir DIR]
    mloop audit verify --database-url postgresql://... --public-key audit.pub [--checkpoint-dir DIR]
    mloop audit verify --api http://127.0.0.1:8105 --token T --public-key audit.pub [--checkpoint-dir DIR]

``--database-url`` replays every chain straight from Postgres; ``--api``
downloads the full evidence bundle and verifies it here, trusting nothing
the service says. Either way, checkpoints are trusted only when the pinned
key signed them, and ``--checkpoint``/``--checkpoint-dir`` add the copies
kept outside the database: they are what exposes a ledger cut short.

Exit status: 0 verified, 1 not verified (the report names the first bad
seq of each broken chain), 2 a source, key or checkpoint could not be read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mloop.audit.checkpointing import read_checkpoint_dir
from mloop.audit.live_verify import LedgerVerification, verify_ledger
from mloop.ledger.checkpoint import CheckpointFormatError, SignedCheckpoint, load_public_key
from mloop.ledger.verify import BundleFormatError, BundleReport, verify_bundle

__all__ = ["main", "verify"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mloop audit verify",
        description="Verify an audit evidence bundle, or the live ledger, against a pinned public key.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", help="evidence bundle: a directory or a .tar.gz")
    source.add_argument("--database-url", help="verify the ledger in this Postgres database")
    source.add_argument("--api", metavar="URL", help="download the full bundle from this audit service")
    parser.add_argument("--public-key", required=True, action="append",
                        help="pinned Ed25519 key: a file or a literal (PEM, base64 or C2SP vkey); repeatable")
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="a file of signed checkpoints kept outside the database; repeatable")
    parser.add_argument("--checkpoint-dir", action="append", default=[],
                        help="a folder of checkpoint files (as the service writes them); repeatable")
    parser.add_argument("--schema", default="audit", help="database schema of the ledger (--database-url)")
    parser.add_argument("--chain", help="only this chain (--database-url)")
    parser.add_argument("--token", help="bearer token for --api")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _key(value: str) -> Ed25519PublicKey:
    path = Path(value)
    return load_public_key(path.read_bytes() if path.is_file() else value)


def _checkpoint_file(path: str) -> list[SignedCheckpoint]:
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        return [SignedCheckpoint.from_note(text)]
    return [SignedCheckpoint.from_dict(item) for item in (data if isinstance(data, list) else [data])]


async def _verify_database(
    url: str, schema: str, keys: list[Ed25519PublicKey], outside: list[SignedCheckpoint], chain: str | None
) -> LedgerVerification:
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        return await verify_ledger(conn, keys, outside, chain=chain)
    finally:
        await conn.close()


def _download_bundle(api: str, token: str | None, into: Path) -> Path:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    target = into / "evidence.tar.gz"
    with httpx.stream("GET", api.rstrip("/") + "/export", headers=headers, timeout=600) as resp:
        if resp.status_code != 200:
            raise OSError(f"GET /export answered {resp.status_code}: {resp.read()[:300]!r}")
        with target.open("wb") as fh:
            for chunk in resp.iter_bytes():
                fh.write(chunk)
    return target


def verify(argv: Sequence[str] | None = None) -> int:
    """Run ``mloop audit verify`` with ``argv``; return the exit status (0, 1 or 2)."""
    args = _parser().parse_args(argv)
    try:
        keys = [_key(k) for k in args.public_key]
    except (CheckpointFormatError, OSError) as exc:
        print(f"cannot load public key: {exc}", file=sys.stderr)
        return 2
    try:
        outside = [cp for f in args.checkpoint for cp in _checkpoint_file(f)]
        for directory in args.checkpoint_dir:
            outside += read_checkpoint_dir(Path(directory))
    except (CheckpointFormatError, OSError, UnicodeDecodeError) as exc:
        print(f"cannot load checkpoints: {exc}", file=sys.stderr)
        return 2

    report: BundleReport | LedgerVerification
    try:
        if args.database_url:
            report = asyncio.run(_verify_database(args.database_url, args.schema, keys, outside, args.chain))
        elif args.api:
            with tempfile.TemporaryDirectory(prefix="mloop-audit-verify-") as tmp:
                bundle = _download_bundle(args.api, args.token, Path(tmp))
                report = verify_bundle(bundle, keys, outside)
        else:
            report = verify_bundle(args.bundle, keys, outside)
    except BundleFormatError as exc:
        print(f"cannot read bundle: {exc}", file=sys.stderr)
        return 2
    except (OSError, httpx.HTTPError, asyncpg.PostgresError) as exc:
        print(f"cannot read the ledger: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0 if report.ok else 1


def main() -> None:
    raise SystemExit(verify(sys.argv[1:]))


if __name__ == "__main__":  # pragma: no cover
    main()
