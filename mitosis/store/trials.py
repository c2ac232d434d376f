"""Reading trials back from their experiments' branches: listing, loading by id, and the
files of a trial.

Reading touches JSON only: listing and loading trials never unpickles anything.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from ..exceptions import BadRecord, StoreError, UnknownExperiment
from ..model.checks import check_record
from ..model.layout import FORMAT, TRIAL, TRIALS, trial_dir
from ..model.records import FileInfo, Trial, trial_from_json
from ..model.values import decode
from .cache import ListingCache
from .repo import Store, warn
from .results import pointer_of

if TYPE_CHECKING:
    from dulwich.objects import ObjectID

__all__ = ["StoreFiles", "load", "load_json", "read_trials", "trials"]

# trial.json records, by the id of their folder's tree: content-addressed, so never stale.
_CACHE: dict[tuple[str, bytes], Any] = {}
_SHARDS: dict[tuple[str, bytes], list[tuple[str, ObjectID]]] = {}
_CACHE_LIMIT = 200_000
_CONTAINERS = (dict, list)
# Records already reported as bad (by the id of their folder's tree), said once per process.
_BAD: set[tuple[str, bytes]] = set()


class StoreFiles(NamedTuple):
    """The files of trials in the store at ``location``: what :meth:`Trial.read` reads.

    Each read opens the store (a trial outlives the store it was read from); nothing here
    unpickles. A file kept off the branch (``trial.detached``) is found through its pointer;
    when its blob is not in the store, it is fetched from the store's remotes that have it
    (see :func:`mitosis.store.sync.fetch_results`), else a :class:`StoreError` says which
    ``mitosis pull --results`` brings it.
    """

    location: str

    def read(self, trial: Trial, name: str) -> bytes | None:
        if name not in trial.detached:
            with Store.open(self.location) as store:
                return store.read_file(trial.experiment, f"{trial.path}/{name}")
        file = self.open(trial, name)
        if file is None:
            return None
        with file:
            return file.read()

    def open(self, trial: Trial, name: str) -> IO[bytes] | None:
        where = f"{name} of trial {trial.id}"
        with Store.open(self.location) as store:
            if name not in trial.detached:
                entry = _file_entry(store, trial, name)
                return None if entry is None else store.open_blob(entry.decode(), where)
            pointer = pointer_of(store, trial, name)
            if pointer is None:
                return None
            file = store.open_blob(pointer.blob, where)
            if file is None:
                from .sync import fetch_missing  # on first need: results not here are rare

                fetch_missing(store, trial, name, pointer)
                file = store.open_blob(pointer.blob, where)
            if file is None:  # pragma: no cover - fetch_missing raises when it brings nothing
                raise StoreError(f"{where} could not be fetched")
            return file

    def stat(self, trial: Trial, name: str) -> FileInfo | None:
        with Store.open(self.location) as store:
            if name not in trial.detached:
                entry = _file_entry(store, trial, name)
                size = None if entry is None else store.blob_size(entry.decode())
                return None if size is None else FileInfo(size, here=True, detached=False)
            pointer = pointer_of(store, trial, name)
            if pointer is None:
                return None
            return FileInfo(pointer.size, here=store.has(pointer.blob), detached=True)


def _file_entry(store: Store, trial: Trial, name: str) -> ObjectID | None:
    """The blob id of a file of the trial's folder on its branch."""
    tree = store.tree_of(store.tip(trial.experiment))
    entry = store.entry(tree, f"{trial.path}/{name}")
    if entry is None or not stat.S_ISREG(entry[0]):
        return None
    return entry[1]


def _parse(
    raw: Any, trial_id: str, experiment: str, source: StoreFiles, checked: bool = False
) -> Trial:
    """A :class:`Trial` from its parsed ``trial.json``, checked first (see
    :mod:`mitosis.model.checks`) unless it passed its checks already (``checked``: the listing
    caches keep only records that did, by the id of their folder's tree; a tree may stand in
    another place too, so its place is checked all the same).

    Raises:
        BadRecord: the record fails its checks (a field, or its place in the tree).
        StoreError: it was written by a newer mitosis.
    """
    where = f"trial {trial_id} on mitosis/{experiment}"
    if checked and raw.get("id") == trial_id and raw.get("experiment") == experiment:
        record = raw
    else:
        record = check_record(raw, trial_id=trial_id, experiment=experiment, where=where)
    if record.get("format", 1) > FORMAT:
        raise StoreError(
            f"{where} was written by a newer mitosis (store format {record['format']}); "
            "upgrade mitosis to read it"
        )
    try:
        return trial_from_json(_results(record), source.location, source)
    except Exception as exc:  # what the checks let through and the converter refuses
        raise BadRecord(f"{where} is not a readable trial record: {exc!r}") from None


def _tagged(value: Any) -> bool:
    """Whether a result may hold a tag (only containers can): most hold plain numbers."""
    if type(value) is dict:
        return "py/float" in value or any(type(v) in _CONTAINERS for v in value.values())
    return type(value) is list


def _decoded(value: Any) -> Any:
    return decode(value) if _tagged(value) else value


