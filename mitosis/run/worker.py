"""What runs inside a trial's own process.

Started as ``python .../mitosis/run/worker.py SPEC OUT`` (or forked, in a sweep, from a process
started as ``worker.py --serve CONFIG``: see :mod:`mitosis.run.serve`), so the mitosis package is
never imported here: the trial process starts with the standard library alone (and
:mod:`mitosis.model.portable`, loaded by its path), and imports dill only if the spec needs it,
matplotlib only if the experiment did.

SPEC holds one JSON line (``{"path": the import path, "reused": a file, "debug": true}``, the last
two only when they apply) and then a pickle
of ``{"steps": [{"name", "function", "kwargs"}, ...], "start": k}``: the steps run in order from
``start`` (the result of step ``start - 1``, pickled in the ``reused`` file, stands in for the
steps before). OUT is a folder that receives ``outcome.json``, ``results/<i>.pkl``, and
``figures/<i>/<n>.png`` with ``figures/<i>/captions.json`` (a list: each figure's caption) for
step ``i``. Figures are saved at ``$MITOSIS_FIGURE_DPI`` dots per inch (default 100).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import time
from collections.abc import Mapping

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the trial's start
if TYPE_CHECKING:
    from typing import Any

if __package__:  # imported by mitosis, in the caller's process
    from ..model.portable import dump, plain, write_file
else:  # the trial process: the one module it shares with mitosis, loaded without the package

    def _portable() -> Any:
        import importlib.util

        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.path.join(here, "model", "portable.py")
        spec = importlib.util.spec_from_file_location("_mitosis_portable", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    _shared = _portable()
    dump, plain, write_file = _shared.dump, _shared.plain, _shared.write_file

RETURN_KEYS = ("main", "metrics", "data", "figures")


def normalize(returned: Any, who: str = "the experiment", last: bool = True) -> dict[str, Any]:
    """Check a step's return value against the contract; a bare number means ``{"main": n}``.

    The last step (or a plain function) must return ``"main"``; a step before it may return
    ``"data"`` alone. Keys besides ``main``, ``metrics``, ``data`` and ``figures`` are kept: they
    stay in the pickled result, and :func:`extra` records them."""
    import numbers

    if isinstance(returned, numbers.Number) and not isinstance(returned, bool):
        return {"main": returned}
    if not isinstance(returned, Mapping):
        raise TypeError(
            f"{who} returned {type(returned).__name__} {returned!r:.80}; return a number "
            'or a dict with "main" (and optionally "metrics" and "data")'
        )
    if last and "main" not in returned:
        raise TypeError(
            f'{who} returned a dict with no "main" key (keys: {sorted(map(str, returned))}); '
            'return {"main": ...} (and optionally "metrics", "data" and "figures")'
        )
    metrics = returned.get("metrics", {})
    if not isinstance(metrics, Mapping) or not all(isinstance(k, str) for k in metrics):
        raise TypeError('"metrics" must be a dict from metric names (str) to values')
    figures = returned.get("figures", [])
    if not isinstance(figures, (Mapping, list, tuple)) and not hasattr(figures, "savefig"):
        raise TypeError('"figures" must be a matplotlib figure, a list of them, or a dict of them')
    return dict(returned)


def extra(shaped: Mapping[Any, Any]) -> dict[str, Any]:
    """The keys a step returned besides ``main``, ``metrics``, ``data`` and ``figures``."""
    return {str(k): v for k, v in shaped.items() if k not in RETURN_KEYS}


def _load_function(function: Any) -> Any:
    if callable(function):
        return function
    import importlib

    module_name, qualname = function
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def caption(figure: Any) -> str:
    """A figure's caption: its suptitle, else the first title of its axes, else ``""``."""
    suptitle = getattr(figure, "_suptitle", None)
    if suptitle is not None and suptitle.get_text().strip():
        return str(suptitle.get_text().strip())
    for axes in figure.get_axes():
        for loc in ("center", "left", "right"):
            title = axes.get_title(loc).strip()
            if title:
                return str(title)
    return ""


