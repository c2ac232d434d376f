"""What a push or a pull sends, found and written at git's pace.

dulwich's generic sender reads every tree of the history through its pack reader (which
re-inflates each delta chain from its start), then re-encodes every object it sends. A store's
history has a known shape (each trial's commit rewrites the trees along one path), so:

- :class:`mitosis.store.reader.Reader` reads objects straight from the pack files, with a
  cache of the inflated entries, so that a delta chain is inflated once, however many of its
  versions are read.
- :func:`missing` finds what to send: the commits the receiver lacks (walked newest first,
  both sides at once, as git does), and of each, the trees and files that differ from its
  parents' (only the changed entries are descended into).
- :class:`Outgoing` is the pack to send: a pack of the store whose every object is to be
  sent goes whole (its entries copied as they are, compressed, deltas and all); the other
  objects are copied from their packs (a delta only when its base went before it), and loose
  ones are compressed, as deltas against the same path in the parent (the same-named file of
  the trial before), as the packer does; big loose blobs are streamed last, never read whole
  (see :func:`mitosis.store.blobs.pack_entry`).
- :func:`send_local` puts such a pack into a store on this machine with its index made from
  the offsets noted while writing (dulwich's local transport indexes a received pack by reading
  it back and resolving every delta), as the packer does (:func:`mitosis.store.pack.write_pack`).

The pack sent is never thin: every delta's base is in it.
"""

from __future__ import annotations

import binascii
import bisect
import contextlib
import hashlib
import heapq
import mmap
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING

from .blobs import CHUNK, is_big_loose, pack_entry
from .reader import Entries, Pack, Reader, id_at, links, tree_order

if TYPE_CHECKING:
    from dulwich.object_store import DiskObjectStore
    from dulwich.objects import ObjectID
    from dulwich.pack import UnpackedObject
    from dulwich.refs import Ref

__all__ = ["Inspector", "Outgoing", "copy", "copy_all", "missing", "send_local", "sender"]

_COMMIT, _TREE, _BLOB, _OFS_DELTA = 1, 2, 3, 6
_DIR, _SUBMODULE = 0o040000, 0o160000
#: The longest delta chain written for loose objects.
_RUN = 48


class Inspector:
    """Told of each new commit and each new tree that :func:`missing` meets (a check of
    what arrives raises from these); by default, does nothing."""

    def commit(self, commit_id: bytes, data: bytes) -> None:
        """A new commit, and its text."""

    def absent(self, commit_id: bytes) -> None:
        """A parent of a new commit, which is nowhere."""

    def tree(self, tree_id: bytes, path: bytes, entries: Entries, new: Entries) -> None:
        """A new tree at ``path`` (``b""``: a commit's root), its entries, and those of them that
        no base (the same path in the commit's parents) has. A tree that differs from its base
        only in one entry's id is not told of: its names and modes are its base's."""

    def inserted(self, tree_id: bytes, path: bytes, entries: Entries, index: int) -> None:
        """A new tree at ``path`` that is its one base (a tree of well-ordered entries) with
        one entry more, ``entries[index]``: by default, told to :meth:`tree`."""
        self.tree(tree_id, path, entries, [entries[index]])


