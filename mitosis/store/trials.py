"""Reading trials back from their experiments' branches: listing, loading by id, and the
files of a trial.

Reading touches JSON only: listing and loading trials never unpickles anything.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator, Sequence
from operator import attrgetter
from typing import IO, TYPE_CHECKING, Any, NamedTuple, cast, overload

import attrs

from ..exceptions import BadRecord, StoreError, UnknownExperiment
from ..model.checks import check_record, lock_problem, nesting_problem
from ..model.layout import FORMAT, TRIAL, VARIANTS, trial_dir
from ..model.query import Row, columns, decoded, select, tagged
from ..model.records import FileInfo, Trial, trial_from_json
from ..model.text import escape
from .index import Index, Judge, blob_id, follow
from .repo import Store, warn
from .results import pointer_of

if TYPE_CHECKING:
    from dulwich.objects import ObjectID

__all__ = [
    "StoreFiles",
    "Trials",
    "listed",
    "load",
    "load_json",
    "read_trials",
    "renames",
    "trials",
    "variant_uses",
]

# Records already reported as bad (by the id of their folder's tree), said once per process.
_BAD: set[tuple[str, str]] = set()

#: A renamed variant: ``(parameter, name it was used by, fingerprint of its value)``.
Renamed = tuple[str, str, str]
# The renames at each commit read (by store and commit id): most have none.
_RENAMES: dict[tuple[str, ObjectID | None], dict[Renamed, str]] = {}


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


def _checked(raw: Any, trial_id: str, experiment: str) -> dict[str, Any]:
    """A parsed ``trial.json`` that passed its checks (see :mod:`mitosis.model.checks`): a
    :class:`Trial` is built from it without fail.

    Raises:
        BadRecord: the record fails its checks (a field, a tag, its place in the tree).
        StoreError: it was written by a newer mitosis.
    """
    where = f"trial {trial_id} on mitosis/{experiment}"
    record = check_record(raw, trial_id=trial_id, experiment=experiment, where=where)
    if record.get("format", 1) > FORMAT:
        raise StoreError(
            f"{where} was written by a newer mitosis (store format {record['format']}); "
            "upgrade mitosis to read it"
        )
    return record


def _parse(
    raw: Any, trial_id: str, experiment: str, source: StoreFiles, checked: bool = False
) -> Trial:
    """A :class:`Trial` from its parsed ``trial.json``, checked first (see :func:`_checked`)
    unless it passed its checks already (``checked``: the listing index keeps only records
    that did, for the id and experiment they were checked for).

    Raises:
        BadRecord: the record fails its checks (a field, or its place in the tree).
        StoreError: it was written by a newer mitosis.
    """
    if checked and raw.get("id") == trial_id and raw.get("experiment") == experiment:
        record = raw
    else:
        record = _checked(raw, trial_id, experiment)
    try:
        return trial_from_json(_results(record), source.location, source)
    except Exception as exc:  # pragma: no cover - what passed its checks builds (tested)
        where = f"trial {trial_id} on mitosis/{experiment}"
        raise BadRecord(f"{where} is not a readable trial record: {exc!r}") from None


def _results(record: dict[str, Any]) -> dict[str, Any]:
    """A record with its results' tags (``{"py/float": "nan"}``) decoded."""
    found = {
        **record,
        "main": decoded(record.get("main")),
        "metrics": decoded(record.get("metrics") or {}),
    }
    steps = record.get("steps") or []
    if any(tagged(s.get("main")) or tagged(s.get("metrics")) for s in steps):
        found["steps"] = [
            {**s, "main": decoded(s.get("main")), "metrics": decoded(s.get("metrics") or {})}
            for s in steps
        ]
    return found


def load_json(data: bytes, where: str) -> Any:
    """JSON from the store; what is not JSON, or nests deeper than what reads it can follow
    (see :func:`~mitosis.model.checks.nesting_problem`), is a :class:`StoreError` naming
    ``where``."""
    try:
        found = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise StoreError(f"{where} is not readable JSON: {exc}") from None
    problem = nesting_problem(data, found)
    if problem is not None:
        raise StoreError(f"{where} is not readable JSON: {problem}")
    return found


