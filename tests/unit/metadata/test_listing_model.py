"""Listings checked against a plain in-memory model of S3 after random puts and deletes.

The model states S3's rules directly (see _sqlite_listing.py): keys in UTF-8 byte
order; a key containing the delimiter after the prefix rolls up into the common
prefix ending at its first occurrence; markers are exclusive and a common prefix is
returned only if it sorts after the marker; max_keys counts entries and prefixes.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from kurastore.metadata import BucketRecord, ObjectVersion, PartLayout

ALPHABET = ["a", "b", "/", "é", "😀", "-", "\x7f"]
keys = st.text(alphabet=ALPHABET, min_size=1, max_size=6)
fragments = st.text(alphabet=ALPHABET, max_size=3)
delimiters = st.one_of(st.sampled_from(["", "/", "//", "a/", "é", "😀", "b"]), fragments)


def b(s: str) -> bytes:
    return s.encode()


def roll_up(
    items: list[tuple[str, Any]], prefix: str, delimiter: str, marker: str
) -> list[tuple[str, bool, Any]]:
    """(name, is_prefix, payload) in S3 order, from (key, payload) pairs in key order."""
    out: list[tuple[str, bool, Any]] = []
    for key, payload in items:
        if not key.startswith(prefix):
            continue
        if delimiter:
            i = key.find(delimiter, len(prefix))
            if i >= 0:
                common = key[: i + len(delimiter)]
                if b(common) > b(marker) and (not out or out[-1][0] != common):
                    out.append((common, True, None))
                continue
        if b(key) > b(marker):
            out.append((key, False, payload))
    return out


class ListingMachine(RuleBasedStateMachine):
    """One bucket; the model maps key -> versions newest first: (version_id, is_marker)."""

    backend: Callable[[Path], Any]  # set by the test: the fixture's store factory

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.mkdtemp(prefix="kurastore-model-")
        self.cm = type(self).backend(Path(self.dir))
        self.store = self.run(self.cm.__aenter__())
        self.model: dict[str, list[tuple[str, bool]]] = {}
        self.versioning = ""
        self.ready = False
        self.n = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.cm.__aexit__(None, None, None))
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @initialize(versioning=st.sampled_from(["", "Enabled"]))
    def make_bucket(self, versioning: str) -> None:
        self.run(self.store.create_bucket(BucketRecord("m", "o", 0.0, versioning=versioning)))
        self.versioning = versioning
        self.ready = True

    # --- changes ------------------------------------------------------------------------
    def _add(self, key: str, version_id: str, is_marker: bool) -> None:
        history = self.model.setdefault(key, [])
        if version_id == "null":
            history[:] = [v for v in history if v[0] != "null"]
        history.insert(0, (version_id, is_marker))

    @rule(key=keys)
    def put(self, key: str) -> None:
        self.n += 1
        v = ObjectVersion("m", key, "", f"{self.n:032x}", 1, "e", time.time(), k=1, m=1,
                          parts=(PartLayout(1, "t", 1, "e"),))
        stored = self.run(self.store.commit_version(v)).version
        self._add(key, stored.version_id, False)

    @rule(key=keys)
    def delete(self, key: str) -> None:
        result = self.run(self.store.delete_object("m", key))
        if self.versioning:
            self._add(key, result.version_id, True)
        else:
            self.model.pop(key, None)

    @rule(data=st.data())
    def delete_version(self, data: st.DataObject) -> None:
        if not self.model:
            return
        key = data.draw(st.sampled_from(sorted(self.model)))
        version_id, _ = data.draw(st.sampled_from(self.model[key]))
        self.run(self.store.delete_object("m", key, version_id))
        self.model[key] = [v for v in self.model[key] if v[0] != version_id]
        if not self.model[key]:
            del self.model[key]

    @rule(state=st.sampled_from(["Enabled", "Suspended"]))
    def set_versioning(self, state: str) -> None:
        self.run(self.store.update_bucket("m", versioning=state))
        self.versioning = state

    # --- listings -------------------------------------------------------------------------
    def _live(self) -> list[tuple[str, Any]]:
        return [(k, h[0][0]) for k, h in sorted(self.model.items(), key=lambda i: b(i[0]))
                if not h[0][1]]

    @rule(prefix=fragments, delimiter=delimiters, start=st.one_of(fragments, keys),
          max_keys=st.sampled_from([0, 1, 2, 3, 5, 1000]))
    def list_objects(self, prefix: str, delimiter: str, start: str, max_keys: int) -> None:
        page = self.run(self.store.list_objects(
            "m", prefix=prefix, delimiter=delimiter, start_after=start, max_keys=max_keys))
        want = roll_up(self._live(), prefix, delimiter, start)
        shown = want[:max_keys]
        assert [(e.key, e.version_id) for e in page.entries] == [
            (n, p) for n, is_p, p in shown if not is_p]
        assert list(page.common_prefixes) == [n for n, is_p, _ in shown if is_p]
        assert page.is_truncated == (max_keys > 0 and len(want) > max_keys)
        if page.is_truncated:
            assert page.next_marker == shown[-1][0]
        assert all(e.is_latest and not e.is_delete_marker for e in page.entries)

    @rule(prefix=fragments, delimiter=delimiters, max_keys=st.integers(1, 4))
    def page_through_objects(self, prefix: str, delimiter: str, max_keys: int) -> None:
        names: list[str] = []
        marker = ""
        for _ in range(200):
            page = self.run(self.store.list_objects(
                "m", prefix=prefix, delimiter=delimiter, start_after=marker, max_keys=max_keys))
            got = sorted([e.key for e in page.entries] + list(page.common_prefixes), key=b)
            names.extend(got)
            if not page.is_truncated:
                break
            marker = page.next_marker
        else:
            raise AssertionError("paging did not end")
        assert names == [n for n, _, _ in roll_up(self._live(), prefix, delimiter, "")]

    def _version_rows(self, prefix: str, delimiter: str, key_marker: str,
                      vid_marker: str) -> list[tuple[str, bool, Any]]:
        flat = [(k, (vid, dm, i == 0)) for k, h in sorted(self.model.items(),
                key=lambda i: b(i[0])) for i, (vid, dm) in enumerate(h)]
        head: list[tuple[str, bool, Any]] = []
        if key_marker and vid_marker and key_marker in self.model:
            ids = [v[0] for v in self.model[key_marker]]
            rolled = bool(delimiter) and key_marker.startswith(prefix) and \
                key_marker.find(delimiter, len(prefix)) >= 0
            if vid_marker in ids and key_marker.startswith(prefix) and not rolled:
                head = [(key_marker, False, (vid, dm, False)) for vid, dm in
                        self.model[key_marker][ids.index(vid_marker) + 1:]]
        return head + roll_up(flat, prefix, delimiter, key_marker)

    @rule(prefix=fragments, delimiter=delimiters, max_keys=st.integers(1, 4))
    def page_through_versions(self, prefix: str, delimiter: str, max_keys: int) -> None:
        key_marker = vid_marker = ""
        for _ in range(300):
            page = self.run(self.store.list_versions(
                "m", prefix=prefix, delimiter=delimiter, key_marker=key_marker,
                version_id_marker=vid_marker, max_keys=max_keys))
            want = self._version_rows(prefix, delimiter, key_marker, vid_marker)
            shown = want[:max_keys]
            assert [(e.key, e.version_id, e.is_delete_marker, e.is_latest)
                    for e in page.entries] == [(n, *p) for n, is_p, p in shown if not is_p]
            assert list(page.common_prefixes) == [n for n, is_p, _ in shown if is_p]
            assert page.is_truncated == (len(want) > max_keys)
            if not page.is_truncated:
                return
            last = shown[-1]
            assert page.next_key_marker == last[0]
            assert page.next_version_id_marker == ("" if last[1] else last[2][0])
            key_marker, vid_marker = page.next_key_marker, page.next_version_id_marker
        raise AssertionError("paging did not end")

    @invariant()
    def usage_counts_live_keys(self) -> None:
        if self.ready:
            count, size = self.run(self.store.bucket_usage("m"))
            assert count == size == len(self._live())


def test_listings_match_the_s3_model(backend: Callable[[Path], Any]) -> None:
    machine = type("Machine", (ListingMachine,), {"backend": staticmethod(backend)})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=60, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    ))
