"""ObjectStoreUser: a user of one ObjectStore, made through the store's admin API, with
its keys in a Secret of the user's namespace (owned by the ObjectStoreUser, so it goes
when the user goes). A finalizer makes deletion revoke the keys and delete the user in
the store before the resource disappears.

Rules: the Secret is the record of the key handed out: while it holds a key the store
still knows, nothing changes; a missing or stale Secret gets a new key (the old ones of
that user are revoked, so exactly one key is live).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from kurastore.gateway.admin.client import AdminAPIError, AdminClient
from kurastore.operator.platforms.kubernetes import (
    FIELD_MANAGER,
    FINALIZER,
    KubernetesPlatform,
    ObjectStore,
    ObjectStoreUser,
    decode_b64,
)
from kurastore.operator.spec import GROUP, VERSION, SpecError, UserSpec, parse_spec, parse_user_spec

log = logging.getLogger("kurastore.operator.users")
RETRY_S = 5.0


async def _admin_for(platform: KubernetesPlatform, spec: UserSpec) -> AdminClient | None:
    """An admin client of the user's store, or None while the store is not serving."""
    try:
        store = await platform.client.get(ObjectStore, spec.store,
                                          namespace=spec.store_namespace)
    except ApiError:
        return None
    from kurastore.operator.manifests import StoreRef

    ref = StoreRef(spec.store, spec.store_namespace, store.metadata.uid)
    try:
        store_spec = parse_spec(store.get("spec") or {})
    except SpecError:
        return None
    endpoint = await platform.admin_endpoint(store_spec, ref)
    if endpoint is None:
        return None
    values = await platform.secret_values(ref)
    return AdminClient(endpoint, values.access_key, values.secret_key, timeout_s=10.0)


async def _store_exists(platform: KubernetesPlatform, spec: UserSpec) -> bool:
    try:
        await platform.client.get(ObjectStore, spec.store, namespace=spec.store_namespace)
    except ApiError as exc:
        return exc.status.code != 404
    return True


async def _current_key(platform: KubernetesPlatform, namespace: str,
                       spec: UserSpec) -> str | None:
    with contextlib.suppress(ApiError):
        secret = await platform.client.get(Secret, spec.secret_name, namespace=namespace)
        data = secret.data or {}
        if "access-key" in data:
            return decode_b64(data["access-key"])
    return None


async def _revoke(admin: AdminClient, user: str) -> None:
    """Every key of the user, then the user itself; gone already is fine."""
    try:
        keys = (await admin.list_keys(user)).get("keys", [])
    except AdminAPIError as exc:
        if exc.status == 404:
            return
        raise
    for key in keys:
        with contextlib.suppress(AdminAPIError):
            await admin.delete_key(key["access_key"])
    with contextlib.suppress(AdminAPIError):
        await admin.delete_user(user)


async def _issue(admin: AdminClient, spec: UserSpec) -> dict[str, Any]:
    """A fresh key for the user (created if new); older keys are revoked."""
    try:
        return await admin.create_user(spec.user_name, admin=spec.admin)
    except AdminAPIError as exc:
        if exc.status != 409:
            raise
    old = (await admin.list_keys(spec.user_name)).get("keys", [])
    fresh = await admin.create_key(spec.user_name)
    for key in old:
        with contextlib.suppress(AdminAPIError):
            await admin.delete_key(key["access_key"])
    return fresh


def _secret(obj: Any, spec: UserSpec, endpoint: str, key: dict[str, Any]) -> Secret:
    meta = obj.metadata
    owner = OwnerReference(apiVersion=f"{GROUP}/{VERSION}", kind="ObjectStoreUser",
                           name=meta.name, uid=meta.uid, controller=True,
                           blockOwnerDeletion=True)
    return Secret(
        metadata=ObjectMeta(name=spec.secret_name, namespace=meta.namespace,
                            ownerReferences=[owner],
                            labels={"app.kubernetes.io/name": "kurastore",
                                    "app.kubernetes.io/instance": spec.store,
                                    "app.kubernetes.io/component": "user-keys",
                                    "app.kubernetes.io/managed-by": FIELD_MANAGER}),
        type="Opaque",
        stringData={"access-key": key["access_key"], "secret-key": key["secret_key"],
                    "AWS_ACCESS_KEY_ID": key["access_key"],
                    "AWS_SECRET_ACCESS_KEY": key["secret_key"], "endpoint": endpoint},
    )


async def reconcile_user(platform: KubernetesPlatform, namespace: str,
                         name: str) -> float | None:
    client = platform.client
    try:
        obj = await client.get(ObjectStoreUser, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise
    meta = obj.metadata
    try:
        spec = parse_user_spec(obj.get("spec") or {}, namespace, name)
    except SpecError as exc:
        await _status(platform, namespace, name, meta.generation, "Failed", str(exc))
        return None
    admin = await _admin_for(platform, spec)
    try:
        if meta.deletionTimestamp is not None:
            if FINALIZER not in (meta.finalizers or []):
                return None
            if admin is not None:
                await _revoke(admin, spec.user_name)
            elif await _store_exists(platform, spec):
                return RETRY_S  # the keys must be revoked before the user may go
            await client.patch(ObjectStoreUser, name, {"metadata": {"finalizers": [
                f for f in meta.finalizers or [] if f != FINALIZER]}},
                namespace=namespace, patch_type=PatchType.MERGE)
            return None
        if FINALIZER not in (meta.finalizers or []):
            await client.patch(ObjectStoreUser, name, {"metadata": {
                "finalizers": [*(meta.finalizers or []), FINALIZER]}},
                namespace=namespace, patch_type=PatchType.MERGE)
        if admin is None:
            await _status(platform, namespace, name, meta.generation, "Pending",
                          f"store {spec.store_namespace}/{spec.store} is not serving yet")
            return RETRY_S
        current = await _current_key(platform, namespace, spec)
        live: set[str] = set()
        with contextlib.suppress(AdminAPIError):
            live = {k["access_key"] for k in
                    (await admin.list_keys(spec.user_name)).get("keys", [])}
        if current is None or current not in live:
            key = await _issue(admin, spec)
            gw = f"{spec.store}-gateway.{spec.store_namespace}.svc"
            store = await client.get(ObjectStore, spec.store, namespace=spec.store_namespace)
            port = ((store.get("spec") or {}).get("gateway") or {}).get("service", {}).get(
                "port", 9000)
            await client.apply(_secret(obj, spec, f"http://{gw}:{port}", key),
                               field_manager=FIELD_MANAGER, force=True)
            current = key["access_key"]
        await _status(platform, namespace, name, meta.generation, "Ready", "",
                      access_key=current, secret_name=spec.secret_name)
        return None
    except AdminAPIError as exc:
        await _status(platform, namespace, name, meta.generation, "Pending", str(exc))
        return RETRY_S
    finally:
        if admin is not None:
            await admin.close()


async def _status(platform: KubernetesPlatform, namespace: str, name: str,
                  generation: int | None, phase: str, message: str,
                  *, access_key: str | None = None, secret_name: str | None = None) -> None:
    doc: dict[str, Any] = {"observedGeneration": generation, "phase": phase,
                           "message": message}
    if access_key:
        doc["accessKey"] = access_key
    if secret_name:
        doc["secretName"] = secret_name
    with contextlib.suppress(ApiError):
        await platform.client.patch(ObjectStoreUser.Status, name, {"status": doc},
                                    namespace=namespace, patch_type=PatchType.MERGE)
