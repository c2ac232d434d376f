"""The listing cache: trial records already parsed, kept in the store's git folder.

``<git dir>/mitosis/cache/<experiment>.json`` maps the ids of shard trees to their entries and
the ids of trial folders' trees to their ``trial.json`` records. Git ids name content, so an
entry is never stale: new trials, pulls and merges only add ids the cache has not seen. The file
is rewritten (atomically) only when a listing met something new, keeping just what it met.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

if TYPE_CHECKING:
    from dulwich.objects import ObjectID

    from .repo import Store

__all__ = ["ListingCache"]

_VERSION = 2  # 2: only records that passed the checks of mitosis.model.checks


class ListingCache:
    """Use as a context manager around one listing of one experiment."""

    def __init__(self, store: Store, experiment: str) -> None:
        folder = Path(store.repo.controldir()) / "mitosis" / "cache"
        self.path = folder / f"{quote(experiment, safe='')}.json"
        self._shards: dict[str, list[list[str]]] | None = None  # read on first need
        self._records: dict[str, Any] = {}
        self.used_shards: dict[str, list[list[str]]] = {}
        self.used_records: dict[str, Any] = {}
        self.changed = False

    @property
    def loaded(self) -> bool:
        return self._shards is not None

    def _load(self) -> None:
        self._shards = {}
        try:
            data = json.loads(self.path.read_bytes())
            if data.get("version") == _VERSION:
                self._shards, self._records = dict(data["shards"]), dict(data["records"])
        except (OSError, ValueError, KeyError, AttributeError, TypeError):
            pass  # no cache yet, or an unreadable one: it is rebuilt

    def __enter__(self) -> ListingCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Save what this listing met, when it met something new or the file held what is gone.
        stale = self.loaded and len(self.used_records) < len(self._records)
        if exc_type is None and (self.changed or stale):
            self.save()

    def shard(self, shard_id: ObjectID) -> list[tuple[str, ObjectID]] | None:
        """A shard tree's entries ``(trial id, tree id)`` from the file, or None."""
        if self._shards is None:
            self._load()
        assert self._shards is not None
        entries = self._shards.get(shard_id.decode())
        return None if entries is None else [(n, cast("ObjectID", t.encode())) for n, t in entries]

    def keep_shard(self, shard_id: ObjectID, entries: list[tuple[str, ObjectID]]) -> None:
        """Note a shard in use (read now, or found in memory)."""
        key = shard_id.decode()
        self.changed = self.changed or (self._shards is not None and key not in self._shards)
        self.used_shards[key] = [[name, tree.decode()] for name, tree in entries]

    def record(self, tree_id: ObjectID) -> Any:
        if self._shards is None:
            self._load()
        record = self._records.get(tree_id.decode())
        if record is not None:
            self.used_records[tree_id.decode()] = record
        return record

    def keep(self, tree_id: ObjectID, record: Any) -> None:
        """Note a record in use (parsed now, or found in memory)."""
        key = tree_id.decode()
        self.changed = self.changed or (self.loaded and key not in self._records)
        self.used_records[key] = record

    def save(self) -> None:
        data = {"version": _VERSION, "shards": self.used_shards, "records": self.used_records}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only store lists as well, only slower
