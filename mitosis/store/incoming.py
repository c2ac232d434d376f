"""What arrives from elsewhere (a remote, a bundle) is checked before any ref moves.

- :func:`quarantine`: fetched objects first go to a temporary object store beside the store's
  own (which it sees through git's alternates); :func:`admit` moves them in once checked, so
  that nothing malformed ever lands in the store, referenced or not.
- :func:`history_problem`: every commit and tree that a fetched tip brings and the store did
  not have is well formed, as ``git fsck --strict`` would judge it (no ``..``, ``.git``, empty
  or absolute entry names, no duplicate or unsorted entries, only git's file modes), so that a
  pull never leaves the user's own ``git fsck`` failing. The new commits are found by walking
  both histories newest first, and of each, only the trees that differ from its parents' at
  the same path are read (a tree the same as a parent's was checked with that parent): the
  walk of :func:`mitosis.store.send.missing`, which finds what a push sends.
- :func:`removals`: what a fetched tip would delete or change of the store's own history (a
  trial's folder, a variant lock), so that a pull keeps the store append-only: a remote may add
  trials and locks, and rename a lock as :func:`mitosis.rename_variant` does, nothing else.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..exceptions import StoreError
from ..model.checks import lock_problem, name_problem
from ..model.layout import TRIALS, VARIANTS, alias_path
from . import blobcheck
from .blobs import BIG
from .reader import Entries, Reader, binary_ids, tree_order, verify
from .repo import Store
from .send import Inspector, missing
from .trials import load_json

if TYPE_CHECKING:
    from dulwich.objects import ObjectID, Tree

__all__ = [
    "Aside",
    "admit",
    "damaged",
    "history_problem",
    "lock_problems",
    "quarantine",
    "removals",
]

#: git's modes, as ``git fsck --strict`` accepts them (dulwich's check also allows 100664).
_MODES = (stat.S_IFDIR, stat.S_IFREG | 0o644, stat.S_IFREG | 0o755, stat.S_IFLNK, 0o160000)
_MODE_SET = frozenset(_MODES)
_BLOB = 3
#: What may make a name one that git fsck --strict refuses, in names joined by / and framed
#: by / (one / too many means a name holds one): a backslash, a NUL, an empty name, ``.``,
#: ``..``, ``git`` in any case (``.git``, and what some file system reads as it: ``git~1``,
#: ``.git.``), a byte of a code point beyond ASCII (``.git`` with a code point that HFS+
#: ignores). A match is looked at name by name (:meth:`_Fsck.names`).
_SUSPECT = re.compile(rb"[\\\0\x80-\xff]|[gG][iI][tT]|/\.{0,2}(?=/)")
#: Trees of at most this many entries are judged once per shape (names and modes, in order).
_SHAPED = 16
#: Shapes kept; the set starts anew past it.
_SHAPES = 1024
#: ``name <email> seconds +zone``, as both git fsck (``fsck_ident``) and dulwich accept it.
_IDENT = rb"[^<>\n\0]* <[^<>\n\0]*> (?:0|[1-9][0-9]{0,11}) [+-][0-9]{4}\n"
#: The header of a commit as mitosis and git write it (no signature, no extra header): one
#: that matches is well formed; any other is judged by dulwich's full check.
_PLAIN_COMMIT = re.compile(
    rb"tree [0-9a-f]{40}\n(?:parent [0-9a-f]{40}\n)*author "
    + _IDENT
    + b"committer "
    + _IDENT
    + rb"(?:encoding [^\n\0]+\n)?\n"
)


@contextlib.contextmanager
def quarantine(st: Store) -> Iterator[Store]:
    """A temporary store inside ``<git dir>/mitosis/`` whose object store sees the store's
    objects (git's alternates), for what a fetch brings; removed on leaving."""
    from dulwich.repo import Repo

    parent = os.path.join(st.repo.controldir(), "mitosis")
    os.makedirs(parent, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="incoming-", dir=parent)
    try:
        Repo.init_bare(folder).close()
        with Repo(folder) as repo:
            # absolute: git reads a relative alternate from the quarantine's objects folder
            repo.object_store.add_alternate_path(os.path.abspath(st.repo.object_store.path))
        with Store(Repo(folder)) as held:
            yield held
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def admit(held: Store, st: Store) -> None:
    """Move the quarantine's objects into the store: each pack before its index (a reader never
    sees an index without its pack), then the loose objects."""
    source = held.repo.object_store.path
    target = st.repo.object_store.path
    packs = os.path.join(source, "pack")
    for name in sorted(os.listdir(packs)) if os.path.isdir(packs) else []:
        if name.endswith(".pack"):
            stem = name[: -len(".pack")]
            for suffix in (".pack", ".idx"):
                if os.path.exists(os.path.join(packs, stem + suffix)):
                    os.replace(
                        os.path.join(packs, stem + suffix),
                        os.path.join(target, "pack", stem + suffix),
                    )
    for fanout in os.listdir(source):
        if len(fanout) != 2:
            continue
        os.makedirs(os.path.join(target, fanout), exist_ok=True)
        for name in os.listdir(os.path.join(source, fanout)):
            destination = os.path.join(target, fanout, name)
            if not os.path.exists(destination):
                os.replace(os.path.join(source, fanout, name), destination)


class _Malformed(Exception):
    """What is wrong with a history that arrived."""


def _unsorted(path: bytes) -> _Malformed:
    return _Malformed(
        f"the tree {path.decode('utf-8', 'replace').lstrip('/') or '/'} is malformed: "
        "its entries are not sorted, or a name comes twice"
    )


class _Fsck(Inspector):
    """``git fsck --strict``'s rules for each new commit and tree (of a commit, the usual
    shape matched at once, any other judged by dulwich's full check; of a tree: git's modes,
    entry names, sorted, no name twice)."""

    def commit(self, commit_id: bytes, data: bytes) -> None:
        if _PLAIN_COMMIT.match(data) is not None:
            return  # the usual shape, well formed (a tenth of the time of dulwich's check)
        from dulwich.errors import ObjectFormatException
        from dulwich.objects import Commit

        try:
            Commit.from_raw_string(1, data).check()
        except ObjectFormatException as exc:
            raise _Malformed(f"commit {commit_id.decode()} is malformed: {exc}") from None

    def absent(self, commit_id: bytes) -> None:
        shown = commit_id.decode("ascii", "backslashreplace")
        raise _Malformed(f"the parent {shown!r} of a new commit is missing, or no commit id")

    def __init__(self) -> None:
        # the names and modes of small trees found well formed: a trial's folders, each
        # shaped as the one before, are judged once
        self.shapes: set[tuple[tuple[bytes, int], ...]] = set()

    def tree(self, tree_id: bytes, path: bytes, entries: Entries, new: Entries) -> None:
        if len(entries) > _SHAPED:
            self.judge(path, entries, new)
            return
        shape = tuple([(name, mode) for name, mode, _ in entries])
        if shape not in self.shapes:
            self.judge(path, entries, entries)  # every name: the shape is judged whole
            if len(self.shapes) >= _SHAPES:
                self.shapes.clear()
            self.shapes.add(shape)

    def judge(self, path: bytes, entries: Entries, new: Entries) -> None:
        """Whether the tree at ``path`` of ``entries`` is well formed, its entries ``new``
        (those no base has) screened for names and modes (raised)."""
        if new:
            names = [name for name, _, _ in new]
            joined = b"/".join(names)
            if (
                _SUSPECT.search(b"/" + joined + b"/") is not None
                or joined.count(b"/") != len(names) - 1
                or not _MODE_SET.issuperset([mode for _, mode, _ in new])
            ):
                self.names(path, new)
        keys = [name + b"/" if mode == stat.S_IFDIR else name for name, mode, _ in entries]
        if keys != sorted(keys) or len({name for name, _, _ in entries}) != len(entries):
            raise _unsorted(path)

    def inserted(self, tree_id: bytes, path: bytes, entries: Entries, index: int) -> None:
        # the base's entries were in order, names once each: only the new one is looked at
        name, mode, _ = entry = entries[index]
        if mode not in _MODE_SET or b"/" in name or _SUSPECT.search(b"/" + name + b"/") is not None:
            self.names(path, [entry])
        key = tree_order(entry)
        if (index and tree_order(entries[index - 1]) >= key) or (
            index + 1 < len(entries) and key >= tree_order(entries[index + 1])
        ):
            raise _unsorted(path)
        # The same name as the other kind (a file "a" for a folder "a") sorts before a folder,
        # after a file, with only names that start with it between: a neighbour's name shows
        # whether to look for it.
        near = index - 1 if mode == stat.S_IFDIR else index + 1
        if not (0 <= near < len(entries) and entries[near][0].startswith(name)):
            return
        other = name if mode == stat.S_IFDIR else name + b"/"
        at = bisect.bisect_left(entries, other, key=tree_order)
        if at < len(entries) and tree_order(entries[at]) == other:
            raise _unsorted(path)

    def names(self, path: bytes, new: Entries) -> None:
        """Which of the entries ``new`` of the tree at ``path`` has a name or a mode that git
        fsck --strict refuses (raised)."""
        where = path.decode("utf-8", "replace").lstrip("/")
        for name, mode, _ in new:
            text = name.decode("utf-8", "replace")
            full = f"{where}/{text}" if where else text
            problem = name_problem(text)
            if problem is not None:
                raise _Malformed(f"{full!r}: {problem}")
            if mode not in _MODES:
                raise _Malformed(
                    f"{full!r} has the mode {mode:06o}, which git fsck --strict refuses"
                )
            if mode == stat.S_IFLNK and text.lower() == ".gitmodules":
                raise _Malformed(f"{full!r} is a symbolic link, which git fsck --strict refuses")


def history_problem(
    reader: Reader,
    tip: ObjectID,
    known: list[ObjectID | None],
    reached: set[bytes] | None = None,
) -> str | None:
    """What is malformed in the commits and trees that ``tip`` brings beyond the history of
    ``known`` (commits of the store, checked when they came), or None.

    ``reader`` reads the quarantine and the store. A new commit's trees that are the same as
    one of its parents' at the same path were checked with that parent; only the others are
    read (see :func:`mitosis.store.send.missing`). The objects that the reader's
    :attr:`~mitosis.store.reader.Reader.claimed` holds (ids that a copy from a store on this
    machine took from its index, unchecked) are checked against their ids as they are read
    (see :func:`damaged` for the others). ``reached``, when given, gets the (binary) ids of
    the objects the tip brings.
    """
    from dulwich.errors import ObjectFormatException

    try:
        reader.commit(tip)
    except KeyError:
        return f"commit {tip.decode()} is missing, or is no commit"
    try:
        found = missing(reader, [tip], [k for k in known if k is not None], _Fsck())
    except _Malformed as exc:
        return str(exc)
    except KeyError as exc:
        return f"an object is missing ({exc})"
    except (ObjectFormatException, StoreError) as exc:
        return f"malformed: {exc}"
    if reached is not None:
        reached.update(binary_ids(found))
    return None


#: Fewer objects copied than this are all checked in the pull's own process (a process of
#: their own takes longer to start than the check takes).
ASIDE = 10_000


class Aside:
    """The blobs of the quarantine's packs checked against their ids in a process of their
    own (:mod:`mitosis.store.blobcheck`, started at once, when ``claimed`` holds at least
    :data:`ASIDE` ids), while the history walk checks the commits and trees: the machine's
    second core takes a third of a first pull's checking. :meth:`take` takes what it checked;
    on leaving (a context manager), the process is ended if it still runs."""

    #: Whether :meth:`take` waits for the process to finish (tests), rather than ending it
    #: and leaving what it did not check yet to its caller (on a busy machine, the process
    #: may lag behind the walk).
    wait = False

    def __init__(self, held: Store, claimed: set[bytes]) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.checked = os.path.join(held.repo.controldir(), "checked-aside")
        if len(claimed) < ASIDE or getattr(sys, "frozen", False):
            return  # few, or no interpreter to run it with (a frozen application)
        folder = os.fspath(held.repo.object_store.pack_dir)
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        packs = [os.path.join(folder, n[: -len(".idx")]) for n in names if n.endswith(".idx")]
        command = [sys.executable, "-I", blobcheck.__file__, str(BIG), self.checked, *packs]
        with contextlib.suppress(OSError):  # cannot start: the caller checks them all
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )

    def __enter__(self) -> Aside:
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate()

    def take(self, claimed: set[bytes]) -> str | None:
        """Take the ids the process checked out of ``claimed`` (ending it first if it still
        runs, unless :attr:`wait`: :func:`damaged` then checks the rest); what it found
        wrong, or None."""
        process, self.process = self.process, None
        if process is None:
            return None
        if not self.wait and process.poll() is None:
            process.kill()
        _, err = process.communicate()
        if process.returncode == blobcheck.WRONG:
            return err.decode("ascii", "replace").strip() or "an object is not what its id says"
        try:
            with open(self.checked, "rb") as file:
                found = file.read()
        except OSError:  # it wrote none: the caller checks them all
            return None
        whole = len(found) - len(found) % 20  # the last id cut short, if it was ended writing
        claimed.difference_update(found[at : at + 20] for at in range(0, whole, 20))
        return None


