"""Merging an experiment's fetched history into its branch, and the variant conflicts that
forbid it.

Trials never collide in a tree (their ids are unique), so two histories of an experiment always
merge by taking the union of their trees. The one possible conflict is a variant name locked to
different values on the two sides: the pull of that experiment then stops before changing the
local branch and reports both values and the trials that used them; the fetched history stays in
``refs/remotes/<remote>/mitosis/<experiment>``.
"""

from __future__ import annotations

import heapq
import os
import stat
from typing import TYPE_CHECKING, Any, cast

import attrs

from ..exceptions import StoreError, SyncRefused
from ..model.layout import VARIANTS, tracking_branch
from .incoming import lock_problems, removals
from .repo import Store, backoff
from .trials import load_json, read_trials
from .variants import describe_lock

if TYPE_CHECKING:
    from dulwich.objects import ObjectID
    from dulwich.refs import Ref

__all__ = ["Conflict", "conflicts", "integrate", "is_ancestor"]

_RETRIES = 50


@attrs.frozen
class Conflict:
    """A variant name locked to different values on the two sides of a pull.

    Attributes:
        experiment: the experiment.
        param: the parameter.
        variant: the variant name.
        local: the value locked in this store.
        remote: the value locked on the remote.
        local_trials: ids of this store's trials that used the name.
        remote_trials: ids of the remote's trials that used the name.
    """

    experiment: str
    param: str
    variant: str
    local: str
    remote: str
    local_trials: list[str]
    remote_trials: list[str]

    def __str__(self) -> str:
        def trials(ids: list[str]) -> str:
            return ", ".join(ids) if ids else "no trial"

        return (
            f"{self.experiment}: {self.param}={self.variant} is {self.local} here "
            f"({trials(self.local_trials)}) but {self.remote} on the remote "
            f"({trials(self.remote_trials)})"
        )


def is_ancestor(st: Store, ancestor: ObjectID, descendant: ObjectID) -> bool:
    """Whether ``ancestor`` is in the history of ``descendant``.

    Both histories are walked at once, newest first, as git finds a merge base: a commit that
    ``ancestor``'s walk reaches is below it, so ``descendant``'s walk need not go past it, and
    the walk ends when ``descendant``'s has nothing else left. Commit times only order the walk,
    so clocks that disagree cost time, never the answer (dulwich's ``can_fast_forward`` prunes by
    commit time and misses commits of one second). A fast-forward, an up-to-date branch or two
    branches that parted 100 trials ago cost about 100 commits read, not the whole history.
    """
    if ancestor == descendant:
        return True
    below, above = 1, 2  # reached from descendant, from ancestor
    paint: dict[bytes, int] = {}
    parents: dict[bytes, tuple[int, list[ObjectID]]] = {}  # commit time, parents
    queue: list[tuple[int, bytes]] = []

    def reach(commit_id: ObjectID, flags: int) -> None:
        old = paint.get(commit_id, 0)
        if old | flags == old:
            return
        paint[commit_id] = old | flags
        if commit_id not in parents:
            try:
                commit = st.get(commit_id)
            except KeyError:
                return  # a commit this store lacks (a shallow history): nothing below it
            parents[commit_id] = (commit.commit_time, commit.parents)  # type: ignore[attr-defined]
        heapq.heappush(queue, (-parents[commit_id][0], commit_id))

    reach(descendant, below)
    reach(ancestor, above)
    while any(paint[c] == below for _, c in queue):
        _, commit_id = heapq.heappop(queue)
        flags = paint[commit_id]
        for parent in parents[commit_id][1]:
            if parent == ancestor and flags & below:
                return True
            reach(parent, flags)
    return False


def _lock(st: Store, blob: ObjectID, path: str) -> dict[str, Any]:
    data = load_json(st.get(blob).as_raw_string(), path)
    return data if isinstance(data, dict) else {}


