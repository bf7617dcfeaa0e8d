"""python-swiftclient set up the way a user sets it up, and cleanup of what a
test made, for the Swift client tests."""

from __future__ import annotations

import uuid

from swiftclient import client as swift_client
from swiftclient.exceptions import ClientException


def connect(endpoint: str, user: str, key: str) -> swift_client.Connection:
    """A TempAuth (v1) connection; no retries, so a test sees every answer."""
    return swift_client.Connection(authurl=f"{endpoint}/auth/v1.0", user=user, key=key,
                                   retries=0)


def remove_container(conn: swift_client.Connection, name: str) -> None:
    """Delete the container and everything in it; a missing one is fine."""
    try:
        _, objects = conn.get_container(name, full_listing=True)
    except ClientException:
        return
    for obj in objects:
        conn.delete_object(name, obj["name"])
    conn.delete_container(name)


class Containers:
    """The containers one test makes, named `<prefix>-<random>`; `remove_all`
    empties and deletes every one still there."""

    def __init__(self, conn: swift_client.Connection, prefix: str) -> None:
        self.conn = conn
        self.prefix = prefix
        self.made: list[str] = []

    def new(self, **headers: str) -> str:
        name = f"{self.prefix}-{uuid.uuid4().hex[:12]}"
        self.conn.put_container(name, headers=headers)
        self.made.append(name)
        return name

    def forget(self, name: str) -> None:
        """The test removed it itself."""
        self.made.remove(name)

    def remove_all(self) -> None:
        for name in self.made:
            remove_container(self.conn, name)
