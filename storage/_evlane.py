"""The pod's lane on its event loop: the small-shard PUTs and GETs (the shards of objects
up to a few MiB, which live in packs) served by the loop's one thread on non-blocking
sockets, every other request passed to the thread lane (_lane.py) on the same connection.

Why: with one thread per connection (_lane.py), every system call of a request releases
the GIL to the other busy lane threads and takes it back, and a PUT also waits for its
batch's fdatasync on a condition: about 14 context switches per shard PUT and 10 per GET
at 8 concurrent clients, the top of the pod's kernel profile on these VMs. Here a request
costs its own system calls and nothing else, and the PUT bodies completed in one loop turn
are written as one batch by the loop itself (one pwritev with RWF_DSYNC), then answered.
(Handing the batch to the pack's committer thread instead cost 4-5 more context switches
per batch, and about 0.7 ms more pod CPU per 1 MiB object, whose six shards are written by
six pods.) Measured against the thread lane, one pod, 256 KiB shards, 8 concurrent
requests from the gateway's wire client, three alternated runs: PUT 0.62-0.69 against
0.63-0.82 ms of pod CPU per shard and 3.4-4.2 against 13-15 context switches; GET
0.41-0.46 against 0.43-0.55 ms, 4-5 against 9-11 switches (the GETs read from the disk:
shards are written around the page cache).

What it serves: a PUT with a Content-Length of at most the pack size limit (the body is
received whole, then queued with PackStore.put_async), and a GET of a packed shard, with
or without one `bytes=` range (read on the loop: a packed shard is at most 1 MiB, and a
hop to a worker thread and back cost more than the read, measured 0.57-0.75 against
0.36-0.45 ms per shard). Anything else, including refusals (which may need a lingering
close) and shards kept as files, goes to a lane thread at the request boundary, with the
bytes already received; the thread may pass it on to aiohttp.

Rules:
- Auth and name checks come before a body byte is taken (a refused request is passed to
  the thread lane unread, which refuses it).
- A PUT is queued only once its whole body is here: a client that goes away (or stalls
  past the keep-alive time) before that leaves nothing on disk.
- One request at a time per connection: bytes that come while a request is being
  answered wait in `pending` (pipelined requests are answered in order), and the socket is
  left unread once they pass a head's size limit. Reading otherwise stays on, so a request
  costs no epoll_ctl calls (turning it off and on around each answer cost 6 a shard PUT,
  half of them failing with EEXIST inside libuv).
- The loop waits on the disk for a batch write (a few shards of at most 1 MiB, in one
  system call) and for a packed read (at most 1 MiB): the pod's other connections wait
  that long too, and their bodies received meanwhile join the next batch. Shard files,
  large reads and streams stay on lane threads.
- Idle connections, bodies that stall and answers the peer stops reading are cut after
  `keepalive_s`, checked every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time

from kurastore.storage import _lane
from kurastore.storage._buffers import receive_buffer
from kurastore.storage._disk import RangeRead
from kurastore.storage._pack import StagedShard
from kurastore.storage.api import ShardInfo
from kurastore.storage.errors import InvalidRange, PodError

__all__ = ["EventLane"]

log = logging.getLogger("kurastore.storage")

_SWEEP_S = 2.0  # how often connections are checked against the keep-alive time
_ACCEPTS_PER_WAKE = 64


class EventLane:
    """Accepts the pod's connections on the loop and serves what it can (see above)."""

    def __init__(self, lane: _lane.LaneServer) -> None:
        self.lane = lane
        self.loop = lane.loop
        self.scratch = bytearray(_lane.SCRATCH_BYTES)  # one loop thread: one buffer
        self.connections: set[_LoopConnection] = set()
        self._listening: socket.socket | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._emptied = asyncio.Event()  # set when the last connection leaves
        self._commit_due = False
        self.thread_id = threading.get_ident()  # the loop's

    def commit_soon(self) -> None:
        """Write the queued shards once this loop turn's ready callbacks have run, so every
        body that completed meanwhile shares the batch and its one durable write."""
        if not self._commit_due:
            self._commit_due = True
            self.loop.call_soon(self._commit)

    def _commit(self) -> None:
        self._commit_due = False
        self.lane.store.commit_packed()

    def forget(self, conn: _LoopConnection) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self._emptied.set()

    def listen(self, listening: socket.socket) -> None:
        listening.setblocking(False)
        self._listening = listening
        self.loop.add_reader(listening.fileno(), self._accept)
        self._sweeper = self.loop.call_later(_SWEEP_S, self._sweep)

    def stop_accepting(self) -> None:
        if self._listening is not None:
            self.loop.remove_reader(self._listening.fileno())
            self._listening = None

    def _accept(self) -> None:
        listening = self._listening
        for _ in range(_ACCEPTS_PER_WAKE):
            if listening is None:
                return
            try:
                sock, peer = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, say: pause, then try again
                log.warning("pod accept failed: %s", exc)
                self.loop.remove_reader(listening.fileno())
                self.loop.call_later(0.05, self._resume_accepting, listening)
                return
            if self.lane.closing:
                sock.close()
                continue
            conn = _LoopConnection(self, sock, peer[0] if isinstance(peer, tuple) else None)
            self.connections.add(conn)
            conn.start()

    def _resume_accepting(self, listening: socket.socket) -> None:
        if self._listening is listening:
            self.loop.add_reader(listening.fileno(), self._accept)

    def _sweep(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            conn.expire(now)
        self._sweeper = self.loop.call_later(_SWEEP_S, self._sweep)

    async def shutdown(self, timeout_s: float) -> None:
        """Stop accepting; close idle connections now, give busy ones `timeout_s`."""
        self.stop_accepting()
        for conn in list(self.connections):
            if not conn.busy:
                conn.close()
        if self.connections:
            self._emptied.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), timeout_s)
        for conn in list(self.connections):
            conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