def _union(
    st: Store, ours: ObjectID | None, theirs: ObjectID | None, path: str, clashes: list[Any]
) -> ObjectID | None:
    """The union of two trees; ``clashes`` collects ``(path, our lock, their lock)``."""
    from dulwich.objects import Tree

    if ours is None or ours == theirs:
        return theirs if ours is None else ours
    if theirs is None:
        return ours
    a, b = st.get(ours), st.get(theirs)
    assert isinstance(a, Tree) and isinstance(b, Tree)
    merged = Tree()
    left_entries = {e.path: (e.mode, e.sha) for e in a.iteritems()}
    right_entries = {e.path: (e.mode, e.sha) for e in b.iteritems()}
    for name in sorted(left_entries.keys() | right_entries.keys()):
        left, right = left_entries.get(name), right_entries.get(name)
        text = name.decode("utf-8", "replace")  # git allows any bytes; mitosis writes UTF-8
        full = f"{path}/{text}" if path else text
        if left is None or right is None or left[1] == right[1]:
            mode, sha = left or right  # type: ignore[misc]
        elif stat.S_ISDIR(left[0]) and stat.S_ISDIR(right[0]):
            mode, sha = left[0], _union(st, left[1], right[1], full, clashes)
        elif full.startswith(VARIANTS + "/") and full.endswith(".json"):
            ours_lock, theirs_lock = _lock(st, left[1], full), _lock(st, right[1], full)
            if ours_lock.get("fingerprint") != theirs_lock.get("fingerprint"):
                clashes.append((full, ours_lock, theirs_lock))
            mode, sha = left
        elif full.startswith(VARIANTS + "/"):
            mode, sha = left  # a pickle beside a lock: decided by the lock
        else:
            clashes.append((full, None, None))
            mode, sha = left
        merged.add(name, mode, sha)
    if path.startswith(VARIANTS + "/") and path.count("/") == 1:
        _drop_renamed(st, merged, path)
    return st.add(merged)


def _drop_renamed(st: Store, folder: Any, path: str) -> None:
    """In a merged ``variants/<param>`` tree, drop the locks that one side renamed: a lock
    ``X.json`` whose value has a note ``X.renamed/<fingerprint>.json`` was renamed there."""
    entries = {e.path.decode(): e for e in folder.iteritems()}
    for name, entry in entries.items():
        renamed = (
            entries.get(name[: -len(".json")] + ".renamed") if name.endswith(".json") else None
        )
        if renamed is None:
            continue
        lock = _lock(st, entry.sha, f"{path}/{name}")
        note = f"{lock.get('fingerprint', '').removeprefix('sha256:')[:16]}.json".encode()
        notes = st.get(renamed.sha)
        if note in notes:  # type: ignore[operator]
            del folder[entry.path]
            pickle_name = entry.path[: -len(b".json")] + b".dill"
            if pickle_name in folder:
                del folder[pickle_name]


def _users(st: Store, experiment: str, commit: ObjectID, param: str, variant: str) -> list[str]:
    return [
        t.id
        for t in read_trials(st, experiment, commit)
        if param in t.params and t.params[param].variant == variant
    ]


def _compare(
    st: Store, experiment: str, ours: ObjectID, theirs: ObjectID, source: str
) -> tuple[ObjectID | None, list[Conflict]]:
    """The union of the two sides' trees, and the variant conflicts that forbid it."""
    clashes: list[Any] = []
    tree = _union(st, st.tree_of(ours), st.tree_of(theirs), "", clashes)
    found = []
    for path, mine, other in clashes:
        if mine is None:
            raise StoreError(
                f"{experiment}: {path} differs between this store and {source}, which never "
                "happens to trials mitosis wrote; compare the two with git before merging"
            )
        param, variant = mine.get("param", "?"), mine.get("variant", "?")
        found.append(
            Conflict(
                experiment=experiment,
                param=param,
                variant=variant,
                local=describe_lock(mine),
                remote=describe_lock(other),
                local_trials=_users(st, experiment, ours, param, variant),
                remote_trials=_users(st, experiment, theirs, param, variant),
            )
        )
    return tree, found


