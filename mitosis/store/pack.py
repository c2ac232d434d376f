"""Packing a store's loose objects, with delta bases read off its history.

Every trial is one commit that rewrites a few trees along one path (the root, ``trials``, the
shard ``trials/<xx>`` and the trial's own folder) and adds the trial's files. So the right base
for a delta is known without searching: a tree's base is the tree at the same path in the parent
commit, and a file new to the branch (``trials/<xx>/<id>/trial.json``) has the same-named file of
the trial before it. :func:`pack_loose` walks the history oldest first, picks each loose object's
base that way, computes one delta per object and writes packs with those bases. Loose objects
that the walk did not meet (no branch reaches them, or they hang under a packed commit) are
packed with dulwich's window search, but for those written in the last seconds before the
packer started or since (a commit on its way), which stay loose for the next run.

Delta chains stay short, so that reading an object stays fast: the versions of a path form runs
of at most ``_RUN`` deltas, each hanging off a *head*; each head is a delta against the head of
the run before, at most ``_HEADS`` deep, then a whole object starts anew. No chain is deeper than
``MAX_DEPTH``, like git's default of 50.

Big blobs (over :data:`mitosis.store.blobs.BIG`, a trial's results) are never delta-compressed
and never read whole: their size is read from the head of their loose file, and the pack entry
is made as the pack is written (see :func:`mitosis.store.blobs.pack_entry`), so packing a store
of gigabytes of results holds a few megabytes of them at a time.

A pack goes into place as git puts one: written and fsynced under a temporary name
(``tmp_mitosis_pack_*``), its index too (``tmp_mitosis_pack-<checksum>.idx``, named after its
pack), both held under ``flock`` until they are in place; then the pack is renamed into place,
then its index; only then are the loose copies deleted. A writer killed on the way leaves
temporary files, or a pack without its index, which readers ignore (both git and dulwich find
packs by their index) and which the next packer removes, under the claim, before it starts
(:func:`mitosis.store.clean.clean`: what nobody holds any more, and the pack an abandoned
index names). Pushes to a store on this machine and pulls write their packs the same way.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import os
import stat
import struct
import sys
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, cast

from ..exceptions import StoreError
from .background import release, renew
from .blobs import BIG, TEMP_PREFIX, held_temporary, is_big_loose, pack_entry
from .clean import clean
from .reader import links as commit_links
from .repo import Store, fault_point

if TYPE_CHECKING:
    from dulwich.object_store import DiskObjectStore
    from dulwich.objects import ObjectID
    from dulwich.pack import UnpackedObject

__all__ = ["MAX_DEPTH", "main", "pack_loose", "place_pack", "write_pack"]

_RUN = 25
_HEADS = 25
#: The deepest delta chain the packer writes.
MAX_DEPTH = _RUN + _HEADS - 2
#: Whole objects kept in memory as delta bases, in bytes (the least recently used go first).
_CACHE_BYTES = 32 << 20
# For the objects the walk does not meet, dulwich's window search over objects sorted by type
# and size: a window of 4 took half the time of its default 10 for packs 15% larger.
_DELTA_WINDOW = 4

#: Trees kept parsed, the least recently used go first (the versions of a parent commit).
_TREES = 256
_COMMIT = 1
_READ_ONLY = 0o444
#: Loose objects no branch reaches, written less than this many seconds before the packer
#: started (or since), belong to a commit on its way: they stay loose for the next run.
_RECENT = 10.0
_TYPES = {b"commit": _COMMIT, b"tree": 2, b"blob": 3, b"tag": 4}
#: What :func:`_read` says of a big blob, which it does not read.
_BIG = -1

_Plan = list[tuple["ObjectID", "ObjectID | None"]]
_History = list[tuple["ObjectID", "ObjectID", list["ObjectID"]]]


def pack_loose(
    store: Store, batch: int = 20_000, progress: Callable[[str], None] | None = None
) -> int:
    """Pack the store's loose objects, with deltas, about ``batch`` objects to a pack (so memory
    stays bounded), then delete the loose copies. Objects written meanwhile stay loose.

    Returns:
        The number of objects packed.
    """
    objects = store.repo.object_store
    git_dir = store.repo.controldir()
    # The tips first: a commit written after the listing of loose objects is then never a tip,
    # so the walk from the tips meets only listed commits, or packed ones.
    started = time.time()
    tips = set(store.repo.refs.as_dict().values())
    loose = set(objects._iter_loose_objects())  # dulwich has no public lister
    total = len(loose)
    done = 0
    # Deleting a file costs a disk's while; one thread deletes while the next pack is built.
    with ThreadPoolExecutor(max_workers=1) as deleter:
        deleting: list[Future[None]] = []

        def write(shas: list[ObjectID], entries: Iterator[UnpackedObject]) -> None:
            nonlocal done
            if shas:
                write_pack(objects, len(shas), entries)
                renew(git_dir)  # still at work: the claim is not stale
                deleting.append(deleter.submit(_delete, objects, shas))
                done += len(shas)
                if progress is not None:
                    progress(f"packed {done} of {total} loose objects")

        walk = _Walk(objects, loose)
        for commit in _history(objects, tips, loose):
            walk.commit(*commit)
            if len(walk.plan) >= batch:
                plan = walk.flush()
                write([sha for sha, _ in plan], _deltas(objects, plan))
        plan = walk.flush()
        write([sha for sha, _ in plan], _deltas(objects, plan))
        # What no branch reaches, packed with dulwich's window search; but for the recent: a
        # commit on its way (its ref not moved yet when the packer read the refs) stays loose.
        rest = sorted(sha for sha in loose if _written_before(objects, sha, started - _RECENT))
        for start in range(0, len(rest), batch):
            chunk = rest[start : start + batch]
            write(chunk, _searched(objects, chunk))
        for job in deleting:
            job.result()  # raises what the deleter met
    return done


def _written_before(objects: DiskObjectStore, sha: ObjectID, moment: float) -> bool:
    """Whether the loose file of ``sha`` was last written before ``moment``."""
    path = os.path.join(objects.path, sha[:2].decode(), sha[2:].decode())
    try:
        return os.stat(path).st_mtime < moment
    except FileNotFoundError:
        return False  # packed meanwhile, by another tool


def write_pack(objects: DiskObjectStore, count: int, entries: Iterator[UnpackedObject]) -> None:
    """Write a pack of ``count`` entries and its index into the pack folder (see
    :func:`place_pack`)."""
    from dulwich.pack import write_pack_data

    def write(file: IO[bytes]) -> tuple[dict[bytes, tuple[int, int]], bytes]:
        return write_pack_data(
            file.write,
            _announced(entries),
            num_records=count,
            compression_level=objects.pack_compression_level,
            object_format=objects.object_format,
        )

    place_pack(objects, write)


def place_pack(
    objects: DiskObjectStore,
    write: Callable[[IO[bytes]], tuple[dict[bytes, tuple[int, int]], bytes]],
) -> str:
    """Write a pack into the pack folder with ``write`` (which writes the pack to the file it
    is given and returns each entry's offset and checksum by binary id, and the pack's
    checksum), then its index; both fsynced. Returns the pack's path without its suffix.

    Both are written under temporary names first, then the pack is renamed into place, then its
    index (as git does). The index is made from the offsets and checksums noted while writing
    (dulwich's ``add_pack_data`` reads the whole pack back, resolving every delta, to make it).

    Raises:
        StoreError: the pack vanished before its index was in place (another packer removed
            it); its loose objects are kept.
    """
    from dulwich.pack import write_pack_index

    folder = objects.pack_dir
    fd, temporary = held_temporary(folder, "pack_")
    index_fd = made = index_temporary = name = None
    placed = False
    try:
        with os.fdopen(fd, "wb", closefd=False) as file:
            written, checksum = write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, _READ_ONLY)
        name = os.path.join(folder, f"pack-{checksum.hex()}")
        index_fd, made = held_temporary(folder, "idx_")
        with os.fdopen(index_fd, "wb", closefd=False) as file:
            if objects.pack_index_version in (None, 2) and len(checksum) == 20:
                file.write(index_v2(written, checksum))
            else:  # pragma: no cover - a store configured for another index version
                index = sorted((sha, offset, crc) for sha, (offset, crc) in written.items())
                write_pack_index(file, index, checksum, version=objects.pack_index_version)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(made, _READ_ONLY)
        # Named after its pack, so that the next packer knows whose index it is.
        index_temporary = os.path.join(folder, f"{TEMP_PREFIX}pack-{checksum.hex()}.idx")
        os.replace(made, index_temporary)
        made = None
        fault_point("pack-written")
        os.replace(temporary, name + ".pack")  # like git: the pack, then its index
        placed = True
        fault_point("pack")
        os.replace(index_temporary, name + ".idx")
    except BaseException:
        for path in (temporary, made, index_temporary):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
        if placed and name is not None and not os.path.exists(name + ".idx"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(name + ".pack")  # a pack without its index: unseen, and useless
        raise
    finally:
        os.close(fd)  # held until in place: no cleaner takes a live writer's files
        if index_fd is not None:
            os.close(index_fd)
    if not os.path.exists(name + ".pack"):  # removed as a dead packer's while it was placed
        with contextlib.suppress(FileNotFoundError):
            os.remove(name + ".idx")
        raise StoreError(
            f"the pack {name}.pack was removed before its index was in place (another packer "
            "took this one's claim?); its objects stay loose: run `mitosis gc` again"
        )
    fault_point("index")
    return name


def index_v2(written: dict[bytes, tuple[int, int]], checksum: bytes) -> bytes:
    """The bytes of a version 2 pack index (git's format, as dulwich's
    ``write_pack_index_v2`` writes it, in a few passes over whole tables rather than one
    write per field) of the entries ``written`` (binary id: offset, checksum) of the pack of
    checksum ``checksum``."""
    names = sorted(written)
    count = len(names)
    # how many ids start with each byte or a smaller one
    fanout = [bisect.bisect_left(names, bytes([byte + 1])) for byte in range(255)] + [count]
    places = [written[name] for name in names]
    offsets = [offset for offset, _ in places]
    crcs = [crc for _, crc in places]
    large = [offset for offset in offsets if offset >= 1 << 31]
    if large:  # a pack over 2 GiB: its far offsets go to a table of 8-byte ones
        far = iter(range(len(large)))
        offsets = [offset if offset < 1 << 31 else (1 << 31) + next(far) for offset in offsets]
    body = b"".join(
        (
            b"\377tOc\0\0\0\2",
            struct.pack(">256L", *fanout),
            *names,
            struct.pack(f">{count}L", *crcs),
            struct.pack(f">{count}L", *offsets),
            struct.pack(f">{len(large)}Q", *large),
            checksum,
        )
    )
    return body + hashlib.sha1(body).digest()


def _announced(entries: Iterator[UnpackedObject]) -> Iterator[UnpackedObject]:
    """The entries, telling the fault hook once the pack has some (``"packing"``)."""
    for number, entry in enumerate(entries):
        yield entry
        if number == 1:
            fault_point("packing")


def _delete(objects: DiskObjectStore, shas: list[ObjectID]) -> None:
    """Delete the loose copies of packed objects."""
    for sha in shas:
        with contextlib.suppress(FileNotFoundError):  # another packer was quicker
            objects.delete_loose_object(sha)


def _history(objects: DiskObjectStore, tips: set[ObjectID], loose: set[ObjectID]) -> _History:
    """The loose commits reachable from ``tips`` through loose commits, parents first, each
    with its tree and parents."""
    order: _History = []
    visited: set[ObjectID] = set()
    stack: list[tuple[ObjectID, tuple[ObjectID, list[ObjectID]] | None]] = [
        (tip, None) for tip in sorted(tips) if tip in loose
    ]
    while stack:
        sha, links = stack.pop()
        if links is not None:
            order.append((sha, *links))
            continue
        if sha in visited:
            continue
        visited.add(sha)
        type_num, body = _read(objects, sha)
        if type_num != _COMMIT:
            continue  # a tag: packed with the rest
        links = _links(body)
        stack.append((sha, links))
        stack.extend((p, None) for p in reversed(links[1]) if p in loose)
    return order


def _links(commit: bytes) -> tuple[ObjectID, list[ObjectID]]:
    """A commit's tree and parents, from its text."""
    tree, parents, _ = commit_links(commit)
    return cast("ObjectID", tree), cast("list[ObjectID]", parents)


def _read(objects: DiskObjectStore, sha: ObjectID) -> tuple[int, bytes]:
    """An object's type number and content: read straight from its loose file, checked
    against its id; from the packs if it is not loose (any more). A big blob is not read:
    its content is ``b""`` and its type :data:`_BIG` (see :func:`_big`)."""
    path = os.path.join(objects.path, sha[:2].decode(), sha[2:].decode())
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size * 1032 > BIG and _big(objects, sha) is not None:
                return _BIG, b""
            data = zlib.decompress(file.read())
    except FileNotFoundError:
        return objects.get_raw(sha)
    except zlib.error:
        data = b""
    if hashlib.sha1(data).hexdigest().encode() != sha:
        raise StoreError(f"the loose object {sha.decode()} is damaged: git fsck tells more")
    header, _, body = data.partition(b"\0")
    return _TYPES[header.partition(b" ")[0]], body


def _big(objects: DiskObjectStore, sha: ObjectID) -> int | None:
    """The size of a big loose blob (never delta-compressed, never read whole), else None."""
    return is_big_loose(os.fspath(objects.path), sha.decode())


def _shape(path: bytes) -> bytes:
    """What ``path`` has in common with the same file of other trials: the trial's id goes."""
    parts = path.split(b"/")
    if parts[0] == b"trials":
        parts[1:3] = [b"*" for _ in parts[1:3]]
    return b"/".join(parts)


class _Walk:
    """Plans packs: each loose object in history order, with the base its delta should have."""

    def __init__(self, objects: DiskObjectStore, loose: set[ObjectID]) -> None:
        self.objects = objects
        self.loose = loose  # what is left to plan
        self.plan: _Plan = []
        self.planned: set[ObjectID] = set()  # in this batch
        self.last: dict[bytes, ObjectID] = {}  # shape of a path: the latest object there
        self.trees: OrderedDict[ObjectID, dict[bytes, tuple[int, ObjectID]]] = OrderedDict()
        self.tree_of: dict[ObjectID, ObjectID] = {}  # commit: its tree, for the children

    def flush(self) -> _Plan:
        """The plan of one pack; the next starts anew (its bases are in the same pack)."""
        plan, self.plan, self.planned = self.plan, [], set()
        self.last.clear()
        return plan

    def _add(self, sha: ObjectID, *bases: ObjectID | None) -> None:
        # a base is planned before (an object written again, loose, has itself as "base")
        self.plan.append((sha, next((b for b in bases if b in self.planned), None)))
        self.loose.discard(sha)
        self.planned.add(sha)

    def commit(self, commit_id: ObjectID, tree: ObjectID, parents: list[ObjectID]) -> None:
        self.tree_of[commit_id] = tree
        parent_tree = None
        if parents:
            parent_tree = self.tree_of.get(parents[0])
            if parent_tree is None:  # packed already
                parent_tree = _links(_read(self.objects, parents[0])[1])[0]
        self._add(commit_id, *parents[:1])
        if tree in self.loose:
            self._tree(b"", tree, parent_tree)

    def _entries(self, tree_id: ObjectID) -> dict[bytes, tuple[int, ObjectID]]:
        from dulwich.objects import parse_tree

        entries = self.trees.get(tree_id)
        if entries is None:
            text = _read(self.objects, tree_id)[1]
            entries = {
                name: (mode, cast("ObjectID", sha)) for name, mode, sha in parse_tree(text, 20)
            }
            self.trees[tree_id] = entries
            if len(self.trees) > _TREES:
                self.trees.popitem(last=False)
        else:
            self.trees.move_to_end(tree_id)
        return entries

    def _tree(self, path: bytes, new: ObjectID, old: ObjectID | None) -> None:
        shape = _shape(path)
        self._add(new, old, self.last.get(shape))
        self.last[shape] = new
        before = self._entries(old) if old is not None else {}
        for name, (mode, sha) in self._entries(new).items():
            if sha not in self.loose:
                continue  # unchanged, packed already, or met before
            mine = before.get(name)
            was = None
            if mine is not None and stat.S_ISDIR(mine[0]) == stat.S_ISDIR(mode):
                was = mine[1]
            child = path + b"/" + name if path else name
            if stat.S_ISDIR(mode):
                self._tree(child, sha, was)
            elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                shape = _shape(child)
                self._add(sha, was, self.last.get(shape))
                self.last[shape] = sha


def _deltas(objects: DiskObjectStore, plan: _Plan) -> Iterator[UnpackedObject]:
    """The pack's entries, in the plan's order (so every base comes before its deltas)."""
    from dulwich.objects import hex_to_sha
    from dulwich.pack import UnpackedObject, create_delta

    cache: OrderedDict[ObjectID, tuple[int, bytes]] = OrderedDict()
    held = 0
    # An object's depth in its chain, the length of its run, and the head of that run.
    chains: dict[ObjectID, tuple[int, int, ObjectID]] = {}

    def raw(sha: ObjectID) -> tuple[int, bytes]:
        nonlocal held
        found = cache.get(sha)
        if found is not None:
            cache.move_to_end(sha)
            return found
        found = _read(objects, sha)
        if found[0] == _BIG:
            return found
        cache[sha] = found
        held += len(found[1])
        while held > _CACHE_BYTES and len(cache) > 1:
            held -= len(cache.popitem(last=False)[1][1])
        return found

    whole: set[ObjectID] = set()  # big blobs: no delta to them, none from them
    for sha, want in plan:
        type_num, data = raw(sha)
        if type_num == _BIG:
            size = _big(objects, sha)
            assert size is not None
            whole.add(sha)
            chains[sha] = (0, 0, sha)
            yield pack_entry(objects, sha.decode(), size, fault_point)
            continue
        chain = (0, 0, sha)
        base = None
        if want in whole:
            want = None
        if want is not None:
            depth, run, head = chains[want]
            if run + 1 < _RUN:
                base, chain = want, (depth + 1, run + 1, head)
            elif chains[head][0] + 1 < _HEADS:
                base, chain = head, (chains[head][0] + 1, 0, sha)
        body = data
        if base is not None:
            base_type, base_data = raw(base)
            delta = b"".join(create_delta(base_data, data))
            if base_type == type_num and len(delta) <= len(data) // 2:
                body = delta
            else:
                base, chain = None, (0, 0, sha)
        chains[sha] = chain
        yield UnpackedObject(
            type_num,
            sha=hex_to_sha(sha),
            delta_base=None if base is None else hex_to_sha(base),
            decomp_chunks=[body],
        )


def _searched(objects: DiskObjectStore, shas: list[ObjectID]) -> Iterator[UnpackedObject]:
    """Entries for ``shas``, with deltas found by dulwich's window search; big blobs whole,
    streamed."""
    from dulwich.pack import pack_objects_to_data

    big = {sha: size for sha in shas if (size := _big(objects, sha)) is not None}
    _, entries = pack_objects_to_data(
        [(objects[sha], None) for sha in shas if sha not in big],
        deltify=True,
        delta_window_size=_DELTA_WINDOW,
    )
    yield from entries
    for sha, size in big.items():
        yield pack_entry(objects, sha.decode(), size, fault_point)


def main(git_dir: str) -> int:
    """The background packer: pack the loose objects of the store at ``git_dir``, which
    :func:`mitosis.store.background.start` claimed for it."""
    from dulwich.repo import Repo

    try:
        clean(git_dir)
        with Store(Repo(git_dir)) as store:
            pack_loose(store)
    finally:
        release(git_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
