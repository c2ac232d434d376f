"""Starting a trial's process afresh, light enough to run first: the standard library only, so
that :class:`Gate` can start the trial's Python before its caller imports anything of mitosis
beyond :mod:`mitosis.run.trial` (the interpreter's start-up then overlaps the caller's).

Every process started here is in :data:`RUNNING` until it ends, so that Ctrl-C reaches it
(:func:`interrupt_running`).
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .warm import TrialProcess

__all__ = [
    "INTERRUPT_GRACE",
    "RUNNING",
    "Gate",
    "Running",
    "finish",
    "gate_ahead",
    "interrupt_running",
    "popen",
    "pumped",
    "trial_env",
]

#: Seconds a trial process has to report after Ctrl-C before it is killed.
INTERRUPT_GRACE = 10.0
RUNNING: set[TrialProcess] = set()
RUNNING_LOCK = threading.Lock()
WORKER = os.path.join(os.path.dirname(__file__), "worker.py")


class Running(NamedTuple):
    """A trial process started, its output pumped into ``log``."""

    proc: TrialProcess
    pumps: list[threading.Thread]
    log: list[bytes]


def trial_env(figure_dpi: float | None = None) -> dict[str, str]:
    """The environment of a trial process."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", **_dpi(figure_dpi)}


def _dpi(figure_dpi: float | None) -> dict[str, str]:
    """The variable that sets the figures' dots per inch (none for the default)."""
    return {} if figure_dpi is None else {"MITOSIS_FIGURE_DPI": repr(float(figure_dpi))}


def popen(args: list[str], env: dict[str, str], fds: tuple[int, ...] = ()) -> TrialProcess:
    """Start the worker afresh with ``args``, passing it ``fds``."""
    return subprocess.Popen(
        [sys.executable, WORKER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        pass_fds=fds,
    )


def pumped(proc: TrialProcess, echo: bool) -> Running:
    """``proc`` counted as running, its output streamed to the log (and live to the console if
    ``echo``)."""
    with RUNNING_LOCK:
        RUNNING.add(proc)
    log: list[bytes] = []
    lock = threading.Lock()
    pumps = [
        threading.Thread(
            target=_pump, args=(pipe, console if echo else None, log, lock), daemon=True
        )
        for pipe, console in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr))
    ]
    for p in pumps:
        p.start()
    return Running(proc, pumps, log)


def finish(running: Running) -> tuple[int, bytes, bool]:
    """Wait for the trial process; its exit code, the log, and whether Ctrl-C reached this
    process meanwhile."""
    with running.proc as proc:
        interrupted = False
        try:
            returncode = proc.wait()
        except KeyboardInterrupt:
            interrupted = True
            returncode = _stop(proc)
        finally:
            with RUNNING_LOCK:
                RUNNING.discard(proc)
        for p in running.pumps:
            p.join()
    return returncode, b"".join(running.log), interrupted


def interrupt_running(kill: bool = False) -> int:
    """Pass Ctrl-C on to every trial process this process started that still runs (with
    ``kill``, kill them); how many."""
    with RUNNING_LOCK:
        running = list(RUNNING)
    for proc in running:
        with contextlib.suppress(OSError):  # it ended meanwhile
            if kill:
                proc.kill()
            else:
                proc.send_signal(signal.SIGINT)
    return len(running)


class Gate:
    """A trial process started before its caller knows what it will run: it starts Python and
    waits on a pipe (``worker.py --gate FD``). The caller tells it the import path and the
    experiment's modules (:meth:`preload`: imported while the caller gets ready), then the
    trial to run; closing the pipe before that ends it having run nothing (:meth:`end`). Its
    output is streamed to this process's console, as a single trial's is."""

    def __init__(self) -> None:
        read_end, write_end = os.pipe()
        try:
            self.running = pumped(popen(["--gate", str(read_end)], trial_env(), (read_end,)), True)
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self.pipe = os.fdopen(write_end, "wb")
        self.taken = False
        self.told = False

    def preload(self, path: list[str], modules: Sequence[str], figure_dpi: float | None) -> None:
        """Tell the process, once, its import path, the experiment's modules to import now (a
        trial's own imports cost nothing after), and the figures' dots per inch: by whoever
        knows them first (the command line knows the modules before it imports them)."""
        if self.told:
            return
        self.told = True
        early: dict[str, Any] = {"path": path, "modules": list(modules)}
        if figure_dpi is not None:
            early["env"] = _dpi(figure_dpi)
        self.say(early)

    def say(self, message: dict[str, Any]) -> None:
        """Write one line to the trial process (which may have died: its exit code says why)."""
        with contextlib.suppress(BrokenPipeError):
            self.pipe.write(json.dumps(message).encode() + b"\n")
            self.pipe.flush()

    def end(self) -> tuple[int, bytes, bool]:
        """Close the pipe and wait for the trial process: it ends there, unless it was told
        what to run (see :func:`finish`)."""
        with contextlib.suppress(BrokenPipeError):
            self.pipe.close()
        return finish(self.running)


@contextlib.contextmanager
def gate_ahead(wanted: bool) -> Iterator[Gate | None]:
    """A :class:`Gate` started now, if ``wanted``, for the trial the block may run (which takes
    it, see :class:`~mitosis.run.process.GatedTrial`); ended at the block's end if no trial
    took it."""
    gate = Gate() if wanted else None
    try:
        yield gate
    finally:
        if gate is not None and not gate.taken:
            gate.end()


def _stop(proc: TrialProcess) -> int:
    """Ctrl-C reached mitosis: pass it on to the trial process and give it time to report."""
    try:
        proc.send_signal(signal.SIGINT)
        return proc.wait(timeout=INTERRUPT_GRACE)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        return proc.wait()


def _pump(pipe: IO[bytes], console: IO[str] | None, log: list[bytes], lock: threading.Lock) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while chunk := os.read(pipe.fileno(), 65536):
        with lock:
            log.append(chunk)
        if console is not None:
            try:
                console.write(decoder.decode(chunk))
                console.flush()
            except (OSError, ValueError):  # a closed console must not lose the log
                console = None
