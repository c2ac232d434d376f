"""What a push or a pull sends, found and written at git's pace.

dulwich's generic sender reads every tree of the history through its pack reader (which
re-inflates each delta chain from its start), then re-encodes every object it sends. A store's
history has a known shape (each trial's commit rewrites the trees along one path), so:

- :class:`Reader` reads objects straight from the pack files, with a cache of the inflated
  entries, so that a delta chain is inflated once, however many of its versions are read.
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
import hashlib
import heapq
import mmap
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, cast

from ..exceptions import StoreError
from .blobs import BIG, CHUNK, is_big_loose, open_blob, pack_entry, streamable

if TYPE_CHECKING:
    from dulwich.object_store import DiskObjectStore
    from dulwich.objects import ObjectID
    from dulwich.pack import UnpackedObject
    from dulwich.refs import Ref

__all__ = [
    "Entries",
    "Inspector",
    "Outgoing",
    "Reader",
    "copy",
    "digest",
    "missing",
    "send_local",
    "sender",
    "verify",
]

_COMMIT, _TREE, _BLOB, _OFS_DELTA, _REF_DELTA = 1, 2, 3, 6, 7
#: A tree's entries: name, mode, id (hex).
Entries = list[tuple[bytes, int, bytes]]
_TYPES = {b"commit": _COMMIT, b"tree": _TREE, b"blob": _BLOB, b"tag": 4}
_NAMES = {number: name for name, number in _TYPES.items()}
_DIR, _SUBMODULE = 0o040000, 0o160000
#: The deepest delta chain read (git's own packs go to 4095 at most; mitosis's to 48).
_DEEPEST = 4_096
#: The longest delta chain written for loose objects.
_RUN = 48
#: Inflated entries kept, in bytes; the cache starts anew past it.
_CACHE_BYTES = 64 << 20
_PARSED = 1024


class _Pack:
    """One pack file and its index (version 2), mapped."""

    def __init__(self, path: str) -> None:
        with open(path + ".idx", "rb") as f:
            index = f.read()
        if index[:8] != b"\xfftOc\x00\x00\x00\x02":
            raise StoreError(f"{path}.idx is not a version 2 pack index")
        count = struct.unpack_from(">L", index, 8 + 255 * 4)[0]
        start = 8 + 256 * 4
        names = index[start : start + 20 * count]
        self.ids = [names[i : i + 20] for i in range(0, 20 * count, 20)]
        crcs = start + 20 * count
        self.crcs = struct.unpack_from(f">{count}L", index, crcs)
        offsets = list(struct.unpack_from(f">{count}L", index, crcs + 4 * count))
        large = crcs + 8 * count
        for i, offset in enumerate(offsets):
            if offset & 0x80000000:
                offsets[i] = struct.unpack_from(">Q", index, large + 8 * (offset & 0x7FFFFFFF))[0]
        self.offsets = offsets
        self.file = open(path + ".pack", "rb")  # noqa: SIM115 - closed by close()
        self.data = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ)
        ordered = sorted(offsets)
        self.ends = dict(zip(ordered, [*ordered[1:], len(self.data) - 20], strict=True))

    def close(self) -> None:
        self.data.close()
        self.file.close()

    def ref_bases(self) -> set[bytes]:
        """The bases (binary ids) of the pack's ref deltas."""
        data = self.data
        found = set()
        for offset in self.offsets:
            if (data[offset] >> 4) & 7 == _REF_DELTA:
                base = self.header(offset)[2]
                assert isinstance(base, bytes)
                found.add(base)
        return found

    def header(self, offset: int) -> tuple[int, int, int | bytes | None, int]:
        """An entry's type, size, delta base (an offset, or an id for a ref delta) and where
        its compressed data starts."""
        data = self.data
        byte = data[offset]
        kind, size, shift, at = (byte >> 4) & 7, byte & 15, 4, offset + 1
        while byte & 0x80:
            byte = data[at]
            size |= (byte & 0x7F) << shift
            shift += 7
            at += 1
        base: int | bytes | None = None
        if kind == _OFS_DELTA:
            byte = data[at]
            at += 1
            distance = byte & 0x7F
            while byte & 0x80:
                byte = data[at]
                at += 1
                distance = ((distance + 1) << 7) | (byte & 0x7F)
            base = offset - distance
        elif kind == _REF_DELTA:
            base = bytes(data[at : at + 20])
            at += 20
        return kind, size, base, at


