"""Where a trial is written: its folder's files, its record and its new variant locks, in one
commit on its experiment's branch, with a message that reads like a lab notebook entry."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..exceptions import StoreError
from ..model.layout import TRIAL, pointer_name, results_ref, trial_dir
from ..model.records import (
    FileData,
    Pointer,
    Trial,
    VariantLock,
    converter,
    dump_pointer,
    size_of,
)
from ..model.text import escape
from ..model.values import dumps_json
from .provenance import HERE, note
from .repo import Store, Written
from .results import drop_results, write_results
from .variants import lock_check, variant_files

if TYPE_CHECKING:
    from dulwich.objects import ObjectID

#: Files up to this size are written as any object; bigger ones are streamed.
_SMALL = 1 << 20

__all__ = ["commit_message", "streamed", "write_trial"]

_SUMMARY_VALUE = 40


def write_trial(
    store: Store,
    trial: Trial,
    files: Mapping[str, FileData],
    locks: Sequence[VariantLock],
    *,
    when: tuple[int, int] | None = None,
    trailers: str = "",
) -> None:
    """Commit ``trial``: its record (``trial.json``), ``files`` (paths inside its folder) and
    the lock files of ``locks``, refused if a lock holds another value by then. ``when`` dates
    the commit (see :meth:`Store.new_commit`); ``trailers`` are more trailer lines for its
    message (an imported trial says where it came from).

    Big files (and every file waiting on disk) are streamed into the store first. The files
    named in ``trial.detached`` are kept off the branch: a pointer takes each one's place in
    the folder, and ``refs/mitosis-results/<id>`` keeps their blobs, set before the branch
    moves (and removed again if the trial is refused).

    Raises:
        VariantConflict, VariantRenamed: a variant was locked meanwhile to another value.
        StoreError: the store cannot be written (its ``__cause__`` is the ``OSError``).
    """
    folder = trial_dir(trial.id)
    check = lock_check(trial.experiment, locks)
    branch: dict[str, bytes | Written | None] = {}
    detached: dict[str, ObjectID] = {}
    if any(streamed(data) for data in files.values()):  # refuse before streaming gigabytes
        check(store, store.tree_of(store.tip(trial.experiment)))
    try:
        for name, data in files.items():
            if name in trial.detached:
                blob = store.add_data(data)
                detached[name] = blob
                pointer = Pointer(blob.decode(), size_of(data), results_ref(trial.id).decode())
                branch[f"{folder}/{pointer_name(name)}"] = dump_pointer(pointer)
            elif isinstance(data, bytes) and not streamed(data):
                branch[f"{folder}/{name}"] = data
            else:
                branch[f"{folder}/{name}"] = Written(store.add_data(data))
    except OSError as exc:
        raise StoreError(f"cannot write to the store {store.path}: {exc}") from exc
    record = converter().unstructure(trial)
    branch[f"{folder}/{TRIAL}"] = dumps_json(record, indent=2).encode()
    branch.update(variant_files(locks))
    kept = None
    if detached:
        try:
            kept = write_results(store, trial, detached)
        except OSError as exc:
            raise StoreError(f"cannot write to the store {store.path}: {exc}") from exc
    try:
        store.commit(trial.experiment, branch, commit_message(trial) + trailers, check, when)
    except BaseException:
        drop_results(store, trial.id, kept)
        raise
    note(store, trial.experiment, [trial.id], HERE)


def streamed(data: FileData) -> bool:
    """Whether a file is streamed into the store (big, or waiting on disk or in a store)."""
    return not isinstance(data, bytes) or len(data) > _SMALL


def commit_message(trial: Trial) -> str:
    """A one-line summary, then git trailers, so ``git log`` reads like a lab notebook."""

    def short(text: str) -> str:
        text = escape(" ".join(text.split()))
        return text if len(text) <= _SUMMARY_VALUE else text[: _SUMMARY_VALUE - 1] + "…"

    # Names are checked when a trial resolves its parameters; a rerun's come from a record, which
    # may have been pulled: every value is escaped, so no line break can forge a trailer.
    params = " ".join(f"{escape(n)}={short(p.variant)}" for n, p in trial.params.items())
    main = trial.main
    shown = format(main, ".4g") if isinstance(main, float) else json.dumps(main)
    result = f"main={short(shown)}" if trial.status == "ok" else trial.status
    summary = f"{trial.experiment}: {params or '(no parameters)'} -> {result} ({trial.status})"
    code = "none"
    if trial.code is not None:
        code = (trial.code.commit or "no-commit") + (" dirty" if trial.code.dirty else "")
    rerun = f"Mitosis-Rerun-Of: {escape(trial.rerun_of)}\n" if trial.rerun_of else ""
    return (
        f"{summary}\n\n"
        f"Mitosis-Trial: {escape(trial.id)}\n"
        f"Mitosis-Experiment: {trial.experiment}\n"
        f"Mitosis-Code-Commit: {escape(code)}\n"
        f"Mitosis-Status: {trial.status}\n"
        f"{rerun}"
    )
