"""Leader election through a coordination.k8s.io Lease, so two operator replicas are
safe: only the holder reconciles. The holder renews every ttl/3; another replica takes
the Lease over once it has not been renewed for ttl. Updates carry the Lease's
resourceVersion, so two candidates can never both win one round (the API server refuses
the second write with 409).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger("kurastore.operator.leader")


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderElection:
    def __init__(self, client: AsyncClient, namespace: str, identity: str,
                 *, name: str = "kurastore-operator", ttl_s: int = 15) -> None:
        self._client = client
        self._namespace = namespace
        self._identity = identity
        self._name = name
        self._ttl_s = ttl_s
        self.leading = asyncio.Event()
        self.lost = asyncio.Event()

    async def _try(self) -> bool:
        """One round: take or renew the Lease; True when we hold it afterwards."""
        now = _now()
        try:
            lease = await self._client.get(Lease, self._name, namespace=self._namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            lease = Lease(metadata=ObjectMeta(name=self._name, namespace=self._namespace),
                          spec=self._spec(now, now, 0))
            try:
                await self._client.create(lease)
                return True
            except ApiError as exc2:
                if exc2.status.code == 409:
                    return False
                raise
        spec = lease.spec or LeaseSpec()
        mine = spec.holderIdentity == self._identity
        renewed = spec.renewTime or spec.acquireTime
        expired = renewed is None or (now - renewed).total_seconds() > (
            spec.leaseDurationSeconds or self._ttl_s)
        if not mine and not expired:
            return False
        transitions = (spec.leaseTransitions or 0) + (0 if mine else 1)
        acquired = spec.acquireTime if mine and spec.acquireTime else now
        lease.spec = self._spec(acquired, now, transitions)
        try:
            await self._client.replace(lease)
        except ApiError as exc:
            if exc.status.code == 409:
                return False  # someone else wrote first
            raise
        if not mine:
            log.info("leader lease %s/%s acquired by %s", self._namespace, self._name,
                     self._identity)
        return True

    def _spec(self, acquired: datetime, renewed: datetime, transitions: int) -> LeaseSpec:
        return LeaseSpec(holderIdentity=self._identity, leaseDurationSeconds=self._ttl_s,
                         acquireTime=acquired, renewTime=renewed,
                         leaseTransitions=transitions)

    async def run(self) -> None:
        """Campaign until leading, then renew; sets `lost` and returns if the Lease is lost
        (the caller stops reconciling: another replica may now lead)."""
        period = self._ttl_s / 3
        last_ok = None
        while True:
            ok = False
            with contextlib.suppress(ApiError, OSError):
                ok = await self._try()
            loop_now = asyncio.get_running_loop().time()
            if ok:
                last_ok = loop_now
                self.leading.set()
            elif self.leading.is_set() and (last_ok is None
                                            or loop_now - last_ok > self._ttl_s * 2 / 3):
                log.error("leader lease lost; stopping")
                self.lost.set()
                return
            await asyncio.sleep(period)

    async def release(self) -> None:
        """On a clean stop: let another replica lead at once."""
        if not self.leading.is_set():
            return
        with contextlib.suppress(ApiError, OSError):
            lease = await self._client.get(Lease, self._name, namespace=self._namespace)
            if lease.spec and lease.spec.holderIdentity == self._identity:
                lease.spec.renewTime = datetime(1970, 1, 1, tzinfo=UTC)
                lease.spec.leaseDurationSeconds = 1
                await self._client.replace(lease)