def missing(
    reader: Reader,
    wants: Iterable[bytes],
    haves: Iterable[bytes],
    inspector: Inspector | None = None,
    bases: dict[bytes, bytes] | None = None,
    progress: Callable[[bytes], None] | None = None,
) -> dict[bytes, int]:
    """What a side that has ``haves`` (commit ids, hex) lacks of ``wants``: object id (hex) to
    type number, commits newest first, then the trees and blobs of each, its oldest first.

    The commits are walked newest first from both sides at once (a commit reached from a have
    is the receiver's), as git does; a commit's trees and files are those that differ from
    every parent's at the same path. An object that the receiver has elsewhere in its history
    may be sent again: harmless, and rare.

    ``bases``, when given, gets a delta base for the trees and files found: the tree at the same
    path in the first parent, the same-named file at the same depth met before. ``progress`` is
    told how many objects were found, as git says it (``counting objects: N``).
    """
    inspector = inspector or Inspector()
    queue: list[tuple[int, bytes, bool]] = []
    theirs: set[bytes] = set()
    seen: set[bytes] = set()
    others: list[bytes] = []  # wants that are no commits: their objects, whole
    commits: dict[bytes, tuple[bytes, list[bytes], int]] = {}
    texts: dict[bytes, bytes] = {}  # of the commits walked from the wants

    def links_of(commit_id: bytes, keep: bool = False) -> tuple[bytes, list[bytes], int] | None:
        found = commits.get(commit_id)
        if found is None:
            try:
                kind, data = reader.raw(commit_id)
            except KeyError:  # not here (a have of the receiver's own, a shallow parent)
                return None
            if kind != _COMMIT:
                return None
            found = commits[commit_id] = links(data)
            if keep:
                texts[commit_id] = data
        return found

    def push(commit_id: bytes, interesting: bool) -> bool:
        found = links_of(commit_id, interesting)
        if found is not None:
            heapq.heappush(queue, (-found[2], commit_id, interesting))
        return found is not None

    for have in set(haves):
        push(have, False)
    for want in set(wants):
        if not push(want, True):
            others.append(want)
    ours: list[bytes] = []
    interesting_left = sum(1 for entry in queue if entry[2])
    while interesting_left:
        _, commit_id, interesting = heapq.heappop(queue)
        interesting_left -= interesting
        if commit_id in theirs or (interesting and commit_id in seen):
            continue
        (theirs if not interesting else seen).add(commit_id)
        if interesting:
            ours.append(commit_id)
        for parent in commits[commit_id][1]:
            if push(parent, interesting):
                interesting_left += interesting
            elif interesting:
                inspector.absent(parent)
    found: dict[bytes, int] = {c: _COMMIT for c in ours if c not in theirs}
    walk = _TreeWalk(reader, found, inspector, bases)
    for number, commit_id in enumerate(reversed(ours)):
        if progress is not None and number % 1000 == 0:
            progress(b"counting objects: %d\r" % len(found))
        if commit_id in theirs:
            continue
        data = texts.get(commit_id) or reader.raw(commit_id)[1]
        inspector.commit(commit_id, data)
        tree, parents, _ = commits[commit_id]
        parent_trees = [t[0] for p in parents if (t := links_of(p)) is not None]
        walk.diff(tree, parent_trees, b"")
    for other in others:
        kind, _ = reader.raw(other)
        if kind == _TREE:
            walk.diff(other, [], b"")
        else:
            found.setdefault(other, kind)
    if progress is not None:
        progress(b"counting objects: %d, done.\n" % len(found))
    return found


class _Version:
    """A tree as last met at a path: its id, content, entries and where each entry ends."""

    __slots__ = ("ends", "entries", "raw", "tree")

    def __init__(self, tree: bytes, raw: bytes, entries: list[tuple[bytes, int, bytes]]) -> None:
        self.tree, self.raw, self.entries = tree, raw, entries
        self.ends: list[int] | None = None

    def entry_ends(self) -> list[int]:
        if self.ends is None:
            ends, at = [], 0
            for name, mode, _ in self.entries:
                at += len(b"%o" % mode) + len(name) + 22
                ends.append(at)
            self.ends = ends
        return self.ends


