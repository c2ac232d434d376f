"""Receiving a pack of results as a stream: each object becomes a loose object, big blobs
streamed into theirs (see :mod:`mitosis.store.blobs`), never held whole.

dulwich's own fetch indexes a received pack by inflating every object whole (twice the size of
the biggest in memory). For the few objects a results fetch brings (a commit, a tree and the
trial's blobs), mitosis receives the pack into a temporary file and reads it entry by entry, as
``git unpack-objects`` does: whole objects are written as they are inflated; deltas (small
objects; a thin pack's may name objects the store has) are resolved in memory.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, cast

from ..exceptions import StoreError
from .blobs import BIG, CHUNK, held_temporary, write_blob
from .repo import Store

if TYPE_CHECKING:
    from dulwich.objects import ObjectID

__all__ = ["bundle_header", "fetch_streamed", "unpack", "unpack_bundle"]

_OFS_DELTA, _REF_DELTA, _BLOB = 6, 7, 3


def fetch_streamed(
    st: Store,
    client: Any,
    path: str | bytes,
    determine_wants: Callable[..., list[ObjectID]],
    progress: Callable[[bytes], None] | None = None,
) -> Any:
    """``client.fetch_pack`` into a temporary file of the pack folder, then :func:`unpack`;
    dulwich's ``FetchPackResult`` (the remote's refs)."""
    objects = st.repo.object_store
    fd, temporary = held_temporary(objects.pack_dir, "incoming_")
    try:
        with os.fdopen(fd, "w+b") as file:
            result = client.fetch_pack(
                path, determine_wants, st.repo.get_graph_walker(), file.write, progress=progress
            )
            if file.tell():
                file.seek(0)
                unpack(st, file)
    finally:
        os.remove(temporary)
    return result


class _Stream:
    """The bytes of a pack file, read in order, with the offset of the next one."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.buffer = b""
        self.offset = 0

    def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            more = self.file.read(CHUNK)
            if not more:
                raise StoreError("a received pack ends early")
            self.buffer += more
        taken, self.buffer = self.buffer[:count], self.buffer[count:]
        self.offset += count
        return taken

    def byte(self) -> int:
        return self.read(1)[0]

    def inflate(self, size: int) -> Iterator[bytes]:
        """The content of the zlib stream at the offset, ``size`` bytes, in chunks."""
        inflater = zlib.decompressobj()
        made = 0
        while not inflater.eof:
            feed = self.buffer or self.file.read(CHUNK)
            try:
                data = inflater.decompress(feed, CHUNK)
            except zlib.error as exc:
                raise StoreError(f"a received pack is damaged: {exc}") from None
            left = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
            self.offset += len(feed) - len(left)
            self.buffer = left
            if not data and not feed:
                raise StoreError("a received pack ends early")
            made += len(data)
            if data:
                yield data
        if made != size:
            raise StoreError(f"a received pack's object holds {made} bytes, not {size}")


