"""BucketCache: bucket records as the data path reads them, cached briefly.

Every S3 and Swift request reads its bucket record (owner, ACL, versioning, settings)
before it does anything else; fetching it from the store each time costs a metadata
round trip per request (a thread hop with SQLite, a network trip with PostgreSQL).

Rules:
- Only found buckets are cached, for `ttl_s`: a bucket created on any gateway is usable
  at once; a change made through another gateway is seen within `ttl_s`.
- This gateway's own creates, updates and deletes replace or drop the entry at once.
- Correctness never rests on the cache: a commit checks its bucket atomically in the
  store, so a write racing a delete on another gateway still fails with NoSuchBucket.
"""

from __future__ import annotations

import time

from kurastore.metadata import BucketRecord, Store

MAX_ENTRIES = 10_000


class BucketCache:
    def __init__(self, store: Store, ttl_s: float) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, BucketRecord]] = {}

    async def get(self, name: str) -> BucketRecord:
        """The bucket's record; raises BucketNotFound."""
        now = time.monotonic()
        hit = self._entries.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        record = await self._store.get_bucket(name)
        if self._ttl_s > 0:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()  # rare; cheaper than an LRU on every hit
            self._entries[name] = (now + self._ttl_s, record)
        return record

    def put(self, record: BucketRecord) -> None:
        """Remember a record this gateway just wrote."""
        if self._ttl_s > 0:
            self._entries[record.name] = (time.monotonic() + self._ttl_s, record)

    def forget(self, name: str) -> None:
        self._entries.pop(name, None)
