"""Reproducing a trial from its record: rebuilt code, recorded values, a comparison of results.

The code is rebuilt from the recorded commit and ``code.diff`` into a temporary folder with
dulwich (the user's checkout is never touched), and that folder comes first on the trial
process's import path. Parameters are the recorded values, never names resolved again.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..exceptions import EnvironmentDiffers, RerunError, TrialFailed, VariantRenamed
from ..model.layout import REQUIREMENTS, split_qualified
from ..model.records import Trial, converter
from ..model.values import Encoded, decode, dumps_json
from ..store.trials import load
from . import environment as _environment
from .compare import Difference, packages, recorded_environment
from .environment import CodeSnapshot, read_code
from .experiment import Chain, ExperimentSpec, Step
from .params import Resolved
from .rebuild import (
    checkout_roots,
    defined_in,
    import_roots,
    materialize,
    not_defined,
    not_recorded,
    own_path,
    rebuild,
    recorded_diff,
    refs_of,
)
from .trial import Origin, code_start, record

if TYPE_CHECKING:
    pass

__all__ = [
    "Agreement",
    "Pickled",
    "Rerun",
    "chain_of_record",
    "environment_differences",
    "recorded_params",
    "rerun",
]


@attrs.frozen
class Agreement:
    """One result of the original trial against the rerun's.

    Attributes:
        name: ``status``, ``main`` or a metric's name.
        original: the recorded value.
        rerun: the rerun's value (None where the rerun has none).
        agrees: equal, or numbers within the tolerance.
    """

    name: str
    original: Any
    rerun: Any
    agrees: bool


@attrs.frozen
class Rerun:
    """What came of rerunning a trial.

    Attributes:
        original: the trial that was rerun.
        trial: the new trial (its record says ``rerun_of``).
        environment: how this environment differs from the recorded one (``a`` recorded,
            ``b`` now).
        code: how the code that ran differs from the recorded code (empty unless ``here``).
        results: status, main and each metric, compared.
    """

    original: Trial
    trial: Trial
    environment: list[Difference]
    code: list[str]
    results: list[Agreement]

    @property
    def agrees(self) -> bool:
        """Whether every compared result agrees."""
        return all(a.agrees for a in self.results)


def rerun(
    trial_id: str,
    *,
    here: bool = False,
    strict: bool = False,
    rel_tol: float = 0.0,
    abs_tol: float = 0.0,
    store: str | os.PathLike[str] | None = None,
    code: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Rerun:
    """Run a recorded trial again, from its record, and compare the results.

    The code is the recorded commit with the recorded uncommitted diff applied, rebuilt in a
    temporary folder that comes first on the trial process's import path; the parameters are
    the recorded values (a lookup dictionary changed since does not matter). The new trial is
    recorded with a ``Mitosis-Rerun-Of`` trailer. Parameter values that JSON cannot hold are
    unpickled in the trial process: rerun trials from stores you trust.

    Args:
        trial_id: the trial (a unique id prefix of 4 or more characters).
        here: run the code of the current checkout instead, and report how it differs.
        strict: refuse to run when the interpreter, platform or packages differ from the record.
        rel_tol: relative tolerance for numeric results (0: exactly equal).
        abs_tol: absolute tolerance for numeric results.
        store: the store to read the trial from and record the rerun in.
        code: the git repository holding the code's commit (default: the store's repository,
            else the one containing the current directory, else the recorded one).
        progress: called with what it is doing while it rebuilds the code (``rebuilding commit
            8d2e91c0ab: 300 files written``, ``applying the recorded uncommitted diff``), then
            with ``""`` when the trial's own output follows.

    Returns:
        The original and new trials, the environment and code differences, and the comparison.

    Raises:
        EnvironmentDiffers: ``strict`` and the environment differs (nothing ran).
        RerunError: the code cannot be rebuilt or imported (nothing ran).
    """
    original = load(trial_id, store=store)
    location = original.location
    environment = environment_differences(original)
    if strict and environment:
        raise EnvironmentDiffers(original.id, [_difference_text(d) for d in environment])
    with tempfile.TemporaryDirectory(prefix="mitosis-rerun-") as tmp:
        if here:
            roots = checkout_roots(original)
            fix = "rerun without --here to rebuild the recorded code"
            refs = refs_of(original)
            mine = roots or own_path([module for module, _ in refs])
            defined_in(original, mine, refs, "your code", fix)
            with _first_on_path(roots):  # as the trial process will have them
                chain = chain_of_record(original, imported=True)
            origin = Origin(path=roots, rerun_of=original.id)
            code_changes = _code_changes(
                original, code_start(chain.steps[0].fn), location, Path(tmp)
            )
        else:
            tree = Path(tmp, "code")
            repo = rebuild(original, location, code, tree, progress)
            chain = chain_of_record(original, imported=False)
            roots = import_roots(original, tree, repo, refs_of(original))
            state = attrs.evolve(original.code, repository=repo) if original.code else None
            origin = Origin(
                code=CodeSnapshot(state, recorded_diff(original)), path=roots, rerun_of=original.id
            )
            code_changes = not_recorded(original)
        if progress is not None:
            progress("")  # the trial's own output follows
        trial = _record(chain, recorded_params(original), location, origin)
    return Rerun(
        original, trial, environment, code_changes, compare(original, trial, rel_tol, abs_tol)
    )


def _record(chain: Chain, resolved: list[Resolved], store: str | None, origin: Origin) -> Trial:
    """Record the rerun; a name renamed since (to settle a conflict) is used by its new name.

    Raises:
        RerunError: the renames lead back to a name already tried (the rename notes came from
            elsewhere: :func:`mitosis.rename_variant` never makes a circle).
    """
    tried: set[tuple[str, str]] = set()
    while True:
        try:
            return record(chain, resolved, store=store, origin=origin)
        except TrialFailed as failed:
            if failed.trial_id is None:
                raise
            return load(failed.trial_id, store=store)
        except VariantRenamed as renamed:
            if renamed.renamed_to is None:
                raise
            tried.add((renamed.param, renamed.variant))
            if (renamed.param, renamed.renamed_to) in tried:
                names = ", ".join(sorted(f"{p}={v}" for p, v in tried))
                raise RerunError(
                    f"the rename notes of mitosis/{chain.name} go round in a circle: "
                    f"{renamed.param}={renamed.variant} is renamed to {renamed.renamed_to}, "
                    f"which was tried already ({names}); mitosis did not write them (they came "
                    "with a pull): remove the notes under variants/ from the branch, then rerun"
                ) from None
            resolved = [
                attrs.evolve(r, variant=renamed.renamed_to)
                if (r.name, r.variant) == (renamed.param, renamed.variant)
                else r
                for r in resolved
            ]


def compare(
    original: Trial, new: Trial, rel_tol: float = 0.0, abs_tol: float = 0.0
) -> list[Agreement]:
    """Status, main and every metric of ``original`` against ``new``."""
    found = [Agreement("status", original.status, new.status, original.status == new.status)]
    if original.status == "ok":
        found.append(
            Agreement(
                "main", original.main, new.main, _close(original.main, new.main, rel_tol, abs_tol)
            )
        )
    for name, value in original.metrics.items():
        other = new.metrics.get(name)
        found.append(Agreement(name, value, other, _close(value, other, rel_tol, abs_tol)))
    return found


def _close(a: Any, b: Any, rel_tol: float, abs_tol: float) -> bool:
    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    if number(a) and number(b):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)
    return bool(dumps_json(a) == dumps_json(b))


# -- environment ---------------------------------------------------------------------------


def environment_differences(trial: Trial) -> list[Difference]:
    """How this environment differs from the one ``trial`` recorded: interpreter, platform and
    packages (``a`` recorded, ``b`` now). Editable installs compare by name only: their code
    is the trial's code, not the folder it is installed from."""
    recorded = recorded_environment(trial)
    now = converter().unstructure(_environment.environment())
    found = [
        Difference("environment", key, _shown(recorded[key]), now[key])
        for key in ("python", "implementation", "platform", "machine")
        if key in recorded and recorded[key] != now[key]
    ]
    if REQUIREMENTS in trial.files:
        before = _comparable(packages(trial.read(REQUIREMENTS).decode("utf-8", "replace")))
        after = _comparable(packages(_environment.requirements()))
        found += [
            Difference("packages", name, before.get(name), after.get(name))
            for name in sorted(set(before) | set(after))
            if before.get(name) != after.get(name)
        ]
    return found


