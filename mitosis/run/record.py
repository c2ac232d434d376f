"""Recording: what a trial process left (a :class:`~mitosis.run.process.Ran`) and what the
experiment and its parameters were (a :class:`Recipe`) become a :class:`Trial` record and the
files of its folder, which :func:`mitosis.store.write.write_trial` commits."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .._version import __version__
from ..exceptions import StoreError
from ..model.layout import (
    CODE_DIFF,
    FORMAT,
    FORMAT_INLINE,
    OUTPUT,
    RESULTS_THRESHOLD,
    figure_name,
    is_result,
    param_name,
    qualified,
    result_name,
)
from ..model.records import (
    FileData,
    InMemory,
    OnDisk,
    Param,
    StepRecord,
    StepStatus,
    Trial,
    VariantLock,
    size_of,
)
from ..model.values import decode
from ..store.repo import Store
from ..store.trials import StoreFiles
from ..store.write import streamed, write_trial
from .environment import CodeSnapshot
from .experiment import Chain
from .params import Resolved, locks_of
from .process import Ran

if TYPE_CHECKING:
    from .reuse import Reuse

__all__ = ["Recipe", "commit_trial", "finish", "recipe_of"]


@attrs.frozen
class Recipe:
    """Everything recording a trial needs of its experiment and parameters, picklable (no
    functions, no values) so that whoever runs the trial can record it.

    Attributes:
        experiment: the experiment's name.
        steps: each step's name, ``module:qualname`` and code hash.
        params: the tracked parameters' records.
        untracked: the untracked parameters' records.
        param_files: ``params/<name>.dill`` of values JSON cannot hold.
        locks: the variant names the trial uses, to check and write their locks.
        rerun_of: the trial this one reruns.
    """

    experiment: str
    steps: tuple[tuple[str, str, str | None], ...]
    params: dict[str, Param]
    untracked: dict[str, Param]
    param_files: dict[str, bytes]
    locks: tuple[VariantLock, ...]
    rerun_of: str | None = None


def recipe_of(chain: Chain, resolved: list[Resolved], rerun_of: str | None = None) -> Recipe:
    """The :class:`Recipe` of a trial of ``chain`` with ``resolved``."""
    params: dict[bool, dict[str, Param]] = {True: {}, False: {}}
    files = {}
    for r in resolved:
        dill_path = None
        if r.encoded.pickled is not None:
            dill_path = param_name(r.name)
            files[dill_path] = r.encoded.pickled
        params[r.tracked][r.name] = Param(
            variant=r.variant,
            value=r.encoded.json,
            source=r.source,
            type=r.encoded.type,
            fingerprint=r.encoded.fingerprint,
            dill=dill_path,
        )
    return Recipe(
        experiment=chain.name,
        steps=tuple((s.name, s.function, s.code) for s in chain.steps),
        params=params[True],
        untracked=params[False],
        param_files=files,
        locks=locks_of(resolved),
        rerun_of=rerun_of,
    )


def finish(
    recipe: Recipe,
    ran: Ran,
    code: CodeSnapshot,
    location: str | None,
    reused: Reuse | None = None,
    threshold: int = RESULTS_THRESHOLD,
) -> tuple[Trial, dict[str, FileData]]:
    """The trial record of what ``ran`` left, and the files of its folder (paths inside it).

    ``location`` is the store the trial goes to, or None for a debug trial (whose files then
    stay in its record's memory). Results bigger than ``threshold`` bytes are to be kept off
    the trial's branch (``Trial.detached``; store format 2).
    """
    files: dict[str, FileData] = {**ran.environment, **recipe.param_files}
    if code.diff:
        files[CODE_DIFF] = code.diff
    files[OUTPUT] = ran.log
    captions = {}
    for i, (name, _, _) in enumerate(recipe.steps):
        if i in ran.results:
            files[result_name(name)] = ran.results[i]
        titles = ran.captions.get(i, [])
        for n, png in enumerate(ran.figures.get(i, [])):
            files[figure_name(name, n)] = png
            captions[figure_name(name, n)] = titles[n] if n < len(titles) else ""
    if reused:
        for name, data in reused.results.items():
            files[result_name(name)] = data
    if location is None:  # a debug trial keeps its files in memory
        files = {name: _bytes(data) for name, data in files.items()}
        detached = []
    else:
        detached = sorted(
            name for name, data in files.items() if is_result(name) and size_of(data) > threshold
        )
    outcome = ran.outcome
    steps = _step_records(recipe, outcome, reused, ran.running)
    last = steps[-1]
    if len(steps) == 1:
        metrics = last.metrics
    else:
        metrics = {qualified(s.name, k): v for s in steps for k, v in s.metrics.items()}
    ok = outcome["status"] == "ok"
    trial = Trial(
        id=secrets.token_hex(6),
        experiment=recipe.experiment,
        status=outcome["status"],
        main=last.main if ok else None,
        metrics=metrics,
        params=recipe.params,
        untracked=recipe.untracked,
        started=ran.started.isoformat(timespec="microseconds"),
        ended=(ran.started + dt.timedelta(seconds=ran.duration)).isoformat(timespec="microseconds"),
        duration=round(ran.duration, 6),
        host=ran.host,
        user=ran.user,
        function=", ".join(function for _, function, _ in recipe.steps),
        code=code.state,
        error=outcome.get("error"),
        files=sorted(files),
        captions=captions,
        steps=steps,
        rerun_of=recipe.rerun_of,
        detached=detached,
        mitosis=__version__,
        format=FORMAT if detached else FORMAT_INLINE,
        location=location,
        source=InMemory(_in_memory(files)) if location is None else StoreFiles(location),
    )
    return trial, files


def _bytes(data: FileData) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, OnDisk):
        with open(data.path, "rb") as file:
            return file.read()
    raise TypeError(f"a debug trial has no store to read {data} from")


def _in_memory(files: dict[str, FileData]) -> dict[str, bytes]:
    return {name: data for name, data in files.items() if isinstance(data, bytes)}


def commit_trial(
    store: Store, trial: Trial, files: dict[str, FileData], locks: Sequence[VariantLock]
) -> Trial:
    """Commit a finished trial (:func:`mitosis.store.write.write_trial`); the trial recorded.

    When the store cannot take the trial's big files (a full disk, a file size limit), the
    trial is recorded without them, as ``failed``, its error naming the files and the cause;
    when even that cannot be written, the error is raised and nothing is recorded.

    Raises:
        StoreError: the store cannot be written.
        VariantConflict, VariantRenamed: a variant was locked meanwhile to another value.
    """
    try:
        write_trial(store, trial, files, locks)
        return trial
    except StoreError as exc:
        cause = exc.__cause__
        big = {name: size_of(data) for name, data in files.items() if streamed(data)}
        if not isinstance(cause, OSError) or not big:
            raise
    kept = {name: data for name, data in files.items() if name not in big}
    listed = ", ".join(f"{name} ({size} bytes)" for name, size in sorted(big.items()))
    reason = f"mitosis could not store {listed} in {store.path}: {cause}"
    failed = attrs.evolve(
        trial,
        status="failed",
        main=None,
        error=f"{trial.error.rstrip()}\n{reason}" if trial.error else reason,
        files=sorted(kept),
        detached=[],
        format=FORMAT_INLINE,
    )
    write_trial(store, failed, kept, locks)
    return failed


def _step_records(
    recipe: Recipe, outcome: dict[str, Any], reused: Reuse | None, running: int
) -> list[StepRecord]:
    """Each step's record: reused, run (from the worker's report), or not run. ``running`` is
    the last step the trial process started."""
    ran = {r["name"]: r for r in outcome.get("steps", [])}
    records = []
    for i, (name, function, code) in enumerate(recipe.steps):
        if reused and i < reused.count:
            records.append(attrs.evolve(reused.steps[i], name=name, function=function))
            continue
        report = ran.get(name)
        if report is None:  # the process died in this step, or a step before it failed
            status: StepStatus = outcome["status"] if i == running else "not run"
            records.append(StepRecord(name, function, status, code=code))
            continue
        records.append(
            StepRecord(
                name=name,
                function=function,
                status=report["status"],
                main=decode(report.get("main")),
                metrics=decode(report.get("metrics") or {}),
                duration=round(report.get("seconds", 0.0), 6),
                code=code,
                extra=decode(report.get("extra") or {}),
            )
        )
    return records
