"""The listing index: what listing an experiment needs, in one file per experiment, keyed by
its branch's tip.

``<git dir>/mitosis/index/<experiment>.idx`` holds, for the commit it was made at, the id of
each shard tree of the branch (``trials/<xy>``) and, oldest first, an entry per trial folder
whose record passed its checks: its id, its tree's id, its ``trial.json``'s blob id, the columns
of its :class:`~mitosis.Row` (see :func:`mitosis.model.query.columns`), the variants it used
(what :func:`mitosis.variants` counts), and the ``trial.json`` bytes; for a folder whose record
failed them, the one-line reason. The file::

    mitosis-index 5\\n
    {"store": ..., "experiment": ..., "tip": ..., "columns": C, "records": R, "sha256": ...}\\n
    C bytes of JSON: {"shards": {shard: tree id, ...},
                      "entries": [[id, tree id, blob id, offset, size, *columns, used],
                                  ...],
                      "bad": [[shard, id, tree id, reason], ...]}
    R bytes: the trial.json records one after the other (at their offset, of their size)

The checksum (SHA-256) covers the store, experiment and tip the file is for, and its columns;
each record is checked against its blob id when a :class:`~mitosis.model.records.Trial` is built
from it (and read from the store instead, should it differ).

A listing reads the branch's tip (one ref) and, when the file was made at that tip, only the
file: one JSON document, in the listing's order, and no ``Trial`` built until one is asked for.
When the tip has moved (new trials, a pull, a merge, a rewritten branch), the index follows the
branch's tree: a shard whose tree id is unchanged keeps its entries, a trial folder whose tree
id is unchanged keeps its entry (git ids name content), and only new folders are read and
checked. This needs no history, so a fast-forward, a merge and a rewritten branch are followed
alike, and the index is never trusted over the branch. A file that is missing, truncated,
damaged, or another format version's, store's or experiment's is rebuilt from the branch; it is
replaced by an atomic rename, so processes listing at once each leave a whole file. It lives
outside git's objects and refs: never pushed, and a pull never writes it.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast
from urllib.parse import quote

from ..exceptions import StoreError
from ..model.layout import TRIAL, TRIALS
from ..model.query import Row, row_of
from .repo import Store

if TYPE_CHECKING:
    from dulwich.objects import ObjectID

    from .reader import Reader

__all__ = [
    "Bad",
    "Entry",
    "Index",
    "Judge",
    "blob_id",
    "follow",
    "index_path",
    "paused_gc",
    "tree_entries",
]

#: 4: records pass the checks of a Trial's every field (3 kept what 4 refuses); 5: and of
#: their step names, printable paths and nesting (4 kept what 5 refuses)
VERSION = 5
_MAGIC = b"mitosis-index %d\n" % VERSION
_LEFTOVER_SECONDS = 3600.0  # a temporary file this old was left by a writer that died

#: What a trial.json's bytes say for a listing: the columns of its row, and the variants it
#: used; raises :class:`StoreError` (with the one-line reason) for a record that fails its checks.
Judge = Callable[[str, bytes], list[Any]]

#: A trial folder whose record passed its checks, as the file holds it (a JSON list):
#: ``[trial id, tree id, blob id of its trial.json, offset, size, *columns]`` (what the judge
#: said: the row's columns, then the variants used).
Entry = list[Any]
_ID, _TREE, _OFFSET, _SIZE, _STARTED = 0, 1, 3, 4, 7  # see mitosis.model.query.columns
_ORDER = itemgetter(_STARTED, _ID)  # a listing's order: by start, then id


class Bad(NamedTuple):
    """A trial folder whose record failed its checks, and why (said once per process)."""

    shard: str
    id: str
    tree: str
    reason: str


class Index:
    """The listing of one experiment at one commit of its branch: its shard trees' ids, its
    entries oldest first (their records in ``records``), and the folders that failed."""

    def __init__(
        self,
        experiment: str,
        tip: str,
        shards: dict[str, str],
        entries: list[Entry],
        records: bytes | memoryview,
        bad: list[Bad],
    ) -> None:
        self.experiment = experiment
        self.tip = tip
        self.shards = shards
        self.entries = entries
        self.records = records
        self.bad = bad
        self._rows: list[Row] | None = None

    def record(self, entry: Entry) -> bytes | memoryview:
        offset = entry[_OFFSET]
        return self.records[offset : offset + entry[_SIZE]]

    def rows(self) -> list[Row]:
        """The rows, oldest first (made once, then shared)."""
        if self._rows is None:
            experiment, records = self.experiment, self.records
            with paused_gc():
                self._rows = [row_of(e, experiment, records) for e in self.entries]
        return self._rows


def index_path(store: Store, experiment: str) -> Path:
    """Where the index of ``experiment`` lives: in the store's git folder, never pushed."""
    return Path(store.repo.controldir(), "mitosis", "index", f"{quote(experiment, safe='')}.idx")


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a listing makes its many small objects, none of
    them garbage: Python would otherwise scan them all again and again as they are made."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# What this process knows: (store path, experiment) -> its index at the tip it last saw.