class _Reader:
    """A file-like view of an entry's content, for :func:`write_blob`."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.left = b""

    def read(self, count: int) -> bytes:
        while len(self.left) < count:
            more = next(self.chunks, b"")
            if not more:
                break
            self.left += more
        taken, self.left = self.left[:count], self.left[count:]
        return taken


def unpack(st: Store, file: IO[bytes]) -> int:
    """Store every object of the pack in ``file`` as a loose object; how many.

    Raises:
        StoreError: the pack is damaged, or a delta's base is nowhere.
    """
    from dulwich.objects import ShaFile, sha_to_hex
    from dulwich.pack import apply_delta

    objects = st.repo.object_store
    stream = _Stream(file)
    magic, version, count = cast("tuple[bytes, int, int]", struct.unpack(">4sLL", stream.read(12)))
    if magic != b"PACK" or version not in (2, 3):
        raise StoreError("a received pack is not a git pack")
    stored: dict[int, bytes] = {}  # offset: id (hex) of the object, stored already
    # deltas whose base comes later in the pack: by the base's id or offset, with their own
    waiting: dict[int | bytes, list[tuple[bytes, int]]] = {}

    def store(kind: int, data: bytes, at: int) -> None:
        obj = ShaFile.from_raw_string(kind, data)
        st.add(obj)
        stored[at] = obj.id
        for key in (obj.id, at):
            for delta, delta_at in waiting.pop(key, []):
                store(kind, b"".join(apply_delta(data, delta)), delta_at)

    for _ in range(count):
        at = stream.offset
        first = stream.byte()
        kind, size, shift = (first >> 4) & 7, first & 15, 4
        while first & 0x80:
            first = stream.byte()
            size |= (first & 0x7F) << shift
            shift += 7
        base: int | bytes | None = None
        if kind == _OFS_DELTA:
            byte = stream.byte()
            distance = byte & 0x7F
            while byte & 0x80:
                byte = stream.byte()
                distance = ((distance + 1) << 7) | (byte & 0x7F)
            base = at - distance
        elif kind == _REF_DELTA:
            base = sha_to_hex(cast("Any", stream.read(20)))
        if kind == _BLOB and size > BIG:  # streamed into its loose object
            blob_id = write_blob(os.fspath(objects.path), _Reader(stream.inflate(size)), size)
            stored[at] = blob_id.encode()
            continue
        data = b"".join(stream.inflate(size))
        if base is None:
            store(kind, data, at)
            continue
        found = _base(st, base, stored)
        if found is None:  # its base comes later in the pack (or is nowhere)
            waiting.setdefault(base, []).append((data, at))
            continue
        base_kind, source = found
        store(base_kind, b"".join(apply_delta(source, data)), at)
    if waiting:
        key = next(iter(waiting))
        missing = key.decode() if isinstance(key, bytes) else f"the entry at offset {key}"
        raise StoreError(f"a received pack holds a delta against {missing}, which is nowhere")
    return count


def _base(st: Store, base: int | bytes, stored: dict[int, bytes]) -> tuple[int, bytes] | None:
    """A delta's base, read back from the store: earlier in the pack (stored already), or, for
    a thin pack, an object the store had; None when it is not there (yet)."""
    found = stored.get(base) if isinstance(base, int) else base
    if found is None:
        return None
    try:
        kind, data = st.repo.object_store.get_raw(cast("ObjectID", found))
        return kind, data
    except KeyError:
        return None
    except zlib.error:  # over dulwich's limit for loose objects: a big blob
        reader = st.open_blob(found.decode(), f"object {found.decode()}")
        if reader is None:  # pragma: no cover - get_raw found it a moment ago
            return None
        with reader:
            return _BLOB, reader.read()


def bundle_header(path: str) -> tuple[list[ObjectID], dict[bytes, ObjectID]]:
    """The prerequisites and refs of the git bundle (v2 or v3) at ``path``, read from its
    header alone (dulwich's ``read_bundle`` reads the whole pack into memory).

    Raises:
        StoreError: the file is no bundle.
    """
    prerequisites: list[ObjectID] = []
    refs: dict[bytes, ObjectID] = {}
    with open(path, "rb") as file:
        if file.readline().rstrip(b"\n") not in (b"# v2 git bundle", b"# v3 git bundle"):
            raise StoreError(f"{path} is not a git bundle")
        while line := file.readline():
            line = line.rstrip(b"\n")
            if not line:
                return prerequisites, refs
            if line.startswith(b"@"):
                continue  # a v3 capability
            if line.startswith(b"-"):
                prerequisites.append(cast("ObjectID", line[1:41]))
            else:
                sha, _, ref = line.partition(b" ")
                refs[ref] = cast("ObjectID", sha)
    raise StoreError(f"{path} ends before its pack")


def unpack_bundle(st: Store, path: str) -> int:
    """Store every object of the git bundle at ``path`` (its pack, after the header) as
    :func:`unpack` does; how many."""
    with open(path, "rb") as file:
        while file.readline() not in (b"\n", b""):
            pass  # the header: signature, capabilities, prerequisites, refs, an empty line
        return unpack(st, file)
