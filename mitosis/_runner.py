"""Running a trial in a fresh process, and recording what came of it."""

from __future__ import annotations

import datetime as dt
import inspect
import os
import secrets
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from . import _environment
from ._model import CodeState, Param, StepRecord, Trial, converter, trial_dir
from ._params import Chain, Lookup, Resolved, chain_of, resolve
from ._process import Job, Ran, perform
from ._recorder import commit_message, lock_check, variant_files, variant_path
from ._reuse import Reuse, find_reusable
from ._serialize import decode, dumps_json
from ._store import Check, Store
from ._worker import dumps
from .exceptions import BadParameter, TrialFailed

__all__ = ["Origin", "Recipe", "finish", "prepare", "recipe", "record", "run", "run_experiment"]


def run(
    experiment: Callable[..., Any] | Sequence[Any],
    params: Mapping[str, Any] | None = None,
    *,
    lookup: Lookup | None = None,
    untracked: Iterable[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    debug: bool = False,
    reuse: bool = False,
    figure_dpi: float | None = None,
) -> Trial:
    """Run one trial of an experiment in a fresh Python process and record it in the store.

    Args:
        experiment: a function (importable, or defined in ``__main__``, a notebook or a
            closure: then sent to the trial process by value with dill), or a list of steps
            (functions, or ``(name, fn[, lookup[, untracked]])`` tuples) whose ``"data"`` is
            handed to the next step's first parameter.
        params: parameter name to value (``step.param`` in a chain). For a parameter with a
            lookup table, a string names a variant; any other value is used as given, named by
            its repr.
        lookup: parameter name to ``{variant name: value}`` (default: from
            :func:`mitosis.experiment`); for a single function only.
        untracked: parameters recorded but never locked (default: from the decorator).
        store: path of the git repository to record in (default: ``$MITOSIS_STORE``, else the
            repository containing the current directory, else ``./trials``).
        debug: run, but record nothing and lock nothing.
        reuse: where an earlier successful trial in the store ran the same first steps (same
            functions and parameter values, at the same clean code commit), load the stored
            result of those steps instead of running them again. This unpickles that result:
            reuse trials from stores you trust.
        figure_dpi: dots per inch of the PNG figures recorded (default 100, or
            ``$MITOSIS_FIGURE_DPI``; the command line reads ``figure_dpi`` of ``[tool.mitosis]``).

    Returns:
        The recorded trial (status ``ok``).

    Raises:
        BadParameter: ``params`` does not fit the signatures (nothing ran).
        UnknownVariant: a string names no variant of its parameter (nothing ran).
        VariantConflict: a variant name is locked to another value (nothing ran).
        TrialFailed: a step raised, returned a wrong shape, was killed or interrupted; the
            trial is recorded all the same, and the error carries its id.
    """
    chain = chain_of(experiment, lookup, untracked)
    return run_experiment(
        chain, params, store=store, debug=debug, reuse=reuse, figure_dpi=figure_dpi
    )


def run_experiment(
    chain: Chain,
    params: Mapping[str, Any] | None,
    *,
    store: str | os.PathLike[str] | None,
    debug: bool,
    reuse: bool = False,
    figure_dpi: float | None = None,
) -> Trial:
    """:func:`run` with the experiment's steps already decided."""
    resolved = resolve(chain, params)
    return record(chain, resolved, store=store, debug=debug, reuse=reuse, figure_dpi=figure_dpi)


def check_dpi(figure_dpi: float | None) -> None:
    """Refuse a ``figure_dpi`` that is not a positive number."""
    if figure_dpi is not None and not (
        isinstance(figure_dpi, (int, float)) and not isinstance(figure_dpi, bool) and figure_dpi > 0
    ):
        raise BadParameter(
            f"figure_dpi must be a positive number of dots per inch, e.g. 150; got {figure_dpi!r}"
        )


@attrs.frozen
class Origin:
    """Where a trial's code comes from, when not from this process's import path.

    Attributes:
        code: the code state and diff to record (instead of reading the code's repository).
        path: folders to put first on the trial process's import path.
        rerun_of: the trial this one reruns.
        figure_dpi: dots per inch of the figures (None: ``$MITOSIS_FIGURE_DPI``, else 100).
    """

    code: tuple[CodeState | None, bytes] | None = None
    path: tuple[str, ...] = ()
    rerun_of: str | None = None
    figure_dpi: float | None = None


def record(
    chain: Chain,
    resolved: list[Resolved],
    *,
    store: str | os.PathLike[str] | None,
    debug: bool = False,
    reuse: bool = False,
    origin: Origin | None = None,
    figure_dpi: float | None = None,
) -> Trial:
    """Run ``chain`` with parameters already resolved, and record the trial (see :func:`run`)."""
    check_dpi(figure_dpi)
    origin = attrs.evolve(origin or Origin(), figure_dpi=figure_dpi)
    if debug:
        trial, _, interrupted = _execute(chain, resolved, None, False, origin)
    else:
        with Store.open(store, create=True) as st:
            Store.ref(chain.name)  # a bad experiment name fails before anything runs
            check = lock_check(chain.name, resolved)
            _lock(st, chain.name, resolved, check)
            trial, files, interrupted = _execute(chain, resolved, st, reuse, origin)
            st.commit(chain.name, files, commit_message(trial), check)
    if interrupted:  # recorded; now let Ctrl-C stop the caller as it would have
        raise KeyboardInterrupt
    if trial.status != "ok":
        raise TrialFailed(None if debug else trial.id, trial.status, trial.error or "")
    return trial


def _lock(store: Store, experiment: str, resolved: list[Resolved], check: Check) -> None:
    """Lock the trial's new variant names in a commit of their own before it runs, so that two
    trials meaning different values by one new name cannot both run: the second is refused."""
    tree = store.tree_of(store.tip(experiment))
    check(store, tree)
    new = [
        r
        for r in resolved
        if r.tracked
        and r.source == "variant"
        and store.read_file(experiment, variant_path(r.name, r.variant) + ".json", tree) is None
    ]
    if new:
        names = " ".join(f"{r.name}={r.variant}" for r in new)
        message = f"{experiment}: lock {names}\n\nMitosis-Lock: {names}\n"
        store.commit(experiment, variant_files(new), message, check)


def _function_ref(fn: Callable[..., Any]) -> tuple[str, str] | Callable[..., Any]:
    """``(module, qualname)`` when the trial process can import ``fn``, else ``fn`` itself."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        return fn
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return (module, qualname) if obj is fn else fn


def _code_start(fn: Callable[..., Any]) -> str:
    """Where to look for the code's repository: the function's file, else the working dir."""
    try:
        source = inspect.getsourcefile(inspect.unwrap(fn))
    except TypeError:
        source = None
    return str(Path(source).parent) if source and Path(source).exists() else os.getcwd()


def prepare(
    chain: Chain,
    resolved: list[Resolved],
    *,
    reused: Reuse | None = None,
    origin: Origin | None = None,
    echo: bool = True,
) -> Job:
    """The job that runs ``chain`` with ``resolved`` in a trial process (see :func:`perform`)."""
    origin = origin or Origin()
    first = reused.count if reused else 0
    payload = {
        "steps": [
            {
                "name": step.name,
                "function": step.ref or _function_ref(step.fn),
                "kwargs": {r.arg: r.value for r in resolved if r.step == i},
            }
            for i, step in enumerate(chain.steps)
        ],
        "start": first,
    }
    return Job(
        path=[*origin.path, *sys.path],
        payload=dumps(payload),
        steps=len(chain.steps),
        start=first,
        reused=reused.results[chain.steps[first - 1].name] if reused else None,
        echo=echo,
        figure_dpi=origin.figure_dpi,
    )


def _execute(
    chain: Chain, resolved: list[Resolved], store: Store | None, reuse: bool, origin: Origin
) -> tuple[Trial, dict[str, bytes], bool]:
    """Run the trial process; return the trial, its files (paths inside the branch), and
    whether Ctrl-C stopped it. ``store`` is None for a debug trial."""
    start = _code_start(chain.steps[0].fn)
    exclude = store.path if store else None
    code = origin.code
    if code is None and reuse and store is not None:
        code = _environment.code_state(start, exclude)
    reused = find_reusable(store, chain, resolved, code[0]) if reuse and code and store else None
    collector = _Collector(start, code, exclude)
    collector.start()
    ran = perform(prepare(chain, resolved, reused=reused, origin=origin))
    collector.join()
    assert collector.code is not None
    if collector.error:
        ran = attrs.evolve(ran, environment={**ran.environment, "code-error.txt": collector.error})
    trial, files = finish(recipe(chain, resolved, origin), ran, collector.code, store, reused)
    return trial, files, ran.interrupted


class _Collector(threading.Thread):
    """Reads the code's git state while the trial process runs."""

    def __init__(
        self, start: str, code: tuple[CodeState | None, bytes] | None, exclude: str | None
    ) -> None:
        super().__init__(daemon=True)
        self.start_dir = start
        self.exclude = exclude
        self.code = code
        self.error: bytes | None = None

    def run(self) -> None:
        if self.code is not None:
            return
        try:
            self.code = _environment.code_state(self.start_dir, self.exclude)
        except Exception:  # a trial is never lost for want of its code state
            self.code = (None, b"")
            self.error = traceback.format_exc().encode()


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
        locks: the resolved parameters without their values, to check and write variant locks.
        rerun_of: the trial this one reruns.
    """

    experiment: str
    steps: tuple[tuple[str, str, str | None], ...]
    params: dict[str, Param]
    untracked: dict[str, Param]
    param_files: dict[str, bytes]
    locks: tuple[Resolved, ...]
    rerun_of: str | None = None

    @property
    def check(self) -> Check:
        """The store check refusing a variant locked meanwhile to another value."""
        return lock_check(self.experiment, list(self.locks))


def recipe(chain: Chain, resolved: list[Resolved], origin: Origin | None = None) -> Recipe:
    """The :class:`Recipe` of a trial of ``chain`` with ``resolved``."""
    params: dict[bool, dict[str, Param]] = {True: {}, False: {}}
    files = {}
    for r in resolved:
        dill_path = None
        if r.encoded.pickled is not None:
            dill_path = f"params/{r.name}.dill"
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
        locks=tuple(attrs.evolve(r, value=None) for r in resolved),
        rerun_of=origin.rerun_of if origin else None,
    )


def finish(
    recipe: Recipe,
    ran: Ran,
    code: tuple[CodeState | None, bytes],
    store: Store | None,
    reused: Reuse | None = None,
) -> tuple[Trial, dict[str, bytes]]:
    """The trial record of what ``ran`` left, and its files (paths inside the branch)."""
    files: dict[str, bytes] = {**ran.environment, **recipe.param_files}
    state, diff = code
    if diff:
        files["code.diff"] = diff
    files["output.log"] = ran.log
    captions = {}
    for i, (name, _, _) in enumerate(recipe.steps):
        if i in ran.results:
            files[f"results/{name}.dill"] = ran.results[i]
        titles = ran.captions.get(i, [])
        for n, png in enumerate(ran.figures.get(i, [])):
            files[f"figures/{name}-{n}.png"] = png
            captions[f"figures/{name}-{n}.png"] = titles[n] if n < len(titles) else ""
    if reused:
        for name, data in reused.results.items():
            files[f"results/{name}.dill"] = data
    outcome = ran.outcome
    steps = _step_records(recipe, outcome, reused, ran.running)
    from . import __version__

    last = steps[-1]
    if len(steps) == 1:
        metrics = last.metrics
    else:
        metrics = {f"{s.name}.{k}": v for s in steps for k, v in s.metrics.items()}
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
        code=state,
        error=outcome.get("error"),
        files=sorted(files),
        captions=captions,
        steps=steps,
        rerun_of=recipe.rerun_of,
        mitosis=__version__,
        location=store.path if store else None,
        debug_results=None
        if store
        else {n[8:-5]: d for n, d in files.items() if n.startswith("results/")},
    )
    folder = trial_dir(trial.id)
    branch_files = {f"{folder}/{name}": data for name, data in files.items()}
    branch_files[f"{folder}/trial.json"] = dumps_json(
        converter().unstructure(trial), indent=2
    ).encode()
    branch_files.update(variant_files(recipe.locks))
    return trial, branch_files


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
            status = outcome["status"] if i == running else "not run"
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
            )
        )
    return records
