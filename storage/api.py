"""The pod wire API: shard names, the value types both sides exchange, and the URL paths.

Rules:
- Every name that reaches the filesystem is validated here first, by a full-match regex on
  ASCII (`re.ASCII`, `fullmatch`): object id = 32 lowercase hex, shard tag = [0-9a-z-]{1,40},
  index = 0..255 written without leading zeros, partition = 0..2^31-1 written without leading
  zeros. Nothing that passes can contain '/', '.', '..', NUL or be absolute, so no validated
  name can point outside a pod's directory, and every name has exactly one spelling.
- Paths are built here only (`shard_path`, ...), so the client and the server agree on them.
- Plain data: no I/O, no aiohttp.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from kurastore.storage.errors import InvalidShardName

__all__ = [
    "AUTH_HEADER",
    "MAX_PARTITION",
    "MTIME_HEADER",
    "PodUsage",
    "ShardId",
    "ShardInfo",
    "ShardPieces",
    "ShardPut",
    "VerifyResult",
    "object_path",
    "partition_path",
    "shard_path",
    "validate_object_id",
    "validate_partition",
    "validate_shard_tag",
    "verify_path",
]

AUTH_HEADER = "X-Kura-Auth"
MTIME_HEADER = "X-Kura-Mtime"  # float seconds; Last-Modified only has whole seconds

MAX_PARTITION = 2**31 - 1
MAX_INDEX = 255

_OBJECT_ID = re.compile(r"[0-9a-f]{32}", re.ASCII)
_SHARD_TAG = re.compile(r"[0-9a-z-]{1,40}", re.ASCII)
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,9}", re.ASCII)
_SHARD_NAME = re.compile(r"([0-9a-f]{32})\.([0-9a-z-]{1,40})\.(0|[1-9][0-9]{0,2})", re.ASCII)


def validate_object_id(object_id: str) -> str:
    """Return `object_id` if it is 32 lowercase hex digits, else raise InvalidShardName."""
    if not isinstance(object_id, str) or not _OBJECT_ID.fullmatch(object_id):
        raise InvalidShardName(f"invalid object id {object_id!r:.80}")
    return object_id


def validate_shard_tag(shard_tag: str) -> str:
    """Return `shard_tag` if it matches [0-9a-z-]{1,40}, else raise InvalidShardName."""
    if not isinstance(shard_tag, str) or not _SHARD_TAG.fullmatch(shard_tag):
        raise InvalidShardName(f"invalid shard tag {shard_tag!r:.80}")
    return shard_tag


def validate_partition(partition: int | str) -> int:
    """Return the partition number (0..MAX_PARTITION) from an int or its canonical decimal."""
    if isinstance(partition, str):
        if not _DECIMAL.fullmatch(partition):
            raise InvalidShardName(f"invalid partition {partition!r:.80}")
        partition = int(partition)
    if isinstance(partition, bool) or not isinstance(partition, int):
        raise InvalidShardName(f"invalid partition {partition!r:.80}")
    if not 0 <= partition <= MAX_PARTITION:
        raise InvalidShardName(f"partition {partition} out of range 0..{MAX_PARTITION}")
    return partition


@dataclass(frozen=True)
class ShardId:
    """One shard: index `index` of the part `shard_tag` of the version `object_id`."""

    object_id: str
    shard_tag: str
    index: int

    def __post_init__(self) -> None:
        validate_object_id(self.object_id)
        validate_shard_tag(self.shard_tag)
        if (
            isinstance(self.index, bool)
            or not isinstance(self.index, int)
            or not 0 <= self.index <= MAX_INDEX
        ):
            raise InvalidShardName(f"invalid shard index {self.index!r:.20}")

    @property
    def name(self) -> str:
        """The canonical name, `<object_id>.<shard_tag>.<index>`."""
        return f"{self.object_id}.{self.shard_tag}.{self.index}"

    @property
    def file_name(self) -> str:
        """The file name inside the object's directory in the pods' old layout:
        `<shard_tag>.<index>` (shards are now stored under their `name`)."""
        return f"{self.shard_tag}.{self.index}"

    @classmethod
    def parse(cls, name: str) -> ShardId:
        """Parse a canonical shard name; raise InvalidShardName for anything else."""
        match = _SHARD_NAME.fullmatch(name) if isinstance(name, str) else None
        if match is None or int(match.group(3)) > MAX_INDEX:
            raise InvalidShardName(f"invalid shard name {name!r:.120}")
        return cls(match.group(1), match.group(2), int(match.group(3)))


@dataclass(frozen=True)
class ShardInfo:
    """A stored shard: where it lives, its size in bytes and its mtime (unix seconds)."""

    partition: int
    shard: ShardId
    size: int
    mtime: float


ShardPieces = Sequence[bytes | bytearray | memoryview]  # one shard's bytes, back to back


@dataclass(frozen=True)
class ShardPut:
    """One shard of a burst write (PodClient.put_shards): its bytes are `pieces` (or what
    put_shards' `prepare` makes for it), back to back. Once another shard of the burst is
    stored, this one is waited on for the burst's grace, but never longer than
    `patience_s`."""

    url: str | None  # None: the pod has no address, the put fails without a request
    partition: int
    shard: ShardId
    pieces: ShardPieces
    patience_s: float = math.inf


@dataclass(frozen=True)
class PodUsage:
    """A pod's volume: capacity, bytes held by shards, bytes still writable, shard count."""

    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    shards: int
    volume_id: str = ""  # random, made when an empty volume is first opened


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a scrub of one shard: `bad_stripes` lists stripe numbers of bad frames."""

    ok: bool
    frames: int
    bad_stripes: tuple[int, ...]


def shard_path(partition: int, shard: ShardId) -> str:
    """PUT/GET/HEAD/DELETE path of one shard."""
    return f"/v1/shards/{validate_partition(partition)}/{shard.name}"


def verify_path(partition: int, shard: ShardId) -> str:
    """POST path that makes the pod re-read and check every frame of one shard."""
    return shard_path(partition, shard) + "/verify"


def object_path(partition: int, object_id: str) -> str:
    """DELETE path for all shards of one object id (optionally `?tag=` one part)."""
    return f"/v1/objects/{validate_partition(partition)}/{validate_object_id(object_id)}"


def partition_path(partition: int | None = None) -> str:
    """GET path listing partitions (None) or one partition's shards."""
    if partition is None:
        return "/v1/partitions"
    return f"/v1/partitions/{validate_partition(partition)}"
