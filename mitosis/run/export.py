"""Exporting a trial: a folder that reproduces it without mitosis or its store."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from pathlib import Path
from urllib.parse import quote

from ..exceptions import RerunError
from ..model.layout import REQUIREMENTS, TRIAL
from ..model.records import Trial
from ..model.values import dumps_json
from ..store.repo import Store
from ..store.trials import load
from .experiment import Chain
from .files import inside
from .rebuild import import_roots, rebuild, refs_of
from .rerun import Pickled, chain_of_record, recorded_params

__all__ = ["export"]

# Every recorded value enters run.py as a Python literal (repr), never as text of its own.
_RUN_PY = '''\
"""Rerun a trial of mitosis without mitosis: `python run.py` (which trial: TRIAL, below).

Install the recorded packages first (`pip install -r requirements.txt`). The code is in code/
(commit COMMIT with the recorded uncommitted changes applied), the parameter values in params/
(pickles; params.json shows them), the original record in record/. Exits 0 when main equals
the recorded main.
"""

import json
import math
import pickle
import sys
from importlib import import_module
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRIAL = {id!r}
EXPERIMENT = {experiment!r}
COMMIT = {commit!r}
ROOTS = {roots!r}
STEPS = {steps!r}  # (name, module, qualname), run in order; "data" flows to the next step
PARAMS = {params!r}  # step number -> {{argument: file in params/}}

sys.path[:0] = [str(HERE / "code" / root) for root in ROOTS]


def load(name):
    with open(HERE / "params" / name, "rb") as f:
        return pickle.load(f)


def main():
    data = None
    for i, (name, module, qualname) in enumerate(STEPS):
        fn = import_module(module)
        for part in qualname.split("."):
            fn = getattr(fn, part)
        kwargs = {{arg: load(file) for arg, file in PARAMS[i].items()}}
        returned = fn(data, **kwargs) if i else fn(**kwargs)
        result = returned if isinstance(returned, dict) else {{"main": returned}}
        data = result.get("data")
    recorded = json.loads((HERE / "record" / "trial.json").read_text())["main"]
    if isinstance(recorded, dict) and "py/float" in recorded:
        recorded = float(recorded["py/float"])
    main = result["main"]
    same = main == recorded or (
        isinstance(main, float) and isinstance(recorded, float)
        and math.isnan(main) and math.isnan(recorded)
    )
    print(f"main = {{main!r}} (recorded: {{recorded!r}}, {{'the same' if same else 'DIFFERENT'}})")
    for metric, value in result.get("metrics", {{}}).items():
        print(f"{{metric}} = {{value!r}}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
'''


def export(
    trial_id: str,
    folder: str | os.PathLike[str],
    *,
    store: str | os.PathLike[str] | None = None,
    code: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a folder that reproduces a trial without mitosis or its store.

    It holds ``code/`` (the recorded commit with the recorded diff applied),
    ``requirements.txt``, ``params/`` (each value pickled) and ``params.json`` (readable),
    ``run.py`` (calls the experiment with those values and compares main with the record), and
    ``record/`` (the trial's recorded files: trial.json, results, figures, output.log, ...).

    Args:
        trial_id: the trial (a unique id prefix of 4 or more characters).
        folder: where to write; it must not exist or be empty.
        store: the store to read the trial from.
        code: the git repository holding the code's commit (as for :func:`rerun`).

    Returns:
        The folder.

    Raises:
        RerunError: the folder is not empty, or the code cannot be rebuilt.
    """
    trial = load(trial_id, store=store)
    out = Path(folder)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RerunError(f"{out} exists and is not an empty folder; name a new folder")
    chain = chain_of_record(trial, imported=False)
    tree = out / "code"
    try:
        repo = rebuild(trial, trial.location, code, tree)
        roots = import_roots(trial, tree, repo, refs_of(trial))
        _write_export(trial, out, [os.path.relpath(r, tree) for r in roots], chain)
    except OSError as exc:  # a name too long for this file system, a full disk, ...
        shutil.rmtree(out, ignore_errors=True)
        raise RerunError(
            f"cannot write the export of trial {trial.id} in {out}: {exc.strerror or exc} "
            f"({exc.filename}); nothing is left there"
        ) from None
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return out


def _file_name(name: str) -> str:
    """A parameter's file in ``params/``: its name, never a path; a long one shortened (a file
    name holds at most 255 bytes), told apart from others by a hash."""
    file = quote(name, safe="")
    if len(file) > 120:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        file = f"{file[:100]}-{digest}"
    return f"{file}.pickle"


def _write_export(trial: Trial, out: Path, roots: list[str], chain: Chain) -> None:
    (out / "record").mkdir()
    with Store.open(trial.location) as st:
        record = st.read_file(trial.experiment, f"{trial.path}/{TRIAL}")
    inside(out / "record", TRIAL, f"trial {trial.id}'s record").write_bytes(record or b"")
    for name in trial.files:  # streamed: results of any size, fetched if kept elsewhere
        target = inside(out / "record", name, f"trial {trial.id}'s file")
        with trial.open(name) as source, open(target, "wb") as copy:
            shutil.copyfileobj(source, copy, 1 << 20)
    (out / REQUIREMENTS).write_bytes(
        (out / "record" / REQUIREMENTS).read_bytes() if REQUIREMENTS in trial.files else b""
    )
    (out / "params").mkdir()
    per_step: list[dict[str, str]] = [{} for _ in chain.steps]
    shown = {}
    for r in recorded_params(trial):
        file = _file_name(r.name)
        data = r.value.data if isinstance(r.value, Pickled) else pickle.dumps(r.value)
        inside(out / "params", file, f"trial {trial.id}'s parameter").write_bytes(data)
        per_step[r.step][r.arg] = file
        shown[r.name] = {"variant": r.variant, "value": r.encoded.json, "type": r.encoded.type}
    (out / "params.json").write_text(dumps_json(shown, indent=2), encoding="utf-8")
    steps = [(s.name, *s.ref) for s in chain.steps if s.ref]
    commit = trial.code.commit if trial.code else None
    (out / "run.py").write_text(
        _RUN_PY.format(
            id=trial.id,
            experiment=trial.experiment,
            commit=commit,
            roots=[Path(r).as_posix() for r in roots],
            steps=steps,
            params=per_step,
        ),
        encoding="utf-8",
    )