class _TreeWalk:
    """Adds to ``found`` the trees and files of a tree that its bases (the same path in the
    parents) lack. The last version met at each path is kept, as the next commit's parent
    usually has that version: a tree of the same length as it that differs in one entry's
    id (a trial added to a shard rewrites the tree of shards that way), and a tree that is it
    with one entry more (the shard the trial was added to), are compared byte-wise, without
    parsing them."""

    def __init__(
        self,
        reader: Reader,
        found: dict[bytes, int],
        inspector: Inspector,
        bases: dict[bytes, bytes] | None,
    ) -> None:
        self.reader = reader
        self.found = found
        self.inspector = inspector
        self.latest: dict[bytes, _Version] = {}
        self.bases = bases  # a delta base for each object found (the same path in a parent)
        self.files: dict[tuple[int, bytes], bytes] = {}  # the last file met, by depth and name

    def version(self, tree: bytes, path: bytes) -> _Version:
        latest = self.latest.get(path)
        if latest is not None and latest.tree == tree:
            return latest
        raw = self.reader.raw(tree)[1]
        return _Version(tree, raw, self.reader.tree(tree, raw))

    def diff(self, tree: bytes, bases: list[bytes], path: bytes) -> None:
        found = self.found
        if tree in found or tree in bases:
            return
        found[tree] = _TREE
        kind, raw = self.reader.raw(tree)
        if kind != _TREE:
            from dulwich.errors import ObjectFormatException

            raise ObjectFormatException(f"{tree.decode()} is not a tree")
        old: list[_Version] = []
        if bases:
            if self.bases is not None:
                self.bases[tree] = bases[0]
            if len(bases) == 1:
                base = self.version(bases[0], path)
                if len(base.raw) == len(raw) and self.changed(base, tree, raw, path):
                    return
                if len(base.raw) < len(raw) and self.inserted(base, tree, raw, path):
                    return
                old = [base]
            else:
                old = [self.version(base, path) for base in bases]
        new = self.reader.tree(tree, raw)
        self.latest[path] = _Version(tree, raw, new)
        if old:
            known: set[tuple[bytes, int, bytes]] = set().union(*(v.entries for v in old))
            changed = [entry for entry in new if entry not in known]
        else:
            changed = new
        self.inspector.tree(tree, path, new, changed)
        depth = path.count(b"/")
        files, bases_of = self.files, self.bases
        for name, mode, sha in changed:
            if mode == _DIR:
                self.diff(sha, _folders(old, name) if old else [], path + b"/" + name)
            elif mode != _SUBMODULE and sha not in found:
                found[sha] = _BLOB
                if bases_of is not None:  # a trial's file is most like the trial before's
                    shape = (depth, name)
                    last = files.get(shape)
                    if last is not None:
                        bases_of[sha] = last
                    files[shape] = sha

    def changed(self, base: _Version, tree: bytes, raw: bytes, path: bytes) -> bool:
        """Whether the tree ``raw`` is ``base`` (of the same length) but for one entry's id:
        then that entry is walked, and the tree is not parsed."""
        one = _one_changed(base, raw)
        if one is None:
            return False
        index, sha = one
        name, mode, before = base.entries[index]
        entries = list(base.entries)
        entries[index] = (name, mode, sha)
        latest = self.latest[path] = _Version(tree, raw, entries)
        latest.ends = base.ends
        self.walk_entry(name, mode, sha, [before] if mode == _DIR else [], path)
        return True

    def inserted(self, base: _Version, tree: bytes, raw: bytes, path: bytes) -> bool:
        """Whether the tree ``raw`` is ``base`` with one entry more (a trial added to a
        shard): then the new entry alone is checked and walked, and the tree is not parsed."""
        added = _one_inserted(base, raw)
        if added is None:
            return False
        index, entry = added
        entries = list(base.entries)
        entries.insert(index, entry)
        latest = self.latest[path] = _Version(tree, raw, entries)
        ends, extra = base.entry_ends(), len(raw) - len(base.raw)
        start = ends[index - 1] if index else 0
        latest.ends = ends[:index]
        latest.ends.append(start + extra)
        latest.ends += [end + extra for end in ends[index:]]
        self.inspector.inserted(tree, path, entries, index)
        self.walk_entry(*entry, [], path)
        return True

    def walk_entry(
        self, name: bytes, mode: int, sha: bytes, bases: list[bytes], path: bytes
    ) -> None:
        if mode == _DIR:
            self.diff(sha, bases, path + b"/" + name)
        elif mode != _SUBMODULE and sha not in self.found:
            self.found[sha] = _BLOB
            if self.bases is not None:
                shape = (path.count(b"/"), name)
                last = self.files.get(shape)
                if last is not None:
                    self.bases[sha] = last
                self.files[shape] = sha