def _shown(value: Any) -> str:
    """A recorded value as text (a forged record may hold any JSON where text belongs)."""
    return value if isinstance(value, str) else dumps_json(value)


def _comparable(found: dict[str, str]) -> dict[str, str]:
    return {k: "editable" if v.startswith("editable ") else v for k, v in found.items()}


def _difference_text(d: Difference) -> str:
    return f"{d.section} {d.key}: recorded {d.a or '(none)'}, now {d.b or '(none)'}"


# -- code ----------------------------------------------------------------------------------


def _stand_in(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a rerun's step is imported and called in the trial process only")


def chain_of_record(trial: Trial, imported: bool) -> Chain:
    """The trial's steps: functions imported here (``imported``), else references the trial
    process imports from the rebuilt code. Check first that the code defines them
    (:func:`defined_in`): a record may name any function of this machine."""
    steps = []
    for record_, (module, qualname) in zip(trial.steps, refs_of(trial), strict=True):
        spec = ExperimentSpec(record_.name, {}, frozenset())
        if imported:
            steps.append(Step(spec, _import(trial, module, qualname)))
        else:
            steps.append(Step(spec, _stand_in, ref=(module, qualname)))
    return Chain(trial.experiment, tuple(steps))


def _import(trial: Trial, module: str, qualname: str) -> Any:
    import importlib

    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise RerunError(
            f"cannot import {module}:{qualname} (trial {trial.id}'s experiment) from the current "
            f"checkout: {exc}. Rerun without --here to rebuild the recorded code."
        ) from exc
    if (getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)) != (module, qualname):
        raise RerunError(not_defined(trial, module, qualname, "your code"))
    return obj


