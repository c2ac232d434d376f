"""Where each trial of a store came from: recorded here, or pulled from which remote.

Kept beside the store, never pushed (``<git dir>/mitosis/provenance/<experiment>``, a line
``<trial id> <source>`` per trial, where the source is ``here`` or ``pull <remote>``): what a
branch says of itself cannot be trusted, what this store saw happen can. Reuse unpickles results
only of trials whose provenance the user accepts (see :mod:`mitosis.run.reuse`).

A store from before this file existed learns it once from its branches' reflogs: the commits
this store wrote itself (not those a pull or a merge brought) are its own trials.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from .repo import Store, warn

if TYPE_CHECKING:
    from dulwich.objects import ObjectID

__all__ = ["HERE", "added", "note", "sources", "trial_ids"]

HERE = "here"
_PULLED = ("mitosis: pull", "mitosis: merge", "mitosis: adopt", "mitosis: fetch")


def _file(store: Store, experiment: str) -> Path:
    return Path(store.repo.controldir(), "mitosis", "provenance", quote(experiment, safe=""))


def note(store: Store, experiment: str, trial_ids: Iterable[str], source: str) -> None:
    """Write down that ``trial_ids`` of ``experiment`` came from ``source``."""
    trial_ids = list(trial_ids)
    lines = "".join(f"{trial_id} {source}\n" for trial_id in trial_ids)
    if not lines:
        return
    path = _file(store, experiment)
    if not path.exists():
        _learn_from_reflog(store, experiment, path, set(trial_ids))
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(lines)
    except OSError as exc:  # a read-only store: reuse then declines, and says why
        warn("mitosis: cannot write down where trials came from (%s): %s", path, exc)


def sources(store: Store, experiment: str) -> dict[str, str]:
    """Trial id to where it came from (``here``, or ``pull <remote>``), as this store saw it."""
    path = _file(store, experiment)
    if not path.exists():
        _learn_from_reflog(store, experiment, path, set())
    found: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return found
    for line in text.splitlines():
        trial_id, _, source = line.partition(" ")
        found.setdefault(trial_id, source)  # the first word on a trial is the one that holds
    return found


def trial_ids(store: Store, commit: ObjectID | None) -> set[str]:
    """The ids of the trials on a branch at ``commit`` (none for None)."""
    root = store.tree_of(commit)
    return {
        trial_id
        for _, shard in store.children(root, "trials")
        for trial_id, _ in store.children(shard, "")
    }


def added(store: Store, before: ObjectID | None, after: ObjectID) -> set[str]:
    """The ids of the trials on a branch at ``after`` that it had not at ``before``: only the
    shards (``trials/<xx>``) that differ between the two are read."""
    if before is None:
        return trial_ids(store, after)
    old = dict(store.children(store.tree_of(before), "trials"))
    found: set[str] = set()
    for name, shard in store.children(store.tree_of(after), "trials"):
        if old.get(name) != shard:
            had = {trial_id for trial_id, _ in store.children(old.get(name), "")}
            found.update(t for t, _ in store.children(shard, "") if t not in had)
    return found


def _learn_from_reflog(store: Store, experiment: str, path: Path, noting: set[str]) -> None:
    """Start the file from the branch's reflog: trials whose commits this store wrote (said
    when there are any besides ``noting``, which are being written down anyway)."""
    own = []
    try:
        entries = list(store.repo.read_reflog(store.ref(experiment)))
    except Exception:  # no reflog, or one this dulwich cannot read: nothing learnt
        entries = []
    for entry in entries:
        message = entry.message.decode("utf-8", "replace")
        if message.startswith(_PULLED):
            continue
        try:
            commit = store.get(entry.new_sha)
        except KeyError:
            continue
        for line in commit.message.decode("utf-8", "replace").splitlines():  # type: ignore[attr-defined]
            if line.startswith("Mitosis-Trial: "):
                own.append(line[len("Mitosis-Trial: ") :].strip())
    try:
        os.makedirs(path.parent, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(f"{trial_id} {HERE}\n" for trial_id in own))
    except OSError:
        return
    learnt = [trial_id for trial_id in own if trial_id not in noting]
    if learnt:
        warn(
            "mitosis: learnt from the reflog of mitosis/%s that %d of its trials were recorded "
            "here (%s)",
            experiment,
            len(learnt),
            path,
        )
