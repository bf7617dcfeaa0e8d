"""Connections, transactions and errors of the PostgreSQL backend.

Driver: asyncpg. It is native asyncio (no thread pool between the event loop and
the socket), speaks PostgreSQL's binary protocol, prepares and caches every
statement per connection on its own, and is the fastest Python driver for
PostgreSQL; a pool of its connections serves one gateway process.

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

from kurastore.metadata._postgres_schema import migrate
from kurastore.metadata.errors import (
    BucketNotFound,
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

_DOMAIN = {"KSB01": BucketNotFound, "KSP01": PreconditionFailed, "KSU01": UploadNotFound}
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

    def __init__(self, pool: asyncpg.Pool) -> None:
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
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
                # Idle connections are recycled, so a pool outlives a database restart.
                max_inactive_connection_lifetime=60.0,
            )
        except Exception as exc:
            raise public_error(exc) from exc
        return cls(pool)

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

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
                async with self._pool.acquire() as conn:
                    if not transaction:
                        return await fn(conn, *args)
                    async with conn.transaction():
                        return await fn(conn, *args)
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
        try:
            await asyncio.wait_for(self._pool.close(), timeout=10.0)
        except (TimeoutError, OSError, asyncpg.InterfaceError):
            self._pool.terminate()


def _forget(running: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        running.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a cancelled caller's error is not "never retrieved"

    return done
