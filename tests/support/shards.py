"""What the pods hold on their disks against what the metadata records reference.

Fault tests check redundancy where it lives: shard files under each pod's volume
(`shards/<partition>/<object_id>.<tag>.<index>`, or `.../<object_id>/<tag>.<index>` as
older volumes hold them), named here
"pod-id/partition/object_id/tag.index". The records' side is read through the
metadata Store itself (SQLite WAL: a second reader beside the running server):
every part of a committed version or of a stored upload part pins `width` shards on
the first `width` pods of its partition in the map of its epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from kurastore.storage import ShardStore


def pod_dirs(data_dir: Path) -> dict[str, Path]:
    """pod id -> volume of every pod directory a `kurastore server` made."""
    return {p.name: p for p in sorted((data_dir / "pods").glob("pod-*")) if p.is_dir()}


def disk_shards(pods: Mapping[str, Path]) -> dict[str, Path]:
    """'pod/partition/object_id/tag.index' -> file, for every shard file of the pods,
    as the pod's own listing finds them (it skips what a delete prunes meanwhile)."""
    found: dict[str, Path] = {}
    for pod_id, root in pods.items():
        store = ShardStore(root)
        try:
            if not store.shards_dir.is_dir():
                continue
            for partition in store.list_partitions():
                for info in store.list_partition(partition):
                    shard = info.shard
                    found[f"{pod_id}/{partition}/{shard.object_id}/{shard.file_name}"] = (
                        store.shard_file(partition, shard))
        finally:
            store.close()
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


def is_valid(path: Path, params: ErasureParams) -> bool:
    """Every frame of the shard file verifies with its own index and stripe number."""
    parts = path.name.split(".")  # <object_id>.<tag>.<i>, or <object_id>/<tag>.<i> (old)
    object_id, tag, index_text = parts if len(parts) == 3 else [path.parent.name, *parts]
    index, owner = int(index_text), frame_owner(object_id, tag)
    try:
        data = path.read_bytes()
        for stripe, frame in enumerate(split_frames(data, params)):
            verify_frame(frame, index=index, stripe=stripe, params=params, owner=owner)
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
