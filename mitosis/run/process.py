"""Starting a trial's own process and collecting what it left: the part of a trial that runs
wherever an executor puts it (this process, a process pool, a dask worker), needing no store.

:func:`perform` takes a :class:`Job` and returns a :class:`Ran`, both plain picklable records,
so that a coordinator can ship jobs to other machines and commit what comes back.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any

import attrs

from ..exceptions import StoreError
from ..model.portable import write_file
from ..model.types import InStore, OnDisk
from .spawn import Gate, Running, finish, popen, pumped, trial_env

if TYPE_CHECKING:
    from .warm import TrialProcess

__all__ = ["IN_MEMORY", "GatedTrial", "Job", "Ran", "perform"]

#: Files a trial process left that are bigger than this stay on disk (with a spool folder) and
#: travel in the :class:`Ran` by path, to be streamed into the store.
IN_MEMORY = 1 << 20
#: The spool folders this process holds (folder: its descriptor, locked with flock).
_HELD: dict[str, int] = {}
_HELD_LOCK = threading.Lock()


@attrs.frozen
class Job:
    """What a trial process needs.

    Attributes:
        path: the trial process's import path.
        payload: the pickled steps (see :mod:`mitosis.run.worker`).
        steps: how many steps the chain has.
        start: the first step to run (the ones before are reused).
        reused: the pickled result standing in for the reused first steps, if any: its bytes,
            or the blob of the store that holds it (then copied into the trial's folder as a
            stream).
        echo: stream the trial's output to this process's console as it comes.
        figure_dpi: dots per inch of the figures (None: ``$MITOSIS_FIGURE_DPI``, else 100).
        debug: a debug trial: where the experiment sets up no logging, DEBUG records reach its
            log too (else INFO and above).
        preload: the modules whose functions the steps run, to fork the trial process from a
            warm process that imported them (see :mod:`mitosis.run.warm`), where forking is
            safe; None: a trial process started afresh.
        spool: a folder of the machine that records the trial (``<git dir>/mitosis/spool``):
            the trial process's folder is made there and kept until the trial is recorded, and
            results and figures bigger than :data:`IN_MEMORY` travel in the :class:`Ran` by
            path (:class:`~mitosis.model.records.OnDisk`), never read into memory. None (a job
            for another machine): everything travels as bytes.
    """

    path: list[str]
    payload: bytes
    steps: int
    start: int = 0
    reused: bytes | InStore | None = None
    echo: bool = True
    figure_dpi: float | None = None
    debug: bool = False
    spool: str | None = None
    preload: tuple[str, ...] | None = None


@attrs.frozen
class Ran:
    """What a trial process left behind.

    A Ran is picklable. Made with a spool folder, its big files wait on disk, in its
    ``folder``, until :meth:`release` (after the trial is recorded, or not); made without, it
    carries every file's bytes, so that it can travel from another machine.

    Attributes:
        outcome: the worker's report (status, error, each step's report).
        running: the last step the trial process started.
        log: stdout and stderr, interleaved.
        results: step index to the step's pickled result (bytes, or a file on disk).
        figures: step index to its PNG figures, in order (bytes, or files on disk).
        captions: step index to its figures' captions, in order.
        started: when the process started (UTC).
        duration: seconds it ran.
        interrupted: whether Ctrl-C reached this process while it ran.
        environment: ``environment.json`` and ``requirements.txt`` of where it ran.
        host: where it ran.
        user: who ran it.
        folder: the trial process's folder in the spool, kept while files wait in it.
    """

    outcome: dict[str, Any]
    running: int
    log: bytes
    results: dict[int, bytes | OnDisk]
    figures: dict[int, list[bytes | OnDisk]]
    captions: dict[int, list[str]]
    started: dt.datetime
    duration: float
    interrupted: bool
    environment: dict[str, bytes]
    host: str
    user: str
    folder: str | None = None

    def release(self) -> None:
        """Remove the trial process's folder and the files waiting in it (once recorded)."""
        if self.folder is not None:
            _release(self.folder)


