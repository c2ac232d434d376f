"""One trial: ``mitosis.run``. Its variant names are locked, its process runs (see
:mod:`mitosis.run.process`) while the code's git state is read, and what came of it is recorded
(:mod:`mitosis.run.record`) and committed (:mod:`mitosis.store.write`)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..exceptions import BadParameter, TrialFailed

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from ..model.records import FileData, Trial
    from ..store.repo import Store
    from .environment import CodeSnapshot
    from .experiment import Chain, Lookup
    from .params import Resolved
    from .process import Job, Ran
    from .reuse import Reuse
    from .spawn import Gate

# `import mitosis` binds `mitosis.run` to this module's `run`, so what it imports at its top
# every user pays for: what a trial needs is imported when it starts, and what recording needs
# is imported while its process runs (see _Collector).

__all__ = [
    "Origin",
    "ahead",
    "check_dpi",
    "code_start",
    "prepare",
    "record",
    "run",
    "run_experiment",
    "threshold_of",
]


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
    results_threshold: int | str | None = None,
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
        results_threshold: results bigger than this (bytes, or a text such as ``"1MiB"``;
            default 1 MiB; the command line reads ``results_threshold`` of ``[tool.mitosis]``)
            are streamed into the store and kept off the trial branches, so that clones and
            pulls of the records stay light (see :meth:`Trial.results`).

    Returns:
        The recorded trial (status ``ok``).

    Raises:
        BadParameter: ``params`` does not fit the signatures, or ``figure_dpi`` or
            ``results_threshold`` is not a number of their kind (nothing ran).
        UnknownVariant: a string names no variant of its parameter (nothing ran).
        VariantConflict: a variant name is locked to another value (nothing ran).
        TrialFailed: a step raised, returned a wrong shape, was killed or interrupted; the
            trial is recorded all the same, and the error carries its id.
    """
    # The trial's interpreter starts first, while this process imports what it needs; it
    # imports the experiment's modules as soon as they are known.
    with ahead(not debug and not reuse) as gate:
        from .experiment import chain_of  # on first need: see the note at the top

        chain = chain_of(experiment, lookup, untracked)
        if gate is not None:
            check_dpi(figure_dpi)
            gate.preload(list(sys.path), chain.modules(), figure_dpi)
        return run_experiment(
            chain,
            params,
            store=store,
            debug=debug,
            reuse=reuse,
            figure_dpi=figure_dpi,
            results_threshold=results_threshold,
            gate=gate,
        )


def run_experiment(
    chain: Chain,
    params: Mapping[str, Any] | None,
    *,
    store: str | os.PathLike[str] | None,
    debug: bool,
    reuse: bool = False,
    figure_dpi: float | None = None,
    results_threshold: int | str | None = None,
    gate: Gate | None = None,
) -> Trial:
    """:func:`run` with the experiment's steps already decided (``gate``: see :func:`record`)."""
    from .params import resolve  # on first need: see the note at the top

    resolved = resolve(chain, params)
    return record(
        chain,
        resolved,
        store=store,
        debug=debug,
        reuse=reuse,
        figure_dpi=figure_dpi,
        results_threshold=results_threshold,
        gate=gate,
    )


def ahead(wanted: bool) -> AbstractContextManager[Gate | None]:
    """A trial process started now, if ``wanted``, for the one trial the block may run:
    see :func:`~mitosis.run.spawn.gate_ahead`."""
    from .spawn import gate_ahead  # on first need: see the note at the top

    return gate_ahead(wanted)


def check_dpi(figure_dpi: float | None) -> None:
    """Refuse a ``figure_dpi`` that is not a positive number."""
    if figure_dpi is not None and not (
        isinstance(figure_dpi, (int, float)) and not isinstance(figure_dpi, bool) and figure_dpi > 0
    ):
        raise BadParameter(
            f"figure_dpi must be a positive number of dots per inch, e.g. 150; got {figure_dpi!r}"
        )


def threshold_of(value: int | str | None) -> int:
    """The results threshold in bytes (default 1 MiB).

    Raises:
        BadParameter: not a size.
    """
    from ..model.layout import RESULTS_THRESHOLD  # on first need: see the note at the top

    if value is None:
        return RESULTS_THRESHOLD
    from .config import parse_size  # on first need: most runs keep the default

    try:
        return parse_size(value)
    except ValueError as exc:
        raise BadParameter(f"results_threshold: {exc}") from None