class Reader:
    """Raw objects of a store (its packs read directly, its loose objects through dulwich),
    inflated entries cached so that each delta chain is inflated once."""

    def __init__(self, objects: DiskObjectStore, *more: DiskObjectStore) -> None:
        self.objects = objects
        self.packs: list[_Pack] = []
        self.where: dict[bytes, tuple[_Pack, int]] = {}
        for store in (objects, *more):
            self.add_packs(os.fspath(store.pack_dir))
        # by pack and offset, or by id (a loose object)
        self.cache: dict[tuple[int, int] | bytes, tuple[int, bytes]] = {}
        self.held = 0
        self.parsed: dict[bytes, list[tuple[bytes, int, bytes]]] = {}

    def add_packs(self, folder: str, names: Iterable[str] | None = None) -> list[_Pack]:
        """Read the packs of ``folder`` (those named, or all); the new ones."""
        if names is None:
            names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        added = []
        for name in names:
            if name.endswith(".idx") and name.startswith("pack-"):
                stem = os.path.join(folder, name[: -len(".idx")])
                if not os.path.exists(stem + ".pack"):
                    continue
                pack = _Pack(stem)
                added.append(pack)
                for object_id, offset in zip(pack.ids, pack.offsets, strict=True):
                    self.where.setdefault(object_id, (pack, offset))
        self.packs += added
        return added

    def close(self) -> None:
        for pack in self.packs:
            pack.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def entry_at(self, pack: _Pack, offset: int) -> tuple[int, bytes]:
        """The type number and content of the entry at ``offset`` of ``pack``.

        Raises:
            StoreError: the pack is damaged (or its delta chains deeper than git's).
        """
        chain: list[tuple[tuple[int, int], bytes]] = []  # deltas, the last one's base first
        found = self.cache.get((id(pack), offset))
        while found is None:
            if len(chain) > _DEEPEST:
                raise StoreError(f"the pack {pack.file.name} has a delta chain deeper than git's")
            kind, _, base, start = pack.header(offset)
            try:
                data = zlib.decompress(pack.data[start : pack.ends[offset]])
            except (zlib.error, KeyError) as exc:
                raise StoreError(f"the pack {pack.file.name} is damaged: {exc}") from None
            if base is None:
                if kind not in _NAMES:
                    raise StoreError(f"the pack {pack.file.name} has an entry of no git type")
                found = self._keep((id(pack), offset), kind, data)
                break
            chain.append(((id(pack), offset), data))
            if isinstance(base, int):
                if not 12 <= base < offset:
                    raise StoreError(f"the pack {pack.file.name} has a delta that is no git's")
                offset = base
            else:
                where = self.where.get(base)
                if where is None:
                    found = self.raw_binary(base)
                    break
                pack, offset = where
            found = self.cache.get((id(pack), offset))
        if chain:
            from dulwich.pack import apply_delta

            kind, data = found
            for key, delta in reversed(chain):
                data = b"".join(apply_delta(data, delta))
                found = self._keep(key, kind, data)
        return found

    def _keep(self, key: tuple[int, int] | bytes, kind: int, data: bytes) -> tuple[int, bytes]:
        if self.held > _CACHE_BYTES:
            self.cache.clear()
            self.held = 0
        found = self.cache[key] = (kind, data)
        self.held += len(data)
        return found

    def raw_binary(self, object_id: bytes) -> tuple[int, bytes]:
        """The type number and content of the object of binary id ``object_id``.

        Raises:
            KeyError: the store has no such object.
        """
        found = self.where.get(object_id)
        if found is not None:
            return self.entry_at(*found)
        cached = self.cache.get(object_id)
        if cached is not None:
            return cached
        name = object_id.hex()
        try:
            with open(f"{self.objects.path}/{name[:2]}/{name[2:]}", "rb") as file:
                data = zlib.decompress(file.read())
        except (OSError, zlib.error):  # not loose here (an alternate's), or big: dulwich's way
            hex_id = cast("ObjectID", name.encode())
            return self.objects.get_raw(hex_id)
        header, _, body = data.partition(b"\0")
        return self._keep(object_id, _TYPES[header.partition(b" ")[0]], body)

    def raw(self, object_id: bytes) -> tuple[int, bytes]:
        """:meth:`raw_binary` of a hex id."""
        return self.raw_binary(bytes.fromhex(object_id.decode()))

    def tree(self, tree_id: bytes, raw: bytes | None = None) -> Entries:
        """The entries ``(name, mode, hex id)`` of the tree ``tree_id`` (hex), parsed strictly
        (from ``raw``, its content, when given).

        Raises:
            KeyError: the store has no such object; ObjectFormatException: it is malformed.
        """
        found = self.parsed.get(tree_id)
        if found is None:
            from dulwich.errors import ObjectFormatException
            from dulwich.objects import parse_tree

            if raw is None:
                kind, raw = self.raw(tree_id)
                if kind != _TREE:
                    raise ObjectFormatException(f"{tree_id.decode()} is not a tree")
            found = list(parse_tree(raw, 20, strict=True))
            if len(self.parsed) > _PARSED:
                self.parsed.clear()
            self.parsed[tree_id] = found
        return found

    def commit(self, commit_id: bytes) -> tuple[bytes, list[bytes], int]:
        """A commit's tree, parents (hex ids) and commit time.

        Raises:
            KeyError: the store has no such object, or it is no commit.
        """
        kind, data = self.raw(commit_id)
        if kind != _COMMIT:
            raise KeyError(commit_id)
        return links(data)


