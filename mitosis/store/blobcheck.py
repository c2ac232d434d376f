"""The blobs of a pack checked against their ids in a process of their own, while a pull's
history walk checks the commits and trees it copied (see :mod:`mitosis.store.incoming`).

Standard library only, and run by its path (``python -I blobcheck.py BIG OUT PACK...``, each
``PACK`` a pack's path without ``.pack``), so that it starts in a few milliseconds. For each pack,
in the pack's order (a delta's base before it, as git's index-pack reads a pack), every entry
whose delta chain ends in a blob of at most ``BIG`` bytes (bigger ones are streamed by the
caller) is inflated strictly (exactly one zlib stream, of the size its header says), its delta
applied, and its content hashed and compared with the id that the pack's index gives its offset.

Appends the ids of the blobs that are what they say (20 bytes each) to the file ``OUT`` as it
goes, a few hundred at a time (its caller may stop it early, and take what it has checked), and
exits 0 once it has checked them all; 3 (:data:`WRONG`) at the first entry that is not, or
cannot be read, having written what is wrong to its standard error. Whatever it does not vouch
for (an entry of another kind, a delta whose base is not in the pack, an id that shares its
offset with another, anything when it fails otherwise) its caller checks itself.
"""

from __future__ import annotations

import mmap
import operator
import re
import struct
import sys
import zlib
from collections.abc import Callable
from hashlib import sha1
from typing import BinaryIO

#: The exit status that says an entry is not what the pack's index says.
WRONG = 3
_BLOB, _OFS_DELTA, _REF_DELTA = 3, 6, 7
#: The type number in an entry's first byte, by its value.
_KIND = bytes((byte >> 4) & 7 for byte in range(256))
#: The entries looked at one by one: blobs and deltas.
_LOOKED_AT = re.compile(b"[\x03\x06\x07]")
#: The ids written at once.
_BATCH = 256
#: Inflated blobs kept as delta bases, in bytes; the cache starts anew past it.
_CACHE_BYTES = 32 << 20


class Wrong(Exception):
    """An entry that is not what the pack's index says (its id, hex, and why)."""


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """A delta's size field at ``at``: its value, and where the next field starts."""
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _native() -> Callable[[bytes, bytes], bytes]:
    """dulwich's delta applier (C) when it can be imported, else :func:`patched`."""
    try:
        from dulwich._pack import apply_delta  # type: ignore[import-not-found]
    except ImportError:
        return patched
    return lambda base, delta: b"".join(apply_delta(base, delta))


def patched(base: bytes, delta: bytes) -> bytes:
    """``base`` with git's ``delta`` applied.

    Raises:
        ValueError, IndexError: the delta is not one of ``base``.
    """
    size, at = _varint(delta, 0)
    if size != len(base):
        raise ValueError("the delta is not one of its base (another size)")
    size, at = _varint(delta, at)
    parts = []
    end = len(delta)
    while at < end:
        op = delta[at]
        at += 1
        if op & 0x80:  # copy a span of the base
            offset = length = 0
            for bit in range(4):
                if op & (1 << bit):
                    offset |= delta[at] << (8 * bit)
                    at += 1
            for bit in range(3):
                if op & (1 << (4 + bit)):
                    length |= delta[at] << (8 * bit)
                    at += 1
            length = length or 0x10000
            if offset + length > len(base):
                raise ValueError("the delta copies beyond its base")
            parts.append(base[offset : offset + length])
        elif op:  # insert the next op bytes
            if at + op > end:
                raise ValueError("the delta ends within an insertion")
            parts.append(delta[at : at + op])
            at += op
        else:
            raise ValueError("the delta has an instruction of no git's")
    result = b"".join(parts)
    if len(result) != size:
        raise ValueError("the delta makes an object of another size than it says")
    return result


_apply: Callable[[bytes, bytes], bytes]