_MEMORY: dict[tuple[str, str], Index] = {}


def follow(store: Store, experiment: str, judge: Judge, commit: ObjectID | None = None) -> Index:
    """The index of ``experiment`` at its branch's tip (or at ``commit``): from this process's
    memory or the file when they were made at that commit, else brought there from what they
    hold (only trial folders not seen before are read, and given to ``judge``). The file is
    rewritten when the branch's tip moved; an index at another ``commit`` is not kept."""
    at_tip = commit is None
    target = store.tip(experiment) if commit is None else commit
    tip = target.decode() if target is not None else ""
    key = (store.path, experiment)
    known = _MEMORY.get(key)
    if known is None:
        known = _read(index_path(store, experiment), store.path, experiment)
        if known is not None and at_tip:
            _MEMORY[key] = known
    if known is not None and known.tip == tip:
        return known
    with paused_gc():
        index = _update(store, experiment, known, target, judge)
    if at_tip:
        _MEMORY[key] = index
        _save(index_path(store, experiment), store.path, index)
    return index


def _update(
    store: Store,
    experiment: str,
    known: Index | None,
    commit: ObjectID | None,
    judge: Judge,
) -> Index:
    """The index at ``commit``, from ``known``'s entries where the tree ids are the same."""
    shards = {name: tree.decode() for name, tree in store.children(store.tree_of(commit), TRIALS)}
    before = known.shards if known is not None else {}
    changed = {name for name, tree in shards.items() if before.get(name) != tree}
    found: list[tuple[Entry, bytes | memoryview]] = []
    bad: list[Bad] = []
    kept: dict[tuple[str, str], tuple[Entry, bytes | memoryview] | Bad] = {}
    if known is not None:
        for e in known.entries:
            shard = e[_ID][:2]  # a record that passed its checks is in the shard of its id
            if shard in changed:
                kept[e[_ID], e[_TREE]] = (e, known.record(e))
            elif shard in shards:
                found.append((e, known.record(e)))
        for b in known.bad:
            if b.shard in changed:
                kept[b.id, b.tree] = b
            elif b.shard in shards:
                bad.append(b)
    new: list[tuple[str, str, str]] = []  # folders not seen before: shard, id, tree id
    with _Objects(store) as objects:
        for shard in sorted(changed):
            try:
                folders = objects.children(shards[shard])
            except StoreError as damaged:
                where = f"the folder {TRIALS}/{shard} of mitosis/{experiment}"
                bad.append(Bad(shard, "", shards[shard], f"{where} cannot be read: {damaged}"))
                continue
            for trial_id, tree_id in folders:
                judged = kept.get((trial_id, tree_id))
                if judged is None and shard != trial_id[:2]:
                    where = f"trial {trial_id} on mitosis/{experiment} is in the folder"
                    reason = f"{where} {TRIALS}/{shard}, not {TRIALS}/{trial_id[:2]}"
                    bad.append(Bad(shard, trial_id, tree_id, reason))
                elif judged is None:
                    new.append((shard, trial_id, tree_id))
                elif isinstance(judged, Bad):
                    bad.append(judged)
                else:
                    found.append(judged)
        # all read, then all judged: a quarter faster than in turn (each loop stays in the
        # processor's caches)
        read = [_trial_json(objects, experiment, *folder) for folder in new]
    for (shard, trial_id, tree_id), blob in zip(new, read, strict=True):
        if isinstance(blob, Bad):
            bad.append(blob)
            continue
        judged = _judged(shard, trial_id, tree_id, *blob, judge)
        if isinstance(judged, Bad):
            bad.append(judged)
        else:
            found.append(judged)
    found.sort(key=lambda pair: _ORDER(pair[0]))
    entries, records, offset = [], [], 0
    for entry, record in found:
        entries.append([*entry[:_OFFSET], offset, len(record), *entry[_SIZE + 1 :]])
        records.append(record)
        offset += len(record)
    tip = commit.decode() if commit is not None else ""
    _debug(
        "mitosis: listing index of %s at %s: %d trial folders read, %d kept",
        experiment,
        tip[:12] or "(no branch)",
        len(new),
        len(entries) + len(bad) - len(new),
    )
    return Index(experiment, tip, shards, entries, b"".join(records), bad)