def links(data: bytes) -> tuple[bytes, list[bytes], int]:
    """A commit's tree, parents and commit time, from its text."""
    tree, parents, when = b"", [], 0
    for line in data.split(b"\n"):
        if not line:
            break  # the message follows
        key, _, value = line.partition(b" ")
        if key == b"tree":
            tree = value
        elif key == b"parent":
            parents.append(value)
        elif key == b"committer":
            try:
                when = int(value.rsplit(b" ", 2)[1])
            except (IndexError, ValueError):
                when = 0
    return tree, parents, when


class Inspector:
    """Told of each new commit and each new tree that :func:`missing` meets (a check of
    what arrives raises from these); by default, does nothing."""

    def read(self, object_id: bytes, kind: int, data: bytes) -> None:
        """A new commit or tree (hex id), as read."""

    def commit(self, commit_id: bytes, data: bytes) -> None:
        """A new commit, and its text."""

    def absent(self, commit_id: bytes) -> None:
        """A parent of a new commit, which is nowhere."""

    def tree(self, tree_id: bytes, path: bytes, entries: Entries, new: Entries) -> None:
        """A new tree at ``path`` (``b""``: a commit's root), its entries, and those of them that
        no base (the same path in the commit's parents) has. A tree that differs from its base
        only in one entry's id is not told of: its names and modes are its base's."""