def damaged(reader: Reader) -> str | None:
    """Which object of the reader's :attr:`~mitosis.store.reader.Reader.claimed` (those no
    history walk read) is not what its id says, or None. A pack's are read in the pack's order
    (a delta's base before it, as git's index-pack reads a pack), the others after."""
    claimed = reader.claimed
    for pack in reader.packs:
        if not claimed:
            break
        by_offset, header, entry_at = pack.by_offset, pack.header, reader.entry_at
        for offset in pack.ends:  # in the pack's order
            object_id = by_offset[offset]
            if object_id not in claimed:
                continue  # checked already (read by the walk, or as a delta's base)
            kind, size, base, _ = header(offset)
            if base is None and kind == _BLOB and size > BIG:
                continue  # a big blob: streamed, below
            try:
                entry_at(pack, offset, object_id)  # checked as it is read (see Reader.claimed)
            except (StoreError, zlib.error) as exc:
                return f"{object_id.hex()} cannot be read, or is not what its id says: {exc}"
    for object_id in sorted(claimed):
        try:
            if not verify(reader, object_id):
                return f"{object_id.hex()} is not what its id says"
        except (KeyError, StoreError, zlib.error) as exc:
            return f"{object_id.hex()} cannot be read: {exc}"
    return None


def _entries(st: Store, tree_id: ObjectID | None) -> dict[str, tuple[int, ObjectID]]:

    tree: Tree | None = st.get(tree_id) if tree_id is not None else None  # type: ignore[assignment]
    if tree is None:
        return {}
    return {e.path.decode("utf-8", "replace"): (e.mode, e.sha) for e in tree.iteritems()}