def blob_id(data: bytes) -> str:
    """The id git gives a blob of these bytes: what a record of the index is checked by."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


def _trial_json(
    objects: _Objects, experiment: str, shard: str, trial_id: str, tree_id: str
) -> tuple[str, bytes] | Bad:
    """The blob id and bytes of a trial folder's ``trial.json``, or why they cannot be read."""
    where = f"trial {trial_id} on mitosis/{experiment}"
    try:
        blob = objects.entry(tree_id, TRIAL)
        data = None if blob is None else objects.blob(blob)
    except StoreError as damaged:
        return Bad(shard, trial_id, tree_id, f"{where} cannot be read: {damaged}")
    if blob is None or data is None:
        return Bad(shard, trial_id, tree_id, f"{where} has no {TRIAL}")
    return blob, data


def _judged(
    shard: str, trial_id: str, tree_id: str, blob: str, data: bytes, judge: Judge
) -> tuple[Entry, bytes] | Bad:
    """A trial folder's ``trial.json`` judged: its entry and record, or why not."""
    try:
        return [trial_id, tree_id, blob, 0, len(data), *judge(trial_id, data)], data
    except StoreError as bad:
        return Bad(shard, trial_id, tree_id, str(bad))


_TREE_TYPE, _BLOB_TYPE = 2, 3  # git's object type numbers
#: The reader of pack files starts after one read through dulwich for this many objects in
#: the packs (its start costs about what that many reads save; see :class:`_Objects`), and
#: never before this many reads.
_SWITCH, _FEWEST = 32, 64


def tree_entries(
    text: bytes, id_size: int = 20, only: bytes | None = None
) -> list[tuple[str, str]]:
    """``(name, object id)`` of each entry of a tree as git stores it (``<mode> SP <name> NUL
    <binary id>``, ids of ``id_size`` bytes), or of those named ``only``; none for a damaged
    tree (as a folder without entries: what it held is then said missing)."""
    found, at = [], 0
    try:
        while at < len(text):
            name_end = text.index(b"\x00", at)
            space = text.index(b" ", at, name_end)
            int(text[at:space], 8)  # a mode: octal digits
            name = text[space + 1 : name_end]
            at = name_end + 1 + id_size
            if at > len(text):
                return []
            if only is None or name == only:
                found.append((name.decode(errors="replace"), text[name_end + 1 : at].hex()))
    except ValueError:
        return []
    return found


