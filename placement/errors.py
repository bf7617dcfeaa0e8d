"""Errors raised by the placement library.

    PlacementError                  any placement failure (bad pods, width, map)
      +-- InvalidObjectId           an object id that is not 32 hex chars / 16 bytes
      +-- InvalidMap                a map (or its JSON) that breaks the format's rules

Messages name the offending value; nothing here carries a protocol status.
"""

from __future__ import annotations

__all__ = ["InvalidMap", "InvalidObjectId", "PlacementError"]


class PlacementError(Exception):
    """A placement map cannot be built, read or used as asked."""


class InvalidObjectId(PlacementError, ValueError):
    """An object id is not 32 hex characters or 16 raw bytes."""


class InvalidMap(PlacementError, ValueError):
    """A placement map or its serialized form is malformed."""
