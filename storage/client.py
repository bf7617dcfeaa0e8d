"""PodClient: the one way gateways and workers talk to storage pods.

Rules:
- One pooled keep-alive aiohttp session per client, created on first use inside the loop.
- Every request is signed (`auth.sign_request`) over the exact target it sends.
- Timeouts are bounded everywhere, so a pod that hangs (SIGSTOP, black-holed) yields
  PodUnavailable, never a hang: `sock_connect` for connecting, `sock_read` for every wait on
  the pod's answer; a shard PUT (sent by the lean client of _wire.py, not aiohttp) fails
  when the pod accepts no bytes, or does not answer, for `request_timeout_s`; a burst of
  shard PUTs (put_shards, _burst.py) by the deadlines its caller gives.
- Idempotent calls (GET, HEAD, DELETE, list, verify, usage) are retried `retries` times with
  short backoff, on PodUnavailable only; a stream resumes from the byte where it broke off.
  A PUT is never retried: its body is a stream and the caller picks another pod.
- Statuses become storage errors in one table (`_ERROR_OF`); no aiohttp type escapes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import aiohttp

from kurastore.storage._burst import BurstPool, BurstRequest, BurstStalled, Outcome
from kurastore.storage._wire import BodyLengthError, WireError, WirePool, WireResponse
from kurastore.storage.api import (
    AUTH_HEADER,
    MTIME_HEADER,
    PodUsage,
    ShardId,
    ShardInfo,
    ShardPieces,
    ShardPut,
    VerifyResult,
    object_path,
    partition_path,
    shard_path,
    validate_partition,
    validate_shard_tag,
    verify_path,
)
from kurastore.storage.auth import sign_request
from kurastore.storage.errors import (
    InsufficientStorage,
    InvalidRange,
    InvalidShardName,
    PodAuthError,
    PodError,
    PodTimedOut,
    PodUnavailable,
    ShardExists,
    ShardNotFound,
    ShardTooLarge,
)

__all__ = ["PodClient"]

T = TypeVar("T")
Body = bytes | bytearray | memoryview | AsyncIterable[bytes | memoryview]

_ERROR_OF: dict[int, type[PodError]] = {
    401: PodAuthError,
    403: PodAuthError,
    404: ShardNotFound,
    409: ShardExists,
    413: ShardTooLarge,
    416: InvalidRange,
    507: InsufficientStorage,
}
_STREAM_CHUNK = 1 << 20
_BACKOFF_S = 0.05
_ERROR_BODY_LIMIT = 4096
_NO_LIMIT = 1 << 62


class PodClient:
    """Async client for the pod API; share one per process (it pools connections)."""

    def __init__(
        self,
        secret: bytes,
        *,
        connect_timeout_s: float = 2.0,
        request_timeout_s: float = 30.0,
        limit_per_host: int = 64,
        retries: int = 2,
        burst_threads: int = 32,
    ) -> None:
        if not secret:
            raise ValueError("the cluster secret must not be empty")
        self._secret = secret
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        self._limit_per_host = limit_per_host
        self._retries = max(0, retries)
        self._session: aiohttp.ClientSession | None = None
        self._wire: WirePool | None = None
        self._burst_threads = burst_threads
        self._burst: tuple[BurstPool, ThreadPoolExecutor] | None = None

    def __repr__(self) -> str:
        return f"PodClient(request_timeout_s={self._request_timeout_s}, retries={self._retries})"

    async def __aenter__(self) -> PodClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close pooled connections; the client may not be used afterwards."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._wire is not None:
            self._wire.close()
            self._wire = None
        if self._burst is not None:
            pool, threads = self._burst
            self._burst = None
            threads.shutdown(wait=False, cancel_futures=True)
            pool.close()

    def _get_wire(self) -> WirePool:
        if self._wire is None:
            self._wire = WirePool(connect_timeout_s=self._connect_timeout_s,
                                  stall_s=self._request_timeout_s)
        return self._wire

    def _get_burst(self) -> tuple[BurstPool, ThreadPoolExecutor]:
        if self._burst is None:
            self._burst = (
                BurstPool(connect_timeout_s=self._connect_timeout_s),
                ThreadPoolExecutor(self._burst_threads, thread_name_prefix="kura-burst"),
            )
        return self._burst

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=self._limit_per_host, keepalive_timeout=15.0
            )
            timeout = aiohttp.ClientTimeout(
                total=None,
                sock_connect=self._connect_timeout_s,
                sock_read=self._request_timeout_s,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                auto_decompress=False,
                read_bufsize=1 << 20,
                headers={"Accept-Encoding": "identity"},
            )
        return self._session

    # -- the request core ------------------------------------------------------------------

    async def _once(
        self,
        method: str,
        url: str,
        target: str,
        read: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        headers: dict[str, str] | None = None,
        data: Any = None,
    ) -> T:
        base = url.rstrip("/")
        sent = {AUTH_HEADER: sign_request(self._secret, method, target)}
        if headers:
            sent.update(headers)
        try:
            async with self._get_session().request(
                method, base + target, headers=sent, data=data, allow_redirects=False
            ) as resp:
                if resp.status >= 400:
                    await _raise_for(resp, base)
                return await read(resp)
        except PodError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            raise PodUnavailable(f"{method} {target}: {exc!r}", base) from exc

    async def _idempotent(
        self,
        method: str,
        url: str,
        target: str,
        read: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        headers: dict[str, str] | None = None,
    ) -> T:
        for attempt in range(self._retries + 1):
            try:
                return await self._once(method, url, target, read, headers)
            except PodUnavailable:
                if attempt >= self._retries:
                    raise
                await _backoff(attempt)
        raise AssertionError("unreachable")

    # -- shards ----------------------------------------------------------------------------

    async def put_shard(
        self,
        url: str,
        partition: int,
        shard: ShardId,
        body: Body,
        length: int | None = None,
    ) -> ShardInfo:
        """Store a new shard; durable and visible on the pod when this returns.

        `body` is bytes-like (sent with Content-Length) or an async iterable (streamed,
        chunked unless `length` is given, then exactly `length` bytes must come). Raises
        ShardExists, InsufficientStorage, PodUnavailable, ...; never retried. Sent with the
        lean client of _wire.py: this call runs k+m times per object written.
        """
        target = shard_path(partition, shard)
        base = url.rstrip("/")
        headers = {
            AUTH_HEADER: sign_request(self._secret, "PUT", target),
            "Content-Type": "application/octet-stream",
        }
        if length is None and isinstance(body, bytes | bytearray | memoryview):
            length = memoryview(body).nbytes
        host, port = _address(base)
        try:
            resp = await self._get_wire().request("PUT", host, port, target, headers, body, length)
        except BodyLengthError as exc:
            raise ValueError(str(exc)) from None
        except TimeoutError as exc:
            raise PodUnavailable(
                f"PUT {target}: no progress for {self._request_timeout_s} s", base
            ) from exc
        except (OSError, WireError) as exc:
            raise PodUnavailable(f"PUT {target}: {exc!r}", base) from exc
        return _stored(resp, partition, shard, target, base)

    async def put_shards(
        self,
        puts: Sequence[ShardPut],
        *,
        timeout_s: float,
        grace_s: Callable[[float], float],
        prepare: Callable[[], Sequence[ShardPieces]] | None = None,
    ) -> list[ShardInfo | PodError]:
        """Store several new shards at once, from one worker thread (_burst.py): per put,
        in order, its ShardInfo or the PodError it failed with; one pod's failure never
        raises. Deadlines: every answer within `timeout_s`; once one shard is stored
        (after t seconds), the others get `grace_s(t)` more, at most their `patience_s`;
        past its deadline a put fails with PodTimedOut. Never retried.

        With `prepare`, the shards' bytes are what it returns (one entry per put, in
        order; the puts' own `pieces` are not used), and it runs on the same worker thread
        right before the sends, always (even when no put has a pod to go to): the
        caller's hashing and encoding then cost no thread hop of their own. What it
        raises, put_shards raises, having sent nothing.

        For the k+m shards of a small object, where the asyncio client's per-request
        cost would exceed the object's MD5 (see _burst.py for the figures)."""
        sent: list[tuple[int, str, int, str, str]] = []  # position, host, port, target, auth
        results: list[ShardInfo | PodError] = [
            PodUnavailable("pod has no URL") for _put in puts
        ]
        for position, put in enumerate(puts):
            if put.url is None:
                continue
            target = shard_path(put.partition, put.shard)
            try:
                host, port = _address(put.url.rstrip("/"))
            except PodError as exc:
                results[position] = exc
                continue
            sent.append((position, host, port, target,
                         sign_request(self._secret, "PUT", target)))
        if not sent and prepare is None:
            return results
        pool, threads = self._get_burst()

        def exchange() -> list[Outcome]:
            pieces = prepare() if prepare is not None else [put.pieces for put in puts]
            requests = []
            for position, host, port, target, auth in sent:
                body = pieces[position]
                length = sum(memoryview(piece).nbytes for piece in body)
                head = (
                    f"PUT {target} HTTP/1.1\r\nHost: {host}:{port}\r\n{AUTH_HEADER}: {auth}\r\n"
                    f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
                )
                requests.append(BurstRequest(host, port, head.encode("latin-1"), body,
                                             patience_s=puts[position].patience_s))
            return pool.exchange(requests, timeout_s=timeout_s, grace_s=grace_s) \
                if requests else []

        outcomes = await asyncio.get_running_loop().run_in_executor(threads, exchange)
        for (position, _host, _port, target, _auth), outcome in zip(sent, outcomes,
                                                                     strict=True):
            results[position] = _put_outcome(outcome, puts[position], target)
        return results

    async def read_shard(
        self,
        url: str,
        partition: int,
        shard: ShardId,
        offset: int = 0,
        length: int | None = None,
    ) -> bytes | bytearray:
        """Read `length` bytes (to the end when None) from `offset`.

        Exactly `length` bytes or InvalidRange (the shard is shorter than asked).
        """
        _check_range(offset, length)
        if length == 0:
            info = await self.head_shard(url, partition, shard)
            if offset > info.size:
                raise InvalidRange(f"offset {offset} beyond size {info.size}", url)
            return b""

        target = shard_path(partition, shard)
        base = url.rstrip("/")
        host, port = _address(base)
        headers = {"Accept-Encoding": "identity", **_range_header(offset, length)}
        # Room for an error answer too, however short the range.
        limit = max(length, 64 << 10) if length is not None else _NO_LIMIT
        for attempt in range(self._retries + 1):
            headers[AUTH_HEADER] = sign_request(self._secret, "GET", target)
            try:
                resp = await self._get_wire().request(
                    "GET", host, port, target, headers, max_body=limit
                )
                if resp.status >= 400:
                    message = resp.body[:_ERROR_BODY_LIMIT].decode("utf-8", "replace")
                    raise _error_for(resp.status, f"GET {target}: {resp.status} {message}",
                                     message, base)
            except (OSError, TimeoutError, WireError, PodUnavailable) as exc:
                if attempt >= self._retries:
                    if isinstance(exc, PodUnavailable):
                        raise
                    raise PodUnavailable(f"GET {target}: {exc!r}", base) from exc
                await _backoff(attempt)
                continue
            if length is not None and len(resp.body) != length:
                raise InvalidRange(
                    f"asked {length} bytes at {offset}, shard has {len(resp.body)}", url
                )
            return resp.body
        raise AssertionError("unreachable")

    async def stream_shard(
        self,
        url: str,
        partition: int,
        shard: ShardId,
        offset: int = 0,
        length: int | None = None,
    ) -> AsyncIterator[bytes]:
        """Yield the bytes of `length` (or all) from `offset`, resuming after a broken stream."""
        _check_range(offset, length)
        target = shard_path(partition, shard)
        pos, end = offset, (None if length is None else offset + length)
        failures = 0
        while end is None or pos < end:
            headers = _range_header(pos, None if end is None else end - pos)
            headers[AUTH_HEADER] = sign_request(self._secret, "GET", target)
            try:
                async with self._get_session().get(
                    url.rstrip("/") + target, headers=headers, allow_redirects=False
                ) as resp:
                    if resp.status >= 400:
                        await _raise_for(resp, url.rstrip("/"))
                    if end is None and resp.content_length is not None:
                        end = pos + resp.content_length
                    async for chunk in resp.content.iter_chunked(_STREAM_CHUNK):
                        pos += len(chunk)
                        failures = 0
                        yield chunk
                    if end is None:
                        return
                    if pos < end and resp.content_length is not None:
                        raise InvalidRange(f"shard ended at {pos}, asked up to {end}", url)
            except PodError:
                raise
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                failures += 1
                if failures > self._retries:
                    raise PodUnavailable(f"GET {target} at byte {pos}: {exc!r}", url) from exc
                await _backoff(failures - 1)

    async def head_shard(self, url: str, partition: int, shard: ShardId) -> ShardInfo:
        """Size and mtime of a stored shard; ShardNotFound if absent."""

        async def read(resp: aiohttp.ClientResponse) -> ShardInfo:
            size = int(resp.headers["Content-Length"])
            return ShardInfo(partition, shard, size, float(resp.headers[MTIME_HEADER]))

        return await self._idempotent("HEAD", url, shard_path(partition, shard), read)

    async def delete_shard(self, url: str, partition: int, shard: ShardId) -> bool:
        """Delete one shard; False if it did not exist."""
        try:
            await self._idempotent("DELETE", url, shard_path(partition, shard), _read_nothing)
        except ShardNotFound:
            return False
        return True

    async def delete_object_shards(
        self, url: str, partition: int, object_id: str, shard_tag: str | None = None
    ) -> int:
        """Delete every shard of `object_id` on the pod (only `shard_tag`'s if given)."""
        target = object_path(partition, object_id)
        if shard_tag is not None:
            target += "?" + urlencode({"tag": validate_shard_tag(shard_tag)})
        answer = await self._idempotent("DELETE", url, target, _read_json)
        return int(answer["deleted"])

    async def list_partition(self, url: str, partition: int) -> list[ShardInfo]:
        """Every shard the pod holds in `partition` (empty if none)."""
        answer = await self._idempotent("GET", url, partition_path(partition), _read_json)
        p = validate_partition(partition)
        return [ShardInfo(p, ShardId.parse(n), int(s), float(t)) for n, s, t in answer["shards"]]

    async def list_partitions(self, url: str) -> list[int]:
        """Partitions holding at least one shard on the pod, ascending."""
        answer = await self._idempotent("GET", url, partition_path(None), _read_json)
        return [int(p) for p in answer["partitions"]]

    async def verify_shard(self, url: str, partition: int, shard: ShardId) -> VerifyResult:
        """Make the pod re-read the shard and check every frame."""
        answer = await self._idempotent("POST", url, verify_path(partition, shard), _read_json)
        return VerifyResult(
            bool(answer["ok"]), int(answer["frames"]), tuple(int(s) for s in answer["bad_stripes"])
        )

    async def usage(self, url: str) -> PodUsage:
        """Capacity, used and free bytes and shard count of the pod."""
        a = await self._idempotent("GET", url, "/v1/usage", _read_json)
        return PodUsage(
            int(a["capacity_bytes"]), int(a["used_bytes"]), int(a["free_bytes"]), int(a["shards"]),
            str(a.get("volume_id", "")),
        )

    async def is_ready(self, url: str) -> bool:
        """True if the pod answers /readyz with 200 (one try, no retries)."""
        try:
            return await self._once("GET", url, "/readyz", _read_ok)
        except PodError:
            return False