def missing(
    reader: Reader,
    wants: Iterable[bytes],
    haves: Iterable[bytes],
    inspector: Inspector | None = None,
    bases: dict[bytes, bytes] | None = None,
) -> dict[bytes, int]:
    """What a side that has ``haves`` (commit ids, hex) lacks of ``wants``: object id (hex) to
    type number, commits newest first, then the trees and blobs of each, its oldest first.

    The commits are walked newest first from both sides at once (a commit reached from a have
    is the receiver's), as git does; a commit's trees and files are those that differ from
    every parent's at the same path. An object that the receiver has elsewhere in its history
    may be sent again: harmless, and rare.

    ``bases``, when given, gets a delta base for the trees and files found: the tree at the same
    path in the first parent, the same-named file at the same depth met before.
    """
    inspector = inspector or Inspector()
    queue: list[tuple[int, bytes, bool]] = []
    theirs: set[bytes] = set()
    seen: set[bytes] = set()
    others: list[bytes] = []  # wants that are no commits: their objects, whole
    commits: dict[bytes, tuple[bytes, list[bytes], int]] = {}

    def links_of(commit_id: bytes) -> tuple[bytes, list[bytes], int] | None:
        found = commits.get(commit_id)
        if found is None:
            try:
                found = commits[commit_id] = reader.commit(commit_id)
            except KeyError:  # not here (a have of the receiver's own, a shallow parent)
                return None
        return found

    def push(commit_id: bytes, interesting: bool) -> bool:
        found = links_of(commit_id)
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
    walk = _TreeWalk(reader, found, inspector, bases if bases is not None else {})
    for commit_id in reversed(ours):
        if commit_id in theirs:
            continue
        data = reader.raw(commit_id)[1]
        inspector.read(commit_id, _COMMIT, data)
        inspector.commit(commit_id, data)
        tree, parents, _ = commits[commit_id]
        parent_trees = [links[0] for p in parents if (links := links_of(p)) is not None]
        walk.diff(tree, parent_trees, b"")
    for other in others:
        kind, _ = reader.raw(other)
        if kind == _TREE:
            walk.diff(other, [], b"")
        else:
            found.setdefault(other, kind)
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
    id (a trial added to a shard rewrites the tree of shards that way) is compared byte-wise,
    without parsing it."""

    def __init__(
        self,
        reader: Reader,
        found: dict[bytes, int],
        inspector: Inspector,
        bases: dict[bytes, bytes],
    ) -> None:
        self.reader = reader
        self.found = found
        self.inspector = inspector
        self.latest: dict[bytes, _Version] = {}
        self.bases = bases  # a delta base for each object found: the same path in a parent
        self.files: dict[tuple[int, bytes], bytes] = {}  # the last file met, by depth and name

    def version(self, tree: bytes, path: bytes) -> _Version:
        latest = self.latest.get(path)
        if latest is not None and latest.tree == tree:
            return latest
        raw = self.reader.raw(tree)[1]
        return _Version(tree, raw, self.reader.tree(tree, raw))

    def diff(self, tree: bytes, bases: list[bytes], path: bytes) -> None:
        if tree in self.found or tree in bases:
            return
        self.found[tree] = _TREE
        if bases:
            self.bases[tree] = bases[0]
        old = [self.version(base, path) for base in bases]
        kind, raw = self.reader.raw(tree)
        if kind != _TREE:
            from dulwich.errors import ObjectFormatException

            raise ObjectFormatException(f"{tree.decode()} is not a tree")
        self.inspector.read(tree, kind, raw)
        if len(old) == 1 and len(old[0].raw) == len(raw):
            one = _one_changed(old[0], raw)
            if one is not None:
                index, sha = one
                name, mode, before = old[0].entries[index]
                self.latest[path] = _Version(tree, raw, old[0].entries)
                self.latest[path].ends = old[0].ends
                entries = list(old[0].entries)
                entries[index] = (name, mode, sha)
                self.latest[path].entries = entries
                self.walk_entry(name, mode, sha, [before] if mode == _DIR else [], path)
                return
        new = self.reader.tree(tree, raw)
        self.latest[path] = _Version(tree, raw, new)
        known: set[tuple[bytes, int, bytes]] = set().union(*(v.entries for v in old))
        olds: dict[bytes, list[bytes]] = {}
        for version in old:
            for name, mode, sha in version.entries:
                if mode == _DIR:
                    olds.setdefault(name, []).append(sha)
        changed = [entry for entry in new if entry not in known]
        self.inspector.tree(tree, path, new, changed)
        for name, mode, sha in changed:
            self.walk_entry(name, mode, sha, olds.get(name, []), path)

    def walk_entry(
        self, name: bytes, mode: int, sha: bytes, bases: list[bytes], path: bytes
    ) -> None:
        if mode == _DIR:
            self.diff(sha, bases, path + b"/" + name)
        elif mode != _SUBMODULE and sha not in self.found:
            self.found[sha] = _BLOB
            # a trial's file is most like the same file of the trial before
            shape = (path.count(b"/"), name)
            last = self.files.get(shape)
            if last is not None:
                self.bases[sha] = last
            self.files[shape] = sha


def _one_changed(old: _Version, raw: bytes) -> tuple[int, bytes] | None:
    """When the tree ``raw`` is ``old`` but for one entry's id: that entry's index and new
    id (hex); else None."""
    diff = int.from_bytes(old.raw, "big") ^ int.from_bytes(raw, "big")
    if not diff:
        return None
    size = len(raw)
    first = size - (diff.bit_length() + 7) // 8
    last = size - 1 - ((diff & -diff).bit_length() - 1) // 8
    ends = old.entry_ends()
    index = bisect.bisect_right(ends, first)
    if index >= len(ends) or ends[index] - 20 > first or last >= ends[index]:
        return None
    end = ends[index]
    return index, raw[end - 20 : end].hex().encode()


class Outgoing:
    """The pack of ``wanted`` objects (see :func:`missing`): the store's packs that hold only
    wanted objects go whole; then the other packed objects, copied; then the loose ones; big
    loose blobs last, streamed. Every delta's base comes before it.

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
    ) -> None:
        self.reader = reader
        self.objects = objects
        self.bases = bases or {}
        self.depth: dict[bytes, int] = {}
        binary = {bytes.fromhex(sha.decode()): kind for sha, kind in wanted.items()}
        self.count = len(binary)
        self.ids = set(binary)
        left = set(binary)
        self.whole: list[_Pack] = []
        sent: set[bytes] = set()
        for pack in reader.packs:
            ids = set(pack.ids)
            if len(ids) == len(pack.ids) and ids <= left:
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
        for object_id in binary:  # in the walk's order: a delta's base before it
            if object_id not in left:
                continue
            where = reader.where.get(object_id)
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
            for object_id, at, crc in zip(pack.ids, pack.offsets, pack.crcs, strict=True):
                found[object_id] = (at + shift, crc)
                self.written[object_id] = at + shift
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
        for object_id in self.small:
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

    def _copied(self, pack: _Pack, at: int, object_id: bytes) -> UnpackedObject:
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
        base_id = base if isinstance(base, bytes) else _id_at(pack, base)
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
        kind, data = self.reader.raw_binary(object_id)
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


