"""Sweeps: many trials of one experiment, each in a fresh process, run by a local pool or any
``concurrent.futures.Executor``, recorded by one coordinator (or by the workers themselves).

The coordinator resolves and checks every combination and locks every new variant name before
anything runs, reads the code state once, keeps only a bounded number of trials in flight (so
memory does not grow with the sweep), and commits each trial as it comes back.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from typing import IO, Any

import attrs

from ..exceptions import BadParameter, MitosisError
from ..model.layout import CODE_DIFF, RESULTS_THRESHOLD
from ..model.records import Trial, VariantLock
from ..store.repo import Store
from ..store.trials import read_trials
from ..store.variants import lock_new
from . import warm
from .environment import CodeSnapshot, hostname, read_code, username
from .experiment import Chain, Lookup, chain_of
from .params import locks_of, resolve
from .process import Job, Ran, perform
from .record import Recipe, commit_trial, finish, recipe_of
from .reuse import Reuse, find_reusable
from .spawn import interrupt_running
from .trial import Origin, check_dpi, code_start, prepare, threshold_of, trusted_remotes

__all__ = ["Item", "run_sweep", "sweep"]

Grid = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]


@attrs.frozen
class Item:
    """One combination of a sweep and what came of it.

    Attributes:
        params: the combination as given.
        trial: its trial (an earlier one when skipped), or None when it did not run or when
            the sweep keeps no records.
        id: the trial's id (None when it did not run).
        status: the trial's status.
        main: the trial's main result.
        skipped: an earlier ``ok`` trial had the same parameters and code.
        error: why it was not recorded, when it was not.
    """

    params: dict[str, Any]
    trial: Trial | None = None
    id: str | None = None
    status: str | None = None
    main: Any = None
    skipped: bool = False
    error: str | None = None

    def with_trial(self, trial: Trial, keep: bool, skipped: bool = False) -> Item:
        return attrs.evolve(
            self,
            trial=trial if keep else None,
            id=trial.id,
            status=trial.status,
            main=trial.main,
            skipped=skipped,
        )


def sweep(
    experiment: Callable[..., Any] | Sequence[Any],
    grid: Grid,
    *,
    jobs: int | None = None,
    executor: Executor | None = None,
    fail_fast: bool = False,
    skip_done: bool = False,
    commit_in_workers: bool = False,
    progress: bool | None = None,
    lookup: Lookup | None = None,
    untracked: Iterable[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    debug: bool = False,
    reuse: bool = False,
    figure_dpi: float | None = None,
    results_threshold: int | str | None = None,
) -> list[Trial]:
    """Run one trial per combination of ``grid``, each in a fresh process, several at once.

    Every combination is resolved and checked, and every new variant name locked, before any
    trial runs. A failed trial is recorded and the sweep goes on (unless ``fail_fast``). On
    Ctrl-C, running trials are recorded as interrupted, nothing is half-written, and the same
    call with ``skip_done=True`` runs only what is missing.

    Args:
        experiment: as for :func:`mitosis.run`.
        grid: parameter name to a list of values or variant names (every combination runs),
            or a list of parameter dicts.
        jobs: trials at once in the local pool (default: the number of cores); ignored with
            ``executor``.
        executor: any ``concurrent.futures.Executor`` (a process pool, dask's
            ``Client.get_executor()``, a SLURM executor, ...): each task starts the trial's
            process where it runs and sends back the recorded files.
        fail_fast: after the first trial that does not succeed, start no more.
        skip_done: skip combinations whose tracked parameter values already have an ``ok``
            trial at the same code (same commit and uncommitted diff); return that trial.
        commit_in_workers: each task commits its own trial to ``store`` (which it must reach,
            e.g. on a shared disk) with compare-and-swap, instead of this process.
        progress: show progress on stderr (default: when stderr is a terminal).
        lookup, untracked, store, debug, reuse, figure_dpi, results_threshold: as for
            :func:`mitosis.run`. Big results stay on the disk of the machine that runs the
            trial until recorded with the local pool or ``commit_in_workers``; from another
            ``executor`` they come back as bytes, in the task's result.

    Returns:
        The trials, in the order of the grid (failed ones included; combinations that did not
        run are left out).

    Raises:
        BadParameter, UnknownVariant, VariantConflict: a combination does not fit (nothing ran).
        KeyboardInterrupt: after recording what ran, when Ctrl-C stopped the sweep.
    """
    chain = chain_of(experiment, lookup, untracked)
    items = run_sweep(
        chain,
        combinations(grid),
        store=store,
        debug=debug,
        reuse=reuse,
        jobs=jobs,
        executor=executor,
        fail_fast=fail_fast,
        skip_done=skip_done,
        commit_in_workers=commit_in_workers,
        progress=sys.stderr.isatty() if progress is None else progress,
        figure_dpi=figure_dpi,
        results_threshold=results_threshold,
    )
    return [item.trial for item in items if item.trial is not None]


def combinations(grid: Grid) -> list[dict[str, Any]]:
    """The parameter dicts of a grid: the product of a mapping of lists, or a list of dicts."""
    if isinstance(grid, Mapping):
        for name, values in grid.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                raise BadParameter(
                    f"grid[{name!r}] must be a list of values or variant names, e.g. "
                    f"{{{name!r}: [{values!r}]}}; got {type(values).__name__}"
                )
        names = list(grid)
        return [dict(zip(names, v, strict=True)) for v in itertools.product(*grid.values())]
    if isinstance(grid, Sequence) and all(isinstance(g, Mapping) for g in grid):
        return [dict(g) for g in grid]
    raise BadParameter(
        "a grid maps parameter names to lists of values ({'noise': ['low', 'high']}) or is a "
        f"list of parameter dicts; got {type(grid).__name__}"
    )


def run_sweep(
    chain: Chain,
    combos: list[dict[str, Any]],
    *,
    store: str | os.PathLike[str] | None,
    debug: bool = False,
    reuse: bool = False,
    jobs: int | None = None,
    executor: Executor | None = None,
    fail_fast: bool = False,
    skip_done: bool = False,
    commit_in_workers: bool = False,
    progress: bool = False,
    stream: IO[str] | None = None,
    figure_dpi: float | None = None,
    keep_records: bool = True,
    results_threshold: int | str | None = None,
) -> list[Item]:
    """:func:`sweep` with the chain decided; one :class:`Item` per combination, in order.

    What is kept per combination is its item (and its record, if ``keep_records``): values are
    resolved once to check them all, and again as each trial is sent, so memory does not grow
    with the sweep beyond that.
    """
    check_dpi(figure_dpi)
    threshold = threshold_of(results_threshold)
    locks: dict[tuple[str, str], VariantLock] = {}
    keys: list[tuple[tuple[str, str], ...]] = []
    for combo in combos:  # every combination checked first
        resolved = resolve(chain, combo)
        for lock in locks_of(resolved):
            locks.setdefault((lock.param, lock.variant), lock)
        if skip_done:
            keys.append(
                tuple(sorted((r.name, r.encoded.fingerprint) for r in resolved if r.tracked))
            )
    origin = Origin(figure_dpi=figure_dpi, debug=debug, results_threshold=threshold)
    report = _Progress(len(combos), progress, stream or sys.stderr)
    if debug:
        sweep = _Sweep(chain, combos, None, reuse, origin, keep_records, report)
        return sweep.run(jobs, executor, fail_fast, [], False)
    with Store.open(store, create=True) as st:
        Store.ref(chain.name)
        named = list(locks.values())
        lock_new(st, chain.name, named)
        sweep = _Sweep(chain, combos, st, reuse, origin, keep_records, report)
        return sweep.run(jobs, executor, fail_fast, keys, commit_in_workers)


def perform_and_commit(
    job: Job,
    recipe: Recipe,
    code: CodeSnapshot,
    store: str,
    reused: Reuse | None = None,
    threshold: int = RESULTS_THRESHOLD,
) -> Trial:
    """An executor's task that records its own trial in ``store`` (compare-and-swap)."""
    ran = perform(job)
    try:
        with Store.open(store) as st:
            trial, files = finish(recipe, ran, code, st.path, reused, threshold)
            return commit_trial(st, trial, files, recipe.locks)
    finally:
        ran.release()


