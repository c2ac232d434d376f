"""Reading a store's objects at git's pace: its pack files read directly, inflated entries
cached, so that a delta chain is inflated once however many of its versions are read (dulwich's
pack reader inflates each chain from its start for every object). Used by what a push or a pull
sends (:mod:`mitosis.store.send`) and by the check of what arrives
(:mod:`mitosis.store.incoming`).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import mmap
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from hashlib import sha1
from typing import TYPE_CHECKING, cast

from ..exceptions import StoreError
from .blobs import BIG, CHUNK, is_big_loose, open_blob

if TYPE_CHECKING:
    from dulwich.object_store import DiskObjectStore
    from dulwich.objects import ObjectID

__all__ = [
    "Entries",
    "Pack",
    "Reader",
    "binary_ids",
    "collector_paused",
    "digest",
    "id_at",
    "links",
    "tree_order",
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
#: Inflated entries kept, in bytes; the cache starts anew past it.
_CACHE_BYTES = 64 << 20
#: Loose objects' contents kept from the walk for the pack sent, in bytes (a loose object is
#: a file to open and inflate; at 10,000 loose trials their trees and commits take ~100 MB).
_KEPT_BYTES = 256 << 20
_PARSED = 1024


class Pack:
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
        offsets = list(struct.unpack_from(f">{count}L", index, crcs + 4 * count))
        large = crcs + 8 * count
        if offsets and max(offsets) & 0x80000000:  # a pack over 2 GiB: its big offsets
            for i, offset in enumerate(offsets):
                if offset & 0x80000000:
                    at = large + 8 * (offset & 0x7FFFFFFF)
                    offsets[i] = struct.unpack_from(">Q", index, at)[0]
        self.offsets = offsets
        self.index = dict(zip(self.ids, offsets, strict=True))  # id (binary): offset
        self.key = 0  # added to an offset, the key of its entry in a reader's cache
        self.file = open(path + ".pack", "rb")  # noqa: SIM115 - closed by close()
        self.data = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ)

    def close(self) -> None:
        self.data.close()
        self.file.close()

    @functools.cached_property
    def ends(self) -> dict[int, int]:
        """Where each entry ends (the next entry's offset, or the pack's checksum's)."""
        ordered = sorted(self.offsets)
        return dict(zip(ordered, [*ordered[1:], len(self.data) - 20], strict=True))

    @functools.cached_property
    def by_offset(self) -> dict[int, bytes]:
        """The (binary) id of the entry at each offset."""
        return dict(zip(self.offsets, self.ids, strict=True))

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

    def __init__(
        self,
        objects: DiskObjectStore,
        *more: DiskObjectStore,
        strict: bool = False,
        claimed: set[bytes] | None = None,
    ) -> None:
        self.objects = objects
        # strict: each entry must be exactly what its header says (a pack that came from
        # elsewhere, indexed by the ids and offsets that elsewhere claimed)
        self.strict = strict
        # the (binary) ids that a pack's index claims, unchecked: each is hashed when its
        # entry is first read, and taken out (see :meth:`entry_at`)
        self.claimed: set[bytes] = claimed if claimed is not None else set()
        self.packs: list[Pack] = []
        self._where: dict[bytes, tuple[Pack, int]] | None = None
        for store in (objects, *more):
            self.add_packs(os.fspath(store.pack_dir))
        # by pack and offset (:attr:`Pack.key` plus the offset), or by id (a loose object)
        self.cache: dict[int | bytes, tuple[int, bytes]] = {}
        self.held = 0
        # loose objects read, kept until taken (see :meth:`take`), up to _KEPT_BYTES
        self.kept: dict[bytes, tuple[int, bytes]] = {}
        self.kept_bytes = 0
        self.parsed: dict[bytes, list[tuple[bytes, int, bytes]]] = {}

    def add_packs(self, folder: str, names: Iterable[str] | None = None) -> list[Pack]:
        """Read the packs of ``folder`` (those named, or all); the new ones."""
        if names is None:
            names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        added = []
        for name in names:
            if name.endswith(".idx") and name.startswith("pack-"):
                stem = os.path.join(folder, name[: -len(".idx")])
                if not os.path.exists(stem + ".pack"):
                    continue
                added.append(Pack(stem))
        for pack in added:
            pack.key = (len(self.packs) + 1) << 48
            self.packs.append(pack)
        self._where = None
        return added

    def locate(self, object_id: bytes) -> tuple[Pack, int] | None:
        """The pack and offset of the object of binary id ``object_id`` (from the first pack
        that has it), or None: it is loose, or nowhere."""
        for pack in self.packs:
            offset = pack.index.get(object_id)
            if offset is not None:
                return pack, offset
        return None

    @property
    def where(self) -> dict[bytes, tuple[Pack, int]]:
        """Every packed object's pack and offset, by binary id (as :meth:`locate` finds them);
        made when first asked for."""
        if self._where is None:
            found: dict[bytes, tuple[Pack, int]] = {}
            for pack in reversed(self.packs):  # an object in two packs is read from the first
                found.update(zip(pack.ids, zip(itertools.repeat(pack), pack.offsets), strict=True))
            self._where = found
        return self._where

    def close(self) -> None:
        for pack in self.packs:
            pack.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def entry_at(
        self, pack: Pack, offset: int, object_id: bytes | None = None
    ) -> tuple[int, bytes]:
        """The type number and content of the entry at ``offset`` of ``pack`` (whose binary id
        is ``object_id``, when the caller knows it).

        Raises:
            StoreError: the pack is damaged (or its delta chains deeper than git's).
        """
        found = self.cache.get(pack.key + offset)
        if found is not None:
            return found
        kind, size, base, start = pack.header(offset)
        if base is None:  # a whole object, the usual case
            if kind not in _NAMES:
                raise StoreError(f"the pack {pack.file.name} has an entry of no git type")
            return self._made(
                pack, offset, kind, self._inflate(pack, offset, start, size), object_id
            )
        chain: list[tuple[Pack, int, bytes]] = []  # deltas, the last one's base first
        while True:
            if len(chain) > _DEEPEST:
                raise StoreError(f"the pack {pack.file.name} has a delta chain deeper than git's")
            chain.append((pack, offset, self._inflate(pack, offset, start, size)))
            if isinstance(base, int):
                if not 12 <= base < offset:
                    raise StoreError(f"the pack {pack.file.name} has a delta that is no git's")
                offset = base
            else:
                where = self.locate(base)
                if where is None:
                    found = self.raw_binary(base)
                    break
                pack, offset = where
            found = self.cache.get(pack.key + offset)
            if found is not None:
                break
            kind, size, base, start = pack.header(offset)
            if base is None:
                if kind not in _NAMES:
                    raise StoreError(f"the pack {pack.file.name} has an entry of no git type")
                found = self._made(pack, offset, kind, self._inflate(pack, offset, start, size))
                break
        from dulwich.pack import apply_delta

        kind, data = found
        for pack, offset, delta in reversed(chain):
            data = b"".join(apply_delta(data, delta))
            found = self._made(pack, offset, kind, data)
        return found

    def _inflate(self, pack: Pack, offset: int, start: int, size: int) -> bytes:
        """The inflated bytes of the entry at ``offset`` of ``pack`` (its compressed data at
        ``start``, ``size`` bytes inflated as its header says).

        Raises:
            StoreError: they are not one zlib stream (when :attr:`strict`: exactly one, of
                ``size`` bytes).
        """
        try:
            span = pack.data[start : pack.ends[offset]]
            if not self.strict:
                return zlib.decompress(span)
            inflater = zlib.decompressobj()  # the entry is exactly one zlib stream of its size
            data = inflater.decompress(span)
            if not inflater.eof or inflater.unused_data or len(data) != size:
                raise zlib.error(f"the entry at {offset} is not what its header says")
            return data
        except (zlib.error, KeyError, IndexError) as exc:
            raise StoreError(f"the pack {pack.file.name} is damaged: {exc}") from None

    def _made(
        self, pack: Pack, offset: int, kind: int, data: bytes, object_id: bytes | None = None
    ) -> tuple[int, bytes]:
        """The object just inflated at ``offset`` of ``pack`` (of binary id ``object_id``, when
        known), kept; checked against its id when that id is one of :attr:`claimed`.

        Raises:
            StoreError: it is not what its id says.
        """
        claimed = self.claimed
        if claimed:
            if object_id is None:
                object_id = pack.by_offset[offset]
            if object_id in claimed:
                hashed = sha1(b"%s %d\0" % (_NAMES[kind], len(data)))
                hashed.update(data)  # not copied after its header first: trees of 8 kB
                if hashed.digest() != object_id:
                    raise StoreError(f"{object_id.hex()} is not what its id says")
                claimed.discard(object_id)
        if self.held > _CACHE_BYTES:
            self.cache.clear()
            self.held = 0
        found = self.cache[pack.key + offset] = (kind, data)
        self.held += len(data)
        return found

    def _keep(self, key: int | bytes, kind: int, data: bytes) -> tuple[int, bytes]:
        if self.held > _CACHE_BYTES:
            self.cache.clear()
            self.held = 0
        found = self.cache[key] = (kind, data)
        self.held += len(data)
        return found

    def raw_binary(self, object_id: bytes, keep: bool = True) -> tuple[int, bytes]:
        """The type number and content of the object of binary id ``object_id`` (a loose one
        kept for :meth:`take`, unless ``keep`` is false).

        Raises:
            KeyError: the store has no such object.
        """
        for pack in self.packs:  # as locate() finds it
            offset = pack.index.get(object_id)
            if offset is not None:
                return self.entry_at(pack, offset, object_id)
        cached = self.cache.get(object_id)
        if cached is not None:
            return cached
        name = object_id.hex()
        try:
            with open(f"{self.objects.path}/{name[:2]}/{name[2:]}", "rb") as file:
                data = zlib.decompress(file.read())
        except (OSError, zlib.error):  # not loose here (an alternate's), or big: dulwich's way
            hex_id = cast("ObjectID", name.encode())
            try:
                return self.objects.get_raw(hex_id)
            except KeyError:  # a packer moved it into a pack meanwhile: look again
                return self.objects.get_raw(hex_id)
        header, _, body = data.partition(b"\0")
        found = self._keep(object_id, _TYPES[header.partition(b" ")[0]], body)
        if keep and self.kept_bytes < _KEPT_BYTES:
            self.kept[object_id] = found
            self.kept_bytes += len(body)
        return found

    def take(self, object_id: bytes) -> tuple[int, bytes]:
        """:meth:`raw_binary`, for the last time: a loose object read before (by the walk that
        found what to send) is not read from its file again."""
        kept = self.kept.pop(object_id, None)
        if kept is None:
            return self.raw_binary(object_id, keep=False)
        found = kept
        self.kept_bytes -= len(found[1])
        return self._keep(object_id, *found)

    def raw(self, object_id: bytes) -> tuple[int, bytes]:
        """:meth:`raw_binary` of a hex id.

        Raises:
            KeyError: the store has no such object, or ``object_id`` is no object's id (40
                hex digits: a commit's text names its parents and tree, whatever they are).
        """
        try:
            binary = bytes.fromhex(object_id.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise KeyError(object_id) from None
        if len(binary) != 20:
            raise KeyError(object_id)
        return self.raw_binary(binary)

    def tree(self, tree_id: bytes, raw: bytes | None = None) -> Entries:
        """The entries ``(name, mode, hex id)`` of the tree ``tree_id`` (hex), parsed strictly
        (from ``raw``, its content, when given).

        Raises:
            KeyError: the store has no such object; ObjectFormatException: it is malformed.
        """
        found = self.parsed.get(tree_id)
        if found is None:
            if raw is None:
                kind, raw = self.raw(tree_id)
                if kind != _TREE:
                    from dulwich.errors import ObjectFormatException

                    raise ObjectFormatException(f"{tree_id.decode()} is not a tree")
            found = list(_parse_tree()(raw, 20, strict=True))
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


@functools.cache
def _parse_tree() -> Callable[..., Iterable[tuple[bytes, int, bytes]]]:
    """dulwich's parser of a tree's content (its C one when built), imported once."""
    from dulwich.objects import parse_tree

    return parse_tree


def tree_order(entry: tuple[bytes, int, bytes]) -> bytes:
    """An entry's place in a tree, as git sorts them: a folder's name as if it ended in /."""
    return entry[0] + b"/" if entry[1] == _DIR else entry[0]


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


def verify(reader: Reader, object_id: bytes) -> bool:
    """Whether the object of binary id ``object_id`` is what its id says (its content hashes
    to it), as ``git index-pack`` checks what it receives.

    Raises:
        KeyError: there is no such object.
    """
    name = object_id.hex()
    where = reader.locate(object_id)
    if where is not None:
        kind, size, base, _ = where[0].header(where[1])
        big = base is None and kind == _BLOB and size > BIG
    else:
        big = is_big_loose(os.fspath(reader.objects.path), name) is not None
    if big:  # a big blob: hashed as it streams, never held whole
        try:
            with open_blob(reader.objects, name, f"object {name}") as file:  # type: ignore[union-attr]
                while file.read(CHUNK):
                    pass
        except StoreError:
            return False
        return True
    if object_id in reader.claimed:  # checked as it is read (see Reader.claimed)
        try:
            reader.raw_binary(object_id)
        except StoreError:
            return False
        return object_id not in reader.claimed
    kind, data = reader.raw_binary(object_id)
    return digest(kind, data) == object_id


def digest(kind: int, data: bytes) -> bytes:
    """The (binary) id of an object of type number ``kind`` and content ``data``."""
    return sha1(b"%s %d\0%s" % (_NAMES[kind], len(data), data)).digest()


def id_at(pack: Pack, offset: int) -> bytes:
    """The id of the entry at ``offset`` of ``pack``."""
    return pack.by_offset[offset]


def binary_ids(hex_ids: Iterable[bytes]) -> Iterator[bytes]:
    """The binary ids of ``hex_ids`` (hex, 40 digits each), converted in one call."""
    joined = bytes.fromhex(b"".join(hex_ids).decode())
    return (joined[at : at + 20] for at in range(0, len(joined), 20))


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused, then as it was: a walk of a big history makes
    hundreds of thousands of small objects that form no cycle, and the collector's passes over
    them took a sixteenth of a pull's time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
