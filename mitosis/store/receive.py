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

__all__ = ["fetch_streamed", "unpack"]

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
    small: dict[int, tuple[int, bytes]] = {}  # offset: type and content, for deltas
    big: dict[int, str] = {}  # offset: id of a big blob, stored already
    ids: dict[bytes, int] = {}  # id (hex): offset
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
            big[at] = blob_id
            ids[blob_id.encode()] = at
            continue
        data = b"".join(stream.inflate(size))
        if base is not None:
            kind, source = _base(st, base, small, big, ids)
            data = b"".join(apply_delta(source, data))
        obj = ShaFile.from_raw_string(kind, data)
        st.add(obj)
        small[at] = (kind, data)
        ids[obj.id] = at
    return count


def _base(
    st: Store,
    base: int | bytes,
    small: dict[int, tuple[int, bytes]],
    big: dict[int, str],
    ids: dict[bytes, int],
) -> tuple[int, bytes]:
    """A delta's base: earlier in the pack, or (a thin pack's) in the store."""
    at = base if isinstance(base, int) else ids.get(base)
    if at in small:
        return small[at]
    blob_id = big.get(at) if at is not None else None
    if blob_id is not None:  # a delta against a big blob: git makes them rarely
        reader = st.open_blob(blob_id, f"object {blob_id}")
        assert reader is not None
        with reader:
            return _BLOB, reader.read()
    if isinstance(base, bytes):
        try:
            return st.repo.object_store.get_raw(cast("ObjectID", base))
        except KeyError:
            pass
    shown = base.decode() if isinstance(base, bytes) else f"at offset {base}"
    raise StoreError(f"a received pack holds a delta against {shown}, which is nowhere")