def _folders(versions: list[_Version], name: bytes) -> list[bytes]:
    """The ids of the folders named ``name`` in ``versions`` (trees whose entries are in git's
    order, as a tree checked or written is: found by bisection)."""
    found = []
    for version in versions:
        entries = version.entries
        at = bisect.bisect_left(entries, name + b"/", key=tree_order)
        if at < len(entries) and entries[at][0] == name and entries[at][1] == _DIR:
            found.append(entries[at][2])
    return found


#: One tree entry: a mode as git writes it (octal, no leading zero), a name, a binary id.
_ENTRY = re.compile(rb"([1-7][0-7]{4,5}) ([^\0]*)\0(.{20})", re.DOTALL)


def _one_inserted(old: _Version, raw: bytes) -> tuple[int, tuple[bytes, int, bytes]] | None:
    """When the tree ``raw`` is ``old`` with one entry more (anywhere): where it goes among
    ``old``'s entries, and the entry (name, mode, hex id); else None. Found byte-wise: the
    first byte where they differ falls in the entry of ``old`` before which the new one went
    (or past its end), and what follows the new entry is the rest of ``old`` as it was."""
    size, extra = len(old.raw), len(raw) - len(old.raw)
    first = _first_difference(old.raw, raw, size)
    ends = old.entry_ends()
    index = bisect.bisect_right(ends, first)
    start = ends[index - 1] if index else 0
    if raw[start + extra :] != old.raw[start:]:
        return None
    found = _ENTRY.fullmatch(raw, start, start + extra)
    if found is None:
        return None
    mode = int(found[1], 8)
    return index, (found[2], mode, found[3].hex().encode())


def _one_changed(old: _Version, raw: bytes) -> tuple[int, bytes] | None:
    """When the tree ``raw`` (of ``old``'s length) is ``old`` but for one entry's id: that
    entry's index and new id (hex); else None. The first byte where they differ falls in that
    id, and they are the same after it."""
    first = _first_difference(old.raw, raw, len(raw))
    ends = old.entry_ends()
    index = bisect.bisect_right(ends, first)
    if index >= len(ends) or ends[index] - 20 > first:
        return None  # the same, or the first difference is in no entry's id
    end = ends[index]
    if raw[end:] != old.raw[end:]:
        return None
    return index, raw[end - 20 : end].hex().encode()


def _first_difference(old: bytes, new: bytes, size: int) -> int:
    """Where the first ``size`` bytes of ``old`` and ``new`` first differ (``size`` when they do
    not): halves compared as wholes (each one ``memcmp``) down to a few bytes."""
    low, high = 0, size  # the same before low; a difference before high, if any
    while high - low > 16:
        middle = (low + high) // 2
        if old[low:middle] == new[low:middle]:
            low = middle
        else:
            high = middle
    while low < size and old[low] == new[low]:
        low += 1
    return low