class _Objects:
    """Trees and blobs read as git stores them, never parsed into dulwich's objects.

    The first ones through dulwich's packs (a lookup each, about 20 µs), then, past one read
    for every :data:`_SWITCH` objects the packs hold, straight from the pack files with a
    :class:`~mitosis.store.reader.Reader` (about 7 µs each, a delta chain inflated once; its
    start reads every pack index, under 1 µs an object): a listing that reads a few folders
    of a big store never pays that start, and one that reads them all pays it once. Loose
    objects, and packs that came since, are read through :meth:`Store.get` before the reader
    starts, and by the reader (from their files, else through dulwich) after."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.packs = list(store.repo.object_store.packs)
        try:
            held = sum(len(pack.index) for pack in self.packs)
        except Exception:  # a pack replaced by a packer meanwhile: read the other way
            self.packs, held = [], 0
        self.left = max(_FEWEST, held // _SWITCH)  # reads before the pack files' reader
        self.reader: Reader | None = None

    def __enter__(self) -> _Objects:
        return self

    def __exit__(self, *_: object) -> None:
        if self.reader is not None:
            self.reader.close()

    def _raw(self, object_id: str) -> tuple[int, bytes] | None:
        binary = bytes.fromhex(object_id)
        if self.left < 0:
            if self.reader is None:
                from .reader import Reader  # on first need: a listing of a few folders has none

                self.reader = Reader(self.store.repo.object_store)
            try:
                return self.reader.raw_binary(binary, keep=False)
            except KeyError:
                return None
            except Exception:  # a damaged pack or object: dulwich's way says what it finds
                pass
        self.left -= 1
        for pack in self.packs:
            try:
                return pack.get_raw(binary)  # type: ignore[arg-type]
            except KeyError:
                continue
            except Exception:  # a pack replaced by a packer meanwhile: read the other way
                self.packs = []
                break
        from dulwich.errors import ObjectFormatException

        try:
            found = self.store.get(cast("ObjectID", object_id.encode()))
        except (KeyError, ObjectFormatException):  # not here, or malformed: as if not here
            return None
        except Exception as exc:  # a damaged pack or file
            raise StoreError(f"the object {object_id} is damaged ({exc!r}); see git fsck") from None
        return found.type_num, found.as_raw_string()

    def children(self, tree_id: str, only: str | None = None) -> list[tuple[str, str]]:
        """``(name, object id)`` of a tree's entries (or of those named ``only``); none when it
        is not a tree, or not one git would write.

        Raises:
            StoreError: the tree is in the store, but damaged (its pack or file).
        """
        raw = self._raw(tree_id)
        if raw is None or raw[0] != _TREE_TYPE:
            return []
        return tree_entries(raw[1], len(tree_id) // 2, None if only is None else only.encode())

    def entry(self, tree_id: str, name: str) -> str | None:
        return next((sha for _, sha in self.children(tree_id, name)), None)

    def blob(self, blob_id: str) -> bytes | None:
        raw = self._raw(blob_id)
        return raw[1] if raw is not None and raw[0] == _BLOB_TYPE else None


def _debug(message: str, *args: object) -> None:
    """What the index did, on the debug log of the logger ``mitosis``."""
    import logging  # on first need, as in mitosis.store.repo.warn

    logging.getLogger("mitosis").debug(message, *args)


# -- the file --------------------------------------------------------------------------------


def _read(path: Path, store_path: str, experiment: str) -> Index | None:
    """The index in the file, or None (and why, on the debug log) when there is none, or it is
    truncated, damaged, or another format's, store's or experiment's: it is then rebuilt."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        with paused_gc():
            index, problem = _parse(data, store_path, experiment)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        index, problem = None, f"its content is not an index's ({exc!r})"
    if problem:
        _debug("mitosis: rebuilding the listing index %s: %s", path, problem)
    return index


def _parse(data: bytes, store_path: str, experiment: str) -> tuple[Index | None, str]:
    if not data.startswith(_MAGIC):
        return None, f"it is not a listing index of format {VERSION}"
    start = data.index(b"\n", len(_MAGIC)) + 1
    head = json.loads(data[len(_MAGIC) : start])
    if head["store"] != store_path or head["experiment"] != experiment:
        return None, f"it is the index of {head['experiment']!r} in {head['store']!r}"
    size = head["columns"]
    if len(data) - start != size + head["records"]:
        return None, "it is truncated"
    columns = data[start : start + size]
    if _checksum(head, columns) != head["sha256"]:
        return None, "its checksum does not match (damaged)"
    held = json.loads(columns)
    bad = [Bad(*b) for b in held["bad"]]
    records = memoryview(data)[start + size :]  # no copy: rows and trials take their parts
    return Index(experiment, head["tip"], held["shards"], held["entries"], records, bad), ""


def _checksum(head: dict[str, Any], columns: bytes) -> str:
    """The SHA-256 of what the file says of the branch: its store, experiment and tip, and
    its columns. Each record is checked by its blob id where it is used (:func:`blob_id`)."""
    key = json.dumps([head["store"], head["experiment"], head["tip"]]).encode()
    return hashlib.sha256(key + b"\n" + columns).hexdigest()


def _save(path: Path, store_path: str, index: Index) -> None:
    """Write the file (a temporary file, then an atomic rename); a store that cannot be
    written lists all the same, only slower."""
    held = {"shards": index.shards, "entries": index.entries, "bad": [list(b) for b in index.bad]}
    # made of what JSON gave: no cycles to look for
    columns = json.dumps(held, separators=(",", ":"), check_circular=False).encode()
    head = {
        "store": store_path,
        "experiment": index.experiment,
        "tip": index.tip,
        "columns": len(columns),
        "records": len(index.records),
    }
    head["sha256"] = _checksum(head, columns)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _clear_leftovers(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".idx")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + json.dumps(head).encode() + b"\n" + columns)
                f.write(index.records)
            os.replace(tmp, path)
            # the JSON listing cache of earlier versions, which this index replaces
            with contextlib.suppress(OSError):
                (path.parent.parent / "cache" / path.with_suffix(".json").name).unlink()
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        _debug("mitosis: could not write the listing index %s: %s", path, exc)


def _clear_leftovers(folder: Path) -> None:
    """Remove temporary files that writers which died left (an hour old or more)."""
    old = time.time() - _LEFTOVER_SECONDS
    for leftover in folder.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < old:
                leftover.unlink()