def perform(job: Job) -> Ran:
    """Run one trial process for ``job`` and collect what it left (anywhere: no store needed)."""
    return _perform(job, job.spool, None)


class GatedTrial:
    """A trial process started before its caller has decided to run it: it starts Python and
    imports ``modules`` (the experiment's) while the caller gets ready (opens its store, checks
    its variant locks); it runs the trial only once the caller calls :meth:`open`, and nothing
    of it after :meth:`cancel`. :meth:`perform` (on a thread of its own) is then
    :func:`perform`. For a trial of this machine that reuses no first steps; ``gate`` is a
    process started earlier still (see :func:`~mitosis.run.spawn.gate_ahead`), else one is
    started now."""

    def __init__(self, job: Job, modules: tuple[str, ...], gate: Gate | None = None) -> None:
        self.job = job
        self._decided = threading.Event()
        self._spool: str | None = None
        self._go = False
        self._gate = gate or Gate()
        self._gate.taken = True
        self._gate.preload(job.path, modules, job.figure_dpi)

    def open(self, spool: str) -> None:
        """Run the trial, its folder made in ``spool``."""
        self._spool, self._go = spool, True
        self._decided.set()

    def cancel(self) -> None:
        """Stop the trial process before it runs anything of the trial."""
        self._decided.set()

    def perform(self) -> Ran | None:
        """Wait for the caller's decision; then what :func:`perform` returns, or None when
        the caller cancelled (the process has ended, having run nothing of the trial)."""
        self._decided.wait()
        if not self._go:
            self._gate.end()
            return None
        return _perform(self.job, self._spool, self._gate)


def _perform(job: Job, spool: str | None, gate: Gate | None) -> Ran:
    """:func:`perform`, and :class:`GatedTrial` once opened: the trial's folder,
    its spec, the process run (or told to go) and what it left collected."""
    environment: dict[str, bytes] = {}
    cache = os.path.join(os.path.dirname(spool), "environment") if spool else None
    from . import environment as _environment  # on first need: the trial's process is started

    collector = threading.Thread(
        target=lambda: environment.update(_environment.environment_files(cache))
    )
    collector.start()
    # Plain strings, not pathlib: pathlib interns every part of every path it parses, and each
    # trial's folder has a new name, which a sweep of thousands of trials would keep.
    work = _hold(spool) if spool is not None else tempfile.mkdtemp(prefix="mitosis-")
    keep = False
    try:
        spec_file, out = os.path.join(work, "spec"), os.path.join(work, "out")
        os.mkdir(out)
        header: dict[str, Any] = {"path": job.path}
        if job.debug:
            header["debug"] = True
        if job.reused is not None:
            header["reused"] = os.path.join(work, "reused.pkl")
            _write_reused(header["reused"], job.reused)
        write_file(spec_file, json.dumps(header).encode() + b"\n" + job.payload)
        started = dt.datetime.now(dt.timezone.utc)
        clock = time.perf_counter()
        if gate is None:
            returncode, log, interrupted = finish(_start(job, [spec_file, out]))
        else:
            gate.say({"spec": spec_file, "out": out})
            returncode, log, interrupted = gate.end()
        duration = time.perf_counter() - clock
        outcome = _outcome(out, returncode)
        names = os.listdir(out)
        marks = [int(n[5:]) for n in names if n.startswith("step-") and n[5:].isdigit()]
        running = max(marks, default=job.start)
        if "steps" not in outcome:  # the process died: the steps it finished left a report
            reports = [n for n in names if n.startswith("step-") and n.endswith(".json")]
            outcome["steps"] = [json.loads(_read(os.path.join(out, n)) or b"{}") for n in reports]
        results: dict[int, bytes | OnDisk] = {}
        figures: dict[int, list[bytes | OnDisk]] = {}
        captions = {}
        on_disk = spool is not None
        for i in range(job.steps):
            data = _take(os.path.join(out, "results", f"{i}.pkl"), on_disk)
            if data is not None:
                results[i] = data
            folder = os.path.join(out, "figures", str(i))
            if os.path.isdir(folder):
                pngs = sorted((n for n in os.listdir(folder) if n.endswith(".png")), key=_number)
                figures[i] = [_take(os.path.join(folder, n), on_disk) or b"" for n in pngs]
                captions[i] = _captions(os.path.join(folder, "captions.json"))
        files = [*results.values(), *(f for found in figures.values() for f in found)]
        keep = any(isinstance(f, OnDisk) for f in files)
    finally:
        if not keep:
            _release(work)
        collector.join()
    return Ran(
        outcome=outcome,
        running=running,
        log=log,
        results=results,
        figures=figures,
        captions=captions,
        started=started,
        duration=duration,
        interrupted=interrupted,
        environment=environment,
        host=_environment.hostname(),
        user=_environment.username(),
        folder=work if keep else None,
    )