def _merge(
    st: Store, experiment: str, ours: ObjectID, theirs: ObjectID, source: str
) -> tuple[str, list[Conflict]]:
    """Merge ``theirs`` into the branch at ``ours``: a merge commit, or the conflicts."""
    tree, found = _compare(st, experiment, ours, theirs, source)
    if found:
        return "conflict", found
    assert tree is not None
    message = f"{experiment}: merge trials from {source}\n\nMitosis-Merge: {source}\n"
    commit = st.new_commit(tree, [ours, theirs], message)
    moved = st.repo.refs.set_if_equals(
        st.ref(experiment), ours, commit.id, message=f"mitosis: merge {source}".encode()
    )
    return ("merged" if moved else "retry"), []


def _refuse_forged_locks(
    st: Store, experiment: str, ours: ObjectID | None, theirs: ObjectID, source: str
) -> None:
    """Refuse ``theirs`` when it brings a variant lock or rename note that mitosis never
    writes (see :func:`~mitosis.store.incoming.lock_problems`): merging, counting and listing
    read them as written.

    Raises:
        SyncRefused: naming each such file.
    """
    forged = lock_problems(st, st.tree_of(ours), st.tree_of(theirs))
    if forged:
        raise SyncRefused(experiment, source, forged)


def integrate(
    st: Store, experiment: str, theirs: ObjectID, source: str
) -> tuple[str, list[Conflict]]:
    """Bring the fetched tip into the local branch: new, fast-forward, merge or conflict.

    Raises:
        SyncRefused: a fast-forward would delete or change a trial or a lock of this store, or
            the tip brings a variant lock or rename note that mitosis never writes.
    """
    from dulwich.file import FileLocked

    ref = st.ref(experiment)
    _refuse_forged_locks(st, experiment, st.local_tip(experiment), theirs, source)
    for attempt in range(_RETRIES):
        ours = st.local_tip(experiment)
        try:
            if ours is None:
                outcome = "new" if st.repo.refs.add_if_new(ref, theirs) else "retry"
            elif is_ancestor(st, theirs, ours):
                return "up to date", []
            elif is_ancestor(st, ours, theirs):
                lost = removals(st, st.tree_of(ours), st.tree_of(theirs))  # type: ignore[arg-type]
                if lost:
                    raise SyncRefused(experiment, source, lost)
                message = f"mitosis: pull {source}".encode()
                moved = st.repo.refs.set_if_equals(ref, ours, theirs, message=message)
                outcome = "fast-forward" if moved else "retry"
            else:
                outcome, found = _merge(st, experiment, ours, theirs, source)
                if found:
                    return outcome, found
        except FileLocked:
            outcome = "retry"
        if outcome != "retry":
            return outcome, []
        backoff(attempt)  # a trial finished meanwhile: merge again with it
    raise StoreError(f"could not update mitosis/{experiment}: too many writers at once")


def conflicts(
    experiment: str | None = None, *, store: str | os.PathLike[str] | None = None
) -> list[Conflict]:
    """The variant conflicts between the store's branches and its remote-tracking branches
    (what a pull would stop on), without changing anything.

    Raises:
        SyncRefused: a remote-tracking branch brings a variant lock or rename note that
            mitosis never writes (a pull of it is refused too).
    """
    found: list[Conflict] = []
    with Store.open(store) as st:
        for remote, name in st.tracking():
            exp = name.decode()
            if experiment is not None and exp != experiment:
                continue
            ours = st.local_tip(exp)
            ref = cast("Ref", tracking_branch(remote, exp))
            theirs = st.repo.refs[ref]
            if ours is None or ours == theirs:
                continue
            _refuse_forged_locks(st, exp, ours, theirs, remote)
            found += _compare(st, exp, ours, theirs, remote)[1]
    return found
