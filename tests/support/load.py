"""A steady mixed S3 client load for fault-injection tests, and the check that ends them.

`LoadDriver` runs N threads, each with its own boto3 client and its own keys, doing a
mix of PUT (0 B to ~3 MiB: empty, inline-sized, just above the inline threshold, one
stripe, several stripes; some multipart, some of those two parts with a 5 MiB first
part), GET, LIST and DELETE, with overwrites. It records every acknowledged write as
key -> sha256, every error and every wrong answer with its time, and every request's
latency.

Rules:
- No client retries (botocore max_attempts 1): an error the store answered is an error
  the application saw, never hidden by a retry.
- Each key belongs to one thread, so its operations are serialized and the driver knows
  what it may hold: a set of acceptable outcomes (a sha256, or ABSENT). An acknowledged
  PUT or DELETE makes it exactly one; a failed one (the store may or may not have
  applied it) adds its outcome to the set.
- `verify_all()` reads every key back: byte-exact for acknowledged writes, absent for
  acknowledged deletes, one of the acceptable outcomes otherwise; and the bucket listing
  must agree. The bodies are regenerated from a seed, never kept in memory.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from support.cluster import ACCESS_KEY, REGION, SECRET_KEY

KiB, MiB = 1 << 10, 1 << 20
ABSENT = "absent"
INLINE_MAX = 64 * KiB  # GatewayConfig.inline_threshold_bytes
# (weight, low, high) of PUT sizes: empty, inline, just above inline, one stripe, several.
SIZES = ((1, 0, 0), (3, 1, INLINE_MAX), (1, INLINE_MAX + 1, INLINE_MAX + 1),
         (2, INLINE_MAX + 2, MiB), (2, MiB + 1, 3 * MiB))


def body(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass(frozen=True)
class Failure:
    at: float  # time.monotonic() when the request started
    op: str
    key: str
    error: str
    ended: float = 0.0  # when it failed (0: not a request: a wrong answer seen then)


@dataclass(frozen=True)
class Sample:
    at: float  # when the request started, time.monotonic()
    op: str
    seconds: float


@dataclass
class Mix:
    """Operation weights, and how often a PUT is a multipart upload."""

    put: int = 5
    get: int = 4
    list: int = 1
    delete: int = 1
    multipart: float = 0.06  # of PUTs
    two_parts: float = 0.3  # of multipart uploads: a 5 MiB first part, then a small one
    overwrite: float = 0.33  # of PUTs: to one of the thread's keys, not a new one
    pause_s: float = 0.02  # between a thread's operations: steady, not saturating


def make_client(endpoint: str, read_timeout_s: float = 60.0):
    """boto3 S3 client without retries (see the module rules)."""
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name=REGION,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5,
                      read_timeout=read_timeout_s, max_pool_connections=4),
    )


@dataclass
class _Key:
    outcomes: set[str]  # acceptable sha256 hex digests and/or ABSENT


@dataclass
class LoadDriver:
    endpoint: str
    bucket: str
    threads: int = 4
    mix: Mix = field(default_factory=Mix)
    seed: int = 1
    prefix: str = "load/"  # every key of the driver starts with it (the listing check)
    keys: dict[str, _Key] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)  # requests that failed
    wrong: list[Failure] = field(default_factory=list)  # answers that were wrong
    samples: list[Sample] = field(default_factory=list)
    ops: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    # --- running -----------------------------------------------------------------------
    def start(self) -> LoadDriver:
        """Starts the threads (again after stop(): the keys written so far are kept)."""
        make_client(self.endpoint).head_bucket(Bucket=self.bucket)
        self._stop.clear()
        self._round = getattr(self, "_round", 0) + 1
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(n, self._round),
                                      name=f"load-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> None:
        """Ends the load; each thread finishes the operation it is in."""
        self._stop.set()
        for worker in self._workers:
            worker.join(120)
        self._workers.clear()

    def wait_ops(self, count: int, timeout_s: float = 60.0) -> None:
        """Waits until `count` more operations finished (so a phase had load)."""
        target = self.ops + count
        deadline = time.monotonic() + timeout_s
        while self.ops < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"load made {self.ops} of {target} operations")
            time.sleep(0.05)

    def _run(self, n: int, round_: int) -> None:
        rng = random.Random(self.seed * 1000 + round_ * 100 + n)
        s3 = make_client(self.endpoint)
        with self._lock:
            mine = [k for k in self.keys if k.startswith(f"{self.prefix}t{n}/")]
        ops = [self._put, self._get, self._list, self._delete]
        weights = [self.mix.put, self.mix.get, self.mix.list, self.mix.delete]
        serial = 1000 * round_
        while not self._stop.is_set():
            op = rng.choices(ops, weights)[0] if mine else self._put
            if op == self._put:
                serial += 1
                key = (rng.choice(mine) if mine and rng.random() < self.mix.overwrite
                       else f"{self.prefix}t{n}/k{serial:05d}")
                if key not in mine:
                    mine.append(key)
            else:
                key = rng.choice(mine) if mine else ""
            op(s3, rng, n, key)
            with self._lock:
                self.ops += 1
            self._stop.wait(self.mix.pause_s)

    def _timed(self, op: str, key: str, call: Callable[[], object]) -> object | BaseException:
        started = time.monotonic()
        try:
            result = call()
        except (ClientError, BotoCoreError, OSError) as exc:
            result = exc
        seconds = time.monotonic() - started
        with self._lock:
            self.samples.append(Sample(started, op, seconds))
            if isinstance(result, BaseException) and not _is_not_found(result):
                self.failures.append(Failure(started, op, key, repr(result)[:300],
                                             started + seconds))
        return result

    # --- operations ----------------------------------------------------------------------
    def _put(self, s3, rng: random.Random, n: int, key: str) -> None:
        size = _size(rng)
        seed = rng.getrandbits(48)
        multipart = rng.random() < self.mix.multipart
        if multipart and rng.random() < self.mix.two_parts:
            first = 5 * MiB
            data = body(seed, first) + body(seed + 1, size % MiB)
            result = self._timed("multipart", key, lambda: _multipart(s3, self.bucket, key,
                                                                     data, first))
        elif multipart:
            data = body(seed, size)
            result = self._timed("multipart", key, lambda: _multipart(s3, self.bucket, key,
                                                                     data, len(data)))
        else:
            data = body(seed, size)
            result = self._timed("put", key, lambda: s3.put_object(Bucket=self.bucket, Key=key,
                                                                   Body=data))
        self._settle(key, hashlib.sha256(data).hexdigest(), result)

    def _delete(self, s3, rng: random.Random, n: int, key: str) -> None:
        result = self._timed("delete", key,
                             lambda: s3.delete_object(Bucket=self.bucket, Key=key))
        self._settle(key, ABSENT, result)

    def _settle(self, key: str, outcome: str, result: object) -> None:
        with self._lock:
            state = self.keys.setdefault(key, _Key({ABSENT}))
            if isinstance(result, BaseException):
                state.outcomes.add(outcome)  # may or may not have been applied
            else:
                state.outcomes = {outcome}

    def _get(self, s3, rng: random.Random, n: int, key: str) -> None:
        def get() -> str:
            response = s3.get_object(Bucket=self.bucket, Key=key)
            return hashlib.sha256(response["Body"].read()).hexdigest()

        result = self._timed("get", key, get)
        got = ABSENT if _is_not_found(result) else result
        if isinstance(got, BaseException):
            return
        with self._lock:
            if got not in self.keys[key].outcomes:
                self.wrong.append(Failure(time.monotonic(), "get", key, f"read {got}"))

    def _list(self, s3, rng: random.Random, n: int, key: str) -> None:
        mine = f"{self.prefix}t{n}/"
        result = self._timed("list", mine, lambda: _listed(s3, self.bucket, mine))
        if isinstance(result, BaseException):
            return
        assert isinstance(result, set)
        with self._lock:
            for name, state in self.keys.items():
                if not name.startswith(mine):
                    continue
                gone = state.outcomes == {ABSENT}
                present = ABSENT not in state.outcomes
                if (gone and name in result) or (present and name not in result):
                    self.wrong.append(Failure(time.monotonic(), "list", name,
                                              f"listed={name in result}"))

    # --- reporting and the final check --------------------------------------------------------
    def acknowledged(self) -> dict[str, str]:
        """key -> sha256 of every key whose last write was acknowledged."""
        with self._lock:
            return {k: next(iter(s.outcomes)) for k, s in self.keys.items()
                    if len(s.outcomes) == 1 and ABSENT not in s.outcomes}

    def failures_between(self, start: float, end: float) -> list[Failure]:
        """The requests that started in [start, end] and failed."""
        with self._lock:
            return [f for f in self.failures if start <= f.at <= end]

    def failures_within(self, start: float, end: float) -> list[Failure]:
        """The requests that started and failed in [start, end] (none overlapping a
        later phase)."""
        return [f for f in self.failures_between(start, end) if f.ended <= end]

    def worst_latency(self, start: float, end: float) -> float:
        """The slowest request that started in [start, end]."""
        with self._lock:
            return max((s.seconds for s in self.samples if start <= s.at <= end), default=0.0)

    def count_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for s in self.samples if start <= s.at <= end)

    def verify_all(self) -> int:
        """Reads every key back (see the module rules); raises AssertionError listing every
        disagreement. Returns how many objects read back byte-exact."""
        s3 = make_client(self.endpoint)
        problems = [f"{f.op} {f.key}: {f.error}" for f in self.wrong]
        listed = _listed(s3, self.bucket, self.prefix)
        exact = 0
        for key, state in sorted(self.keys.items()):
            try:
                got = hashlib.sha256(
                    s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()).hexdigest()
            except ClientError as exc:
                if not _is_not_found(exc):
                    problems.append(f"GET {key}: {exc!r}")
                    continue
                got = ABSENT
            if got not in state.outcomes:
                problems.append(f"{key}: read {got}, expected one of {state.outcomes}")
            elif got != ABSENT and state.outcomes == {got}:
                exact += 1
            if (key in listed) != (got != ABSENT):
                problems.append(f"{key}: listed={key in listed} but read {got}")
        for key in listed - set(self.keys):
            problems.append(f"{key}: listed but never written")
        assert not problems, "\n".join(problems[:40])
        return exact

    def summary(self) -> str:
        with self._lock:
            by_op: dict[str, int] = {}
            for sample in self.samples:
                by_op[sample.op] = by_op.get(sample.op, 0) + 1
        return (f"{self.ops} ops {by_op}, {len(self.acknowledged())} acknowledged objects, "
                f"{len(self.failures)} failed requests")


def _size(rng: random.Random) -> int:
    _w, low, high = rng.choices(SIZES, [w for w, _l, _h in SIZES])[0]
    return rng.randint(low, high)


def _is_not_found(result: object) -> bool:
    return isinstance(result, ClientError) and (
        result.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"))


def _multipart(s3, bucket: str, key: str, data: bytes, first: int) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    pieces = [data[:first]] + ([data[first:]] if len(data) > first else [])
    parts = []
    for number, piece in enumerate(pieces, 1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                              Body=piece)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                 MultipartUpload={"Parts": parts})


def _listed(s3, bucket: str, prefix: str) -> set[str]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.update(obj["Key"] for obj in page.get("Contents", []))
    return keys