def _hold(spool: str) -> str:
    """A new folder in the spool, locked (flock) while this process holds it, so that ``mitosis
    gc`` can tell the folders of recorders that died from the ones in use. It is made as
    ``new-*`` and renamed ``trial-*`` once held."""
    os.makedirs(spool, exist_ok=True)
    made = tempfile.mkdtemp(prefix="new-", dir=spool)
    fd = os.open(made, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    work = os.path.join(spool, "trial-" + os.path.basename(made)[len("new-") :])
    os.rename(made, work)
    with _HELD_LOCK:
        _HELD[work] = fd
    return work


def _release(work: str) -> None:
    shutil.rmtree(work, ignore_errors=True)
    with _HELD_LOCK:
        fd = _HELD.pop(work, None)
    if fd is not None:
        os.close(fd)


def _take(path: str, on_disk: bool) -> bytes | OnDisk | None:
    """A file the trial process left: by path when it is big and may stay on disk, else its
    bytes; None when there is no such file."""
    if on_disk:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return None
        if size > IN_MEMORY:
            return OnDisk(path, size)
    return _read(path)


def _write_reused(path: str, reused: bytes | InStore) -> None:
    """The reused result, where the trial process reads it: a blob of a store is copied as
    a stream."""
    if isinstance(reused, bytes):
        write_file(path, reused)
        return
    from ..store.repo import Store  # on first need: only big reused results are in a store

    with Store.open(reused.store) as store:
        source = store.open_blob(reused.blob, f"the reused result {reused.blob}")
    if source is None:
        raise StoreError(
            f"the store {reused.store} no longer has the reused result {reused.blob}; "
            "run the trial again without reuse"
        )
    with source, open(path, "wb") as file:
        shutil.copyfileobj(source, file, IN_MEMORY)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _number(name: str) -> int:
    return int(name.split(".", 1)[0])


def _captions(path: str) -> list[str]:
    """The worker's list of figure captions (none if it wrote none)."""
    try:
        found = json.loads(_read(path) or b"")
    except ValueError:
        return []
    return [c if isinstance(c, str) else "" for c in found] if isinstance(found, list) else []


def _start(job: Job, args: list[str]) -> Running:
    """Start the worker for ``SPEC OUT`` (forked from a warm process when ``job.preload`` asks
    and forking is safe here, else started afresh), streaming its output to the log (and live
    to the console if ``job.echo``)."""
    env = trial_env(job.figure_dpi)
    proc: TrialProcess | None = None
    if job.preload is not None:
        from . import warm  # on first need: only a sweep's trial processes are forked

        proc = warm.start(args[0], args[1], env, job.path, job.preload)
    return pumped(proc or popen(args, env), job.echo)


def _outcome(out: str, returncode: int) -> dict[str, Any]:
    try:
        outcome: dict[str, Any] = json.loads(_read(os.path.join(out, "outcome.json")) or b"")
        return outcome
    except ValueError:
        pass
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:  # a real-time signal has no name
            name = f"signal {-returncode}"
        status = "interrupted" if -returncode == signal.SIGINT else "killed"
        return {"status": status, "error": f"the trial process was stopped by {name}"}
    return {
        "status": "failed",
        "error": f"the trial process exited with code {returncode} before it reported a result",
    }
