"""The local platform's desired spec and its operator's bookkeeping, kept as two small
JSON files in the data directory of `kurastore server`:

    objectstore.json          the desired spec: pods, erasure, rebalance, paused; the
                              same shape as an ObjectStore resource (kind, metadata, spec)
    objectstore-status.json   what the operator learnt and computed: the pods' volume ids
                              (a new id means the volume was lost), volumes lost and not
                              yet verified rebuilt, the last status (conditions keep their
                              transition times across restarts)

Rules: every pod is its own pool of one, named by its pod id (pod-N), so that draining
any pod (not only the highest ordinal, as a StatefulSet would) is a change of the spec
the one reconciler understands; files are replaced atomically (write, fsync, rename), so
a crash leaves the old or the new file, never half of one. Erasure is immutable.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kurastore.operator.spec import (
    DEFAULT_IMAGE,
    GROUP,
    VERSION,
    Erasure,
    ObjectStoreSpec,
    Pool,
    Rebalance,
    SpecError,
)

SPEC_FILE = "objectstore.json"
STATE_FILE = "objectstore-status.json"
STORE_NAME = "local"
_POD_ID = re.compile(r"pod-(\d+)")


def pod_number(pod_id: str) -> int:
    """N of pod-N; -1 for any other id."""
    match = _POD_ID.fullmatch(pod_id)
    return int(match.group(1)) if match else -1


def local_pod_name(_store: str, pool: str, _ordinal: int) -> str:
    """The reconciler's pod naming on this platform: the pool (of one) is the pod."""
    return pool


@dataclass(frozen=True)
class LocalSpec:
    pods: tuple[str, ...]
    data_blocks: int
    parity_blocks: int
    rebalance_rate_bytes_s: float = 32 * (1 << 20)
    rebalance_grace_s: float = 300.0
    paused: bool = False
    generation: int = 1

    @property
    def width(self) -> int:
        return self.data_blocks + self.parity_blocks

    def object_spec(self) -> ObjectStoreSpec:
        """The spec the reconciler plans with."""
        return ObjectStoreSpec(
            image=DEFAULT_IMAGE, erasure=Erasure(self.data_blocks, self.parity_blocks),
            pools=tuple(Pool(name=pod_id, pods=1) for pod_id in self.pods),
            rebalance=Rebalance(int(self.rebalance_rate_bytes_s), int(self.rebalance_grace_s)),
            paused=self.paused)

    def changed(self, **changes: Any) -> LocalSpec:
        """A new generation of the spec, if anything changed."""
        new = replace(self, **changes)
        return replace(new, generation=self.generation + 1) if new != self else self

    def with_count(self, count: int) -> LocalSpec:
        """`count` pods: the highest-numbered go first, new ones follow the highest."""
        pods = sorted(self.pods, key=pod_number)
        if count <= len(pods):
            return self.changed(pods=tuple(pods[:count]))
        return self.changed(pods=tuple(pods + next_pod_ids(pods, count - len(pods))))

    def to_doc(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ObjectStore",
            "metadata": {"name": STORE_NAME, "generation": self.generation},
            "spec": {
                "pods": list(self.pods),
                "erasure": {"dataBlocks": self.data_blocks, "parityBlocks": self.parity_blocks},
                "rebalance": {"rateBytesPerSecond": self.rebalance_rate_bytes_s,
                              "graceSeconds": self.rebalance_grace_s},
                "paused": self.paused,
            },
        }

    @classmethod
    def from_doc(cls, doc: Any) -> LocalSpec:
        if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
            raise SpecError("objectstore.json: expected an object with a spec")
        spec = doc["spec"]
        erasure = spec.get("erasure") or {}
        rebalance = spec.get("rebalance") or {}
        generation = (doc.get("metadata") or {}).get("generation", 1)
        out = cls(
            pods=parse_pods(spec.get("pods")),
            data_blocks=_number(erasure, "dataBlocks", int, "spec.erasure"),
            parity_blocks=_number(erasure, "parityBlocks", int, "spec.erasure"),
            rebalance_rate_bytes_s=_number(rebalance, "rateBytesPerSecond", float,
                                           "spec.rebalance", 32 * (1 << 20)),
            rebalance_grace_s=_number(rebalance, "graceSeconds", float, "spec.rebalance",
                                      300.0),
            paused=bool(spec.get("paused", False)),
            generation=generation if isinstance(generation, int) else 1)
        if out.data_blocks < 1 or out.parity_blocks < 0:
            raise SpecError("spec.erasure: dataBlocks >= 1 and parityBlocks >= 0")
        return out


