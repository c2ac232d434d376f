"""Running a trial in a fresh process, and recording what came of it."""

from __future__ import annotations

import codecs
import datetime as dt
import inspect
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import attrs

from . import _environment
from ._model import CodeState, Param, Trial, converter, trial_dir
from ._params import ExperimentSpec, Lookup, Resolved, resolve, spec_of
from ._recorder import commit_message, lock_check, variant_files
from ._serialize import dumps_json
from ._store import Store
from ._worker import dumps
from .exceptions import TrialFailed

__all__ = ["run", "run_experiment"]

_WORKER = str(Path(__file__).with_name("_worker.py"))
_INTERRUPT_GRACE = 10.0


def run(
    fn: Callable[..., Any],
    params: Mapping[str, Any] | None = None,
    *,
    lookup: Lookup | None = None,
    untracked: Iterable[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    debug: bool = False,
) -> Trial:
    """Run one trial of ``fn`` in a fresh Python process and record it in the store.

    Args:
        fn: the experiment: an importable function, or one defined in ``__main__``, a notebook
            or a closure (sent to the trial process by value with dill).
        params: parameter name to value. For a parameter with a lookup table, a string names a
            variant; any other value is used as given, named by its repr.
        lookup: parameter name to ``{variant name: value}`` (default: from
            :func:`mitosis.experiment`).
        untracked: parameters recorded but never locked (default: from the decorator).
        store: path of the git repository to record in (default: ``$MITOSIS_STORE``, else the
            repository containing the current directory, else ``./trials``).
        debug: run, but record nothing and lock nothing.

    Returns:
        The recorded trial (status ``ok``).

    Raises:
        BadParameter: ``params`` does not fit ``fn``'s signature (nothing ran).
        UnknownVariant: a string names no variant of its parameter (nothing ran).
        VariantConflict: a variant name is locked to another value (nothing ran).
        TrialFailed: the experiment raised, returned a wrong shape, was killed or interrupted;
            the trial is recorded all the same, and the error carries its id.
    """
    return run_experiment(fn, spec_of(fn, lookup, untracked), params, store=store, debug=debug)


def run_experiment(
    fn: Callable[..., Any],
    spec: ExperimentSpec,
    params: Mapping[str, Any] | None,
    *,
    store: str | os.PathLike[str] | None,
    debug: bool,
) -> Trial:
    """:func:`run` with the experiment's name, lookup and untracked names already decided."""
    resolved = resolve(fn, spec, params)
    if debug:
        trial, _, interrupted = _execute(fn, spec, resolved, store_path=None)
    else:
        with Store.open(store) as st:
            Store.ref(spec.name)  # a bad experiment name fails before anything runs
            check = lock_check(spec.name, resolved)
            check(st, st.tree_of(st.tip(spec.name)))
            trial, files, interrupted = _execute(fn, spec, resolved, store_path=st.path)
            st.commit(spec.name, files, commit_message(trial), check)
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


def _function_name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def _code_start(fn: Callable[..., Any]) -> str:
    """Where to look for the code's repository: the function's file, else the working dir."""
    try:
        source = inspect.getsourcefile(inspect.unwrap(fn))
    except TypeError:
        source = None
    return str(Path(source).parent) if source and Path(source).exists() else os.getcwd()


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


class _Collector(threading.Thread):
    """Gathers the environment and code state while the trial process runs."""

    def __init__(self, start: str) -> None:
        super().__init__(daemon=True)
        self.start_dir = start
        self.files: dict[str, bytes] = {}
        self.code: CodeState | None = None

    def run(self) -> None:
        try:
            env = _environment.environment()
            self.files["environment.json"] = dumps_json(
                converter().unstructure(env), indent=2
            ).encode()
            self.files["requirements.txt"] = _environment.requirements().encode()
            self.code, diff = _environment.code_state(self.start_dir)
            if diff:
                self.files["code.diff"] = diff
        except Exception:  # a trial is never lost for want of a detail of its environment
            self.files["environment-error.txt"] = traceback.format_exc().encode()


@attrs.frozen
class _Finished:
    """What the trial process left behind."""

    returncode: int
    log: bytes
    started: dt.datetime
    duration: float
    interrupted: bool


def _spawn(spec_file: Path, out: Path) -> _Finished:
    """Run the worker, streaming its output live to this process's console and to the log."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    started = dt.datetime.now(dt.timezone.utc)
    clock = time.perf_counter()
    with subprocess.Popen(
        [sys.executable, _WORKER, str(spec_file), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    ) as proc:
        log: list[bytes] = []
        lock = threading.Lock()
        pumps = [
            threading.Thread(target=_pump, args=(pipe, console, log, lock), daemon=True)
            for pipe, console in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr))
        ]
        for p in pumps:
            p.start()
        interrupted = False
        try:
            returncode = proc.wait()
        except KeyboardInterrupt:
            interrupted = True
            returncode = _stop(proc)
        for p in pumps:
            p.join()
    duration = time.perf_counter() - clock
    return _Finished(returncode, b"".join(log), started, duration, interrupted)


def _execute(
    fn: Callable[..., Any], spec: ExperimentSpec, resolved: list[Resolved], store_path: str | None
) -> tuple[Trial, dict[str, bytes], bool]:
    """Run the trial process; return the trial, its files (paths inside the branch), and
    whether Ctrl-C stopped it."""
    collector = _Collector(_code_start(fn))
    collector.start()
    work = Path(tempfile.mkdtemp(prefix="mitosis-"))
    try:
        spec_file, out = work / "spec", work / "out"
        out.mkdir()
        payload = {
            "function": _function_ref(fn),
            "kwargs": {r.name: r.value for r in resolved},
            "name": spec.name,
        }
        spec_file.write_bytes(json.dumps({"path": sys.path}).encode() + b"\n" + dumps(payload))
        finished = _spawn(spec_file, out)
        collector.join()
        outcome = _outcome(out, finished.returncode)
        files = dict(collector.files)
        files["output.log"] = finished.log
        if (out / "results.pkl").exists():
            files[f"results/{spec.name}.dill"] = (out / "results.pkl").read_bytes()
        figures = sorted((out / "figures").glob("*.png"), key=lambda p: int(p.stem))
        for n, png in enumerate(figures):
            files[f"figures/{spec.name}-{n}.png"] = png.read_bytes()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    params: dict[bool, dict[str, Param]] = {True: {}, False: {}}
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
    from . import __version__

    trial = Trial(
        id=secrets.token_hex(6),
        experiment=spec.name,
        status=outcome["status"],
        main=outcome.get("main"),
        metrics=outcome.get("metrics") or {},
        params=params[True],
        untracked=params[False],
        started=finished.started.isoformat(timespec="microseconds"),
        ended=(finished.started + dt.timedelta(seconds=finished.duration)).isoformat(
            timespec="microseconds"
        ),
        duration=round(finished.duration, 6),
        host=_environment.hostname(),
        user=_environment.username(),
        function=_function_name(fn),
        code=collector.code,
        error=outcome.get("error"),
        files=sorted(files),
        mitosis=__version__,
        location=store_path,
        debug_results=files.get(f"results/{spec.name}.dill") if store_path is None else None,
    )
    folder = trial_dir(trial.id)
    branch_files = {f"{folder}/{name}": data for name, data in files.items()}
    branch_files[f"{folder}/trial.json"] = dumps_json(
        converter().unstructure(trial), indent=2
    ).encode()
    branch_files.update(variant_files(resolved))
    return trial, branch_files, finished.interrupted


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """Ctrl-C reached mitosis: pass it on to the trial process and give it time to report."""
    try:
        proc.send_signal(signal.SIGINT)
        return proc.wait(timeout=_INTERRUPT_GRACE)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        return proc.wait()


def _outcome(out: Path, returncode: int) -> dict[str, Any]:
    try:
        outcome: dict[str, Any] = json.loads((out / "outcome.json").read_text())
        return outcome
    except (OSError, ValueError):
        pass
    if returncode < 0:
        sig = signal.Signals(-returncode)
        status = "interrupted" if sig is signal.SIGINT else "killed"
        return {"status": status, "error": f"the trial process was stopped by {sig.name}"}
    return {
        "status": "failed",
        "error": f"the trial process exited with code {returncode} before it reported a result",
    }