def _chained(first: bytes, rest: Iterable[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _id_at(pack: _Pack, offset: int) -> bytes:
    """The id of the entry at ``offset`` of ``pack``."""
    table = getattr(pack, "by_offset", None)
    if table is None:
        table = dict(zip(pack.offsets, pack.ids, strict=True))
        pack.by_offset = table  # type: ignore[attr-defined]
    return cast("bytes", table[offset])


def send_local(
    objects: DiskObjectStore,
    path: str,
    update_refs: Callable[[dict[Ref, ObjectID]], dict[Ref, ObjectID]],
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
        copy(objects, target.object_store, list(set(changed.values())), list(old.values()))
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
) -> set[bytes]:
    """Write what ``target`` lacks of ``wants`` (knowing it has ``haves``) from ``source``, a
    store on this machine, into ``target`` as one pack with its index; the (binary) ids of the
    objects written.

    The pack's index is made from the ids ``source``'s index claims: when ``source`` is
    someone else's, check the objects against their ids (see :func:`verify`) before trusting
    them."""
    from .pack import place_pack

    with Reader(source) as reader:
        bases: dict[bytes, bytes] = {}
        outgoing = Outgoing(reader, source, missing(reader, wants, haves, bases=bases), bases)
        if outgoing.count:
            place_pack(target, outgoing.write)
        return outgoing.ids


def verify(reader: Reader, object_id: bytes) -> bool:
    """Whether the object of binary id ``object_id`` is what its id says (its content hashes
    to it), as ``git index-pack`` checks what it receives.

    Raises:
        KeyError: there is no such object.
    """
    name = object_id.hex()
    size = streamable(reader.objects, name)
    if size is not None and size > BIG:  # a big blob: hashed as it streams, never held whole
        try:
            with open_blob(reader.objects, name, f"object {name}") as file:  # type: ignore[union-attr]
                while file.read(CHUNK):
                    pass
        except StoreError:
            return False
        return True
    kind, data = reader.raw_binary(object_id)
    return digest(kind, data) == object_id


def digest(kind: int, data: bytes) -> bytes:
    """The (binary) id of an object of type number ``kind`` and content ``data``."""
    found = hashlib.sha1(_NAMES[kind] + b" %d\0" % len(data))
    found.update(data)
    return found.digest()


def sender(
    objects: DiskObjectStore,
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
            wanted = missing(reader, wants, haves, bases=bases)
            outgoing = Outgoing(reader, objects, wanted, bases)
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
