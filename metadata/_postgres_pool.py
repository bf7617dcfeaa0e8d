"""The connection pool of the PostgreSQL backend: a small LIFO pool of asyncpg
connections.

Why not asyncpg.Pool: on this path (one short statement per request) its acquire
and release cost more client CPU than the statement itself (measured: 140-180 us
per acquire+release against ~60 us for the query, with two timers, a shielded
release task and a reset query per use), and the metadata commit path is bound by
the gateway's CPU. This pool is a list of idle connections and a queue of waiters.

Rules:
- At most max_size connections, opened on demand (min_size at open, which also
  proves the server reachable). Idle connections are reused newest first, so a
  quiet gateway keeps few warm ones and the others age out (idle_timeout_s).
- A connection that died (server restart, network) is dropped when it is seen:
  when taken from the idle list, or when it is given back closed or still inside
  a transaction (terminated, never reused in an unknown state). So after a
  database restart the pool heals by itself, one fresh connection per use.
- Session state is never left behind by this backend (no SET, no session-level
  advisory lock, no LISTEN on pooled connections), so no reset query is needed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import asyncpg


class Pool:
    def __init__(
        self, dsn: str, *, min_size: int, max_size: int, connect_timeout_s: float,
        command_timeout_s: float, idle_timeout_s: float = 60.0,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError("pool sizes must satisfy 0 <= min_size <= max_size, max_size >= 1")
        self._dsn = dsn
        self._min = min_size
        self._max = max_size
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = command_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._idle: deque[tuple[asyncpg.Connection, float]] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._open = 0  # connections in use, idle, or being opened
        self._closed = False

    async def start(self) -> None:
        conns = [await self.acquire() for _ in range(self._min)]
        for conn in conns:
            self.release(conn)

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self._dsn, timeout=self._connect_timeout_s, command_timeout=self._command_timeout_s,
            statement_cache_size=256,
        )

    async def acquire(self) -> asyncpg.Connection:
        while True:
            if self._closed:
                raise asyncpg.InterfaceError("the pool is closed")
            while self._idle:
                conn, _since = self._idle.pop()
                if not conn.is_closed():
                    return conn
                self._open -= 1
            if self._open < self._max:
                self._open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass the turn on
                raise

    def release(self, conn: asyncpg.Connection) -> None:
        if self._closed or conn.is_closed() or conn.is_in_transaction():
            conn.terminate()
            self._open -= 1
        else:
            now = time.monotonic()
            self._idle.append((conn, now))
            self._expire(now)
        self._wake()

    def _expire(self, now: float) -> None:
        """Closes the oldest idle connections past idle_timeout_s, keeping min_size."""
        while (self._idle and self._open > self._min
               and now - self._idle[0][1] > self._idle_timeout_s):
            conn, _since = self._idle.popleft()
            conn.terminate()
            self._open -= 1

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = list(self._idle), deque()
        self._open -= len(idle)
        await asyncio.gather(*(_close(conn) for conn, _ in idle))
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("the pool is closed"))


async def _close(conn: Any) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=5.0)
    except (TimeoutError, OSError, asyncpg.InterfaceError):
        conn.terminate()
