"""What the pods hold on their disks against what the metadata records reference.

Fault tests check redundancy where it lives: shards on each pod's volume (files
`shards/<partition>/<object_id>.<tag>.<index>`, or `.../<object_id>/<tag>.<index>` as
older volumes hold them, and records in `packs/*.pack`), named here
"pod-id/partition/object_id/tag.index". The records' side is read through the
metadata Store itself (SQLite WAL: a second reader beside the running server):
every part of a committed version or of a stored upload part pins `width` shards on
the first `width` pods of its partition in the map of its epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from kurastore.erasure import (
    ErasureError,
    ErasureParams,
    frame_owner,
    split_frames,
    verify_frame,
)
from kurastore.metadata.sqlite import SQLiteStore
from kurastore.placement import PlacementMap
from kurastore.storage import ShardId, ShardStore
from kurastore.storage._pack import Place, packed_shards


def pod_dirs(data_dir: Path) -> dict[str, Path]:
    """pod id -> volume of every pod directory a `kurastore server` made."""
    return {p.name: p for p in sorted((data_dir / "pods").glob("pod-*")) if p.is_dir()}


_replays: dict[Path, tuple[object, dict[tuple[int, str], tuple[str, Place]]]] = {}


def _packed(root: Path) -> dict[tuple[int, str], tuple[str, Place]]:
    """packed_shards(root), replayed again only when a pack file changed."""
    try:
        signature = tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns)
                                 for e in os.scandir(root / "packs")))
    except FileNotFoundError:
        return {}
    cached = _replays.get(root)
    if cached is not None and cached[0] == signature:
        return cached[1]
    found = packed_shards(root)
    _replays[root] = (signature, found)
    return found


class StoredShard:
    """One shard on a pod's volume, in a file of its own or packed (a record in a pack
    file). Read and written where it is when asked: a healed packed shard is a new
    record, so its place is looked up again every time."""

    def __init__(self, root: Path, partition: int, shard: ShardId, file: Path | None) -> None:
        self.root, self.partition, self.shard, self.file = root, partition, shard, file

    def _where(self) -> tuple[Path, int, int]:
        """(file, offset, size) of the shard's bytes now; FileNotFoundError if gone."""
        if self.file is not None:
            return self.file, 0, self.file.stat().st_size
        found = _packed(self.root).get((self.partition, self.shard.name))
        if found is None:
            raise FileNotFoundError(f"{self.shard.name} is in no pack of {self.root}")
        return Path(found[0]), found[1].offset, found[1].size

    @property
    def size(self) -> int:
        return self._where()[2]

    def exists(self) -> bool:
        try:
            self._where()
        except FileNotFoundError:
            return False
        return True

    def read_bytes(self) -> bytes:
        path, offset, size = self._where()
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def patch(self, at: int, data: bytes) -> None:
        """Overwrite bytes of the shard in place (bitrot, a misdirected write)."""
        path, offset, size = self._where()
        assert at + len(data) <= size, "a patch stays within the shard"
        with open(path, "r+b") as f:
            f.seek(offset + at)
            f.write(data)


def disk_shards(pods: Mapping[str, Path]) -> dict[str, StoredShard]:
    """'pod/partition/object_id/tag.index' -> shard, for every shard of the pods, as the
    pod's own listing finds them (it skips what a delete prunes meanwhile), packed ones
    too."""
    found: dict[str, StoredShard] = {}
    for pod_id, root in pods.items():
        store = ShardStore(root)
        try:
            if store.shards_dir.is_dir():
                for partition in store.list_partitions():  # files only: the store is not open
                    for info in store.list_partition(partition):
                        shard = info.shard
                        found[f"{pod_id}/{partition}/{shard.object_id}/{shard.file_name}"] = (
                            StoredShard(root, partition, shard,
                                        store.shard_file(partition, shard)))
        finally:
            store.close()
        for (partition, name), _ in _packed(root).items():
            shard = ShardId.parse(name)
            found[f"{pod_id}/{partition}/{shard.object_id}/{shard.file_name}"] = StoredShard(
                root, partition, shard, None)
    return found


def referenced_shards(data_dir: Path) -> set[str]:
    """Every shard the records of a server's metadata pin, named as disk_shards names them
    (pending writes excluded: call this with no write in flight)."""
    return asyncio.run(_referenced(data_dir))


async def _referenced(data_dir: Path) -> set[str]:
    state = json.loads((data_dir / "kurastore.json").read_text())
    store = await SQLiteStore.open(str(data_dir / "metadata.db"),
                                   secret_key=bytes.fromhex(state["metadata_key"]), readers=1)
    try:
        latest = await store.latest_placement_map()
        assert latest is not None
        maps: dict[int, PlacementMap] = {}
        names: set[str] = set()
        for partition in range(PlacementMap.from_json(latest[1]).partition_count):
            for part in await store.partition_parts(partition):
                if part.kind == "pending":
                    continue
                if part.epoch not in maps:
                    maps[part.epoch] = PlacementMap.from_json(
                        await store.get_placement_map(part.epoch))
                owners = maps[part.epoch].pods_for(partition, part.width)
                names.update(f"{owners[i]}/{partition}/{part.object_id}/{part.shard_tag}.{i}"
                             for i in range(part.width))
        return names
    finally:
        await store.close()


def shards_per_part(names: set[str] | Mapping[str, Path]) -> Counter[str]:
    """'object_id/tag' -> how many of its shards `names` holds."""
    return Counter("/".join(n.split("/")[2:4]).rsplit(".", 1)[0] for n in names)


def is_valid(stored: StoredShard, params: ErasureParams) -> bool:
    """Every frame of the shard verifies with its own index and stripe number."""
    shard = stored.shard
    owner = frame_owner(shard.object_id, shard.shard_tag)
    try:
        data = stored.read_bytes()
        for stripe, frame in enumerate(split_frames(data, params)):
            verify_frame(frame, index=shard.index, stripe=stripe, params=params, owner=owner)
    except (ErasureError, FileNotFoundError):
        return False
    return True


def queued_for_collection(data_dir: Path) -> set[str]:
    """Object ids in the collect queue, due or not (read-only: the server owns the queue)."""
    uri = f"file:{data_dir / 'metadata.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
        return {row[0] for row in conn.execute("SELECT object_id FROM collect")}


def unaccounted(data_dir: Path, pods: Mapping[str, Path]) -> tuple[set[str], set[str]]:
    """(referenced shards missing from disk, shard files on disk that no record references
    and no collect item will delete). Both empty: the disks hold what the records say."""
    referenced = referenced_shards(data_dir)
    disk = set(disk_shards(pods))
    queued = queued_for_collection(data_dir)
    stray = {n for n in disk - referenced if n.split("/")[2] not in queued}
    return referenced - disk, stray