def _number(doc: dict[str, Any], key: str, kind: type, path: str,
            default: float | None = None) -> Any:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SpecError(f"{path}.{key}: expected a number >= 0")
    if kind is int and value != int(value):
        raise SpecError(f"{path}.{key}: expected an integer")
    return kind(value)


def parse_pods(value: Any) -> tuple[str, ...]:
    """A list of distinct pod-N ids."""
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise SpecError("spec.pods: expected a list of pod ids")
    if any(pod_number(p) < 0 for p in value):
        raise SpecError("spec.pods: local pod ids are pod-N")
    if len(set(value)) != len(value):
        raise SpecError("spec.pods: ids must be distinct")
    return tuple(value)


def next_pod_ids(existing: list[str] | tuple[str, ...], count: int) -> list[str]:
    """`count` new ids pod-N after the highest N in use."""
    first = max((pod_number(p) for p in existing), default=-1) + 1
    return [f"pod-{i}" for i in range(first, first + count)]


def apply_changes(spec: LocalSpec, changes: dict[str, Any]) -> LocalSpec:
    """The spec with an admin API change applied: {"pods": N or [ids], "paused": bool}.
    Erasure and the rebalance settings are refused (immutable, or set at start)."""
    unknown = set(changes) - {"pods", "paused"}
    if unknown:
        raise SpecError(f"cannot change {', '.join(sorted(unknown))}: only pods and paused "
                        "(erasure is immutable; the rebalance throttle is set by "
                        "`kurastore server --rebalance-rate` at start)")
    new = spec
    if "pods" in changes:
        pods = changes["pods"]
        if isinstance(pods, int) and not isinstance(pods, bool):
            if not 0 <= pods <= 256:
                raise SpecError("spec.pods: 0-256")
            new = new.with_count(pods)
        else:
            new = new.changed(pods=parse_pods(pods))
    if "paused" in changes:
        if not isinstance(changes["paused"], bool):
            raise SpecError("spec.paused: expected true or false")
        new = new.changed(paused=changes["paused"])
    return new


# --- files ------------------------------------------------------------------------------
def write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_spec(data_dir: Path) -> LocalSpec | None:
    path = data_dir / SPEC_FILE
    try:
        return LocalSpec.from_doc(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise SpecError(f"{path}: {exc}") from exc


def save_spec(data_dir: Path, spec: LocalSpec) -> None:
    write_json(data_dir / SPEC_FILE, spec.to_doc())


@dataclass
class LocalState:
    """The operator's memory that must survive its restart."""

    volumes: dict[str, str] = field(default_factory=dict)  # pod id -> volume id
    lost: dict[str, float] = field(default_factory=dict)  # pod id -> when its volume went
    status: dict[str, Any] = field(default_factory=dict)
    _saved: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def load(cls, data_dir: Path) -> LocalState:
        try:
            doc = json.loads((data_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return cls()
        return cls(dict(doc.get("volumes") or {}),
                   {k: float(v) for k, v in (doc.get("lost") or {}).items()},
                   dict(doc.get("status") or {}))

    def save(self, data_dir: Path) -> None:
        """Writes the file when anything in it changed since the last save."""
        doc = {"volumes": self.volumes, "lost": self.lost, "status": self.status}
        if doc != self._saved:
            write_json(data_dir / STATE_FILE, doc)
            self._saved = json.loads(json.dumps(doc))  # a deep copy, as written
