"""Users and access keys, for request authentication and the admin API.

Rules:
- Access keys are 20 characters of A-Z0-9, secrets 40 characters of the base64
  alphabet, both from `secrets` (the shapes AWS uses, so every client accepts them).
- `lookup_secret` serves SigV4: positive answers are cached `identity_cache_s`
  seconds (a hot path per request); unknown keys are not cached, so a key works
  as soon as it is created. Deleting a key or a user drops it from the cache.
- Secrets are never logged.
"""

from __future__ import annotations

import secrets
import string
import time

from kurastore.metadata import AccessKey, AccessKeyNotFound, Store, UserRecord

_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


def new_access_key() -> str:
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(20))


def new_secret_key() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))


class Identity:
    def __init__(self, store: Store, cache_s: float) -> None:
        self._store = store
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, str, str]] = {}  # key -> (until, secret, user)

    async def lookup_secret(self, access_key: str) -> tuple[str, str] | None:
        """(secret, user_id) of an enabled access key, or None."""
        now = time.monotonic()
        hit = self._cache.get(access_key)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        try:
            key = await self._store.get_access_key(access_key)
        except AccessKeyNotFound:
            self._cache.pop(access_key, None)
            return None
        if not key.enabled:
            self._cache.pop(access_key, None)
            return None
        self._cache[access_key] = (now + self._cache_s, key.secret_key, key.user_id)
        return key.secret_key, key.user_id

    async def create_user(
        self,
        name: str,
        is_admin: bool = False,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> tuple[UserRecord, AccessKey]:
        """A new user with one access key (generated unless given). Raises UserExists."""
        user = UserRecord(user_id=secrets.token_hex(32), name=name, created=time.time(),
                          is_admin=is_admin)
        await self._store.create_user(user)
        key = await self.create_access_key(user.user_id, access_key=access_key,
                                           secret_key=secret_key)
        return user, key

    async def create_access_key(
        self, user_id: str, *, access_key: str | None = None, secret_key: str | None = None
    ) -> AccessKey:
        """Raises UserNotFound."""
        await self._store.get_user(user_id)
        key = AccessKey(
            access_key=access_key or new_access_key(),
            secret_key=secret_key or new_secret_key(),
            user_id=user_id,
            created=time.time(),
        )
        await self._store.create_access_key(key)
        return key

    async def delete_access_key(self, access_key: str) -> None:
        self._cache.pop(access_key, None)
        await self._store.delete_access_key(access_key)

    async def delete_user(self, user_id: str) -> None:
        for key, (_until, _secret, owner) in list(self._cache.items()):
            if owner == user_id:
                del self._cache[key]
        await self._store.delete_user(user_id)

    async def get_user(self, user_id: str) -> UserRecord:
        return await self._store.get_user(user_id)

    async def get_user_by_name(self, name: str) -> UserRecord:
        return await self._store.get_user_by_name(name)

    async def list_users(self) -> list[UserRecord]:
        return await self._store.list_users()

    async def list_access_keys(self, user_id: str) -> list[AccessKey]:
        return await self._store.list_access_keys(user_id)
