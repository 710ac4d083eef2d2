"""Postgres: the asyncpg pool and the SQL migrations runner.

Each service owns one schema. Migrations are plain SQL files named
``NNNN_description.sql`` in a package; they are applied in order, once, each
in its own transaction, under an advisory lock so concurrent instances do not
race. A file whose checksum changed after it was applied is refused.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.resources
import json
import logging
import re
import socket
from dataclasses import dataclass
from typing import Any

import asyncpg
import stamina

from mloop.runtime.errors import MigrationError

__all__ = [
    "CONNECTION_ERRORS",
    "Migration",
    "apply_migrations",
    "connect_pool",
    "is_connection_error",
    "load_migrations",
]

log = logging.getLogger(__name__)
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

#: Errors that mean "the database (or the network to it) is not there right now",
#: as opposed to "this statement is wrong". Work that fails with one of these is
#: retried; a request that fails with one gets a 503.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.CannotConnectNowError,  # starting up / shutting down
    asyncpg.AdminShutdownError,  # terminated by a fast shutdown
    asyncpg.CrashShutdownError,
    asyncpg.InterfaceError,  # e.g. "connection is closed"
    # "cannot switch to state N; another operation is in progress": the protocol lost
    # track after the server terminated the session; the statement did not run.
    asyncpg.InternalClientError,
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,  # connect or acquire timed out
    socket.gaierror,
)
_NETWORK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH",
                 "ENETUNREACH", "ENETDOWN", "EHOSTDOWN", "ENOTCONN", "EADDRNOTAVAIL")
    if hasattr(errno, name)
)


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` says the database could not be reached or dropped the connection.

    Also an ``OSError("Multiple exceptions: ...")`` when every address refused, or an
    ``OSError`` whose cause is one of these.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, CONNECTION_ERRORS):
            return True
        if isinstance(current, OSError) and (
            current.errno in _NETWORK_ERRNOS or str(current).startswith(("Multiple exceptions", "Connect call failed"))
        ):
            return True
        if not isinstance(current, OSError):
            return False
        current = current.__cause__ or current.__context__
    return False


@dataclass(frozen=True)
class Migration:
    namespace: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(package: str) -> list[Migration]:
    """The migrations in ``package`` (a folder of ``NNNN_name.sql`` files), in order."""
    found: list[Migration] = []
    root = importlib.resources.files(package)
    for entry in root.iterdir():
        m = _NAME.match(entry.name)
        if m is None:
            continue
        found.append(Migration(package, int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda x: x.version)
    versions = [x.version for x in found]
    if len(versions) != len(set(versions)):
        raise MigrationError(f"{package}: two migrations share a version number")
    return found


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )


async def connect_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    application_name: str = "mloop",
    wait_s: float = 30.0,
) -> asyncpg.Pool:
    """A pool whose connections use ``schema`` first on the search path.

    Waits up to ``wait_s`` for the database to accept connections, so a service
    started together with its database does not fail on the first try.
    """
    async for attempt in stamina.retry_context(
        on=_not_reachable_yet, attempts=None, timeout=wait_s, wait_initial=0.2, wait_max=2.0, wait_jitter=0.2
    ):
        with attempt:
            # Create the schema before the pool so search_path resolves.
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            except asyncpg.UniqueViolationError:  # concurrent CREATE SCHEMA
                pass
            finally:
                await conn.close()
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                server_settings={"search_path": f'"{schema}",public', "application_name": application_name},
            )
            assert pool is not None
            return pool
    raise AssertionError("unreachable: the retry context either returns or raises")


def _not_reachable_yet(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, asyncpg.CannotConnectNowError, asyncpg.PostgresConnectionError)):
        log.warning("database not reachable yet (%s); retrying", type(exc).__name__)
        return True
    return False


async def apply_migrations(pool: asyncpg.Pool, schema: str, migrations: list[Migration]) -> list[str]:
    """Apply what is new; return the names applied. Raises :class:`MigrationError`."""
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        lock_key = int.from_bytes(hashlib.sha256(f"migrations:{schema}".encode()).digest()[:8], "big", signed=True)
        await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
        try:
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations (
                    namespace text NOT NULL,
                    version integer NOT NULL,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (namespace, version))"""
            )
            rows = await conn.fetch(f'SELECT namespace, version, name, checksum FROM "{schema}".schema_migrations')
            done = {(r["namespace"], r["version"]): r for r in rows}
            for mig in migrations:
                prior = done.get((mig.namespace, mig.version))
                label = f"{mig.namespace}/{mig.version:04d}_{mig.name}"
                if prior is not None:
                    if prior["checksum"] != mig.checksum:
                        raise MigrationError(
                            f"migration {label} was changed after it was applied "
                            f"(checksum {prior['checksum'][:12]} in the database, "
                            f"{mig.checksum[:12]} now); add a new migration instead of editing it"
                        )
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(f'SET LOCAL search_path TO "{schema}", public')
                        await conn.execute(mig.sql)
                        await conn.execute(
                            f'INSERT INTO "{schema}".schema_migrations (namespace, version, name, checksum) '
                            "VALUES ($1, $2, $3, $4)",
                            mig.namespace,
                            mig.version,
                            mig.name,
                            mig.checksum,
                        )
                except asyncpg.PostgresError as exc:
                    raise MigrationError(f"migration {label} failed: {exc}") from exc
                applied_now.append(label)
                log.info("applied migration %s", label)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
    return applied_now


async def fetch_json(conn: asyncpg.Connection, query: str, *args: Any) -> list[dict[str, Any]]:
    """Rows as plain dicts."""
    return [dict(r) for r in await conn.fetch(query, *args)]