class _LoopConnection:
    """One connection while the loop serves it."""

    def __init__(self, ev: EventLane, sock: socket.socket, remote: str | None) -> None:
        self.ev = ev
        self.sock = sock
        self.fd = sock.fileno()
        self.remote = remote
        self.pending = bytearray()  # received, not yet taken: a head, pipelined requests
        self.request: _lane.Request | None = None  # the one being served
        self.head = b""  # its head, should it be passed to the thread lane
        self.close_after = False
        self.body: memoryview | None = None  # a PUT body being received
        self.staged: StagedShard | None = None  # the record buffer `body` lies in, if any
        self.got = 0
        self.out: list[memoryview] = []  # the answer still to send
        self.lent: RangeRead | None = None  # what the answer's body is lent from
        self.status = 0
        self.bytes_out = 0
        self.last_s = time.monotonic()
        self.reading = self.writing = self.closed = False

    @property
    def busy(self) -> bool:
        return self.request is not None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._read_on()

    def _read_on(self) -> None:
        if not self.reading:
            self.ev.loop.add_reader(self.fd, self._readable)
            self.reading = True

    def _read_off(self) -> None:
        if self.reading:
            self.ev.loop.remove_reader(self.fd)
            self.reading = False

    def _detach(self) -> None:
        self._read_off()
        if self.writing:
            self.ev.loop.remove_writer(self.fd)
            self.writing = False
        self.ev.forget(self)

    def close(self) -> None:
        """Close now; a request in progress is counted as cut off."""
        if self.closed:
            return
        self.closed = True
        self._detach()
        if self.staged is not None:  # a body cut off: its buffer goes back to the pool
            self.body, staged, self.staged = None, self.staged, None
            staged.release()
        if self.request is not None:
            self._done(499)
        self.sock.close()

    def expire(self, now: float) -> None:
        if now - self.last_s < self.ev.lane.keepalive_s:
            return
        if self.request is None or self.body is not None or self.out:
            self.close()  # idle, a body that stalled, or an answer nobody reads

    def _to_thread(self, with_head: bool) -> None:
        """Pass the connection to a lane thread, with what it sent that is not taken yet."""
        pending = (self.head + b"\r\n\r\n" if with_head else b"") + bytes(self.pending)
        self._detach()
        self.request = None
        self.sock.setblocking(True)
        self.ev.lane.adopt(self.sock, self.remote, pending)

    # -- requests ----------------------------------------------------------------------------
    def _readable(self) -> None:
        try:
            if self.body is not None:
                n = self.sock.recv_into(self.body[self.got:])
            else:
                n = self.sock.recv_into(self.ev.scratch)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if n == 0:
            if self.request is None or self.body is not None:
                self.close()
            else:  # the peer is done sending: it still gets the answer it waits for
                self.close_after = True
                self._read_off()
            return
        self.last_s = time.monotonic()
        if self.body is not None:
            self.got += n
            if self.got == len(self.body):
                self._body_received()
            return
        self.pending += memoryview(self.ev.scratch)[:n]
        if self.request is None:
            self._next()
        elif len(self.pending) > _lane.MAX_HEAD_BYTES:
            self._read_off()  # pipelined ahead of its answers: wait until they are read

    def _next(self) -> None:
        """Serve the requests whose heads are here, in order, until one must wait."""
        lane = self.ev.lane
        while self.request is None and not self.closed:
            end = self.pending.find(b"\r\n\r\n")
            if end < 0:
                if len(self.pending) > _lane.MAX_HEAD_BYTES:
                    self._to_thread(with_head=False)  # it answers 431
                else:
                    self._read_on()
                return
            if lane.closing:
                self.close()
                return
            self.head = bytes(self.pending[:end])
            request = _lane.parse_head(self.head)
            lane_op = None if request is None else _lane.lane_of(request, lane.config)
            if request is None or lane_op is None:
                self._detach()
                lane.hand_off(self.sock, bytes(self.pending))
                return
            del self.pending[: end + 4]
            if _lane.refusal(request, lane.config) is not None or not self._fits(request,
                                                                                 lane_op):
                self._to_thread(with_head=True)
                return
            self.request = request
            self.close_after = request.headers.get("connection", "").lower() == "close"
            if lane_op == "PUT":
                self._start_put(request)
            else:
                self._get(request)

    def _fits(self, request: _lane.Request, lane_op: str) -> bool:
        store = self.ev.lane.store
        assert request.shard is not None
        if lane_op == "PUT":
            length = int(request.headers["content-length"])
            return 0 < store.pack_max_shard and length <= min(
                store.pack_max_shard, self.ev.lane.config.write_batch_bytes)
        return store.packs.place(request.partition, request.shard.name) is not None

    def _start_put(self, request: _lane.Request) -> None:
        length = int(request.headers["content-length"])
        assert request.shard is not None
        # Received straight into the record the pack will write: no copy after.
        self.staged = self.ev.lane.store.stage_packed(request.shard, length)
        body = (self.staged.payload if self.staged is not None
                else memoryview(receive_buffer(length)))  # filled before it is used
        got = min(length, len(self.pending))
        body[:got] = self.pending[:got]
        del self.pending[:got]
        self.body, self.got = body, got
        if got == length:
            self._body_received()
        else:
            self._read_on()

    def _body_received(self) -> None:
        body, request = self.body, self.request
        assert body is not None and request is not None and request.shard is not None
        staged, self.body, self.staged = self.staged, None, None
        request.bytes_in = len(body)
        try:
            self.ev.lane.store.write_packed_async(
                request.partition, request.shard, body if staged is None else staged,
                self._stored_on_any_thread)
            self.ev.commit_soon()
        except PodError as exc:
            self._answer_error(exc)
        except Exception:
            log.exception("internal error on %s %s", request.method, request.target)
            self._answer_internal_error()

    def _stored_on_any_thread(self, info: ShardInfo | None, error: BaseException | None) -> None:
        """From the thread that wrote the batch (mostly the loop's own): back to the loop."""
        if threading.get_ident() == self.ev.thread_id:
            self._stored(info, error)
            return
        try:
            self.ev.loop.call_soon_threadsafe(self._stored, info, error)
        except RuntimeError:  # the loop is closed: the pod is stopping
            pass

    def _stored(self, info: ShardInfo | None, error: BaseException | None) -> None:
        if self.closed:
            return
        if info is not None:
            answer = {"partition": info.partition, "name": info.shard.name,
                      "size": info.size, "mtime": info.mtime}
            self._send(201, json.dumps(answer).encode(), _lane.JSON_TYPE)
        elif isinstance(error, PodError):
            self._answer_error(error)
        else:
            request = self.request
            assert request is not None
            log.error("internal error on %s %s", request.method, request.target,
                      exc_info=error)
            self._answer_internal_error()

    def _get(self, request: _lane.Request) -> None:
        assert request.shard is not None
        lane = self.ev.lane
        try:
            start, stop = _lane.range_of(request.headers.get("range"))
            found = lane.store.read_range(request.partition, request.shard, start, stop,
                                          lane.inline_read_bytes, lend=True)
        except PodError as exc:
            self._answer_error(exc)
            return
        except Exception:
            log.exception("internal error on %s %s", request.method, request.target)
            self._answer_internal_error()
            return
        ranged = start is not None
        if found.start >= found.stop and (ranged or found.size):
            found.release()
            self._answer_error(InvalidRange(
                f"range not satisfiable for a {found.size}-byte shard"))
            return
        if found.data is None:  # the pack went away, a large file has it: the thread's
            found.release()
            self._to_thread(with_head=True)
            return
        extra = (f"Content-Range: bytes {found.start}-{found.stop - 1}/{found.size}\r\n"
                 if ranged else "")
        self._send(206 if ranged else 200, found.data, _lane.OCTETS_TYPE, extra, lent=found)

    # -- answers -----------------------------------------------------------------------------
    def _answer_error(self, exc: PodError) -> None:
        status, name = _lane.status_and_name(exc)
        self._send(status, _lane.error_body(name, str(exc)), _lane.JSON_TYPE)

    def _answer_internal_error(self) -> None:
        self.close_after = True
        self._send(500, _lane.error_body("InternalError", "internal error"), _lane.JSON_TYPE)

    def _send(self, status: int, body: bytes | bytearray | memoryview, content_type: str,
              extra: str = "", *, lent: RangeRead | None = None) -> None:
        head = _lane.answer_head(status, content_type, len(body), extra, self.close_after)
        self.out = [memoryview(head)]
        if len(body):
            self.out.append(memoryview(body).cast("B"))
        self.lent, self.status, self.bytes_out = lent, status, len(body)
        self._flush()

    def _flush(self) -> None:
        while self.out:
            try:
                sent = self.sock.sendmsg(self.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close()
                return
            self.last_s = time.monotonic()
            while sent and self.out:
                first = self.out[0]
                if sent >= len(first):
                    sent -= len(first)
                    self.out.pop(0)
                else:
                    self.out[0] = first[sent:]
                    sent = 0
        if self.out:
            if not self.writing:
                self.ev.loop.add_writer(self.fd, self._flush)
                self.writing = True
            return
        if self.writing:
            self.ev.loop.remove_writer(self.fd)
            self.writing = False
        self._done(self.status)
        if self.close_after or self.ev.lane.closing:
            self.close()
        else:
            self._next()

    def _done(self, status: int) -> None:
        """The request is answered (or cut off): count it, free what it held."""
        request, self.request = self.request, None
        self.out = []
        if self.lent is not None:
            self.lent.release()
            self.lent = None
        if request is not None:
            _lane.observe(self.ev.lane, request, status, self.bytes_out if status < 499 else 0,
                          self.remote)
        self.bytes_out = 0
