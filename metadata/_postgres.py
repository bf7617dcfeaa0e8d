"""Connections, transactions and errors of the PostgreSQL backend.

Driver: asyncpg. It is native asyncio (no thread pool between the event loop and
the socket), speaks PostgreSQL's binary protocol, prepares and caches every
statement per connection on its own, and is the fastest Python driver for
PostgreSQL; a pool of its connections (_postgres_pool.py) serves one gateway.

Rules:
- `Database.run(fn, *args)` runs fn(conn, *args) in one transaction on a pooled
  connection: it happens entirely or not at all. Isolation is READ COMMITTED;
  per-key operations serialize on the key's advisory transaction lock (see
  _postgres_schema.py), which is what makes conditional writes linearizable
  across gateways.
- A caller that is cancelled does not withdraw its operation: the transaction runs
  to COMMIT or ROLLBACK in its own task, as with the SQLite backend, so a gateway
  never leaves an acknowledged-or-not question in the database's hands mid-statement.
- Errors: the server's own domain errors (SQLSTATE KSxxx raised by ks_commit) become
  the store's errors; a lost or refused connection, a server shutting down or out of
  resources become MetadataUnavailable (the gateway answers 503 and the client
  retries); a serialization failure or deadlock is retried here a few times, since
  a rolled-back transaction changed nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from kurastore.metadata._postgres_pool import Pool
from kurastore.metadata._postgres_schema import migrate
from kurastore.metadata.errors import (
    BucketNotFound,
    EpochRetired,
    MetadataError,
    MetadataUnavailable,
    PreconditionFailed,
    UploadNotFound,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRIES = 5
CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 60.0

_DOMAIN = {
    "KSB01": BucketNotFound, "KSP01": PreconditionFailed, "KSU01": UploadNotFound,
    "KSE01": EpochRetired,
}
# SQLSTATE classes meaning "the database is not there right now": connection
# exceptions, insufficient resources, operator intervention (shutdown), system errors.
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
_RETRY_STATES = ("40001", "40P01")


def public_error(exc: BaseException) -> BaseException:
    """The store's error for a driver or network error; domain errors pass unchanged."""
    if isinstance(exc, MetadataError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        domain = _DOMAIN.get(state)
        if domain is not None:
            return domain(getattr(exc, "message", str(exc)))
        if state[:2] in _UNAVAILABLE_CLASSES:
            return MetadataUnavailable(f"metadata database unavailable ({state}): {exc}")
        return MetadataError(f"metadata database error ({state}): {exc}")
    if isinstance(exc, OSError | asyncpg.InterfaceError | TimeoutError):
        return MetadataUnavailable(f"metadata database unreachable: {exc!r}")
    return exc


class Database:
    """A pool of asyncpg connections and the transaction runner."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._closed = False
        self._running: set[asyncio.Task[Any]] = set()

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 2, max_size: int = 16) -> Database:
        """Connects, migrates the schema (once, under the advisory lock), opens the pool."""
        try:
            conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:
            raise public_error(exc) from exc
        try:
            await migrate(conn)
        except Exception as exc:
            raise public_error(exc) from exc
        finally:
            await conn.close()
        pool = Pool(dsn, min_size=min_size, max_size=max_size,
                    connect_timeout_s=CONNECT_TIMEOUT_S, command_timeout_s=COMMAND_TIMEOUT_S)
        try:
            await pool.start()
        except Exception as exc:
            await pool.close()
            raise public_error(exc) from exc
        return cls(pool)

    async def run(
        self, fn: Callable[..., Awaitable[T]], *args: Any, transaction: bool = True
    ) -> T:
        """fn(conn, *args) in one transaction (or, with transaction=False, as the single
        statement it is), shielded from the caller's cancellation."""
        if self._closed:
            raise MetadataUnavailable("the metadata store is closed")
        task = asyncio.ensure_future(self._attempts(fn, args, transaction))
        self._running.add(task)
        task.add_done_callback(_forget(self._running))
        return await asyncio.shield(task)

    async def _attempts(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], transaction: bool
    ) -> T:
        for attempt in range(RETRIES):
            try:
                conn = await self._pool.acquire()
                try:
                    if not transaction:
                        return await fn(conn, *args)
                    async with conn.transaction():
                        return await fn(conn, *args)
                finally:
                    self._pool.release(conn)
            except asyncpg.PostgresError as exc:
                if exc.sqlstate in _RETRY_STATES and attempt < RETRIES - 1:
                    await asyncio.sleep(0.005 * (attempt + 1))
                    continue
                raise public_error(exc) from exc
            except (OSError, asyncpg.InterfaceError, TimeoutError) as exc:
                raise public_error(exc) from exc
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        await self._pool.close()


def _forget(running: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        running.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a cancelled caller's error is not "never retrieved"

    return done