def _returned_figures(returned: Any) -> list[tuple[Any, str]]:
    """The figures a step returned under ``"figures"``, each with the name it was given."""
    if not isinstance(returned, Mapping) or "figures" not in returned:
        return []
    figures = returned["figures"]
    if hasattr(figures, "savefig"):
        return [(figures, "")]
    if isinstance(figures, Mapping):
        return [(f, str(name)) for name, f in figures.items() if hasattr(f, "savefig")]
    if isinstance(figures, (list, tuple)):
        return [(f, "") for f in figures if hasattr(f, "savefig")]
    return []


def _save_figures(folder: str, returned: Any) -> int:
    """Save the figures a step returned, then every other figure left open, as
    ``<folder>/<n>.png`` with their captions in ``<folder>/captions.json``; close them."""
    figures = _returned_figures(returned)
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:  # matplotlib is imported only if the experiment imported it
        seen = {id(f) for f, _ in figures}
        for num in pyplot.get_fignums():
            figure = pyplot.figure(num)
            if id(figure) not in seen:
                figures.append((figure, ""))
    if not figures:
        return 0
    os.makedirs(folder)
    dpi = float(os.environ.get("MITOSIS_FIGURE_DPI") or "100")
    captions = []
    for n, (figure, name) in enumerate(figures):
        figure.savefig(os.path.join(folder, f"{n}.png"), dpi=dpi, format="png")
        captions.append(caption(figure) or name)
    write_file(os.path.join(folder, "captions.json"), json.dumps(captions).encode())
    if pyplot is not None:
        pyplot.close("all")
    return len(figures)


def _log_to_stderr(debug: bool) -> None:
    """Let the experiment's ``logging`` records reach the trial's log, as the earlier mitosis
    did: INFO and above (DEBUG too in a debug trial), through a handler on stderr, when nothing
    has configured logging (the root logger has no handler). Only once the experiment's code has
    imported logging: importing it here would slow every trial's start."""
    logging = sys.modules.get("logging")
    if logging is None:
        return
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def _run_steps(spec: dict[str, Any], out: str, records: list[dict[str, Any]]) -> None:
    """Run the steps from ``spec["start"]`` on, each fed the previous step's ``"data"``."""
    steps = spec["steps"]
    start = spec["start"]
    data: Any = None
    if start > 0:  # the steps before were reused: their last result stands in
        with open(spec["reused"], "rb") as f:
            data = normalize(pickle.load(f), last=False)["data"]
    os.mkdir(os.path.join(out, "results"))
    for i in range(start, len(steps)):
        step = steps[i]
        record: dict[str, Any] = {"name": step["name"], "status": "failed"}
        records.append(record)
        write_file(os.path.join(out, f"step-{i}"), b"")  # tells the caller which step a kill hit
        fn = _load_function(step["function"])
        _log_to_stderr(spec.get("debug", False))
        clock = time.perf_counter()
        returned: Any = None
        done = False
        try:
            returned = fn(data, **step["kwargs"]) if i > 0 else fn(**step["kwargs"])
            done = True
        finally:
            record["seconds"] = time.perf_counter() - clock
            try:
                record["figures"] = _save_figures(os.path.join(out, "figures", str(i)), returned)
            except Exception:
                if done:  # the step succeeded: failing to save its figures fails the trial
                    raise
                import traceback  # the step's own error matters more: report this one aside

                sys.stderr.write("mitosis could not save the figures:\n" + traceback.format_exc())
        last = i + 1 == len(steps)
        shaped = normalize(
            returned, "the experiment" if len(steps) == 1 else f"step {step['name']}", last
        )
        if not last and "data" not in shaped:
            raise TypeError(
                f'step {step["name"]} returned no "data" for the next step, '
                f'{steps[i + 1]["name"]}; return {{"data": ...}} (and optionally "main")'
            )
        if "figures" in shaped:  # saved as PNG: the pickle would need matplotlib to load
            returned = {k: v for k, v in shaped.items() if k != "figures"}
        dump(returned, os.path.join(out, "results", f"{i}.pkl"))  # never whole in memory
        record["main"] = plain(shaped.get("main"))
        record["metrics"] = plain(shaped.get("metrics", {}))
        others = extra(shaped)
        if others:
            record["extra"] = plain(others)
        record["status"] = "ok"
        # the step's report, in case the process is killed later
        write_file(os.path.join(out, f"step-{i}.json"), json.dumps(record).encode())
        data = shaped.get("data")


