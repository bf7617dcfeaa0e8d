"""A TCP forwarder a test controls, put between the gateway and a pod to cut the network
where network namespaces are not available.

Modes:
- "pass": bytes flow both ways;
- "blackhole": connections are still accepted, but nothing is forwarded or answered
  (what a dropped route looks like: the client waits until its own timeout);
- "reset": every connection is closed with a TCP reset, new ones as soon as accepted.
Going back to "pass" closes the connections that lived through a cut (their bytes are
lost, as a real partition would have broken them); new ones flow again.

The event loop runs in a daemon thread; every method is called from the test's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading

MODES = ("pass", "blackhole", "reset")


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = 0
        self.mode = "pass"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcpproxy",
                                        daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._cut: set[asyncio.StreamWriter] = set()  # client sides that saw a cut

    # --- control (test thread) -------------------------------------------------------------
    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self._call(self._switch(mode))

    def stop(self) -> None:
        self._call(self._close_all(close_server=True))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coro) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # --- the loop ---------------------------------------------------------------------------
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen_host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _switch(self, mode: str) -> None:
        self.mode = mode
        if mode == "reset":
            await self._close_all(close_server=False)
        elif mode == "blackhole":
            self._cut.update(client for client, _upstream in self._links)
        else:
            for client, upstream in list(self._links):
                if client in self._cut:
                    _reset(client)
                    if upstream is not None:
                        upstream.close()
            self._cut.clear()

    async def _close_all(self, close_server: bool) -> None:
        if close_server and self._server is not None:
            self._server.close()
        for client, upstream in list(self._links):
            _reset(client)
            if upstream is not None:
                upstream.close()
        self._links.clear()
        self._cut.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "reset":
            _reset(writer)
            return
        upstream: asyncio.StreamWriter | None = None
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (writer, None)
        self._links.add(link)
        try:
            if self.mode == "blackhole":
                self._cut.add(writer)
                await self._swallow(reader)
                return
            up_reader, upstream = await asyncio.open_connection(*self.target)
            self._links.discard(link)
            link = (writer, upstream)
            self._links.add(link)
            await asyncio.gather(self._pump(reader, upstream, writer),
                                 self._pump(up_reader, writer, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._links.discard(link)
            self._cut.discard(writer)
            writer.close()
            if upstream is not None:
                upstream.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    client: asyncio.StreamWriter) -> None:
        """Copies src to dst while passing; during a cut, reads and drops."""
        while True:
            data = await src.read(65536)
            if not data:
                with contextlib.suppress(OSError):
                    dst.write_eof()
                return
            if client in self._cut:
                continue  # blackholed: swallowed
            dst.write(data)
            await dst.drain()

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), not a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
