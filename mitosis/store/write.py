"""Where a trial is written: its folder's files, its record and its new variant locks, in one
commit on its experiment's branch, with a message that reads like a lab notebook entry."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from ..model.layout import TRIAL, trial_dir
from ..model.records import Trial, VariantLock, converter
from ..model.text import escape
from ..model.values import dumps_json
from .provenance import HERE, note
from .repo import Store
from .variants import lock_check, variant_files

__all__ = ["commit_message", "write_trial"]

_SUMMARY_VALUE = 40


def write_trial(
    store: Store,
    trial: Trial,
    files: Mapping[str, bytes],
    locks: Sequence[VariantLock],
    *,
    when: tuple[int, int] | None = None,
    trailers: str = "",
) -> None:
    """Commit ``trial``: its record (``trial.json``), ``files`` (paths inside its folder) and
    the lock files of ``locks``, refused if a lock holds another value by then. ``when`` dates
    the commit (see :meth:`Store.new_commit`); ``trailers`` are more trailer lines for its
    message (an imported trial says where it came from).

    Raises:
        VariantConflict, VariantRenamed: a variant was locked meanwhile to another value.
        StoreError: the store cannot be written.
    """
    folder = trial_dir(trial.id)
    branch: dict[str, bytes | None] = {f"{folder}/{name}": data for name, data in files.items()}
    record = converter().unstructure(trial)
    branch[f"{folder}/{TRIAL}"] = dumps_json(record, indent=2).encode()
    branch.update(variant_files(locks))
    check = lock_check(trial.experiment, locks)
    store.commit(trial.experiment, branch, commit_message(trial) + trailers, check, when)
    note(store, trial.experiment, [trial.id], HERE)


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