# -- helpers ---------------------------------------------------------------------------------


def _stored(
    resp: WireResponse, partition: int, shard: ShardId, target: str, base: str
) -> ShardInfo:
    """The pod's answer to a shard PUT as ShardInfo, or the PodError it says."""
    if resp.status >= 400:
        message = resp.body[:_ERROR_BODY_LIMIT].decode("utf-8", "replace")
        raise _error_for(resp.status, f"PUT {target}: {resp.status} {message}".strip(),
                         message, base)
    try:
        answer = json.loads(resp.body)
        return ShardInfo(partition, shard, int(answer["size"]), float(answer["mtime"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise PodUnavailable(f"PUT {target}: unreadable answer {resp.body[:200]!r}",
                             base) from exc


def _put_outcome(
    outcome: WireResponse | OSError | WireError, put: ShardPut, target: str
) -> ShardInfo | PodError:
    assert put.url is not None
    base = put.url.rstrip("/")
    if isinstance(outcome, BurstStalled):
        return PodTimedOut(f"PUT {target}: {outcome}", base)
    if isinstance(outcome, OSError | WireError):
        return PodUnavailable(f"PUT {target}: {outcome!r}", base)
    try:
        return _stored(outcome, put.partition, put.shard, target, base)
    except PodError as exc:
        return exc


async def _raise_for(resp: aiohttp.ClientResponse, base: str) -> None:
    try:
        raw = await resp.content.read(_ERROR_BODY_LIMIT)
        message = raw.decode("utf-8", "replace")
    except (aiohttp.ClientError, TimeoutError):
        message = ""
    text = f"{resp.method} {resp.url.path_qs}: {resp.status} {message}".strip()
    raise _error_for(resp.status, text, message, base)


def _error_for(status: int, text: str, message: str, base: str) -> PodError:
    cls = _ERROR_OF.get(status)
    if cls is None:
        if status >= 500:
            cls = PodUnavailable
        elif status == 400 and '"InvalidShardName"' in message:
            cls = InvalidShardName
        else:
            cls = PodError
    return cls(text, base)


@functools.lru_cache(maxsize=1024)
def _address(base: str) -> tuple[str, int]:
    parts = urlsplit(base)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise PodError(f"pod URL {base!r} is not http://host:port", base)
    return parts.hostname, parts.port or 80


async def _read_json(resp: aiohttp.ClientResponse) -> Any:
    return await resp.json(content_type=None)


async def _read_nothing(resp: aiohttp.ClientResponse) -> None:
    await resp.read()


async def _read_ok(resp: aiohttp.ClientResponse) -> bool:
    await resp.read()
    return resp.status == 200


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(_BACKOFF_S * (2**attempt) * (0.5 + random.random()))


def _check_range(offset: int, length: int | None) -> None:
    if offset < 0 or (length is not None and length < 0):
        raise InvalidRange(f"bad range offset={offset} length={length}")


def _range_header(offset: int, length: int | None) -> dict[str, str]:
    if length is None:
        return {"Range": f"bytes={offset}-"} if offset else {}
    return {"Range": f"bytes={offset}-{offset + length - 1}"}
