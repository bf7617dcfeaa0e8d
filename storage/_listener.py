"""The pod's HTTP listener: one listening socket whose connections the event-loop lane
(_evlane.py) takes first, passing what it does not serve to the thread lane (_lane.py),
which passes what it does not serve to the aiohttp app (server.py)."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from kurastore.storage._evlane import EventLane
from kurastore.storage._lane import LaneServer

__all__ = ["PodListener"]


class PodListener:
    """The pod app on a listening socket, behind the lane: `start`, then `stop`."""

    def __init__(self, app: web.Application, host: str, port: int,
                 shutdown_timeout_s: float = 10.0) -> None:
        self.app, self.host, self.port = app, host, port
        self.shutdown_timeout_s = shutdown_timeout_s
        self._runner: web.AppRunner | None = None
        self._lane: LaneServer | None = None
        self._events: EventLane | None = None
        self._socket: socket.socket | None = None

    async def start(self) -> int:
        """Run the app's startup hooks (the store opens), then listen; return the port."""
        self._runner = web.AppRunner(self.app, access_log=None,
                                     shutdown_timeout=self.shutdown_timeout_s)
        await self._runner.setup()
        assert self._runner.server is not None
        self._socket = _listen(self.host, self.port)
        self.port = self._socket.getsockname()[1]
        self._lane = LaneServer(self.app, self._runner.server, asyncio.get_running_loop())
        self._events = EventLane(self._lane)
        self._events.listen(self._socket)
        return self.port

    async def stop(self) -> None:
        """Stop listening, let requests in flight finish, then run the cleanup hooks."""
        if self._lane is not None:
            self._lane.closing = True
        if self._events is not None:
            self._events.stop_accepting()
        if self._socket is not None:
            self._socket.close()
        busy = []
        if self._events is not None:
            busy.append(self._events.shutdown(self.shutdown_timeout_s))
        if self._lane is not None:
            busy.append(self._lane.shutdown(self.shutdown_timeout_s))
        await asyncio.gather(*busy)
        if self._runner is not None:
            await self._runner.cleanup()
        self._socket = self._events = self._lane = self._runner = None


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host` (a name or address; "" or "::" take every
    address family the host has) and `port` (0: any free one)."""
    if host in ("", "::") and socket.has_dualstack_ipv6():
        return socket.create_server(("::", port), family=socket.AF_INET6, backlog=1024,
                                    dualstack_ipv6=True)
    family, _, _, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    return socket.create_server(address[:2], family=family, backlog=1024)
