"""Swift tokens (sign, verify, expiry, tampering) and TempAuth against real users."""

from __future__ import annotations

import base64
import time

import pytest

from kurastore.gateway.swift.auth import TOKEN_PREFIX, TempAuth, TokenSigner
from kurastore.gateway.swift.errors import Unauthorized

SECRET = b"0123456789abcdef0123456789abcdef"
ALICE = ("AKALICE0000000000001", "alice-secret-alice-secret-alice-secret00")  # as conftest.py
BOB = ("AKBOB000000000000002", "bob-secret-bob-secret-bob-secret-bob-0000")


def test_token_round_trip():
    signer = TokenSigner(SECRET, 60)
    token = signer.issue("user-1", now=1000.0)
    assert token.startswith(TOKEN_PREFIX)
    assert signer.verify(token, now=1059.0) == ("user-1", 1060.0)


def test_expired_token_is_refused():
    signer = TokenSigner(SECRET, 60)
    token = signer.issue("user-1", now=1000.0)
    with pytest.raises(Unauthorized):
        signer.verify(token, now=1060.0)
    past = signer.issue("user-1", expires_at=time.time() - 1)
    with pytest.raises(Unauthorized):
        signer.verify(past)


def test_token_of_another_cluster_is_refused():
    token = TokenSigner(b"another-cluster-secret-000000000").issue("user-1")
    with pytest.raises(Unauthorized):
        TokenSigner(SECRET).verify(token)


@pytest.mark.parametrize("token", ["", "AUTH_tk", "AUTH_tk!!!", "tk123", "AUTH_tkAAAA"])
def test_garbage_is_refused(token):
    with pytest.raises(Unauthorized):
        TokenSigner(SECRET).verify(token)


def test_a_changed_user_or_expiry_breaks_the_mac():
    signer = TokenSigner(SECRET, 60)
    raw = base64.urlsafe_b64decode(signer.issue("user-1", now=1000.0)[len(TOKEN_PREFIX):] + "==")
    payload, mac = raw[:-32], raw[-32:]
    assert payload == b"user-1\n1060"
    for forged_payload in (b"user-2\n1060", b"user-1\n9999"):
        forged = TOKEN_PREFIX + base64.urlsafe_b64encode(forged_payload + mac).decode()
        with pytest.raises(Unauthorized):
            signer.verify(forged, now=1000.0)


def test_lifetime_must_be_positive():
    with pytest.raises(ValueError):
        TokenSigner(SECRET, 0)


async def test_tempauth_accepts_access_key_and_user_forms(stack):
    auth = TempAuth(stack.service)
    alice = stack.users["alice"]
    assert await auth.authenticate(ALICE[0], ALICE[1]) == alice
    assert await auth.authenticate(f"anything:{ALICE[0]}", ALICE[1]) == alice
    assert await auth.authenticate("test:alice", ALICE[1]) == alice


@pytest.mark.parametrize(
    ("user", "key"),
    [(ALICE[0], BOB[1]), ("alice", "wrong"), ("test:bob", ALICE[1]), ("nobody", "x"),
     ("", ""), (ALICE[0], "")],
)
async def test_tempauth_refuses_bad_credentials(stack, user, key):
    with pytest.raises(Unauthorized):
        await TempAuth(stack.service).authenticate(user, key)


async def test_auth_endpoint_issues_a_working_token(stack):
    resp = await stack.client.get("/auth/v1.0", headers={"X-Auth-User": f"t:{ALICE[0]}",
                                                         "X-Auth-Key": ALICE[1]})
    assert resp.status == 200
    url = resp.headers["X-Storage-Url"]
    assert url.endswith(f"/v1/AUTH_{stack.users['alice']}")
    assert resp.headers["X-Trans-Id"].startswith("tx")
    token = resp.headers["X-Auth-Token"]
    path = url.split("//", 1)[1].split("/", 1)[1]
    ok = await stack.client.head("/" + path, headers={"X-Auth-Token": token})
    assert ok.status == 204
    # the same token does not open another account
    other = await stack.client.head(stack.url("bob"), headers={"X-Auth-Token": token})
    assert other.status == 403


async def test_auth_endpoint_refuses_a_bad_key(stack):
    resp = await stack.client.get("/auth/v1.0", headers={"X-Auth-User": ALICE[0],
                                                         "X-Auth-Key": "nope"})
    assert resp.status == 401
    assert "X-Auth-Token" not in resp.headers
    assert "Unauthorized" in await resp.text()


async def test_missing_bad_and_expired_tokens_get_401(stack):
    url = stack.url("alice")
    expired = stack.signer.issue(stack.users["alice"], expires_at=time.time() - 5)
    for headers in ({}, {"X-Auth-Token": "AUTH_tkbogus"}, {"X-Auth-Token": expired}):
        resp = await stack.client.get(url, headers=headers)
        assert resp.status == 401, headers
        assert resp.headers["X-Trans-Id"].startswith("tx")
        assert "Unauthorized" in await resp.text()


async def test_deleted_user_loses_access_at_once(stack):
    token = stack.token("bob")
    post = await stack.client.post(stack.url("bob"), headers={"X-Auth-Token": token,
                                                              "X-Account-Meta-K": "v"})
    assert post.status == 204
    assert await stack.service.get_account_settings(stack.users["bob"]) == {"meta": {"k": "v"}}
    await stack.service.delete_user(stack.users["bob"])
    resp = await stack.client.head(stack.url("bob"), headers={"X-Auth-Token": token})
    assert resp.status == 401
    assert await stack.service.get_account_settings(stack.users["bob"]) == {}
