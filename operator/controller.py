"""`kurastore operator` on Kubernetes: watches ObjectStores, ObjectStoreUsers and the
objects the operator owns, feeds their keys into one deduplicating work queue, and runs
reconciles from it with a periodic resync; leader election first, so two replicas are
safe.

Rules: a watch that breaks is restarted (after a full list, so nothing is missed); a
reconcile that raises is retried with backoff and never stops the loop; one key is
never reconciled by two workers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from lightkube import ALL_NS, AsyncClient, KubeConfig
from lightkube.resources.apps_v1 import Deployment, StatefulSet
from lightkube.resources.core_v1 import Pod

from kurastore.operator.leader import LeaderElection
from kurastore.operator.platforms.kubernetes import (
    KubernetesPlatform,
    ObjectStore,
    ObjectStoreUser,
    PlatformOptions,
)
from kurastore.operator.users import reconcile_user
from kurastore.operator.workqueue import WorkQueue

log = logging.getLogger("kurastore.operator")

STORE, USER = "store", "user"
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
OWNED_SELECTOR = {"app.kubernetes.io/managed-by": "kurastore-operator"}


@dataclass(frozen=True)
class OperatorOptions:
    namespace: str | None = None  # None: every namespace
    pod_address: str | None = None
    resync_s: float = 30.0
    workers: int = 2
    leader_election: bool = True
    lease_namespace: str = "default"
    identity: str = ""


class Controller:
    def __init__(self, client: AsyncClient, options: OperatorOptions) -> None:
        self.client = client
        self.options = options
        self.platform = KubernetesPlatform(
            client, PlatformOptions(pod_address=options.pod_address, resync_s=options.resync_s))
        self.queue = WorkQueue()
        self._failures: dict[Hashable, int] = {}
        self._ns = options.namespace or ALL_NS

    # --- watches -------------------------------------------------------------------
    async def _watch(self, resource: Any, key_of: Any, labels: dict[str, str] | None = None,
                     ) -> None:
        """Queue the key of every change; the initial list queues everything once."""
        while True:
            try:
                async for _event, obj in self.client.watch(
                        resource, namespace=self._ns, labels=labels):
                    key = key_of(obj)
                    if key is not None:
                        self.queue.add(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("watch of %s ended (%r); restarting", resource.__name__, exc)
            await asyncio.sleep(1.0)

    @staticmethod
    def _own_key(obj: Any) -> tuple[str, str, str] | None:
        meta = obj.metadata
        labels = meta.labels or {}
        store = labels.get("app.kubernetes.io/instance")
        if not store or labels.get("app.kubernetes.io/component") == "user-keys":
            return None
        return (STORE, meta.namespace, store)

    # --- workers -------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            kind, namespace, name = key  # type: ignore[misc]
            try:
                if kind == STORE:
                    again = await self.platform.reconcile_store(namespace, name)
                else:
                    again = await reconcile_user(self.platform, namespace, name)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                self.queue.done(key)
                raise
            except Exception:
                count = self._failures.get(key, 0)
                self._failures[key] = count + 1
                again = BACKOFF_S[min(count, len(BACKOFF_S) - 1)]
                log.exception("reconcile of %s %s/%s failed; again in %.0f s",
                              kind, namespace, name, again)
            self.queue.done(key)
            if again is not None:
                self.queue.add_after(key, again)

    async def _resync(self) -> None:
        """Every store and user at least every resync_s, whatever the watches saw."""
        while True:
            await asyncio.sleep(self.options.resync_s)
            with contextlib.suppress(Exception):
                async for obj in self.client.list(ObjectStore, namespace=self._ns):
                    self.queue.add((STORE, obj.metadata.namespace, obj.metadata.name))
                async for obj in self.client.list(ObjectStoreUser, namespace=self._ns):
                    self.queue.add((USER, obj.metadata.namespace, obj.metadata.name))

    async def run(self) -> None:
        def store_key(o: Any) -> tuple[str, str, str]:
            return (STORE, o.metadata.namespace, o.metadata.name)

        def user_key(o: Any) -> tuple[str, str, str]:
            return (USER, o.metadata.namespace, o.metadata.name)

        tasks = [
            asyncio.create_task(self._watch(ObjectStore, store_key)),
            asyncio.create_task(self._watch(ObjectStoreUser, user_key)),
            asyncio.create_task(self._watch(StatefulSet, self._own_key, OWNED_SELECTOR)),
            asyncio.create_task(self._watch(Deployment, self._own_key, OWNED_SELECTOR)),
            asyncio.create_task(self._watch(Pod, self._own_key,
                                            {"app.kubernetes.io/name": "kurastore"})),
            asyncio.create_task(self._resync()),
        ]
        tasks += [asyncio.create_task(self._worker()) for _ in range(self.options.workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def run_operator(options: OperatorOptions, *, client: AsyncClient | None = None,
                       stop: asyncio.Event | None = None) -> None:
    """Runs until `stop` is set (or SIGTERM/SIGINT), or the leader Lease is lost."""
    own_client = client is None
    # In-cluster config, else $KUBECONFIG; proxies from the environment are not used.
    client = client or AsyncClient(KubeConfig.from_env(), field_manager="kurastore-operator",
                                   trust_env=False)
    stop = stop or _signal_event()
    identity = options.identity or f"{socket.gethostname()}-{os.getpid()}"
    election = None
    if options.leader_election:
        election = LeaderElection(client, options.lease_namespace, identity)
    controller = Controller(client, options)
    campaign = asyncio.create_task(election.run()) if election else None
    stopping = asyncio.create_task(stop.wait())
    work: asyncio.Task[None] | None = None
    try:
        if election is not None:
            leading = asyncio.create_task(election.leading.wait())
            await asyncio.wait({leading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            leading.cancel()
        if not stop.is_set():
            log.info("operator %s reconciling (namespace %s)", identity,
                     options.namespace or "all")
            work = asyncio.create_task(controller.run())
            waits: set[asyncio.Future[Any]] = {stopping, work}
            if election is not None:
                waits.add(asyncio.ensure_future(election.lost.wait()))
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if work in done:
                work.result()  # re-raise what stopped it
    finally:
        for task in (work, campaign, stopping):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if election is not None:
            await election.release()
        if own_client:
            await client.close()


def _signal_event() -> asyncio.Event:
    import signal

    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, event.set)
    return event