class Outgoing:
    """The pack of ``wanted`` objects (see :func:`missing`; binary ids with ``binary_ids``):
    the store's packs that hold only wanted objects go whole; then the other packed objects,
    copied; then the loose ones; big loose blobs last, streamed. Every delta's base comes
    before it.

    :meth:`records` gives its entries (for dulwich's pack writers: a push to a server);
    :meth:`write` writes it to a file, the whole packs' bytes copied at once (a push to a
    store on this machine, a pull from one).
    """

    def __init__(
        self,
        reader: Reader,
        objects: DiskObjectStore,
        wanted: dict[bytes, int],
        bases: dict[bytes, bytes] | None = None,
        progress: Callable[[bytes], None] | None = None,
        binary_ids: bool = False,
    ) -> None:
        self.progress = progress
        self.reader = reader
        self.objects = objects
        self.bases = bases or {}
        self.depth: dict[bytes, int] = {}
        binary = (
            wanted if binary_ids else {bytes.fromhex(sha.decode()): k for sha, k in wanted.items()}
        )
        self.count = len(binary)
        self.ids = set(binary)
        left = set(binary)
        self.whole: list[Pack] = []
        sent: set[bytes] = set()
        for pack in reader.packs:
            ids = set(pack.ids)
            starts = min(pack.offsets, default=0) == 12  # no bytes before its first entry
            if starts and len(ids) == len(pack.ids) and ids <= left:
                self.whole.append(pack)
                left -= ids
                sent |= ids
        # A ref delta of a whole pack must find its base in what is sent whole (the pack sent
        # is never thin); a pack with one that does not is copied entry by entry.
        outside = {id(p): p.ref_bases() for p in self.whole}
        while cut := [p for p in self.whole if not outside[id(p)] <= sent]:
            for pack in cut:
                self.whole.remove(pack)
                left |= set(pack.ids)
                sent -= set(pack.ids)
        self.packed: dict[int, list[tuple[int, bytes]]] = {}
        self.small: list[bytes] = []
        self.big: list[tuple[str, int]] = []
        folder = os.fspath(objects.path)
        for object_id in binary if left else ():  # in the walk's order: a base before it
            if object_id not in left:
                continue
            where = reader.locate(object_id)
            if where is not None:
                self.packed.setdefault(id(where[0]), []).append((where[1], object_id))
                continue
            size = is_big_loose(folder, object_id.hex()) if binary[object_id] == _BLOB else None
            if size is None:
                self.small.append(object_id)
            else:
                self.big.append((object_id.hex(), size))
        self.offset = 12  # where the next entry goes in the pack sent
        self.written: dict[bytes, int] = {}  # id: offset in the pack sent

    def records(self) -> Iterator[UnpackedObject]:
        """Every entry, in order."""
        for pack in self.whole:
            for at, object_id in sorted(zip(pack.offsets, pack.ids, strict=True)):
                yield self._copied(pack, at, object_id)
        yield from self._rest()

    def write(self, file: IO[bytes]) -> tuple[dict[bytes, tuple[int, int]], bytes]:
        """Write the pack to ``file``; each entry's offset and checksum by binary id, and the
        pack's checksum (see :func:`mitosis.store.pack.place_pack`)."""
        digest = hashlib.sha1()
        found: dict[bytes, tuple[int, int]] = {}

        def out(chunk: bytes) -> None:
            file.write(chunk)
            digest.update(chunk)

        out(struct.pack(">4sLL", b"PACK", 2, self.count))
        for pack in self.whole:
            shift = self.offset - 12
            end = len(pack.data) - 20
            for start in range(12, end, CHUNK):
                out(pack.data[start : min(start + CHUNK, end)])
            data, crc32 = pack.data, binascii.crc32
            # the checksums made afresh (the pack's own index may lie), in the pack's order
            crcs = {
                at: crc32(data[at:stop]) if stop - at <= CHUNK else _crc(data, at, stop)
                for at, stop in pack.ends.items()
            }
            moved = [at + shift for at in pack.offsets]
            found.update(
                zip(
                    pack.ids,
                    zip(moved, [crcs[at] for at in pack.offsets], strict=True),
                    strict=True,
                )
            )
            if self.packed or (self.small and self.bases):  # a delta may go against them
                self.written.update(zip(pack.ids, moved, strict=True))
            self.offset += end - 12
        position = self.offset
        for entry in self._rest():
            start, crc = position, 0
            for chunk in entry.comp_chunks or ():
                out(chunk)
                crc = binascii.crc32(chunk, crc)
                position += len(chunk)
            found[entry.sha()] = (start, crc)
        checksum = digest.digest()
        file.write(checksum)
        return found, checksum

    def _rest(self) -> Iterator[UnpackedObject]:
        for pack in self.reader.packs:
            for at, object_id in sorted(self.packed.get(id(pack), [])):
                yield self._copied(pack, at, object_id)
        for number, object_id in enumerate(self.small):
            if self.progress is not None and number % 1000 == 0:
                self.progress(b"writing objects: %d/%d\r" % (number, len(self.small)))
            yield self._loose_entry(object_id)
        for blob_id, size in self.big:
            yield pack_entry(self.objects, blob_id, size)  # the last: no delta against them

    def _emit(
        self,
        object_id: bytes,
        kind: int,
        chunk: bytes,
        size: int,
        more: Iterable[bytes] = (),
        length: int = 0,
    ) -> UnpackedObject:
        """An entry of the bytes ``chunk``, then ``more`` (``length`` bytes)."""
        from dulwich.pack import UnpackedObject

        entry = UnpackedObject(kind, sha=object_id, decomp_len=size)
        entry.comp_chunks = [chunk] if not length else _chained(chunk, more)  # type: ignore[assignment]
        self.written[object_id] = self.offset
        self.offset += len(chunk) + length
        return entry

    def _copied(self, pack: Pack, at: int, object_id: bytes) -> UnpackedObject:
        """The entry at ``at`` of ``pack`` as it is there; a delta whose base was not sent
        before it, whole."""
        from dulwich.pack import pack_object_header

        kind, size, base, start = pack.header(at)
        end = pack.ends[at]
        if base is None:
            if end - at <= CHUNK:
                return self._emit(object_id, kind, pack.data[at:end], size)
            # a big entry (a result): streamed out of the pack, never held whole
            parts = (pack.data[i : min(i + CHUNK, end)] for i in range(start, end, CHUNK))
            return self._emit(object_id, kind, pack.data[at:start], size, parts, end - start)
        base_id = base if isinstance(base, bytes) else id_at(pack, base)
        if base_id not in self.written:
            return self._whole_entry(object_id)
        distance = self.offset - self.written[base_id]
        head = bytes(pack_object_header(_OFS_DELTA, distance, size, self.objects.object_format))
        return self._emit(object_id, _OFS_DELTA, head + pack.data[start:end], size)

    def _loose_entry(self, object_id: bytes) -> UnpackedObject:
        """A loose object: a delta against its base (see :func:`missing`) when that went
        before it and the delta is less than half the object, else whole."""
        from dulwich.pack import create_delta, pack_object_header

        base = self.bases.get(object_id.hex().encode())
        base_id = bytes.fromhex(base.decode()) if base is not None else None
        kind, data = self.reader.take(object_id)
        if base_id is None or base_id not in self.written or self.depth.get(base_id, 0) >= _RUN:
            return self._whole_entry(object_id, kind, data)
        base_kind, base_data = self.reader.raw_binary(base_id)
        delta = b"".join(create_delta(base_data, data))
        if base_kind != kind or len(delta) > len(data) // 2:
            return self._whole_entry(object_id, kind, data)
        self.depth[object_id] = self.depth.get(base_id, 0) + 1
        distance = self.offset - self.written[base_id]
        head = bytes(
            pack_object_header(_OFS_DELTA, distance, len(delta), self.objects.object_format)
        )
        return self._emit(object_id, _OFS_DELTA, head + zlib.compress(delta, 1), len(data))

    def _whole_entry(
        self, object_id: bytes, kind: int = 0, data: bytes | None = None
    ) -> UnpackedObject:
        from dulwich.pack import pack_object_header

        if data is None:
            kind, data = self.reader.raw_binary(object_id)
        head = bytes(pack_object_header(kind, None, len(data), self.objects.object_format))
        return self._emit(object_id, kind, head + zlib.compress(data, 1), len(data))


