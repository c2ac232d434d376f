"""Results kept off the trial branches (store format 2).

A result bigger than the threshold is stored as a blob (streamed, see :mod:`mitosis.store.blobs`)
that no trial branch reaches: the trial's folder holds a small pointer, ``<name>.pointer``, in
its place, and the blob is kept by one ref per trial, ``refs/mitosis-results/<trial id>``, at a
commit whose tree holds the trial's detached files under their names (``results/fit.dill``).
So a ``git clone``, a default ``git fetch`` or a plain ``mitosis pull`` bring records only, and
results come on demand (``mitosis pull --results``, or :meth:`Trial.results`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from ..exceptions import StoreError
from ..model.layout import RESULTS_PREFIX, pointer_name, results_id, results_ref
from ..model.records import Pointer, Trial, load_pointer
from .repo import Store, fault_point

if TYPE_CHECKING:
    from dulwich.objects import ObjectID
    from dulwich.refs import Ref

__all__ = ["POINTER_MOST", "drop_results", "pointer_of", "results_refs", "write_results"]

#: The most bytes a pointer file may hold (mitosis writes about 200).
POINTER_MOST = 512


def results_message(trial: Trial) -> str:
    """The message of a results commit: what it keeps, then trailers."""
    return (
        f"{trial.experiment}: results of trial {trial.id}\n\n"
        f"Mitosis-Results: {trial.id}\n"
        f"Mitosis-Experiment: {trial.experiment}\n"
    )


def write_results(store: Store, trial: Trial, blobs: Mapping[str, ObjectID]) -> ObjectID | None:
    """Keep ``blobs`` (file name in the trial's folder to blob id, all in the store) reachable
    from ``refs/mitosis-results/<trial id>``: a commit of a tree of them, with no parent.

    Called before the trial's branch moves, so that no pointer is ever committed whose blob a
    ``git gc`` could prune.

    Returns:
        The commit the ref was set to (None if it was there already, keeping the same blobs).

    Raises:
        StoreError: the ref exists already and keeps other blobs.
    """
    tree = store.build_tree(None, dict(blobs))
    commit = store.new_commit(tree, [], results_message(trial))
    ref = cast("Ref", results_ref(trial.id))
    if not store.repo.refs.add_if_new(ref, commit.id, message=b"mitosis: results"):
        if store.tree_of(store.repo.refs[ref]) != tree:
            raise StoreError(
                f"{ref.decode()} exists in {store.path} and keeps other results; "
                "trial ids are random, so this store holds a copied trial: remove the ref"
            )
        return None
    fault_point("results")
    return commit.id


def drop_results(store: Store, trial_id: str, commit: ObjectID | None) -> None:
    """Remove the results ref a writer set (``commit``) for a trial not recorded after all."""
    if commit is None:
        return
    ref = cast("Ref", results_ref(trial_id))
    with contextlib.suppress(Exception):  # the trial failed already: say why, not this
        store.repo.refs.remove_if_equals(ref, commit)


def results_refs(store: Store) -> dict[str, ObjectID]:
    """Trial id to the commit of its results ref, for every results ref of the store (a ref
    there whose name is no trial id, as a store copied from elsewhere may hold, is none)."""
    found = store.repo.refs.as_dict(cast("Ref", RESULTS_PREFIX.rstrip(b"/")))
    ids = {name: results_id(RESULTS_PREFIX + name) for name in found}
    return {trial_id: found[name] for name, trial_id in ids.items() if trial_id is not None}


def pointer_of(store: Store, trial: Trial, name: str) -> Pointer | None:
    """The pointer standing in the trial's folder for ``name``, read and checked; None when
    there is none."""
    path = f"{trial.path}/{pointer_name(name)}"
    data = store.read_file(trial.experiment, path)
    if data is None:
        return None
    where = f"{pointer_name(name)} of trial {trial.id}"
    if len(data) > POINTER_MOST:  # so that its JSON cannot nest deeper than json.loads goes
        raise StoreError(
            f"{where} is not a readable pointer: {len(data)} bytes, where a pointer holds "
            "about 200; the record was damaged or forged"
        )
    return load_pointer(data, where, trial.id)
