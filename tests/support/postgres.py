"""A throw-away PostgreSQL server for tests, and fresh databases and schemas in it.

`postgres_server` (session scope) uses KURASTORE_TEST_POSTGRES_DSN when set (an
existing server the tests may create databases in); otherwise it starts a private
cluster with scripts/postgres.sh in a temporary directory on a free port, and
destroys it at the end of the session. `fresh_database` makes an empty database;
`fresh_schema` an empty schema and a DSN whose search_path points at it, which is
how each metadata test gets an empty store in a few milliseconds.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "postgres.sh"
ENV_DSN = "KURASTORE_TEST_POSTGRES_DSN"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(dsn: str, database: str, **query: str) -> str:
    """`dsn` pointing at another database, with extra query parameters."""
    parts = urlsplit(dsn)
    extra = "&".join(f"{k}={v}" for k, v in query.items())
    q = "&".join(x for x in (parts.query, extra) if x)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, q, parts.fragment))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The DSN of a PostgreSQL server's maintenance database ("postgres")."""
    given = os.environ.get(ENV_DSN)
    if given:
        yield given
        return
    workdir = tempfile.mkdtemp(prefix="kurastore-pgtest-")
    os.chmod(workdir, 0o755)  # the postgres OS user owns the cluster directory below
    env = dict(os.environ, KURASTORE_PGTEST_DIR=f"{workdir}/pg",
               KURASTORE_PGTEST_PORT=str(free_port()))
    out = subprocess.run([str(SCRIPT), "start", "--fast"], env=env, check=True,
                         capture_output=True, text=True, timeout=120)
    try:
        yield out.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(SCRIPT), "destroy"], env=env, check=False, timeout=120)
        subprocess.run(["rm", "-rf", workdir], check=False)


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_database(server_dsn: str) -> AsyncIterator[str]:
    name = f"kt_{uuid.uuid4().hex[:16]}"
    await _admin(server_dsn, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_dsn, name)
    finally:
        await _admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def fresh_schema(database_dsn: str) -> AsyncIterator[str]:
    name = f"s_{uuid.uuid4().hex[:16]}"
    await _admin(database_dsn, f'CREATE SCHEMA "{name}"')
    try:
        yield with_database(database_dsn, urlsplit(database_dsn).path.lstrip("/"),
                            search_path=name)
    finally:
        await _admin(database_dsn, f'DROP SCHEMA "{name}" CASCADE')


def make_database(server_dsn: str) -> tuple[str, str]:
    """(database dsn, name) of a new empty database, made synchronously."""
    name = f"kt_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin(server_dsn, f'CREATE DATABASE "{name}"'))
    return with_database(server_dsn, name), name


def drop_database(server_dsn: str, name: str) -> None:
    asyncio.run(_admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
