"""Change notices between gateways sharing one PostgreSQL: LISTEN/NOTIFY.

A gateway that commits a change other gateways cache (a placement map saved or an
epoch retired, the pod registry, a bucket's record) sends NOTIFY on CHANNEL inside
the same transaction, so the notice goes out exactly when the change commits
(PostgreSQL delivers notifications at commit, never for a rolled-back change). Every
store keeps one connection LISTENing and calls its callbacks with the topic.

Rules:
- Payloads are topics: "placement", "pods", "bucket:<name>". Callbacks get them
  as they arrive, on the event loop; they must be quick (mark a cache stale,
  schedule a refresh) and never raise.
- Notices are best effort: none are queued while the listening connection is
  down. So after every (re)connection, once LISTEN is active, callbacks get "*":
  anything may have changed. A cache therefore misses at most the changes made
  while its gateway was not listening, and drops them all when it listens again.
- A dead connection is noticed by the server closing it, or by a ping every
  PING_INTERVAL_S (a silent network partition); then it reconnects with backoff
  up to MAX_BACKOFF_S. `connected` says whether notices are flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "kurastore_changes"
PING_INTERVAL_S = 5.0
MAX_BACKOFF_S = 1.0
CONNECT_TIMEOUT_S = 5.0

Callback = Callable[[str], None]


async def notify(conn: asyncpg.Connection, topic: str) -> None:
    """Queue the notice `topic`; sent when the caller's transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, topic)


class ChangeListener:
    """One LISTENing connection per store, reconnecting by itself."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._callbacks: list[Callback] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.connected = False
        self._listening = asyncio.Event()

    def add(self, callback: Callback) -> None:
        self._callbacks.append(callback)

    def emit(self, topic: str) -> None:
        """Calls every callback with `topic` (also for this gateway's own changes)."""
        for callback in list(self._callbacks):
            try:
                callback(topic)
            except Exception:  # a broken cache must not stop the others
                log.exception("change callback failed for %r", topic)

    async def start(self, wait_s: float = CONNECT_TIMEOUT_S) -> None:
        """Starts listening; waits up to `wait_s` for the first LISTEN to be active, so
        that changes made after the store opened are not missed while all is well."""
        self._task = asyncio.create_task(self._run(), name="metadata-listener")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self._listening.wait()

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.emit(payload)

    async def _run(self) -> None:
        backoff = 0.05
        while not self._closed:
            try:
                await self._listen_once()
                backoff = 0.05
            except Exception as exc:  # whatever broke the connection: listen again
                log.info("metadata change listener: %r; reconnecting", exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
            self.connected = True
            self._listening.set()
            self.emit("*")
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PING_INTERVAL_S):
                        await lost.wait()
                if not lost.is_set():
                    await conn.execute("SELECT 1", timeout=PING_INTERVAL_S)
        finally:
            self.connected = False
            conn.terminate()