class _Pack:
    """One pack and its index (version 2), its entries' headers read in the pack's order."""

    def __init__(self, path: str) -> None:
        with open(path + ".idx", "rb") as file:
            index = file.read()
        if index[:8] != b"\xfftOc\x00\x00\x00\x02":
            raise OSError(f"{path}.idx is not a version 2 pack index")
        count = struct.unpack_from(">L", index, 8 + 255 * 4)[0]
        start = 8 + 256 * 4
        names = index[start : start + 20 * count]
        offsets = struct.unpack_from(f">{count}L", index, start + 24 * count)
        if offsets and max(offsets) & 0x80000000:  # over 2 GiB: the caller checks it
            raise OSError(f"{path}.pack is too big to be checked here")
        self.ids = {offset: names[20 * i : 20 * i + 20] for i, offset in enumerate(offsets)}
        self.where = {object_id: offset for offset, object_id in self.ids.items()}
        self.file = open(path + ".pack", "rb")  # noqa: SIM115 - closed by close()
        self.data = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ)
        self.order = sorted(self.ids)
        self.ends = dict(zip(self.order, [*self.order[1:], len(self.data) - 20], strict=True))
        self.cache: dict[int, bytes] = {}
        self.held = 0

    def close(self) -> None:
        self.data.close()
        self.file.close()

    def header(self, offset: int) -> tuple[int, int, int | None, int]:
        """An entry's type, size, base (for a delta: an offset, -1 when not in the pack) and
        where its data starts."""
        data = self.data
        byte = data[offset]
        kind, size, shift, at = (byte >> 4) & 7, byte & 15, 4, offset + 1
        while byte & 0x80:
            byte = data[at]
            size |= (byte & 0x7F) << shift
            shift += 7
            at += 1
        base = None
        if kind == _OFS_DELTA:
            byte = data[at]
            at += 1
            distance = byte & 0x7F
            while byte & 0x80:
                byte = data[at]
                at += 1
                distance = ((distance + 1) << 7) | (byte & 0x7F)
            base = offset - distance
            if not 12 <= base < offset:
                raise Wrong(self.ids[offset].hex(), "a delta whose base is no entry before it")
        elif kind == _REF_DELTA:
            base = self.where.get(bytes(data[at : at + 20]), -1)  # -1: not in the pack
            at += 20
        return kind, size, base, at

    def inflated(self, offset: int, start: int, size: int) -> bytes:
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(self.data[start : self.ends[offset]])
        except zlib.error as exc:
            raise Wrong(self.ids[offset].hex(), f"cannot be inflated: {exc}") from None
        if not inflater.eof or inflater.unused_data or len(data) != size:
            raise Wrong(self.ids[offset].hex(), "is not what its entry's header says")
        return data

    def content(self, offset: int, head: tuple[int, int, int | None, int] | None = None) -> bytes:
        """The content of the entry at ``offset`` (whose header is ``head``, when read
        already), a delta's chain resolved; kept, as a delta's base."""
        found = self.cache.get(offset)
        if found is not None:
            return found
        chain = []
        while True:
            _, size, base, start = head or self.header(offset)
            head = None
            if base is None:
                found = self.inflated(offset, start, size)
                break
            chain.append((offset, self.inflated(offset, start, size)))
            if len(chain) > 4096 or base < 0:
                raise Wrong(self.ids[offset].hex(), "a delta chain deeper than git's")
            offset = base
            found = self.cache.get(offset)
            if found is not None:
                break
        self.keep(offset, found)
        for offset, delta in reversed(chain):
            try:
                found = _apply(found, delta)
            except (ValueError, IndexError) as exc:
                raise Wrong(
                    self.ids[offset].hex(), f"a delta that cannot be applied: {exc}"
                ) from None
            self.keep(offset, found)
        return found

    def keep(self, offset: int, data: bytes) -> None:
        if self.held > _CACHE_BYTES:
            self.cache.clear()
            self.held = 0
        self.cache[offset] = data
        self.held += len(data)

    def blobs(self, big: int, out: BinaryIO) -> None:
        """Check the pack's blobs (of at most ``big`` bytes), their ids written to ``out``
        a few hundred at a time.

        Raises:
            Wrong: an entry is not what the index says.
        """
        data, ids, order = self.data, self.ids, self.order
        if not order:
            return
        # each entry's type (its first byte's bits 4 to 6), all at once: only blobs and deltas
        # are looked at one by one, not the commits and trees (read by the caller's walk)
        order = [*order, order[0]]  # two at least: itemgetter gives a tuple
        kinds = bytes(operator.itemgetter(*order)(data)).translate(_KIND)
        resolved: dict[int, int] = {}  # the type each delta's chain ends in
        checked = []
        for match in _LOOKED_AT.finditer(kinds):
            offset = order[match.start()]
            if offset in resolved:
                continue  # the first, met again at the end
            head = None
            if match[0] != b"\x03":  # a delta: of its base's type
                head = self.header(offset)
                base = head[2]
                assert base is not None
                kind = resolved.get(base)
                if kind is None:  # not a delta, or a ref delta's base after it, or elsewhere
                    kind = (data[base] >> 4) & 7 if base >= 0 else 0
                    kind = kind if kind < _OFS_DELTA else 0  # 0: the caller's
                resolved[offset] = kind
                if kind != _BLOB:
                    continue
            else:
                resolved[offset] = _BLOB
            if head is None:
                head = self.header(offset)
                if head[1] > big:
                    continue  # a big blob: the caller streams it
            content = self.content(offset, head)
            object_id = ids[offset]
            if sha1(b"blob %d\0%s" % (len(content), content)).digest() != object_id:
                raise Wrong(object_id.hex(), "is not what its id says")
            checked.append(object_id)
            if len(checked) == _BATCH:
                out.write(b"".join(checked))
                out.flush()
                checked.clear()
        out.write(b"".join(checked))
        out.flush()


def main(arguments: list[str]) -> int:
    global _apply
    _apply = _native()
    big, checked, *paths = arguments
    with open(checked, "ab") as out:
        for path in paths:
            pack = _Pack(path)
            try:
                pack.blobs(int(big), out)
            except Wrong as exc:
                sys.stderr.write(f"{exc.args[0]} {exc.args[1]}\n")
                return WRONG
            finally:
                pack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