class Origin(NamedTuple):
    """Where a trial's code comes from, when not from this process's import path.

    Attributes:
        code: the code state and diff to record (instead of reading the code's repository).
        path: folders to put first on the trial process's import path.
        rerun_of: the trial this one reruns.
        figure_dpi: dots per inch of the figures (None: ``$MITOSIS_FIGURE_DPI``, else 100).
        debug: a debug trial, whose logging shows DEBUG records too (see :class:`Job`).
        results_threshold: results bigger than this many bytes are kept off the branches.
    """

    code: CodeSnapshot | None = None
    path: tuple[str, ...] = ()
    rerun_of: str | None = None
    figure_dpi: float | None = None
    debug: bool = False
    results_threshold: int = 1 << 20  # model.layout.RESULTS_THRESHOLD, checked by a test


def record(
    chain: Chain,
    resolved: list[Resolved],
    *,
    store: str | os.PathLike[str] | None,
    debug: bool = False,
    reuse: bool = False,
    origin: Origin | None = None,
    figure_dpi: float | None = None,
    results_threshold: int | str | None = None,
    gate: Gate | None = None,
) -> Trial:
    """Run ``chain`` with parameters already resolved, and record the trial (see :func:`run`);
    in the process of ``gate`` if one was started ahead (see
    :func:`~mitosis.run.spawn.gate_ahead`) and the trial reuses no steps."""
    from ..store.repo import Store  # on first need: see the note at the top

    check_dpi(figure_dpi)
    threshold = threshold_of(results_threshold)
    origin = (origin or Origin())._replace(
        figure_dpi=figure_dpi, debug=debug, results_threshold=threshold
    )
    if debug:
        trial, _, ran = _execute(chain, resolved, None, False, origin)
        interrupted = ran.interrupted
    else:
        Store.ref(chain.name)  # a bad experiment name fails before anything runs
        # The trial process starts now and waits, importing the experiment's modules, while
        # the store is opened and the variants locked; it runs only once they are.
        early = None if reuse else _Early(prepare(chain, resolved, origin=origin), chain, gate)
        from ..store.variants import lock_new  # on first need: see the note at the top
        from .params import locks_of  # on first need: see the note at the top

        try:
            with Store.open(store, create=True) as st:
                locks = locks_of(resolved)
                lock_new(st, chain.name, locks)
                trial, files, ran = _execute(chain, resolved, st, reuse, origin, early)
                interrupted = ran.interrupted
                from .record import commit_trial  # on first need: loaded as the trial ran

                try:
                    trial = commit_trial(st, trial, files, locks)
                finally:
                    ran.release()
        except BaseException:
            if early is not None:
                early.cancel()  # nothing of the trial runs when it was not told to go
            raise
    if interrupted:  # recorded; now let Ctrl-C stop the caller as it would have
        raise KeyboardInterrupt
    if trial.status != "ok":
        raise TrialFailed(None if debug else trial.id, trial.status, trial.error or "")
    return trial


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


def trusted_remotes() -> tuple[str, ...]:
    """The remotes whose trials reuse may unpickle: ``trusted_remotes`` of ``[tool.mitosis]``
    in the nearest ``pyproject.toml``."""
    from .config import load_config  # on first need: only reuse asks

    return load_config().trusted_remotes


def code_start(fn: Callable[..., Any]) -> str:
    """Where to look for the code's repository: the function's file, else the working dir."""
    import inspect
    from pathlib import Path

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
    spool: str | None = None,
) -> Job:
    """The job that runs ``chain`` with ``resolved`` in a trial process (see :func:`perform`).

    With ``spool`` (the recording store's), the trial process's big files stay on this
    machine's disk until recorded; without, the job may run anywhere and brings every byte
    back.
    """
    from ..model.portable import dumps  # on first need: see the note at the top
    from ..model.types import InStore  # on first need: see the note at the top
    from .process import Job  # on first need: see the note at the top

    origin = origin or Origin()
    first = reused.count if reused else 0
    given = reused.results[chain.steps[first - 1].name] if reused else None
    if isinstance(given, InStore) and spool is None:  # for another machine: the bytes
        from ..store.repo import Store  # on first need: only reused results in a store

        with Store.open(given.store) as st:
            source = st.open_blob(given.blob, f"the reused result {given.blob}")
            assert source is not None, "find_reusable checked it is here"
            with source:
                given = source.read()
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
        reused=given,
        echo=echo,
        figure_dpi=origin.figure_dpi,
        debug=origin.debug,
        spool=spool,
    )