def _subtree(st: Store, root: ObjectID | None, name: str) -> ObjectID | None:
    entry = _entries(st, root).get(name)
    return entry[1] if entry is not None and stat.S_ISDIR(entry[0]) else None


def removals(st: Store, ours: ObjectID, theirs: ObjectID) -> list[str]:
    """What the root tree ``theirs`` deletes or changes of the root tree ``ours``: trial
    folders, variant locks (a lock may only move by a rename, which leaves a note in its place)
    and the notes of renames."""
    found: list[str] = []
    our_trials, their_trials = _subtree(st, ours, TRIALS), _subtree(st, theirs, TRIALS)
    if our_trials != their_trials:
        theirs_shards = _entries(st, their_trials)
        for shard, (_, shard_id) in _entries(st, our_trials).items():
            other = theirs_shards.get(shard)
            if other is not None and other[1] == shard_id:
                continue
            their_folders = _entries(st, other[1] if other else None)
            for trial_id, (_, folder) in _entries(st, shard_id).items():
                if trial_id not in their_folders:
                    found.append(f"deletes trial {trial_id}")
                elif their_folders[trial_id][1] != folder:
                    found.append(f"changes trial {trial_id}")
    our_locks, their_locks = _subtree(st, ours, VARIANTS), _subtree(st, theirs, VARIANTS)
    if our_locks != their_locks:
        their_params = _entries(st, their_locks)
        for param, (_, param_id) in _entries(st, our_locks).items():
            other = their_params.get(param)
            if other is not None and other[1] == param_id:
                continue
            theirs_here = _entries(st, other[1] if other else None)
            for file, (mode, blob) in _entries(st, param_id).items():
                if theirs_here.get(file, (0, b""))[1] == blob:
                    continue
                if stat.S_ISDIR(mode):  # the notes of renames: kept, so the old name stays taken
                    kept = _entries(st, theirs_here[file][1]) if file in theirs_here else {}
                    if not set(_entries(st, blob)) <= set(kept):
                        found.append(f"deletes the rename note {param}/{file}")
                    continue
                if not file.endswith(".json"):
                    continue  # a lock's pickle: judged with its lock
                where = f"{VARIANTS}/{param}/{file}"
                lock = load_json(st.get(blob).as_raw_string(), where)
                fingerprint = lock.get("fingerprint", "") if isinstance(lock, dict) else ""
                note = alias_path(where[: -len(".json")], str(fingerprint))
                renamed = st.lookup(theirs, note) is not None and file not in theirs_here
                if not renamed:
                    what = "changes" if file in theirs_here else "deletes"
                    found.append(f"{what} the lock {param}={file[: -len('.json')]}")
    return found