def _interrupt_once(signum: int, frame: Any) -> None:
    """Ctrl-C stops the trial once; a second one (the terminal's and mitosis's, arriving
    together) must not stop the report of the first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(spec_path: str, out: str) -> int:
    records: list[dict[str, Any]] = []
    outcome: dict[str, Any] = {"status": "failed", "error": None, "steps": records}
    signal.signal(signal.SIGINT, _interrupt_once)
    try:
        with open(spec_path, "rb") as f:
            header = json.loads(f.readline())
            sys.path[:] = header["path"]
            spec = pickle.loads(f.read())
            spec["reused"] = header.get("reused")
            spec["debug"] = bool(header.get("debug"))
        _run_steps(spec, out, records)
        outcome["status"] = "ok"
    except KeyboardInterrupt:
        import traceback

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the report
        outcome.update(status="interrupted", error=traceback.format_exc())
    except BaseException:  # the experiment's failure is the trial's record, whatever it was
        import traceback

        outcome["error"] = traceback.format_exc()
        sys.stderr.write(outcome["error"])
    if records and records[-1]["status"] != "ok":
        records[-1]["status"] = outcome["status"]
    sys.stdout.flush()
    sys.stderr.flush()
    tmp = os.path.join(out, "outcome.json.tmp")
    write_file(tmp, json.dumps(outcome).encode())
    os.replace(tmp, os.path.join(out, "outcome.json"))
    return 0


def _serve(config: str) -> tuple[str, str] | None:
    """The warm start of a sweep (:mod:`mitosis.run.serve`, loaded by its path): returns the
    trial's ``(spec, out)`` in each forked trial process, None when the server is done."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serve.py")
    spec = importlib.util.spec_from_file_location("_mitosis_serve", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    trial: tuple[str, str] | None = module.serve(json.loads(config))
    return trial


def _exit_forked(code: int) -> None:
    """End a forked trial process as the interpreter ends one started afresh (the threads it
    started joined, its atexit handlers run, its output flushed), but without tearing down
    the modules it shares with the warm process: that shows nothing, and there it costs
    50-200 ms (every object touched is copied)."""
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    import atexit
    import contextlib

    atexit._run_exitfuncs()
    _flush_files()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing more to say
            stream.flush()
    os._exit(code)


def _flush_files() -> None:
    """Flush every file the trial left open (a module's global file, a writer it never
    closed): at a normal exit the interpreter flushes them as it frees them, ``os._exit`` would
    drop what they still buffer. The warm server's own objects are frozen, out of this walk."""
    import gc
    import io

    for found in gc.get_objects():
        if isinstance(found, io.IOBase):
            try:
                if not found.closed:
                    found.flush()
            except Exception:  # a file that cannot flush now could not at exit either
                pass


def _gated(fd: int) -> tuple[str, str] | None:
    """A trial process started before its caller decided to run it (``worker.py --gate FD``,
    see :class:`mitosis.run.spawn.Gate`): reads from FD a JSON line with the import path, the
    experiment's modules and the variables to set, imports them while the caller gets ready,
    then waits for a second line, the trial's ``(spec, out)``; None at end of file (the caller
    cancelled: nothing of the trial runs)."""
    import importlib

    with os.fdopen(fd, "rb") as gate:
        early = gate.readline()
        if not early:
            return None
        said = json.loads(early)
        sys.path[:] = said["path"]
        os.environ.update(said.get("env", {}))
        for name in said["modules"]:
            try:
                importlib.import_module(name)
            except KeyboardInterrupt:
                raise
            except BaseException:  # the step imports it again, and the trial records why
                pass
        go = gate.readline()
    if not go:
        return None
    trial = json.loads(go)
    return trial["spec"], trial["out"]


if __name__ == "__main__":
    if sys.argv[1] == "--gate":
        gated = _gated(int(sys.argv[2]))
        if gated is None:
            sys.exit(0)
        sys.argv[1:] = gated
        sys.exit(main(*gated))
    if sys.argv[1] == "--serve":
        trial = _serve(sys.argv[2])
        if trial is None:  # the server is done: nothing to flush, nothing worth tearing down
            os._exit(0)
        sys.argv[1:] = trial  # a forked trial process: from here on, as one started afresh
        _exit_forked(main(*trial))
    sys.exit(main(sys.argv[1], sys.argv[2]))
