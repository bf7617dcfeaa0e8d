"""A throw-away PostgreSQL server for tests, and fresh databases and schemas in it.

`postgres_server` (session scope) uses KURASTORE_TEST_POSTGRES_DSN when set (an
existing server the tests may create databases in); otherwise it starts a private
cluster with scripts/postgres.sh in a temporary directory on a free port, and
destroys it at the end of the session. `fresh_database` makes an empty database;
`fresh_schema` an empty schema and a DSN whose search_path points at it, which is
how each metadata test gets an empty store in a few milliseconds.
`PostgresCluster` is a private server a test may stop and start again (the
restart tests); `GatewayProcess` runs `kurastore server --metadata DSN` or
`kurastore gateway` on it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from kurastore.operator.platforms.ports import free_port
from support.cluster import ServerProcess

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "postgres.sh"
ENV_DSN = "KURASTORE_TEST_POSTGRES_DSN"


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


class PostgresCluster:
    """A private throw-away server (scripts/postgres.sh) on a fixed port, so that it can
    be stopped and started again under the same DSN."""

    def __init__(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="kurastore-pgrestart-")
        os.chmod(self.workdir, 0o755)  # the postgres OS user owns the cluster below
        self._env = dict(os.environ, KURASTORE_PGTEST_DIR=f"{self.workdir}/pg",
                         KURASTORE_PGTEST_PORT=str(free_port()))
        self.dsn = ""

    def _script(self, *args: str) -> str:
        out = subprocess.run([str(SCRIPT), *args], env=self._env, check=True,
                             capture_output=True, text=True, timeout=120)
        return out.stdout.strip()

    def start(self) -> str:
        self.dsn = self._script("start", "--fast").splitlines()[-1]
        return self.dsn

    def stop(self) -> None:
        """A fast shutdown: sessions are told the server is going away, then closed."""
        self._script("stop")

    def destroy(self) -> None:
        subprocess.run([str(SCRIPT), "destroy"], env=self._env, check=False, timeout=120)
        subprocess.run(["rm", "-rf", self.workdir], check=False)


class GatewayProcess(ServerProcess):
    """`kurastore server --metadata DSN`, or with `gateway_args` a `kurastore gateway`."""

    def __init__(self, data_dir: Path, dsn: str, gateway_args: list[str] | None = None):
        super().__init__(data_dir)
        self.dsn = dsn
        self.gateway_args = gateway_args

    def start(self, timeout_s: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"process-{self.port}.log"
        if self.gateway_args is None:
            args = ["server", "--data", str(self.data_dir), "--pods", "6"]
        else:
            args = ["gateway", *self.gateway_args]
        env = self.env() | {"KURASTORE_METADATA_DSN": self.dsn}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-m", "kurastore", *args,
                 "--listen", f"127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        self.wait_ready(timeout_s)

    def gateway_args_for(self) -> list[str]:
        """The flags a `kurastore gateway` needs to join this server's cluster (the
        metadata key is written to a file next to the data directory)."""
        import json

        key_file = self.data_dir.parent / "metadata.key"
        key_file.write_text(
            json.loads((self.data_dir / "kurastore.json").read_text())["metadata_key"])
        key_file.chmod(0o600)
        return ["--cluster-secret-file", str(self.data_dir / "cluster.secret"),
                "--metadata-key-file", str(key_file)]