def lock_problems(st: Store, ours: ObjectID | None, theirs: ObjectID | None) -> list[str]:
    """What is wrong with the variant locks and rename notes that the root tree ``theirs``
    adds or changes beyond the root tree ``ours`` (None: every one), one line each: mitosis
    reads them to lock, count, merge and list, so each must be what mitosis writes (see
    :func:`~mitosis.model.checks.lock_problem`), a lock a file and a rename's notes a folder."""
    found: list[str] = []
    our_params = _entries(st, _subtree(st, ours, VARIANTS))
    their_root = _entries(st, theirs)
    if VARIANTS not in their_root:
        return found
    if not stat.S_ISDIR(their_root[VARIANTS][0]):
        return [f"brings {VARIANTS} as a file, where the folder of variant locks belongs"]
    for param, (mode, param_id) in _entries(st, their_root[VARIANTS][1]).items():
        path = f"{VARIANTS}/{param}"
        if not stat.S_ISDIR(mode):
            found.append(f"brings {path} as a file, where a parameter's locks belong")
            continue
        mine = our_params.get(param)
        if mine == (mode, param_id):
            continue
        ours_here = _entries(st, mine[1] if mine and stat.S_ISDIR(mine[0]) else None)
        for file, entry in _entries(st, param_id).items():
            if ours_here.get(file) == entry:
                continue
            if file.endswith(".renamed"):
                if not stat.S_ISDIR(entry[0]):
                    found.append(f"brings {path}/{file} as a file, where rename notes belong")
                    continue
                kept = ours_here.get(file)
                kept_notes = _entries(st, kept[1] if kept and stat.S_ISDIR(kept[0]) else None)
                for note, note_entry in _entries(st, entry[1]).items():
                    if kept_notes.get(note) != note_entry:
                        found += _lock_file_problem(st, f"{path}/{file}/{note}", *note_entry)
            elif file.endswith(".json"):
                found += _lock_file_problem(st, f"{path}/{file}", *entry)
    return found


def _lock_file_problem(st: Store, path: str, mode: int, blob: ObjectID) -> list[str]:
    """What is wrong with the lock file or rename note ``blob`` at ``path``, as a list."""
    if not stat.S_ISREG(mode):
        return [f"brings {path} as something other than a file"]
    try:
        problem = lock_problem(load_json(st.get(blob).as_raw_string(), path), path)
    except StoreError as exc:
        problem = str(exc)
    return [] if problem is None else [f"brings {path}, which mitosis never writes: {problem}"]