class Trials(Sequence[Trial]):
    """The trials of a listing (what :func:`mitosis.trials` returns): a read-only sequence of
    :class:`Trial`, each built from its checked ``trial.json`` when first used, so that
    listing thousands of trials builds none that no one looks at. Each listing builds its own
    trials, so changing one changes no later listing. It is not a list: ``list(found)``
    makes one (``sorted(found, key=...)`` a sorted one); it equals, and adds to, any sequence of
    trials as a list does.
    """

    __slots__ = ("_built", "_rows", "_source")

    def __init__(self, rows: list[Row], location: str) -> None:
        self._rows = rows
        self._built: list[Trial | None] = [None] * len(rows)
        self._source = StoreFiles(location)

    @property
    def rows(self) -> list[Row]:
        """Each listed trial's :class:`~mitosis.Row`: the fields ``mitosis log``
        prints, read without building a :class:`Trial`."""
        return list(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Trial: ...

    @overload
    def __getitem__(self, index: slice) -> Trials: ...

    def __getitem__(self, index: int | slice) -> Trial | Trials:
        if isinstance(index, slice):
            part = Trials(self._rows[index], self._source.location)
            part._built = self._built[index]
            return part
        trial = self._built[index]
        if trial is None:
            row = self._rows[index]
            trial = _parse(
                _record(row, self._source.location),
                row.id,
                row.experiment,
                self._source,
                checked=True,
            )
            trial = _named(trial, row.variants)
            self._built[index] = trial
        return trial

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Sequence[Trial]) -> list[Trial]:
        """A list of these trials, then ``other``'s (as lists add)."""
        return [*self, *other]

    def __radd__(self, other: Sequence[Trial]) -> list[Trial]:
        return [*other, *self]

    def __repr__(self) -> str:
        return f"Trials({list(self)!r})"


def _record(row: Row, location: str) -> Any:
    """The parsed ``trial.json`` of a row: the index's bytes when they are the blob's, else
    (a damaged index file) the blob, read from the store."""
    data = bytes(row.record)
    if blob_id(data) != row.blob:
        with Store.open(location) as store:
            data = store.get(cast("ObjectID", row.blob.encode())).as_raw_string()
    return json.loads(data)


def _judge(experiment: str) -> Judge:
    """What a listing of ``experiment`` says of a ``trial.json``: the checks of :func:`load`,
    exactly (a record that passes them builds a :class:`Trial`); when it passes, the columns
    of its row, then the locked variants it used (see :func:`variant_uses`)."""

    def judge(trial_id: str, data: bytes) -> list[Any]:
        record = _checked(
            load_json(data, f"trial {trial_id} on mitosis/{experiment}"), trial_id, experiment
        )
        locked = [
            [name, p["variant"], p["fingerprint"]]
            for name, p in record["params"].items()
            if p["source"] == "variant"
        ]
        return [*columns(record), locked]

    return judge


def variant_uses(store: Store, experiment: str) -> Iterator[tuple[str, list[list[str]]]]:
    """Each trial of an experiment's branch, oldest first: its id, and the locked variants it
    used (``[parameter, variant, fingerprint]`` each), from the listing index."""
    for entry in listed(store, experiment).entries:
        yield entry[0], entry[-1]


def renames(store: Store, experiment: str, commit: ObjectID | None) -> dict[Renamed, str]:
    """The variants of an experiment at ``commit`` of its branch that were renamed (see
    :func:`~mitosis.store.variants.rename_variant`): each name a value was used by, to the name
    that value has now, after every rename since. Read from the notes
    ``variants/<param>/<old>.renamed/<fingerprint>.json``; a note that is not one mitosis
    writes is said once (a warning of the logger ``mitosis``) and left out."""
    key = (store.path, commit)
    found = _RENAMES.get(key)
    if found is not None:
        return found
    root = store.tree_of(commit)
    direct: dict[Renamed, str] = {}
    for param, _ in store.children(root, VARIANTS):
        for folder, _ in store.children(root, f"{VARIANTS}/{param}"):
            if not folder.endswith(".renamed"):
                continue
            old = folder.removesuffix(".renamed")
            for file, blob in store.children(root, f"{VARIANTS}/{param}/{folder}"):
                path = f"{VARIANTS}/{param}/{folder}/{file}"
                try:
                    note = load_json(store.read_file(experiment, "", blob) or b"", path)
                except StoreError:
                    note = None
                if lock_problem(note, path) is not None:
                    if (store.path, blob.decode()) not in _BAD:
                        _BAD.add((store.path, blob.decode()))
                        where = escape(f"{path} of mitosis/{experiment}")
                        warn("mitosis: skipped a rename: %s is not a rename note", where)
                    continue
                assert isinstance(note, dict), "lock_problem checked it"
                new, fingerprint = note["renamed_to"], note["fingerprint"]
                direct[(param, old, fingerprint)] = new
    found = {}
    for (param, old, fingerprint), new in direct.items():
        for _ in direct:  # a later rename of the new name moves it on (a cycle stops)
            newer = direct.get((param, new, fingerprint))
            if newer is None or newer == old:
                break
            new = newer
        found[(param, old, fingerprint)] = new
    if len(_RENAMES) > 64:
        _RENAMES.clear()
    _RENAMES[key] = found
    return found


