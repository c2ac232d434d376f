"""What the earlier mitosis (0.6) offered that has no other home: its ``load_trial_data``, and
the import of its trials folders into the store.

A 0.6 trials folder holds, per experiment, a SQLite database ``<steps joined by _>.db`` (a table
``trials_<name>`` of trials: variant, iteration, commit, cpu time, result, notebook file; one
``<step>_variant_<param>`` table per parameter of the names it locked), a folder per trial
``<date>_<key>`` (``results_<n>.dill``, ``experiment.log``, ``source.py``, ``config.txt``,
``requirements.txt``) and each trial's notebook (``trial_<variant>_<iteration>_<key>.html``).
Everything there is read as data: SQLite through the standard library, ``source.py`` and
``config.txt`` parsed (never run), and the pickled results copied as bytes, never unpickled.
A trials folder may come from someone else: only its own regular files are read (a symbolic
link, which could reach any file of this machine, such as ``/proc/self/environ``, is left out
and said), and the files copied are streamed into the store, never held whole.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import hashlib
import os
import re
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from .._version import __version__
from ..exceptions import BadParameter, BadRecord, MitosisError
from ..model.checks import check_record, experiment_problem, name_problem
from ..model.layout import (
    FORMAT,
    FORMAT_INLINE,
    OUTPUT,
    RESULTS_THRESHOLD,
    TRIAL,
    is_result,
    param_name,
    qualified,
    result_name,
    trial_dir,
    variant_path,
)
from ..model.records import (
    CodeState,
    FileData,
    OnDisk,
    Param,
    StepRecord,
    StepStatus,
    Trial,
    VariantLock,
    converter,
    size_of,
)
from ..model.values import Encoded, encode
from ..store.repo import Store
from ..store.trials import StoreFiles, load
from ..store.variants import lock_new
from ..store.write import write_trial

__all__ = ["Imported", "import_06", "load_trial_data"]

_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_LOG_TIME = re.compile(rb"[A-Z]+:(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}):")
_NOTEBOOK = re.compile(r"trial_.+_[0-9a-z]+\.(html|ipynb)")
_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"
_UNKNOWN = object()
_LITERAL_ERRORS = (ValueError, TypeError, SyntaxError, MemoryError, RecursionError)
_LATE = dt.timedelta(days=7)  # a notebook written later than this was copied, not written then
LEGACY = "legacy/"  # the 0.6 files kept in an imported trial's folder
#: A file that is parsed (``source.py``, ``config.txt``) and bigger than this is not 0.6's.
PARSED_MOST = 16 << 20


def load_trial_data(trial_id: str, *, store: str | os.PathLike[str] | None = None) -> list[Any]:
    """What each step of a trial returned, unpickled, in the order the steps ran: one entry per
    step that recorded a result (a step that failed, or never ran, records none), as the earlier
    mitosis's ``load_trial_data`` returned them. ``mitosis.load(trial_id).results(step)`` reads
    one step's.

    This unpickles: call it on trials from stores you trust.

    Raises:
        UnknownTrial: no trial has an id starting with ``trial_id``.
        AmbiguousTrialId: more than one has.

    Example:
        >>> first, last = mitosis.load_trial_data("3fa9c1d2")  # doctest: +SKIP
        >>> last["main"]  # doctest: +SKIP
    """
    trial = load(trial_id, store=store)
    return [trial.results(s.name) for s in trial.steps if result_name(s.name) in trial.files]


@attrs.frozen
class Imported:
    """What :func:`import_06` did.

    Attributes:
        imported: ``<experiment> <trial id>`` of each trial it recorded, oldest first.
        present: the same of each trial an earlier import had recorded already.
        locked: ``<experiment> <param>=<variant>`` of each variant it locked.
        skipped: what it could not import, each with the reason.
    """

    imported: list[str] = attrs.field(factory=list)
    present: list[str] = attrs.field(factory=list)
    locked: list[str] = attrs.field(factory=list)
    skipped: list[str] = attrs.field(factory=list)


@attrs.frozen
class _Legacy:
    """One 0.6 trial, read (values parsed, files as bytes)."""

    experiment: str
    trial: Trial
    files: dict[str, FileData]
    locks: list[VariantLock]
    when: tuple[int, int]
    origin: str


def import_06(
    folder: str | os.PathLike[str], *, store: str | os.PathLike[str] | None = None
) -> Imported:
    """Record the trials of an earlier mitosis's (0.6) trials folder in ``store``: each becomes
    a trial commit on ``mitosis/<steps joined by +>`` dated when it ran, with its code commit,
    its parameters (variant names locked to their values), its pickled results (copied, never
    unpickled), its log, and the 0.6 files (notebook, ``source.py``, ``config.txt``,
    ``requirements.txt``) under ``legacy/`` in its folder.

    Trial ids derive from the 0.6 trial, so importing a folder again records nothing twice.
    What cannot be read (a damaged database, a row or a file that is missing or malformed, a
    value ``config.txt`` does not hold as a Python literal) is skipped or left out, and listed.

    Raises:
        BadParameter: ``folder`` is not a folder.
        StoreError: the store cannot be written.
    """
    root = Path(folder)
    if not root.is_dir():
        raise BadParameter(f"{folder} is not a folder; give the 0.6 trials folder (its 'trials')")
    report = Imported()
    found: list[_Legacy] = []
    used: set[str] = set()
    for db in sorted(root.glob("*.db")):
        if _file(db, root, report.skipped.append) is not None:  # no symbolic link
            found += _read_database(root, db, used, report.skipped.append)
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and entry.name not in used:
            report.skipped.append(
                f"{entry.name}: no trial in the databases names it (a debug trial, or a lost row)"
            )
    if not found and not report.skipped:
        report.skipped.append(f"{root}: no 0.6 database (*.db) here")
    found.sort(key=lambda t: (t.trial.started, t.trial.id))
    with Store.open(store, create=True) as st:
        kept = _lock(st, found, report)
        for legacy in found:
            name = f"{legacy.experiment} {legacy.trial.id}"
            if st.read_file(legacy.experiment, f"{trial_dir(legacy.trial.id)}/{TRIAL}"):
                report.present.append(name)
                continue
            trial = attrs.evolve(legacy.trial, location=st.path, source=StoreFiles(st.path))
            locks = [lock for lock in legacy.locks if (legacy.experiment, lock[:2]) in kept]
            trailer = f"Mitosis-Imported-From: mitosis 0.6 {legacy.origin}\n"
            try:
                write_trial(st, trial, legacy.files, locks, when=legacy.when, trailers=trailer)
            except MitosisError as exc:
                report.skipped.append(f"{legacy.origin}: {exc}")
                continue
            report.imported.append(name)
    return report


def _lock(st: Store, found: list[_Legacy], report: Imported) -> set[tuple[str, tuple[str, str]]]:
    """Lock the variants the trials used (one commit per experiment); the ones kept."""
    wanted: dict[str, dict[tuple[str, str], VariantLock]] = {}
    for legacy in found:
        for lock in legacy.locks:
            mine = wanted.setdefault(legacy.experiment, {})
            earlier = mine.setdefault((lock.param, lock.variant), lock)
            if earlier.encoded.fingerprint != lock.encoded.fingerprint:
                report.skipped.append(
                    f"lock {legacy.experiment} {lock.param}={lock.variant}: its trials "
                    "recorded two values by this name; the first is locked"
                )
    kept: set[tuple[str, tuple[str, str]]] = set()
    for experiment, every in wanted.items():
        locks = {
            key: lock
            for key, lock in every.items()
            if st.read_file(experiment, variant_path(*key) + ".json") is None
        }
        kept.update((experiment, key) for key in every if key not in locks)
        try:
            lock_new(st, experiment, list(locks.values()))
            ok = list(locks.values())
        except MitosisError:  # one of them conflicts: lock the others one by one
            ok = []
            for lock in locks.values():
                try:
                    lock_new(st, experiment, [lock])
                    ok.append(lock)
                except MitosisError as exc:
                    report.skipped.append(f"lock {experiment} {lock.param}={lock.variant}: {exc}")
        for lock in ok:
            kept.add((experiment, (lock.param, lock.variant)))
            report.locked.append(f"{experiment} {lock.param}={lock.variant}")
    return kept


def _read_database(
    root: Path, db: Path, used: set[str], skip: Callable[[str], None]
) -> list[_Legacy]:
    """The trials of one 0.6 database that can be read; the others reported to ``skip``."""
    name = db.stem
    try:
        with sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True) as conn:
            tables = {r[0] for r in conn.execute(_TABLES)}
            if f"trials_{name}" not in tables:
                skip(f"{db.name}: no table trials_{name}")
                return []
            rows = list(
                conn.execute(
                    f'SELECT variant, iteration, "commit", cpu_time, results, filename '
                    f'FROM "trials_{name}"'
                )
            )
            variants: dict[str, set[str]] = {}
            for table in tables:
                if "_variant_" in table:
                    names = conn.execute(f'SELECT name FROM "{table}"')
                    variants[table] = {str(r[0]) for r in names}
    except sqlite3.Error as exc:
        skip(f"{db.name}: not a readable SQLite database ({exc})")
        return []
    found = []
    for row in rows:
        where = f"{db.name} row {row[0]!r} iteration {row[1]!r}"
        try:
            legacy = _read_trial(root, name, row, variants, used, skip)
        except _Skip as exc:
            skip(f"{where}: {exc}")
            continue
        found.append(legacy)
    return found


class _Skip(Exception):
    """A 0.6 trial that cannot be imported, and why."""


def _read_trial(
    root: Path,
    name: str,
    row: tuple[Any, ...],
    variants: dict[str, set[str]],
    used: set[str],
    skip: Callable[[str], None],
) -> _Legacy:
    variant, iteration, commit, _, result, filename = row
    if not isinstance(variant, str) or not isinstance(iteration, int):
        raise _Skip("the row's variant or iteration is malformed")
    if not isinstance(commit, str) or not _COMMIT.fullmatch(commit):
        raise _Skip(f"its commit {commit!r} is not a commit id")
    if not isinstance(filename, str) or not _NOTEBOOK.fullmatch(filename):
        raise _Skip("it never finished (the database names no notebook for it)")
    if name_problem(filename) is not None:  # the pattern takes a "/" too
        raise _Skip(f"its notebook {filename!r} is not a file name of the folder")
    key = filename.rsplit("_", 1)[1].split(".")[0]
    folders = [p for p in root.glob(f"*_{key}") if p.is_dir()]
    if len(folders) != 1:
        raise _Skip(f"{'no' if not folders else 'more than one'} trial folder *_{key}")
    here = folders[0]
    used.add(here.name)
    if here.is_symlink():
        raise _Skip(f"its folder {here.name} is a symbolic link (to {os.readlink(here)!r})")
    origin = f"{root.name}/{here.name}"

    def file(path: Path) -> OnDisk | None:
        return _file(path, root, skip)

    source = _parsed(file(here / "source.py"), skip)
    if source is None:
        raise _Skip(f"{here.name}/source.py is missing: its steps are unknown")
    refs, given = _steps_of(source)
    if not refs:
        raise _Skip(f"{here.name}/source.py names no steps")
    names = _step_names(name, variant, len(refs))
    if names is None:
        raise _Skip(f"cannot tell its steps' names from {name!r} and {variant!r}")
    single = len(names) == 1
    experiment = names[0] if single else "+".join(names)
    problem = experiment_problem(experiment)
    if problem is not None or any("." in n or "+" in n for n in names):
        raise _Skip(problem or f"step names {names} hold '.' or '+'")
    values = _config_values(_parsed(file(here / "config.txt"), skip) or "", len(refs))

    params: dict[bool, dict[str, Param]] = {True: {}, False: {}}
    files: dict[str, FileData] = {}
    locks = []
    for i, (step, (lookups, evals)) in enumerate(zip(names, given, strict=True)):
        for arg, text in [*lookups.items(), *evals.items()]:
            full = qualified(None if single else step, arg)
            from_lookup = arg in lookups
            locked = variants.get(f"{step}_variant_{arg}", set())
            tracked = text in locked
            value = values[i].get(arg, _UNKNOWN) if i < len(values) else _UNKNOWN
            encoded = _encoded(value)
            if encoded is None:
                skip(
                    f"{origin}: {full}={text}: config.txt does not hold its value as a Python "
                    "literal; recorded by name only, not locked"
                )
            param = Param(
                variant=text if from_lookup or encoded is None else _display(value),
                value=encoded.json if encoded else None,
                source="variant" if from_lookup else "literal",
                type=encoded.type if encoded else "unknown",
                fingerprint=encoded.fingerprint if encoded else _unknown_print(step, arg, text),
                dill=param_name(full) if encoded and encoded.pickled else None,
            )
            if encoded and encoded.pickled:
                files[param_name(full)] = encoded.pickled
            params[tracked][full] = param
            if tracked and from_lookup and encoded is not None:
                locks.append(VariantLock(full, text, encoded))

    results = {}
    for i, step in enumerate(names):
        data = file(here / f"results_{i}.dill")
        if data is not None:
            results[i] = data
            files[result_name(step)] = data  # copied (streamed), never unpickled
    finished = result is not None
    if finished and len(results) < len(names):
        missing = ", ".join(f"results_{i}.dill" for i in range(len(names)) if i not in results)
        skip(f"{origin}: {missing} missing; imported without it")
    log = file(here / "experiment.log")
    files[OUTPUT] = log or b""
    for extra in ("source.py", "config.txt", "requirements.txt"):
        data = file(here / extra)
        if data is not None:
            files[LEGACY + extra] = data
    notebook = file(root / filename)
    if notebook is not None:
        files[LEGACY + "notebook." + filename.rsplit(".", 1)[1]] = notebook
    detached = sorted(  # big results are kept off the branch, as a new trial's are
        name for name in files if is_result(name) and size_of(files[name]) > RESULTS_THRESHOLD
    )

    main = _literal(result) if finished else None
    steps = []
    for i, (step, ref) in enumerate(zip(names, refs, strict=True)):
        status: StepStatus
        if finished or i in results:
            status = "ok"
        elif all(j in results for j in range(i)):
            status = "failed"
        else:
            status = "not run"
        last = i == len(names) - 1
        steps.append(StepRecord(step, ref, status, main=main if last and finished else None))
    started, ended = _times(here, root / filename, log)
    trial_id = hashlib.sha256(
        f"mitosis-0.6\0{name}\0{variant}\0{iteration}\0{key}\0{commit}".encode()
    ).hexdigest()[:12]
    trial = Trial(
        id=trial_id,
        experiment=experiment,
        status="ok" if finished else "failed",
        main=main,
        metrics={},
        params=params[True],
        untracked=params[False],
        started=started.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"),
        ended=ended.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"),
        duration=round((ended - started).total_seconds(), 6),
        host="unknown",
        user="unknown",
        function=", ".join(refs),
        code=CodeState(str(root.resolve().parent), commit, None, {}, False),
        error=None
        if finished
        else f"the trial failed under mitosis 0.6; {LEGACY}notebook.html shows where",
        files=sorted(files),
        steps=steps,
        mitosis=__version__,
        detached=detached,
        format=FORMAT if detached else FORMAT_INLINE,
    )
    record = converter().unstructure(trial)
    try:
        check_record(record, trial_id=trial.id, experiment=experiment, where=origin)
    except BadRecord as exc:
        raise _Skip(str(exc)) from None
    offset = started.utcoffset()
    when = (int(started.timestamp()), int(offset.total_seconds()) if offset else 0)
    return _Legacy(experiment, trial, files, locks, when, origin)


def _file(path: Path, root: Path, skip: Callable[[str], None]) -> OnDisk | None:
    """A regular file of the 0.6 folder ``root``, to be streamed into the store, or None when
    there is none. A symbolic link (which could reach any file of this machine) or anything but
    a regular file is left out, and said to ``skip``."""
    try:
        found = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(found.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(found.st_mode) else "not a regular file"
        skip(
            f"{root.name}/{path.relative_to(root).as_posix()} is {what}: left out (only the "
            "0.6 folder's own files are read)"
        )
        return None
    return OnDisk(os.fspath(path), found.st_size)


def _parsed(file: OnDisk | None, skip: Callable[[str], None]) -> str | None:
    """The text of a file that is parsed (``source.py``, ``config.txt``), or None."""
    if file is None:
        return None
    if file.size > PARSED_MOST:
        skip(f"{file.path} holds {file.size} bytes: too big for 0.6's, left out")
        return None
    try:
        with open(file.path, "rb") as f:
            return f.read(PARSED_MOST).decode("utf-8", "replace")
    except OSError:
        return None


def _steps_of(source: str) -> tuple[list[str], list[tuple[dict[str, str], dict[str, str]]]]:
    """From 0.6's generated ``source.py`` (parsed, never run): each step's ``module:qualname``,
    and its parameters given by variant name and by expression (each ``{param: text}``)."""
    try:
        tree = ast.parse(source)
    except _LITERAL_ERRORS:  # a deep nesting: RecursionError, MemoryError
        return [], []
    refs: list[str] = []
    given: list[tuple[dict[str, str], dict[str, str]]] = []
    loops: list[dict[str, str]] = []
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and re.fullmatch(r"step_\d+", node.targets[0].id)
            and isinstance(node.value, ast.Call)
            and node.value.args
            and isinstance(node.value.args[0], ast.Constant)
            and isinstance(node.value.args[0].value, str)
        ):
            refs.append(node.value.args[0].value)
            loops = []
            given.append(({}, {}))
        elif (
            isinstance(node, ast.For)
            and refs
            and isinstance(node.iter, ast.Call)
            and isinstance(node.iter.func, ast.Attribute)
            and isinstance(node.iter.func.value, ast.Dict)
        ):
            try:
                pairs = ast.literal_eval(node.iter.func.value)
            except ValueError:
                pairs = {}
            loops.append({str(k): str(v) for k, v in pairs.items()})
            if len(loops) <= 2:
                given[-1] = (loops[0], loops[1] if len(loops) > 1 else {})
    return refs, given


def _step_names(name: str, variant: str, count: int) -> list[str] | None:
    """The steps' names, from the database's name (names joined by ``_``) and the trial's
    variant (per step ``<step>-<variants>`` or ``noparams``, joined by ``+``)."""
    parts = variant.split("+")
    if len(parts) != count:
        return None

    def search(i: int, rest: str) -> list[str] | None:
        if i == count:
            return [] if rest == "" else None
        ends = [len(rest)] if i == count - 1 else [m.start() for m in re.finditer("_", rest)]
        for end in ends:
            step = rest[:end]
            if step and (parts[i] == "noparams" or parts[i].startswith(step + "-")):
                later = search(i + 1, rest[end + 1 :])
                if later is not None:
                    return [step, *later]
        return None

    return search(0, name)


def _config_values(text: str, count: int) -> list[dict[str, Any]]:
    """Each step's parameter values from 0.6's ``config.txt`` (one printed dict per step), each
    value read as a Python literal (others left out)."""
    try:
        tree = ast.parse(text)
    except _LITERAL_ERRORS:  # a deep nesting: RecursionError, MemoryError
        return []
    found: list[dict[str, Any]] = []
    for node in tree.body[:count]:
        values: dict[str, Any] = {}
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Dict):
            for k, v in zip(node.value.keys, node.value.values, strict=True):
                if isinstance(k, ast.Constant) and isinstance(k.value, str):
                    with contextlib.suppress(*_LITERAL_ERRORS):
                        values[k.value] = ast.literal_eval(v)
        found.append(values)
    return found


def _encoded(value: Any) -> Encoded | None:
    if value is _UNKNOWN:
        return None
    try:
        return encode(value)
    except MitosisError:
        return None


def _display(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:199] + "…"


def _unknown_print(step: str, arg: str, text: str) -> str:
    """A fingerprint no value has: of what 0.6 recorded, for a value it did not keep."""
    what = f"mitosis-0.6 unknown\0{step}\0{arg}\0{text}".encode()
    return "sha256:" + hashlib.sha256(what).hexdigest()


def _literal(text: str) -> Any:
    """0.6's printed result: a Python literal when it is one, else the text."""
    try:
        return ast.literal_eval(text)
    except _LITERAL_ERRORS:
        return text


