"""Async client of the admin API, for `kurastore admin` and the operator."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from kurastore.gateway.admin.auth import authorization_header

PREFIX = "/_kura/admin/v1"


class AdminAPIError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class AdminClient:
    def __init__(self, endpoint: str, access_key: str, secret_key: str,
                 *, timeout_s: float = 30.0) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._access_key = access_key
        self._secret_key = secret_key
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        raw = json.dumps(body).encode() if body is not None else b""
        path_qs = f"{PREFIX}{path}"
        headers = {
            "Authorization": authorization_header(
                self._access_key, self._secret_key, method, path_qs, raw
            )
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        async with self._session.request(
            method, self._endpoint + path_qs, data=raw or None, headers=headers
        ) as resp:
            text = await resp.text()
            try:
                payload = json.loads(text) if text else {}
            except ValueError:
                payload = {"error": "BadResponse", "message": text[:200]}
            if resp.status >= 400:
                raise AdminAPIError(resp.status, payload.get("error", "Error"),
                                    payload.get("message", ""))
            return payload

    async def status(self) -> dict[str, Any]:
        return await self._call("GET", "/status")

    async def placement(self) -> dict[str, Any]:
        return await self._call("GET", "/placement")

    async def maintenance(self) -> dict[str, Any]:
        """Healer and scrubber progress (GET /_kura/admin/v1/maintenance)."""
        return await self._call("GET", "/maintenance")

    async def scrub_now(self) -> bool:
        """Ask for a scrub pass now (POST /_kura/admin/v1/maintenance/scrub)."""
        await self._call("POST", "/maintenance/scrub")
        return True

    async def list_pods(self) -> dict[str, Any]:
        return await self._call("GET", "/pods")

    async def add_pods(
        self, *, count: int | None = None, pods: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Start `count` pods (kurastore server) or register `pods` ({id, url, zone, node,
        weight}); either publishes a new placement epoch."""
        return await self._call("POST", "/pods", {"count": count} if pods is None
                                else {"pods": pods})

    async def drain_pod(self, pod_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/pods/{_quote(pod_id)}/drain")

    async def remove_pod(self, pod_id: str) -> dict[str, Any]:
        return await self._call("DELETE", f"/pods/{_quote(pod_id)}")

    async def rebalance(self) -> dict[str, Any]:
        """Rebalance progress (GET /_kura/admin/v1/rebalance)."""
        return await self._call("GET", "/rebalance")

    async def spec(self) -> dict[str, Any]:
        """kurastore server: the desired local spec and its ObjectStore status."""
        return await self._call("GET", "/spec")

    async def set_spec(self, changes: dict[str, Any]) -> dict[str, Any]:
        """kurastore server: change the desired local spec (pods, paused)."""
        return await self._call("POST", "/spec", changes)

    async def list_users(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/users"))["users"]

    async def create_user(self, name: str, *, admin: bool = False) -> dict[str, Any]:
        return await self._call("POST", "/users", {"name": name, "admin": admin})

    async def delete_user(self, name: str) -> dict[str, Any]:
        return await self._call("DELETE", f"/users/{_quote(name)}")

    async def create_key(self, user: str) -> dict[str, Any]:
        return await self._call("POST", f"/users/{_quote(user)}/keys")

    async def list_keys(self, user: str) -> dict[str, Any]:
        return await self._call("GET", f"/users/{_quote(user)}/keys")

    async def delete_key(self, access_key: str) -> dict[str, Any]:
        return await self._call("DELETE", f"/keys/{_quote(access_key)}")


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