def _current(store: Store, index: Index) -> list[Row]:
    """The rows of ``index``, each renamed variant under the name its value has now."""
    rows = index.rows()
    tip = cast("ObjectID", index.tip.encode()) if index.tip else None
    names = renames(store, index.experiment, tip)
    if not names:
        return rows
    current = []
    for row, entry in zip(rows, index.entries, strict=True):
        moved = {p: names[(p, v, f)] for p, v, f in entry[-1] if (p, v, f) in names}
        current.append(row._replace(variants={**row.variants, **moved}) if moved else row)
    return current


def _named(trial: Trial, names: dict[str, str]) -> Trial:
    """``trial`` with its variants called by ``names`` (parameter to variant name), where
    they differ from the names it was recorded with."""
    moved = {
        k: attrs.evolve(p, variant=names[k])
        for k, p in trial.params.items()
        if names.get(k, p.variant) != p.variant
    }
    return attrs.evolve(trial, params={**trial.params, **moved}) if moved else trial


def listed(store: Store, experiment: str, commit: ObjectID | None = None) -> Index:
    """The listing index of an experiment's branch (or of its ``commit``): each record that
    failed its checks is said once per process (a warning of the logger ``mitosis``, its
    control characters escaped) and left out (see :mod:`mitosis.store.index`)."""
    index = follow(store, experiment, _judge(experiment), commit)
    for bad in index.bad:
        key = (store.path, bad.tree)
        if key not in _BAD:
            _BAD.add(key)
            # folder names come from the tree as they are: a terminal must not act on them
            warn("mitosis: skipped a trial: %s", escape(bad.reason))
    return index


def read_trials(store: Store, experiment: str, commit: ObjectID | None = None) -> Trials:
    """The trials on an experiment's branch (or at ``commit`` of it), oldest first, read
    from their ``trial.json`` blobs alone, through the listing index."""
    return Trials(_current(store, listed(store, experiment, commit)), store.path)


def trials(
    experiment: str | None = None,
    *,
    where: str | Sequence[str] | None = None,
    sort: str | None = None,
    store: str | os.PathLike[str] | None = None,
) -> Trials:
    """The recorded trials of an experiment (or of all experiments), oldest first.

    Reads JSON only: nothing is unpickled. The listing comes from the store's listing index
    (a file per experiment that follows its branch), and each :class:`Trial` of the sequence
    is built when first used (see :class:`Trials`).

    Args:
        experiment: the experiment (default: every experiment in the store).
        where: keep the trials meeting every clause, ``NAME OP VALUE`` joined with ``and``
            (``"noise=low and main<0.1"``; OP one of ``= != < > <= >=``). A parameter matches
            by variant name, or by value where both sides are numbers. A variant renamed since
            (:func:`mitosis.rename_variant`) is listed and matched by its new name, in the
            trial's :attr:`~Trial.params` too; its ``trial.json`` keeps the name it ran with.
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
        rows = [_current(st, listed(st, name)) for name in names]
        location = st.path
    if len(rows) == 1:
        found = rows[0]
    else:
        found = sorted((r for part in rows for r in part), key=attrgetter("started", "id"))
    if where is not None or sort is not None:
        found = select(found, where, sort)
    return Trials(found, location)


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
        trial = _parse(record, trial_id, experiment, StoreFiles(st.path))
        now = renames(st, experiment, st.tip(experiment))
        names = {
            k: now.get((k, p.variant, p.fingerprint), p.variant) for k, p in trial.params.items()
        }
        return _named(trial, names)
