"""kurastore.gateway.objects: the one protocol-neutral data path.

Adapters (S3, Swift, admin) use `ObjectService` (service.py) with the values of
api.py and map the errors of errors.py; nothing else here is for them. The
service talks to pods (kurastore.storage.PodClient) and metadata
(kurastore.metadata.Store) and never imports aiohttp.web or builds XML.

    put.py        PUT: stripes -> k+m shard streams -> commit (write path)
    get.py        GET/HEAD: conditions, ranges, the streaming reader (read path)
    stripes.py    reading, verifying and rebuilding a batch of stripes
    fanout.py     the k+m shard streams with a write quorum; shard range reads
    health.py     suspect pods and read latency, shared by all requests
    multipart.py  uploads, parts, complete, abort, listings
    copy.py       CopyObject and UploadPartCopy
    identity.py   users and access keys
    topology.py   placement maps by epoch and pod URLs
"""

from kurastore.gateway.objects.config import ObjectConfig, ServiceStats
from kurastore.gateway.objects.service import ObjectService, PodStatus
from kurastore.gateway.objects.topology import NoPlacementMap, Topology

__all__ = [
    "NoPlacementMap",
    "ObjectConfig",
    "ObjectService",
    "PodStatus",
    "ServiceStats",
    "Topology",
]