def _execute(
    chain: Chain,
    resolved: list[Resolved],
    store: Store | None,
    reuse: bool,
    origin: Origin,
    early: _Early | None = None,
) -> tuple[Trial, dict[str, FileData], Ran]:
    """Run the trial process (told to go, when it was started ``early``); return the trial, its
    folder's files, and what the process left (whose folder the caller releases once the
    trial is recorded). ``store`` is None for a debug trial."""
    from .environment import read_code  # on first need: see the note at the top
    from .process import perform  # on first need: see the note at the top

    start = code_start(chain.steps[0].fn)
    exclude = store.path if store else None
    code = origin.code
    if code is None and reuse and store is not None:
        code = read_code(start, exclude)
    reused = None
    if reuse and code and store:
        from .reuse import find_reusable  # on first need: few trials reuse

        reused = find_reusable(store, chain, resolved, code.state, trusted_remotes())
    collector = _Collector(start, code, exclude)
    collector.start()
    if early is not None and store is not None:
        ran = early.result(store.spool)
    else:
        spool = store.spool if store else None
        ran = perform(prepare(chain, resolved, reused=reused, origin=origin, spool=spool))
    collector.join()
    assert collector.code is not None
    if collector.error:
        import attrs

        ran = attrs.evolve(ran, environment={**ran.environment, "code-error.txt": collector.error})
    from .record import finish, recipe_of  # on first need: loaded as the trial ran

    try:
        trial, files = finish(
            recipe_of(chain, resolved, origin.rerun_of),
            ran,
            collector.code,
            exclude,
            reused,
            origin.results_threshold,
        )
    except BaseException:
        ran.release()
        raise
    return trial, files, ran


class _Collector(threading.Thread):
    """Reads the code's git state while the trial process runs, and imports what recording
    needs meanwhile."""

    def __init__(self, start: str, code: CodeSnapshot | None, exclude: str | None) -> None:
        super().__init__(daemon=True)
        self.start_dir = start
        self.exclude = exclude
        self.code = code
        self.error: bytes | None = None

    def run(self) -> None:
        from ..model.records import converter  # on first need: loaded as the trial runs
        from .environment import CodeSnapshot, read_code  # on first need: as the trial runs

        if self.code is None:
            try:
                self.code = read_code(self.start_dir, self.exclude)
            except Exception:  # a trial is never lost for want of its code state
                import traceback

                self.code = CodeSnapshot(None)
                self.error = traceback.format_exc().encode()
        if self.exclude is not None:  # recording follows
            from . import record  # noqa: F401  # on first need: loaded as the trial runs

            converter()


class _Early(threading.Thread):
    """A trial process started before the store is open (a
    :class:`~mitosis.run.process.GatedTrial`), waited for on a thread of its own."""

    def __init__(self, job: Job, chain: Chain, gate: Gate | None) -> None:
        from .process import GatedTrial  # on first need: see the note at the top

        super().__init__(daemon=True)
        self.trial = GatedTrial(job, chain.modules(), gate)  # started, in this thread
        self.ran: Ran | None = None
        self.error: BaseException | None = None
        # waited on instead of join(): a join that Ctrl-C interrupts may leave the thread
        # seeming ended while it runs (CPython's gh-90882)
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        try:
            self.ran = self.trial.perform()
        except BaseException as exc:  # raised in the caller's thread, by result()
            self.error = exc
        finally:
            self.done.set()

    def cancel(self) -> None:
        """Stop the trial process, which has run nothing of the trial, and wait for it."""
        self.trial.cancel()
        self.done.wait()

    def result(self, spool: str) -> Ran:
        """Let the trial run, its folder made in ``spool``, and wait for what it left. Ctrl-C
        here reaches the trial process, as it would started afresh: it reports and ends (or is
        killed after a grace time, or at a second Ctrl-C)."""
        from .spawn import INTERRUPT_GRACE, interrupt_running  # on first need: as above

        self.trial.open(spool)
        interrupted = False
        while not self.done.is_set():
            try:
                if not self.done.wait(INTERRUPT_GRACE if interrupted else None):
                    interrupt_running(kill=True)
            except KeyboardInterrupt:
                interrupt_running(kill=interrupted)
                interrupted = True
        if self.error is not None:
            raise self.error
        assert self.ran is not None, "opened, the gated trial runs"
        if interrupted:
            import attrs

            return attrs.evolve(self.ran, interrupted=True)
        return self.ran
