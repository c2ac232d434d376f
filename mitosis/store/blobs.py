"""Blobs of any size, streamed into the store and out of it, never held whole in memory.

A file bigger than :data:`BIG` (a result of gigabytes, a large figure) is hashed and
zlib-compressed in chunks, straight from the file the trial process wrote, into a temporary file
of the object folder (``objects/tmp_mitosis_obj_*``), which is fsynced and then renamed to its
place ``objects/<id[:2]>/<id[2:]>``: no reader ever sees part of an object, and a writer killed
mid-way leaves only its temporary file (held under ``flock`` while written, so that ``mitosis
gc`` knows a dead writer's file and removes it). An object that exists already is not written
again: identical results are stored once.

Compression pays only where the data shrink: a sample of the first chunk is compressed first,
and unless it shrinks to half or less (random floats shrink by 5%, at 40 times the time), the
object is written with zlib's *stored* blocks (level 0: framing and a checksum, at the speed of
a copy). Hashing (SHA-1, the id) runs in a thread beside the writing and its Adler-32 (zlib's
trailer); all release the interpreter's lock. The file goes to disk as it is written (a sync
every 64 MiB), so the fsync before the rename is short.

Reading streams too (:func:`open_blob`): a loose object or a whole object in a pack is inflated
as it is read, checked against its id at the end. So is sending (:func:`pack_entry`): a big
loose blob becomes a pack entry whose bytes are produced as the pack is written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import os
import queue
import struct
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Protocol, cast

from ..exceptions import StoreError

if TYPE_CHECKING:
    from dulwich.object_store import DiskObjectStore
    from dulwich.objects import ObjectID
    from dulwich.pack import UnpackedObject

__all__ = [
    "BIG",
    "TEMP_PREFIX",
    "Readable",
    "generate_pack_data",
    "held_temporary",
    "is_big_loose",
    "loose_header",
    "open_blob",
    "out_of_space",
    "pack_entry",
    "packed_entry",
    "stored_size",
    "streamable",
    "write_blob",
    "write_bundle",
]

#: Blobs bigger than this are streamed and never delta-compressed (as git's
#: ``core.bigFileThreshold``, though smaller: a delta of two different results is never worth
#: the time).
BIG = 1 << 20
#: Temporary files of objects and packs being written begin with this (git's ``tmp_`` files are
#: removed by ``git prune`` too).
TEMP_PREFIX = "tmp_mitosis_"
#: What a temporary file is called between its creation and its lock (see held_temporary).
NEW = "new_"
CHUNK = 1 << 20
_SAMPLE = 256 << 10
#: Compress (zlib level 1) only when a sample of the data shrinks to this fraction or less.
_WORTH = 0.5
_STORED_MAX = 0xFFFF
_BLOB = 3
_DELTAS = (6, 7)
#: Chunks waiting for the hashing thread (so memory stays at a few chunks).
_QUEUED = 8
#: Chunks written between two syncs to disk of a big object (so the last one is short).
_SYNC_EVERY = 64
_READ_ONLY = 0o444
#: A loose object's file cannot be smaller than its content over this (zlib's best ratio).
_BEST_RATIO = 1032
_HEADER_READ = 512


# -- writing ---------------------------------------------------------------------------------


class Readable(Protocol):
    """What a blob is written from: a file, or anything with ``read``."""

    def read(self, count: int, /) -> bytes: ...


def _level(sample: bytes | memoryview) -> int:
    """zlib level 1 when a sample of the data shrinks to half or less, else 0 (stored)."""
    part = sample[:_SAMPLE]
    if not len(part):
        return 0
    return 1 if len(zlib.compress(part, 1)) <= len(part) * _WORTH else 0


def _stored(data: memoryview, final: bool = False) -> list[bytes | memoryview]:
    """``data`` as deflate stored blocks (level 0), ready for ``os.writev``."""
    parts: list[bytes | memoryview] = []
    for start in range(0, len(data), _STORED_MAX):
        piece = data[start : start + _STORED_MAX]
        last = final and start + _STORED_MAX >= len(data)
        parts.append(struct.pack("<BHH", int(last), len(piece), len(piece) ^ 0xFFFF))
        parts.append(piece)
    return parts


def _chunks(source: Readable | memoryview, size: int) -> Iterator[memoryview]:
    if isinstance(source, memoryview):
        for start in range(0, size, CHUNK):
            yield source[start : start + CHUNK]
        return
    left = size
    while left > 0:
        chunk = source.read(min(CHUNK, left))
        if not chunk:
            break
        left -= len(chunk)
        yield memoryview(chunk)


class _Hasher(threading.Thread):
    """SHA-1 (the object's id) of the chunks it is given, beside the thread that writes them
    (and sums their Adler-32, zlib's trailer)."""

    def __init__(self, header: bytes) -> None:
        super().__init__(daemon=True, name="mitosis-hash")
        self.sha = hashlib.sha1(header)
        self.queue: queue.Queue[memoryview | None] = queue.Queue(_QUEUED)

    def run(self) -> None:
        while (chunk := self.queue.get()) is not None:
            self.sha.update(chunk)

    def finish(self) -> None:
        self.queue.put(None)
        self.join()


def _write_all(fd: int, parts: list[bytes | memoryview]) -> None:
    """``os.writev`` until everything is written (it may write less than asked)."""
    while parts:
        written = os.writev(fd, parts[:1024])
        while parts and written >= len(parts[0]):
            written -= len(parts[0])
            parts.pop(0)
        if written:
            parts[0] = memoryview(parts[0])[written:]


def write_blob(
    objects_dir: str,
    source: Readable | bytes | memoryview,
    size: int,
    *,
    checkpoint: Callable[[str], None] | None = None,
) -> str:
    """Store ``size`` bytes read from ``source`` (a file, or bytes) as a loose blob, streamed.

    ``checkpoint`` is called with ``"stream"`` once the first chunk is written and with
    ``"streamed"`` before the object is renamed into place (the store's fault hook).

    Returns:
        The blob's id (40 hex digits).

    Raises:
        StoreError: the source did not hold ``size`` bytes.
        OSError: the store cannot be written (a full disk, a file size limit); nothing is left
            but, for a writer killed meanwhile, its temporary file.
    """
    data = memoryview(source) if isinstance(source, (bytes, memoryview)) else source
    header = b"blob %d\0" % size
    fd, temporary = held_temporary(objects_dir, "obj_")
    try:
        chunks = _chunks(data, size)
        first = next(chunks, memoryview(b""))
        level = _level(first)
        hasher = _Hasher(header)
        hasher.start()
        written = 0
        adler = zlib.adler32(header)
        try:
            compressor = zlib.compressobj(level) if level else None
            if compressor is None:
                _write_all(fd, [b"\x78\x01", *_stored(memoryview(header))])
            else:
                _write_all(fd, [compressor.compress(header)])
            for number, chunk in enumerate(_chained(first, chunks)):
                hasher.queue.put(chunk)
                written += len(chunk)
                if compressor is None:
                    adler = zlib.adler32(chunk, adler)
                    _write_all(fd, _stored(chunk))
                else:
                    _write_all(fd, [compressor.compress(chunk)])
                if number == 0 and checkpoint is not None:
                    checkpoint("stream")
                if number % _SYNC_EVERY == _SYNC_EVERY - 1:
                    os.fdatasync(fd)  # to disk as it goes, not all at the end
        finally:
            hasher.finish()
        if written != size:
            raise StoreError(
                f"a file to store changed while it was read: {written} bytes, not {size}"
            )
        if compressor is None:
            _write_all(fd, [b"\x01\x00\x00\xff\xff", struct.pack(">I", adler)])
        else:
            _write_all(fd, [compressor.flush()])
        os.fsync(fd)
        os.fchmod(fd, _READ_ONLY)
        blob_id = hasher.sha.hexdigest()
        if checkpoint is not None:
            checkpoint("streamed")
        final = os.path.join(objects_dir, blob_id[:2], blob_id[2:])
        os.makedirs(os.path.dirname(final), exist_ok=True)
        if os.path.exists(final):  # identical bytes stored before: keep them, freshened
            os.utime(final)
            os.remove(temporary)
        else:
            os.rename(temporary, final)
        return blob_id
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    finally:
        os.close(fd)


def held_temporary(folder: str | os.PathLike[str], kind: str) -> tuple[int, str]:
    """A new temporary file ``tmp_mitosis_<kind>*`` of ``folder``, open and held under
    ``flock``, so that ``mitosis gc`` leaves it alone while this process lives. It is made as
    ``tmp_mitosis_new_*`` and renamed once held: a file of the final name that nobody holds
    belongs to a writer that died."""
    fd, made = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX + NEW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = os.path.join(os.path.dirname(made), TEMP_PREFIX + kind + made.rpartition(NEW)[2])
        os.rename(made, path)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.remove(made)
        raise
    return fd, path


def _chained(first: memoryview, rest: Iterator[memoryview]) -> Iterator[memoryview]:
    if len(first):
        yield first
    yield from rest


# -- reading ---------------------------------------------------------------------------------


def _loose_path(objects_dir: str, blob_id: str) -> str:
    return os.path.join(objects_dir, blob_id[:2], blob_id[2:])


def loose_header(path: str) -> tuple[bytes, int] | None:
    """``(type, size)`` of a loose object from the first bytes of its file, or None when there
    is no such file (or it is no object)."""
    inflate = zlib.decompressobj()
    head = b""
    try:
        with open(path, "rb") as file:
            # a compressed block opens with its code tables: the header may need a few reads
            while b"\0" not in head and len(head) < 64:
                start = inflate.unconsumed_tail or file.read(_HEADER_READ)
                if not start:
                    break
                head += inflate.decompress(start, 64 - len(head))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except zlib.error:
        return None
    kind, space, rest = head.partition(b" ")
    size, nul, _ = rest.partition(b"\0")
    if not space or not nul or not size.isdigit():
        return None
    return kind, int(size)


def is_big_loose(objects_dir: str, blob_id: str, big: int = BIG) -> int | None:
    """The size of the loose blob ``blob_id`` when it is bigger than ``big``, else None (also
    when it is not loose). Most objects are told small by their file's size alone."""
    path = _loose_path(objects_dir, blob_id)
    try:
        if os.stat(path).st_size * _BEST_RATIO < big:
            return None
    except OSError:
        return None
    found = loose_header(path)
    if found is None or found[0] != b"blob" or found[1] <= big:
        return None
    return found[1]


class _Inflating(io.RawIOBase):
    """The content of a blob, inflated from a zlib stream as it is read, and checked against
    the blob's id once read to its end."""

    def __init__(
        self, file: IO[bytes], size: int, blob_id: str, where: str, *, loose: bool
    ) -> None:
        super().__init__()
        self._file = file
        self._z = zlib.decompressobj()
        self._left = size
        self._pending = memoryview(b"")
        self._sha = hashlib.sha1(b"blob %d\0" % size)
        self._id = blob_id
        self._where = where
        if loose:  # the object's header is inside its zlib stream: skip it
            head = b""
            while b"\0" not in head:
                more = self._inflate()
                if not more:
                    raise StoreError(f"{where} is damaged: git fsck tells more")
                head += more
            _, _, rest = head.partition(b"\0")
            self._pending = memoryview(rest)
        self.size = size

    def readable(self) -> bool:
        return True

    def _inflate(self) -> bytes:
        try:
            if self._z.unconsumed_tail:
                return self._z.decompress(self._z.unconsumed_tail, CHUNK)
            raw = self._file.read(CHUNK)
            if not raw:
                return b""
            return self._z.decompress(raw, CHUNK)
        except zlib.error as exc:
            raise StoreError(f"{self._where} is damaged ({exc}): git fsck tells more") from None

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not len(self._pending) and self._left > 0:
            more = self._inflate()
            if not more:
                raise StoreError(f"{self._where} ends early: git fsck tells more")
            self._pending = memoryview(more)
        count = min(len(buffer), len(self._pending), self._left)
        if count == 0:
            return 0
        piece = self._pending[:count]
        buffer[:count] = piece
        self._sha.update(piece)
        self._pending = self._pending[count:]
        self._left -= count
        if self._left == 0 and self._sha.hexdigest() != self._id:
            raise StoreError(f"{self._where} does not match its id: git fsck tells more")
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


def packed_entry(objects: DiskObjectStore, blob_id: str) -> tuple[str, int, int, int] | None:
    """``(pack file, offset of the data, type, size)`` of an object in a pack (for a delta, its
    type in the pack and the size of the object it makes), or None."""
    from dulwich.objects import hex_to_sha

    raw_id = hex_to_sha(cast("ObjectID", blob_id.encode()))
    for pack in objects.packs:
        try:
            offset = pack.index.object_offset(raw_id)
        except KeyError:
            continue
        path = str(pack._data_path)  # dulwich names the pack file only here
        with open(path, "rb") as file:
            file.seek(offset)
            head = file.read(32)
            kind = (head[0] >> 4) & 7
            size = head[0] & 15
            shift, at = 4, 0
            while head[at] & 0x80:
                at += 1
                size |= (head[at] & 0x7F) << shift
                shift += 7
            at += 1
            if kind in _DELTAS:  # the size that counts is the object's, in the delta's header
                if kind == 7:
                    at += 20
                else:
                    while head[at] & 0x80:
                        at += 1
                    at += 1
                file.seek(offset + at)
                delta = zlib.decompressobj().decompress(file.read(_HEADER_READ * 8), 32)
                _, pos = _varint(delta, 0)
                size, _ = _varint(delta, pos)
        return path, offset + at, kind, size
    return None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def stored_size(objects: DiskObjectStore, blob_id: str) -> int | None:
    """The size of a blob in the store (loose or packed), or None when the store lacks it."""
    found = loose_header(_loose_path(os.fspath(objects.path), blob_id))
    if found is not None:
        return found[1]
    entry = packed_entry(objects, blob_id)
    return None if entry is None else entry[3]


def streamable(objects: DiskObjectStore, object_id: str) -> int | None:
    """The size of ``object_id`` when it is a blob that :func:`open_blob` streams (loose, or
    whole in a pack), else None (another kind of object, a delta, or not here)."""
    found = loose_header(_loose_path(os.fspath(objects.path), object_id))
    if found is not None:
        return found[1] if found[0] == b"blob" else None
    entry = packed_entry(objects, object_id)
    return entry[3] if entry is not None and entry[2] == _BLOB else None


def open_blob(objects: DiskObjectStore, blob_id: str, where: str) -> IO[bytes] | None:
    """A blob's content as a file read as it goes, or None when the store lacks it.

    Loose objects and whole objects in packs stream; a blob kept as a delta (small, since
    mitosis never deltifies big blobs, though ``git gc`` may) is read whole.
    """
    path = _loose_path(os.fspath(objects.path), blob_id)
    found = loose_header(path)
    if found is not None:
        if found[0] != b"blob":
            raise StoreError(f"{where} names {blob_id}, which is no blob")
        raw = _Inflating(open(path, "rb"), found[1], blob_id, where, loose=True)  # noqa: SIM115
        return io.BufferedReader(raw, CHUNK)
    entry = packed_entry(objects, blob_id)
    if entry is None:
        return None
    pack, offset, kind, size = entry
    if kind not in (_BLOB, *_DELTAS):
        raise StoreError(f"{where} names {blob_id}, which is no blob")
    if kind == _BLOB:
        file = open(pack, "rb")  # noqa: SIM115 - closed with the reader
        file.seek(offset)
        return io.BufferedReader(_Inflating(file, size, blob_id, where, loose=False), CHUNK)
    from dulwich.objects import Blob

    obj = objects[cast("ObjectID", blob_id.encode())]
    if not isinstance(obj, Blob):
        raise StoreError(f"{where} names {blob_id}, which is no blob")
    return io.BytesIO(obj.as_raw_string())


# -- sending -----------------------------------------------------------------------------------


def pack_entry(
    objects: DiskObjectStore,
    blob_id: str,
    size: int,
    checkpoint: Callable[[str], None] | None = None,
) -> UnpackedObject:
    """A pack entry for the big loose blob ``blob_id`` whose bytes (entry header, then the
    content deflated afresh) are made as the pack is written: dulwich's pack writers take an
    entry's ``comp_chunks`` as they come. ``checkpoint`` is called with ``"stream"`` once the
    first chunk is out."""
    from dulwich.objects import hex_to_sha
    from dulwich.pack import UnpackedObject, pack_object_header

    entry = UnpackedObject(
        _BLOB, sha=hex_to_sha(cast("ObjectID", blob_id.encode())), decomp_len=size
    )
    header = bytes(pack_object_header(_BLOB, None, size, objects.object_format))
    chunks = _entry_chunks(objects, blob_id, header, checkpoint)
    entry.comp_chunks = chunks  # type: ignore[assignment]
    return entry


def _entry_chunks(
    objects: DiskObjectStore,
    blob_id: str,
    header: bytes,
    checkpoint: Callable[[str], None] | None,
) -> Iterable[bytes]:
    yield header
    where = f"object {blob_id}"
    reader = open_blob(objects, blob_id, where)
    if reader is None:
        raise StoreError(f"{where} disappeared while it was being sent")
    with reader:
        first = reader.read(CHUNK)
        compressor = zlib.compressobj(_level(first))
        chunk = first
        while chunk:
            out = compressor.compress(chunk)
            if out:
                yield out
            if chunk is first and checkpoint is not None:
                checkpoint("stream")
            chunk = reader.read(CHUNK)
        yield compressor.flush()


def generate_pack_data(
    objects: DiskObjectStore,
    have: Iterable[ObjectID],
    want: Iterable[ObjectID],
    *,
    shallow: Iterable[ObjectID] | None = None,
    progress: Callable[..., None] | None = None,
    ofs_delta: bool = True,
) -> tuple[int, Iterator[UnpackedObject]]:
    """What to send for ``want`` to a side that has ``have``, as dulwich's own
    ``generate_pack_data`` (its deltas between packed objects reused), but big loose blobs
    are streamed (:func:`pack_entry`): never read whole, never delta-compressed.

    dulwich's pack writers (``send_pack`` to a server, a bundle, a local pack) write an entry's
    ``comp_chunks`` as they come, so a push or a bundle holds a few chunks of each big blob.
    """
    from dulwich.object_store import MissingObjectFinder
    from dulwich.pack import generate_unpacked_objects

    finder = MissingObjectFinder(
        objects, haves=have, wants=want, shallow=set(shallow or ()), progress=progress
    )
    remote_has = finder.get_remote_has()
    rest = []
    big: list[tuple[str, int]] = []
    folder = os.fspath(objects.path)
    for sha, hint in finder:
        size = is_big_loose(folder, sha.decode()) if hint and hint[0] == _BLOB else None
        if size is None:
            rest.append((sha, hint))
        else:
            big.append((sha.decode(), size))

    def entries() -> Iterator[UnpackedObject]:
        yield from generate_unpacked_objects(
            objects, rest, progress=progress, ofs_delta=ofs_delta, other_haves=remote_has
        )
        for blob_id, size in big:
            yield pack_entry(objects, blob_id, size)

    return len(rest) + len(big), entries()


def write_bundle(
    file: IO[bytes],
    objects: DiskObjectStore,
    refs: dict[bytes, ObjectID],
    prerequisites: Iterable[ObjectID],
) -> None:
    """A git bundle (v2) of ``refs``, without what ``prerequisites`` reach, its pack streamed
    (see :func:`generate_pack_data`; dulwich's own bundle writer holds every object)."""
    from dulwich.pack import write_pack_data

    needed = list(prerequisites)
    file.write(b"# v2 git bundle\n")
    for sha in needed:
        file.write(b"-" + sha + b" \n")
    for ref, sha in sorted(refs.items()):
        file.write(sha + b" " + ref + b"\n")
    file.write(b"\n")
    count, records = generate_pack_data(objects, needed, list(refs.values()))
    write_pack_data(file.write, records, num_records=count, object_format=objects.object_format)


def out_of_space(exc: OSError) -> bool:
    """Whether an error says the disk (or a file size limit) is full."""
    return exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