def _results(record: dict[str, Any]) -> dict[str, Any]:
    """A record with its results' tags (``{"py/float": "nan"}``) decoded."""
    decoded = {
        **record,
        "main": _decoded(record.get("main")),
        "metrics": _decoded(record.get("metrics") or {}),
    }
    steps = record.get("steps") or []
    if any(_tagged(s.get("main")) or _tagged(s.get("metrics")) for s in steps):
        decoded["steps"] = [
            {**s, "main": _decoded(s.get("main")), "metrics": _decoded(s.get("metrics") or {})}
            for s in steps
        ]
    return decoded


def load_json(data: bytes, where: str) -> Any:
    """JSON from the store; what is not JSON is a :class:`StoreError` naming ``where``."""
    try:
        return json.loads(data)
    except ValueError as exc:
        raise StoreError(f"{where} is not readable JSON: {exc}") from None


def read_trials(store: Store, experiment: str, commit: ObjectID | None = None) -> list[Trial]:
    """The trials on an experiment's branch (or at ``commit`` of it), read from their
    ``trial.json`` blobs alone.

    Records are kept by the id of their folder's tree, in memory and in the store's listing
    cache (see :mod:`mitosis.store.cache`): content-addressed, so never stale. Each call builds
    new ``Trial`` objects from them, so that changing one changes no later listing.
    """
    root = store.tree_of(commit or store.tip(experiment))
    source = StoreFiles(store.path)
    found = []
    with ListingCache(store, experiment) as cache:
        for shard, shard_id in store.children(root, TRIALS):
            entries = _SHARDS.get((store.path, shard_id)) or cache.shard(shard_id)
            if entries is None:
                entries = store.children(shard_id, "")
            cache.keep_shard(shard_id, entries)
            _SHARDS[store.path, shard_id] = entries
            for trial_id, tree_id in entries:
                trial = _trial(store, experiment, shard, trial_id, tree_id, cache, source)
                if trial is not None:
                    found.append(trial)
    return found


def _trial(
    store: Store,
    experiment: str,
    shard: str,
    trial_id: str,
    tree_id: ObjectID,
    cache: ListingCache,
    source: StoreFiles,
) -> Trial | None:
    """One trial of a listing, or None (said once) when its record is missing or fails its
    checks: one bad record never stops the listing of the others."""
    key = (store.path, tree_id)
    record = _CACHE.get(key)
    if record is None:
        record = cache.record(tree_id)
    checked = record is not None
    try:
        if shard != trial_id[:2]:
            raise BadRecord(
                f"trial {trial_id} on mitosis/{experiment} is in the folder trials/{shard}, "
                f"not trials/{trial_id[:2]}"
            )
        if record is None:
            data = store.read_file(experiment, TRIAL, tree_id)
            if data is None:
                raise BadRecord(f"trial {trial_id} on mitosis/{experiment} has no {TRIAL}")
            record = load_json(data, f"trial {trial_id} on mitosis/{experiment}")
        trial = _parse(record, trial_id, experiment, source, checked)
    except StoreError as bad:
        if key not in _BAD:
            _BAD.add(key)
            warn("mitosis: skipped a trial: %s", str(bad))
        return None
    cache.keep(tree_id, record)  # only records that passed their checks are kept
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
        _SHARDS.clear()
    _CACHE[key] = record
    return trial


def trials(
    experiment: str | None = None,
    *,
    where: str | Sequence[str] | None = None,
    sort: str | None = None,
    store: str | os.PathLike[str] | None = None,
) -> list[Trial]:
    """The recorded trials of an experiment (or of all experiments), oldest first.

    Reads JSON only: nothing is unpickled.

    Args:
        experiment: the experiment (default: every experiment in the store).
        where: keep the trials meeting every clause, ``NAME OP VALUE`` joined with ``and``
            (``"noise=low and main<0.1"``; OP one of ``= != < > <= >=``). A parameter matches
            by variant name, or by value where both sides are numbers.
        sort: order by this parameter, metric or field (``main``, ``duration``, ...): numbers
            first, ascending, then text; trials without it last.
        store: the store (default as for :func:`mitosis.run`).

    Raises:
        UnknownExperiment: the store has no branch for ``experiment``.
        UnknownField: ``where`` or ``sort`` names a field no trial has.
        BadQuery: a ``where`` clause is not ``NAME OP VALUE``.
    """
    with Store.open(store) as st:
        names = st.experiments()
        if experiment is not None:
            if experiment not in names:
                raise UnknownExperiment(experiment, names, st.path)
            names = [experiment]
        found = [t for name in names for t in read_trials(st, name)]
    found.sort(key=lambda t: (t.started, t.id))
    if where is None and sort is None:
        return found
    from ..model.query import select  # on first need: plain listings start quicker

    return select(found, where, sort)


def load(id_prefix: str, *, store: str | os.PathLike[str] | None = None) -> Trial:
    """The trial whose id starts with ``id_prefix`` (4 or more hex digits).

    Raises:
        UnknownTrial: no trial matches.
        AmbiguousTrialId: several trials match; give more characters.
    """
    with Store.open(store) as st:
        experiment, trial_id = st.find(id_prefix)
        data = st.read_file(experiment, f"{trial_dir(trial_id)}/{TRIAL}")
        if data is None:
            raise BadRecord(f"trial {trial_id} on mitosis/{experiment} has no {TRIAL}")
        record = load_json(data, f"trial {trial_id} on mitosis/{experiment}")
        return _parse(record, trial_id, experiment, StoreFiles(st.path))