def _crc(data: mmap.mmap, start: int, stop: int) -> int:
    """The checksum of a big entry (a result) of a pack, never held whole."""
    crc = 0
    for piece in range(start, stop, CHUNK):
        crc = binascii.crc32(data[piece : min(piece + CHUNK, stop)], crc)
    return crc


def _chained(first: bytes, rest: Iterable[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def send_local(
    objects: DiskObjectStore,
    path: str,
    update_refs: Callable[[dict[Ref, ObjectID]], dict[Ref, ObjectID]],
    progress: Callable[[bytes], None] | None = None,
) -> dict[bytes, str]:
    """Push to the store at ``path`` on this machine: ``update_refs`` is given its refs and
    returns them as they should be; what they need is written as one pack with its index,
    then each ref is moved if it still is what it was (compare-and-swap).

    Returns:
        The refs that could not be moved, with why.
    """
    from dulwich.repo import Repo

    with Repo(path) as target:
        old = target.get_refs()
        new = update_refs(dict(old))
        changed = {ref: sha for ref, sha in new.items() if old.get(ref) != sha}
        if not changed:
            return {}
        wants, haves = list(set(changed.values())), list(old.values())
        copy(objects, target.object_store, wants, haves, progress)
        refused: dict[bytes, str] = {}
        for ref, sha in changed.items():
            if not target.refs.set_if_equals(ref, old.get(ref), sha, message=b"mitosis: push"):
                refused[ref] = f"{ref.decode()} moved meanwhile"
        return refused


def copy(
    source: DiskObjectStore,
    target: DiskObjectStore,
    wants: Sequence[bytes],
    haves: Sequence[bytes],
    progress: Callable[[bytes], None] | None = None,
) -> set[bytes]:
    """Write what ``target`` lacks of ``wants`` (knowing it has ``haves``) from ``source``, a
    store on this machine, into ``target`` as one pack with its index; the (binary) ids of the
    objects written.

    The pack's index is made from the ids ``source``'s index claims: when ``source`` is
    someone else's, check the objects against their ids (see :func:`verify`) before trusting
    them."""
    from .pack import place_pack  # on first need: only copies write packs

    with Reader(source) as reader:
        bases: dict[bytes, bytes] = {}
        wanted = missing(reader, wants, haves, bases=bases, progress=progress)
        outgoing = Outgoing(reader, source, wanted, bases, progress)
        if outgoing.count:
            place_pack(target, outgoing.write)
        return outgoing.ids


def copy_all(
    source: DiskObjectStore,
    target: DiskObjectStore,
    progress: Callable[[bytes], None] | None = None,
) -> set[bytes]:
    """Write every object of ``source``, a store on this machine, into ``target`` as one pack:
    its packs whole, its loose objects compressed; the (binary) ids written, as ``source``
    claims them (see :func:`copy`)."""
    from .pack import place_pack  # on first need: only copies write packs

    with Reader(source) as reader:
        wanted = dict.fromkeys((i for pack in reader.packs for i in pack.ids), _BLOB)
        folder = os.fspath(source.path)
        for fanout in sorted(os.listdir(folder)):
            if len(fanout) == 2 and os.path.isdir(os.path.join(folder, fanout)):
                for name in os.listdir(os.path.join(folder, fanout)):
                    if len(name) == 38:  # a blob's kind is only used to find big ones
                        with contextlib.suppress(ValueError):  # not an object's name
                            wanted.setdefault(bytes.fromhex(fanout + name), _BLOB)
        if progress is not None:
            progress(b"counting objects: %d, done.\n" % len(wanted))
        outgoing = Outgoing(reader, source, wanted, None, progress, binary_ids=True)
        if outgoing.count:
            place_pack(target, outgoing.write)
        return outgoing.ids


def sender(
    objects: DiskObjectStore,
    progress: Callable[[bytes], None] | None = None,
) -> Callable[[Iterable[bytes], Iterable[bytes]], tuple[int, Iterator[UnpackedObject]]]:
    """A function of ``(haves, wants)`` that returns what to send, as dulwich's
    ``generate_pack_data`` does; it keeps a :class:`Reader` of ``objects`` open while the
    pack is being written."""

    def generate(
        haves: Iterable[bytes], wants: Iterable[bytes]
    ) -> tuple[int, Iterator[UnpackedObject]]:
        reader = Reader(objects)
        try:
            bases: dict[bytes, bytes] = {}
            wanted = missing(reader, wants, haves, bases=bases, progress=progress)
            outgoing = Outgoing(reader, objects, wanted, bases, progress)
        except BaseException:
            reader.close()
            raise

        def closing() -> Iterator[UnpackedObject]:
            try:
                yield from outgoing.records()
            finally:
                reader.close()

        return outgoing.count, closing()

    return generate