class _Sweep:
    def __init__(
        self,
        chain: Chain,
        combos: list[dict[str, Any]],
        store: Store | None,
        reuse: bool,
        origin: Origin,
        keep: bool,
        progress: _Progress,
    ) -> None:
        self.chain = chain
        self.combos = combos
        self.store = store
        self.reuse = reuse
        self.origin = origin
        self.keep = keep
        self.progress = progress
        self.items = [Item(c) for c in combos]
        self.code = read_code(code_start(chain.steps[0].fn), store.path if store else None)
        self.trusted = trusted_remotes() if reuse and store is not None else ()
        self.preload = preload_of(chain)
        self.stopping = threading.Event()

    def run(
        self,
        jobs: int | None,
        executor: Executor | None,
        fail_fast: bool,
        done_keys: list[tuple[tuple[str, str], ...]],
        in_workers: bool,
    ) -> list[Item]:
        """Run the combinations; ``done_keys`` (each one's tracked fingerprints) asks to skip
        those with an ``ok`` trial at this code."""
        todo = list(range(len(self.combos)))
        if done_keys and self.store is not None:
            todo = self._skip_done(todo, done_keys)
        own = executor is None
        pool = executor or ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1)
        window = 2 * (jobs or os.cpu_count() or 1) if own else 64
        pending: dict[Future[Any], _Task] = {}
        queue: Iterator[int] = iter(todo)
        stopped = False
        restore = self._stop_at_ctrl_c()
        try:
            while True:
                while not stopped and len(pending) < window:
                    index = next(queue, None)
                    if index is None:
                        break
                    task = self._task(index, spool=own or in_workers)
                    future = task.submit(
                        pool,
                        self.code,
                        self.store,
                        in_workers,
                        self.origin.results_threshold,
                        self.stopping if own else None,
                    )
                    pending[future] = task
                if not pending:
                    break
                self.progress.show(running=sum(f.running() for f in pending))
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    trial = self._collect(future, pending.pop(future))
                    if fail_fast and (trial is None or trial.status != "ok"):
                        stopped = True
                if self.stopping.is_set():  # Ctrl-C, whose KeyboardInterrupt a __del__ ate
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            self._interrupted(pending)
            raise
        finally:
            restore()
            if own:
                pool.shutdown(wait=False, cancel_futures=True)
            warm.shutdown()  # this process's warm servers; an executor's workers have theirs
            self.progress.close(len(pending))
        return self.items

    def _task(self, index: int, spool: bool) -> _Task:
        """The job of one combination; with ``spool``, its trial's big files wait on this
        machine's disk (or the shared disk of the store) until recorded."""
        resolved = resolve(self.chain, self.combos[index])
        reused = None
        if self.reuse and self.store is not None:
            reused = find_reusable(self.store, self.chain, resolved, self.code.state, self.trusted)
        folder = self.store.spool if spool and self.store is not None else None
        job = prepare(
            self.chain, resolved, reused=reused, origin=self.origin, echo=False, spool=folder
        )
        job = attrs.evolve(job, preload=self.preload)
        return _Task(index, job, recipe_of(self.chain, resolved), reused)

    def _collect(self, future: Future[Any], task: _Task) -> Trial | None:
        try:
            result = future.result()
        except Exception as exc:  # the executor lost the task: record why, never lose it
            result = _lost(exc)
        if result is None:  # Ctrl-C came before it started: it did not run
            return None
        try:
            if isinstance(result, Trial):  # the task recorded it
                trial = result
            else:
                location = self.store.path if self.store else None
                threshold = self.origin.results_threshold
                try:
                    trial, files = finish(
                        task.recipe, result, self.code, location, task.reused, threshold
                    )
                    if self.store is not None:
                        trial = commit_trial(self.store, trial, files, task.recipe.locks)
                finally:
                    result.release()
        except MitosisError as error:  # e.g. a variant locked meanwhile by a pull
            self.items[task.index] = attrs.evolve(self.items[task.index], error=str(error))
            self.progress.finished(None)
            return None
        self.items[task.index] = self.items[task.index].with_trial(trial, self.keep)
        self.progress.finished(trial)
        return trial

    def _stop_at_ctrl_c(self) -> Callable[[], None]:
        """Where Ctrl-C raises KeyboardInterrupt in this (main) thread, let it first set
        ``stopping``, at once: the pool's threads must start no trial once it came, even
        before this thread has unwound to :meth:`_interrupted`, and a KeyboardInterrupt that
        Python drops (raised in a ``__del__``) must not lose it. Returns what puts the
        previous handler back."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)
        if previous is not signal.default_int_handler:
            return lambda: None

        def ctrl_c(signum: int, frame: Any) -> None:
            self.stopping.set()
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, ctrl_c)

        def restore() -> None:
            signal.signal(signal.SIGINT, previous)

        return restore

    def _interrupted(self, pending: dict[Future[Any], _Task]) -> None:
        """Ctrl-C: start nothing more, let running trials record themselves as interrupted."""
        self.stopping.set()
        for future in pending:
            future.cancel()
        interrupt_running()
        running = {f: t for f, t in pending.items() if not f.cancelled()}
        left = set(running)
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting
            while left:
                done, left = wait(left, timeout=0.5)
                for future in done:
                    self._collect(future, running[future])
                if left:  # a trial process that started as Ctrl-C came gets it too
                    interrupt_running()
        recorded = sum(item.id is not None for item in self.items)
        missing = len(self.items) - recorded
        self.progress.message(
            f"interrupted: {recorded} of {len(self.items)} trials recorded, {missing} not run "
            "or not finished. Run the same sweep with --skip-done (skip_done=True) to run only "
            "what is missing."
        )

    def _skip_done(self, todo: list[int], keys: list[tuple[tuple[str, str], ...]]) -> list[int]:
        """The combinations without an ``ok`` trial at the same parameters and code."""
        assert self.store is not None
        state, diff = self.code.state, self.code.diff
        if state is None or state.commit is None:
            return todo
        done: dict[tuple[tuple[str, str], ...], Trial] = {}
        for trial in read_trials(self.store, self.chain.name):
            code = trial.code
            if trial.status != "ok" or code is None or code.commit != state.commit:
                continue
            if code.dirty != state.dirty or (code.dirty and trial.read(CODE_DIFF) != diff):
                continue
            done.setdefault(_key(trial.params.items()), trial)
        left = []
        for index in todo:
            earlier = done.get(keys[index])
            if earlier is None:
                left.append(index)
                continue
            self.items[index] = self.items[index].with_trial(earlier, self.keep, skipped=True)
        self.progress.skip(len(todo) - len(left))
        return left


@attrs.frozen
class _Task:
    """One combination on its way: the job, and what recording it needs."""

    index: int
    job: Job
    recipe: Recipe
    reused: Reuse | None

    def submit(
        self,
        pool: Executor,
        code: CodeSnapshot,
        store: Store | None,
        in_workers: bool,
        threshold: int,
        stopping: threading.Event | None,
    ) -> Future[Any]:
        """Send the task to ``pool``; a task of this process's own pool that starts after
        ``stopping`` is set (Ctrl-C) does not run, and gives None."""
        if in_workers and store is not None:
            work: tuple[Any, ...] = (
                perform_and_commit,
                self.job,
                self.recipe,
                code,
                store.path,
                self.reused,
                threshold,
            )
        else:
            work = (perform, self.job)
        if stopping is not None:
            return pool.submit(_unless_stopping, stopping, *work)
        return pool.submit(*work)


def _unless_stopping(stopping: threading.Event, fn: Callable[..., Any], *args: Any) -> Any:
    return None if stopping.is_set() else fn(*args)


def preload_of(chain: Chain) -> tuple[str, ...] | None:
    """The modules a warm process imports for the trials of ``chain`` (see
    :meth:`Chain.modules`); None when the experiment asks for ``start="spawn"``."""
    return None if chain.start == "spawn" else chain.modules()


def _key(params: Iterable[tuple[str, Any]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((name, p.fingerprint) for name, p in params))


def _lost(exc: BaseException) -> Ran:
    """A trial whose task raised in the executor (a worker died, a scheduler refused it)."""
    import datetime as dt

    error = f"the executor could not run the trial: {type(exc).__name__}: {exc}"
    return Ran(
        outcome={"status": "failed", "error": error, "steps": []},
        running=0,
        log=b"",
        results={},
        figures={},
        captions={},
        started=dt.datetime.now(dt.timezone.utc),
        duration=0.0,
        interrupted=False,
        environment={},
        host=hostname(),
        user=username(),
    )


class _Progress:
    """Done / failed / interrupted / running, rate and time left, on one line of a terminal
    (else a line per finished trial)."""

    def __init__(self, total: int, enabled: bool, stream: IO[str]) -> None:
        self.total, self.enabled, self.stream = total, enabled, stream
        self.tty = enabled and stream.isatty()
        self.ok = self.failed = self.interrupted = self.skipped = self.running = 0
        self.clock = time.perf_counter()

    def _line(self) -> str:
        ran = self.ok + self.failed + self.interrupted
        done = ran + self.skipped
        seconds = time.perf_counter() - self.clock
        rate = ran / seconds if seconds > 0 else 0.0
        left = self.total - done
        eta = f", {left / rate:.0f} s left" if rate > 0 and left else ""
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        interrupted = f", {self.interrupted} interrupted" if self.interrupted else ""
        return (
            f"[{done}/{self.total}] {self.ok} ok, {self.failed} failed{interrupted}{skipped}, "
            f"{self.running} running, {rate:.2f} trials/s{eta}"
        )

    def show(self, running: int) -> None:
        self.running = running
        if self.tty:
            self.stream.write("\r\x1b[K" + self._line())
            self.stream.flush()

    def skip(self, count: int) -> None:
        self.skipped += count
        if count and self.enabled:
            self.message(f"skipping {count} combinations with an ok trial at the same code")

    def finished(self, trial: Trial | None) -> None:
        if trial is not None and trial.status == "ok":
            self.ok += 1
        elif trial is not None and trial.status == "interrupted":
            self.interrupted += 1
        else:
            self.failed += 1
        self.running = max(self.running - 1, 0)
        if self.enabled and not self.tty:
            what = f"trial {trial.id} {trial.status}" if trial else "refused"
            self.stream.write(f"{self._line()}: {what}\n")
            self.stream.flush()
        elif self.tty:
            self.show(self.running)

    def message(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, running: int) -> None:
        if self.tty:
            self.running = running
            self.stream.write("\r\x1b[K" + self._line() + "\n")
            self.stream.flush()