def _log_times(log: OnDisk | None) -> list[dt.datetime]:
    """The first and last of the times that start a 0.6 log's lines (none without a log), read
    a slice at a time: a log of any size, with lines of any length."""
    first = last = None
    try:
        with open(log.path if log else os.devnull, "rb") as f:
            at_start = True
            while chunk := f.readline(1 << 16):
                match = _LOG_TIME.match(chunk) if at_start else None
                at_start = chunk.endswith(b"\n")
                if match is None:
                    continue
                with contextlib.suppress(ValueError):
                    when = dt.datetime.strptime(match.group(1).decode(), "%Y-%m-%d %H:%M:%S,%f")
                    first, last = min(first or when, when), max(last or when, when)
    except OSError:
        pass
    return [] if first is None or last is None else [first.astimezone(), last.astimezone()]


def _times(here: Path, notebook: Path, log: OnDisk | None) -> tuple[dt.datetime, dt.datetime]:
    """When a 0.6 trial started and ended: its log's first and last times (in this machine's
    time zone: 0.6 wrote none), else its ``source.py``'s modification time, else its folder's
    date; the end no earlier than the notebook's modification time, if that is within days."""
    stamps = _log_times(log)
    if stamps:
        started, ended = min(stamps), max(stamps)
    else:
        try:
            started = dt.datetime.fromtimestamp((here / "source.py").stat().st_mtime).astimezone()
        except OSError:
            day = re.match(r"\d{4}-\d\d-\d\d", here.name)
            started = (
                dt.datetime.fromisoformat(day.group(0)).astimezone()
                if day
                else dt.datetime.fromtimestamp(0, dt.timezone.utc)
            )
        ended = started
    try:
        written = dt.datetime.fromtimestamp(notebook.stat().st_mtime).astimezone()
        if ended < written < started + _LATE:
            ended = written
    except OSError:
        pass
    return started, ended
