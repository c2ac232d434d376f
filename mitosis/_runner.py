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
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import attrs

from . import _environment
from ._model import CodeState, Param, StepRecord, Trial, converter, trial_dir
from ._params import (
    Chain,
    Lookup,
    Resolved,
    chain_of,
    code_fingerprint,
    function_name,
    resolve,
)
from ._recorder import commit_message, lock_check, variant_files, variant_path
from ._reuse import Reuse, find_reusable
from ._serialize import decode, dumps_json
from ._store import Check, Store
from ._worker import dumps
from .exceptions import BadParameter, TrialFailed

__all__ = ["run", "run_experiment"]

_WORKER = str(Path(__file__).with_name("_worker.py"))
_INTERRUPT_GRACE = 10.0


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
    if figure_dpi is not None and not (
        isinstance(figure_dpi, (int, float)) and not isinstance(figure_dpi, bool) and figure_dpi > 0
    ):
        raise BadParameter(
            f"figure_dpi must be a positive number of dots per inch, e.g. 150; got {figure_dpi!r}"
        )
    if debug:
        trial, _, interrupted = _execute(chain, resolved, None, False, figure_dpi)
    else:
        with Store.open(store, create=True) as st:
            Store.ref(chain.name)  # a bad experiment name fails before anything runs
            check = lock_check(chain.name, resolved)
            _lock(st, chain.name, resolved, check)
            trial, files, interrupted = _execute(chain, resolved, st, reuse, figure_dpi)
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

    def __init__(
        self, start: str, code: tuple[CodeState | None, bytes] | None, exclude: str | None
    ) -> None:
        super().__init__(daemon=True)
        self.start_dir = start
        self.exclude = exclude
        self.known_code = code
        self.files: dict[str, bytes] = {}
        self.code: CodeState | None = None

    def run(self) -> None:
        try:
            env = _environment.environment()
            self.files["environment.json"] = dumps_json(
                converter().unstructure(env), indent=2
            ).encode()
            self.files["requirements.txt"] = _environment.requirements().encode()
            self.code, diff = self.known_code or _environment.code_state(
                self.start_dir, self.exclude
            )
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


def _spawn(spec_file: Path, out: Path, figure_dpi: float | None) -> _Finished:
    """Run the worker, streaming its output live to this process's console and to the log."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    if figure_dpi is not None:
        env["MITOSIS_FIGURE_DPI"] = repr(float(figure_dpi))
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
    chain: Chain,
    resolved: list[Resolved],
    store: Store | None,
    reuse: bool,
    figure_dpi: float | None = None,
) -> tuple[Trial, dict[str, bytes], bool]:
    """Run the trial process; return the trial, its files (paths inside the branch), and
    whether Ctrl-C stopped it. ``store`` is None for a debug trial."""
    start = _code_start(chain.steps[0].fn)
    exclude = store.path if store else None
    code = _environment.code_state(start, exclude) if reuse and store is not None else None
    reused = find_reusable(store, chain, resolved, code[0]) if code and store else None
    collector = _Collector(start, code, exclude)
    collector.start()
    first = reused.count if reused else 0
    files: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    work = Path(tempfile.mkdtemp(prefix="mitosis-"))
    try:
        spec_file, out, reused_file = work / "spec", work / "out", work / "reused.pkl"
        out.mkdir()
        if reused:
            reused_file.write_bytes(reused.results[chain.steps[first - 1].name])
        payload = {
            "steps": [
                {
                    "name": step.name,
                    "function": _function_ref(step.fn),
                    "kwargs": {r.arg: r.value for r in resolved if r.step == i},
                }
                for i, step in enumerate(chain.steps)
            ],
            "start": first,
            "reused": str(reused_file),
        }
        spec_file.write_bytes(json.dumps({"path": sys.path}).encode() + b"\n" + dumps(payload))
        finished = _spawn(spec_file, out, figure_dpi)
        collector.join()
        outcome = _outcome(out, finished.returncode)
        running = max((int(p.name[5:]) for p in out.glob("step-*[0-9]")), default=first)
        if "steps" not in outcome:  # the process died: the steps it finished left a report
            outcome["steps"] = [json.loads(p.read_text()) for p in out.glob("step-*.json")]
        files.update(collector.files)
        files["output.log"] = finished.log
        for i, step in enumerate(chain.steps):
            result = out / "results" / f"{i}.pkl"
            if result.exists():
                files[f"results/{step.name}.dill"] = result.read_bytes()
            figure_dir = out / "figures" / str(i)
            figures = sorted(figure_dir.glob("*.png"), key=lambda p: int(p.stem))
            titles = _captions(figure_dir / "captions.json")
            for n, png in enumerate(figures):
                files[f"figures/{step.name}-{n}.png"] = png.read_bytes()
                captions[f"figures/{step.name}-{n}.png"] = titles.get(int(png.stem), "")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    steps = _step_records(chain, outcome, reused, running)
    if reused:
        for name, data in reused.results.items():
            files[f"results/{name}.dill"] = data
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

    last = steps[-1]
    if chain.single:
        metrics = last.metrics
    else:
        metrics = {f"{s.name}.{k}": v for s in steps for k, v in s.metrics.items()}
    ok = outcome["status"] == "ok"
    trial = Trial(
        id=secrets.token_hex(6),
        experiment=chain.name,
        status=outcome["status"],
        main=last.main if ok else None,
        metrics=metrics,
        params=params[True],
        untracked=params[False],
        started=finished.started.isoformat(timespec="microseconds"),
        ended=(finished.started + dt.timedelta(seconds=finished.duration)).isoformat(
            timespec="microseconds"
        ),
        duration=round(finished.duration, 6),
        host=_environment.hostname(),
        user=_environment.username(),
        function=", ".join(function_name(s.fn) for s in chain.steps),
        code=collector.code,
        error=outcome.get("error"),
        files=sorted(files),
        captions=captions,
        steps=steps,
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
    branch_files.update(variant_files(resolved))
    return trial, branch_files, finished.interrupted


def _captions(path: Path) -> dict[int, str]:
    """The worker's list of figure captions, by figure number (none if it wrote none)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return (
        {n: c for n, c in enumerate(found) if isinstance(c, str)} if isinstance(found, list) else {}
    )


def _step_records(
    chain: Chain, outcome: dict[str, Any], reused: Reuse | None, running: int
) -> list[StepRecord]:
    """Each step's record: reused, run (from the worker's report), or not run. ``running`` is
    the last step the trial process started."""
    ran = {r["name"]: r for r in outcome.get("steps", [])}
    records = []
    for i, step in enumerate(chain.steps):
        function = function_name(step.fn)
        if reused and i < reused.count:
            records.append(attrs.evolve(reused.steps[i], name=step.name, function=function))
            continue
        report = ran.get(step.name)
        code = code_fingerprint(step.fn)
        if report is None:  # the process died in this step, or a step before it failed
            status = outcome["status"] if i == running else "not run"
            records.append(StepRecord(step.name, function, status, code=code))
            continue
        records.append(
            StepRecord(
                name=step.name,
                function=function,
                status=report["status"],
                main=decode(report.get("main")),
                metrics=decode(report.get("metrics") or {}),
                duration=round(report.get("seconds", 0.0), 6),
                code=code,
            )
        )
    return records


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
