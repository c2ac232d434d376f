"""What arrives from elsewhere (a remote, a bundle) is checked before any ref moves.

- :func:`quarantine`: fetched objects first go to a temporary object store beside the store's
  own (which it sees through git's alternates); :func:`admit` moves them in once checked, so
  that nothing malformed ever lands in the store, referenced or not.
- :func:`history_problem`: every commit and tree that a fetched tip brings and the store did
  not have is well formed, as ``git fsck --strict`` would judge it (no ``..``, ``.git``, empty
  or absolute entry names, no duplicate or unsorted entries, only git's file modes), so that a
  pull never leaves the user's own ``git fsck`` failing.
- :func:`removals`: what a fetched tip would delete or change of the store's own history (a
  trial's folder, a variant lock), so that a pull keeps the store append-only: a remote may add
  trials and locks, and rename a lock as :func:`mitosis.rename_variant` does, nothing else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypeVar

from ..model.checks import name_problem
from ..model.layout import TRIALS, VARIANTS, alias_path
from .repo import Store
from .trials import load_json

if TYPE_CHECKING:
    from dulwich.objects import ObjectID, ShaFile, Tree

_Object = TypeVar("_Object", bound="ShaFile")

__all__ = ["admit", "ancestors", "history_problem", "quarantine", "removals"]

#: git's modes, as ``git fsck --strict`` accepts them (dulwich's check also allows 100664).
_MODES = (stat.S_IFDIR, stat.S_IFREG | 0o644, stat.S_IFREG | 0o755, stat.S_IFLNK, 0o160000)


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
            repo.object_store.add_alternate_path(st.repo.object_store.path)
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


def ancestors(st: Store, tips: list[ObjectID | None]) -> set[ObjectID]:
    """Every commit reachable from ``tips`` (that the store has)."""
    seen: set[ObjectID] = set()
    stack = [t for t in tips if t is not None]
    while stack:
        commit_id = stack.pop()
        if commit_id in seen or commit_id not in st.repo.object_store:
            continue
        seen.add(commit_id)
        stack.extend(st.get(commit_id).parents)  # type: ignore[attr-defined]
    return seen


def history_problem(st: Store, tip: ObjectID, known: set[ObjectID]) -> str | None:
    """What is malformed in the commits and trees that ``tip`` brings beyond ``known`` (the
    commits the store already had), or None."""
    from dulwich.objects import Commit

    seen_trees: set[ObjectID] = set()
    stack, walked = [tip], set(known)
    while stack:
        commit_id = stack.pop()
        if commit_id in walked:
            continue
        walked.add(commit_id)
        commit = _checked(st, commit_id, Commit, f"commit {commit_id.decode()}")
        if isinstance(commit, str):
            return commit
        problem = _tree_problem(st, commit.tree, "", seen_trees)
        if problem is not None:
            return f"commit {commit_id.decode()}: {problem}"
        stack.extend(commit.parents)
    return None


def _checked(st: Store, object_id: ObjectID, kind: type[_Object], what: str) -> _Object | str:
    """The object ``object_id`` of type ``kind`` when it is there and well formed (dulwich's
    ``check``, git fsck's rules), else what is wrong with it (``what`` names it)."""
    from dulwich.errors import ObjectFormatException

    try:
        found = st.get(object_id)
    except KeyError:
        return f"{what} ({object_id.decode()}) is missing"
    if not isinstance(found, kind):
        return f"{what} is a {found.type_name.decode()}, not a {kind.type_name.decode()}"
    try:
        found.check()
    except ObjectFormatException as exc:
        return f"{what} is malformed: {exc}"
    return found


def _tree_problem(st: Store, tree_id: ObjectID, path: str, seen: set[ObjectID]) -> str | None:
    from dulwich.objects import Tree

    if tree_id in seen:
        return None
    seen.add(tree_id)
    tree = _checked(st, tree_id, Tree, f"the tree {path or '/'}")
    if isinstance(tree, str):
        return tree
    for entry in tree.iteritems():
        name = entry.path.decode("utf-8", "replace")
        full = f"{path}/{name}" if path else name
        problem = name_problem(name)
        if problem is not None:
            return f"{full!r}: {problem}"
        if entry.mode not in _MODES:
            return f"{full!r} has the mode {entry.mode:06o}, which git fsck --strict refuses"
        if stat.S_ISDIR(entry.mode):
            problem = _tree_problem(st, entry.sha, full, seen)
            if problem is not None:
                return problem
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