@contextlib.contextmanager
def _first_on_path(folders: tuple[str, ...]) -> Iterator[None]:
    """``folders`` first on this process's import path for a while."""
    saved = list(sys.path)
    sys.path[:0] = [f for f in folders if f not in sys.path]
    try:
        yield
    finally:
        sys.path[:] = saved


def _code_changes(trial: Trial, start: str, store: str | None, scratch: Path) -> list[str]:
    """How the checkout containing ``start`` differs from the code ``trial`` recorded, file by
    file (both rebuilt from their commit and uncommitted diff)."""
    from dulwich.repo import Repo

    snapshot = read_code(start, store)
    current, diff = snapshot.state, snapshot.diff
    if current is None or current.commit is None:
        return [f"{start} is not in a git repository with commits"]
    changes = []
    if trial.code is None or trial.code.commit != current.commit:
        recorded_commit = trial.code.commit if trial.code else None
        changes.append(f"commit: recorded {recorded_commit}, now {current.commit}")
    try:
        rebuild(trial, store, current.repository, scratch / "recorded")
        with Repo(current.repository) as repo:
            materialize(repo, current.commit, diff, scratch / "now", "the current checkout")
    except RerunError as exc:
        return [*changes, f"the files cannot be compared: {exc}"]
    recorded, now = _files(scratch / "recorded"), _files(scratch / "now")
    for path in sorted(set(recorded) | set(now)):
        if path not in now:
            changes.append(f"only in the record: {path}")
        elif path not in recorded:
            changes.append(f"only now: {path}")
        elif recorded[path] != now[path]:
            changes.append(f"changed: {path}")
    return changes


def _files(root: Path) -> dict[str, bytes]:
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            found[path.relative_to(root).as_posix()] = (
                os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
            )
    return found


# -- parameters ----------------------------------------------------------------------------


@attrs.frozen
class Pickled:
    """A recorded pickle that unpickles itself in the trial process (after the rebuilt code is
    on its import path), never in this one."""

    data: bytes

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return pickle.loads, (self.data,)


def recorded_params(trial: Trial) -> list[Resolved]:
    """The trial's parameters as it recorded them: values, names, fingerprints."""
    names = [s.name for s in trial.steps]
    found = []
    for tracked, params in ((True, trial.params), (False, trial.untracked)):
        for name, p in params.items():
            step, arg = 0, name
            if len(names) > 1:
                step_name, arg = split_qualified(name)
                if step_name not in names:
                    raise RerunError(
                        f"trial {trial.id} records the parameter {name!r} of no step of its "
                        f"chain ({', '.join(names)}); its record cannot be rerun"
                    )
                step = names.index(step_name)
            pickled = trial.read(p.dill) if p.dill else None
            # a record's values decode: those that do not are bad records, never loaded
            value = Pickled(pickled) if pickled is not None else decode(p.value)
            encoded = Encoded(p.value, pickled is None, p.fingerprint, p.type, pickled)
            found.append(Resolved(name, value, p.variant, p.source, tracked, encoded, step, arg))
    return found
