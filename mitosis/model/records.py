"""The records mitosis keeps, as frozen attrs classes, and the one cattrs converter between
them and JSON (the typed statuses and the small records that travel before a trial is
recorded are in :mod:`mitosis.model.types`, and re-exported here). No I/O: a :class:`Trial`
reads its files through the :class:`Source` it was made with (the store's, or a debug
trial's memory)."""

from __future__ import annotations

import io
from functools import cache
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol

import attrs

from ..exceptions import StoreError
from .layout import FIGURES, FORMAT, result_name, results_ref, trial_dir
from .types import (
    FileData,
    InStore,
    OnDisk,
    Status,
    StepStatus,
    ValueSource,
    VariantLock,
)
from .values import decode, dumps_json, load_dill

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "CodeState",
    "Environment",
    "FileData",
    "FileInfo",
    "InMemory",
    "InStore",
    "OnDisk",
    "Param",
    "Pointer",
    "Source",
    "Status",
    "StepRecord",
    "StepStatus",
    "Trial",
    "Variant",
    "VariantLock",
    "converter",
    "dump_pointer",
    "human_size",
    "load_pointer",
    "size_of",
    "trial_from_json",
]


class Source(Protocol):
    """Where a trial's files are read from (see :meth:`Trial.read`)."""

    def read(self, trial: Trial, name: str) -> bytes | None:
        """The bytes of ``name`` in ``trial``'s folder, or None when it has no such file."""

    def open(self, trial: Trial, name: str) -> IO[bytes] | None:
        """``name`` in ``trial``'s folder as a file read as it goes, or None."""

    def stat(self, trial: Trial, name: str) -> FileInfo | None:
        """The size of ``name`` in ``trial``'s folder and whether its bytes are here, or None."""


def size_of(data: FileData) -> int:
    """The size in bytes of a file on its way to the store."""
    return data.size if isinstance(data, (OnDisk, InStore)) else len(data)


class FileInfo(NamedTuple):
    """What :meth:`Trial.stat` says of a file of a trial's folder.

    Attributes:
        size: its size in bytes.
        here: whether its bytes are in this store (a result kept off the branch may not be,
            until ``mitosis pull --results`` brings it).
        detached: whether it is kept off the trial's branch (a pointer stands in its place).
    """

    size: int
    here: bool
    detached: bool


def human_size(count: int) -> str:
    """A size for people: ``812 bytes``, ``3.4 KiB``, ``200.0 MiB``, ``1.0 GiB``."""
    if count < 1024:
        return f"{count} bytes"
    size = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


class Pointer(NamedTuple):
    """What a trial's folder holds in place of a file kept off its branch (store format 2):
    ``<name>.pointer``, a JSON object.

    Attributes:
        blob: the id of the git blob holding the file's bytes.
        size: the file's size in bytes.
        ref: the ref that keeps the blob in a store (``refs/mitosis-results/<trial id>``).
        encoding: how the bytes are kept: ``blob``, one git blob of the file's bytes.
    """

    blob: str
    size: int
    ref: str
    encoding: str = "blob"


_HEX = frozenset("0123456789abcdef")
_ENCODINGS = ("blob",)


def dump_pointer(pointer: Pointer) -> bytes:
    """A pointer file's bytes: JSON as every JSON file of the store is written."""
    return dumps_json(pointer._asdict(), indent=2).encode()


def load_pointer(data: bytes, where: str, trial_id: str) -> Pointer:
    """A pointer file read back and checked (it may come from a collaborator's store).

    Raises:
        StoreError: the file is not a pointer, or names an encoding this mitosis does not know.
    """
    import json  # on first need: pointers are read only when results are asked for

    try:
        raw = json.loads(data)
        pointer = Pointer(
            blob=raw["blob"], size=raw["size"], ref=raw["ref"], encoding=raw["encoding"]
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"{where} is not a readable pointer: {exc!r}") from None
    if pointer.encoding not in _ENCODINGS:
        raise StoreError(
            f"{where} keeps its file as {pointer.encoding!r}, which this mitosis cannot read; "
            "upgrade mitosis"
        )
    if (
        not isinstance(pointer.blob, str)
        or len(pointer.blob) != 40
        or not _HEX.issuperset(pointer.blob)
        or type(pointer.size) is not int
        or pointer.size < 0
        or pointer.ref != results_ref(trial_id).decode()
    ):
        raise StoreError(
            f"{where} is not a valid pointer (blob {pointer.blob!r}, size {pointer.size!r}, "
            f"ref {pointer.ref!r})"
        )
    return pointer


@attrs.frozen
class Param:
    """One resolved parameter of a trial.

    Attributes:
        variant: the variant name from the lookup dictionary, or the repr of a literal value.
        value: the value as canonical JSON (see the equality rule), or None when only dill holds it.
        source: ``"variant"`` (named in a lookup dictionary), ``"literal"`` or ``"default"`` (the
            function's default, not given by the caller).
        type: the qualified name of the value's type.
        fingerprint: what equality of values is decided by.
        dill: path, inside the trial's folder, of the value pickled with dill, when JSON cannot
            hold it exactly.
    """

    variant: str
    value: Any
    source: ValueSource
    type: str
    fingerprint: str
    dill: str | None = None


@attrs.frozen
class CodeState:
    """The git state of the code the experiment came from.

    Attributes:
        repository: the work tree's path on the machine that ran the trial.
        commit: HEAD's commit id, or None in a repository without commits.
        branch: the checked-out branch, or None for a detached HEAD.
        remotes: remote name to URL, with any user name or password removed.
        dirty: whether tracked files differed from HEAD, or untracked files existed
            (the trial's ``code.diff`` holds the difference).
    """

    repository: str
    commit: str | None
    branch: str | None
    remotes: dict[str, str]
    dirty: bool


@attrs.frozen
class Environment:
    """Where a trial ran: interpreter, platform and environment variables (secrets redacted)."""

    python: str
    implementation: str
    executable: str
    platform: str
    machine: str
    host: str
    user: str
    cwd: str
    variables: dict[str, str]


@attrs.frozen
class StepRecord:
    """One step of a trial.

    Attributes:
        name: the step's name (its results are ``results/<name>.dill``).
        function: ``module:qualname`` of the step's function.
        status: ``ok``, ``failed``, ``killed``, ``interrupted``, or ``not run`` (after a failure).
        main: the step's headline result.
        metrics: the step's named results.
        duration: seconds the step's function ran.
        reused_from: the trial whose stored result stood in for running this step, if any.
        code: a hash of the function's compiled code (see reuse), or None.
        extra: what else the step returned beside ``main``, ``metrics``, ``data`` and
            ``figures`` (JSON values; others as their repr), as the earlier mitosis allowed.
    """

    name: str
    function: str
    status: StepStatus
    main: Any = None
    metrics: dict[str, Any] = attrs.field(factory=dict)
    duration: float = 0.0
    reused_from: str | None = None
    code: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Trial:
    """One recorded run of an experiment, read from the store's JSON (nothing is unpickled).

    Attributes:
        id: hex id; any unique prefix of 4 or more characters finds the trial.
        experiment: the experiment's name (its branch is ``mitosis/<experiment>``).
        status: ``ok``, ``failed``, ``killed`` or ``interrupted``.
        main: the headline result; None unless the trial succeeded.
        metrics: named results (JSON values; others as their repr).
        params: tracked parameters by name.
        untracked: parameters marked untracked (recorded, never locked).
        started: when the trial process started, ISO 8601 in UTC.
        ended: when it ended.
        duration: seconds from start to end.
        host: the machine's name.
        user: the user that ran the trial.
        function: ``module:qualname`` of the experiment function.
        code: the code's git state, or None when it is not in a git repository.
        error: the traceback or reason when the trial did not succeed.
        files: paths inside the trial's folder of what was recorded besides JSON.
        captions: each figure's path to its caption (its suptitle, else its first axes title,
            else the name it was returned under; empty when it has none).
        steps: each step's record, in order (one step for a plain function).
        rerun_of: the trial this one reran (see :func:`mitosis.rerun`), if any.
        detached: the files of ``files`` kept off the trial's branch (results bigger than the
            threshold): a pointer stands in their place, and their bytes come to a store with
            ``mitosis pull --results`` (or when :meth:`results` asks for them).
        mitosis: the version of mitosis that recorded the trial.
        format: the store format of the record (2 when ``detached`` is not empty, else 1).
        location: the store's path (not recorded; None for a debug trial).
    """

    id: str
    experiment: str
    status: Status
    main: Any
    metrics: dict[str, Any]
    params: dict[str, Param]
    untracked: dict[str, Param]
    started: str
    ended: str
    duration: float
    host: str
    user: str
    function: str
    code: CodeState | None
    error: str | None = None
    files: list[str] = attrs.field(factory=list)
    captions: dict[str, str] = attrs.field(factory=dict)
    steps: list[StepRecord] = attrs.field(factory=list)
    rerun_of: str | None = None
    detached: list[str] = attrs.field(factory=list)
    mitosis: str = ""
    format: int = FORMAT
    location: str | None = attrs.field(default=None, eq=False, repr=False)
    _source: Source | None = attrs.field(default=None, eq=False, repr=False, alias="source")

    @property
    def variants(self) -> dict[str, str]:
        """Parameter name to variant name, for the tracked parameters."""
        return {name: p.variant for name, p in self.params.items()}

    @property
    def figures(self) -> list[str]:
        """Paths of the trial's PNG figures inside its folder, in the order they were saved
        (step by step, then by number: ``figures/<step>-<n>.png``)."""
        order = {s.name: i for i, s in enumerate(self.steps)}

        def key(path: str) -> tuple[int, str, int]:
            step, _, number = path[len(FIGURES) : -len(".png")].rpartition("-")
            n = int(number) if number.isascii() and number.isdigit() else 0  # not "²"
            return (order.get(step, len(order)), step, n)

        return sorted((f for f in self.files if f.startswith(FIGURES)), key=key)

    @property
    def path(self) -> str:
        """The trial's folder inside the experiment branch's tree."""
        return trial_dir(self.id)

    def results(self, step: str | None = None) -> Any:
        """What the experiment (or one of its steps; default the last) returned, unpickled.

        This and :meth:`value` are the only methods that unpickle: call them on trials from
        stores you trust. The result is read as it is unpickled, never held twice. A result
        kept off the branch that is not in this store yet is fetched from the remotes that
        have it (``origin`` first).

        Raises:
            StoreError: the step recorded no results (it failed), the store is gone, or the
                result is not here and no remote has it (the message says which
                ``mitosis pull --results`` to run).
            KeyError: the trial has no step ``step``.
        """
        names = [s.name for s in self.steps] or [self.experiment]
        if step is None:
            step = names[-1]
        elif step not in names:
            raise KeyError(f"trial {self.id} has no step {step!r}; its steps: {', '.join(names)}")
        with self.open(result_name(step)) as file:
            return load_dill(file)

    def value(self, name: str) -> Any:
        """The value a parameter (tracked or untracked) had, loaded exactly.

        Values that JSON holds exactly are decoded from JSON; others are unpickled from the
        trial's dill file (so call this on trials from stores you trust).

        Raises:
            KeyError: the trial has no parameter ``name``.
        """
        param = self.params.get(name) or self.untracked.get(name)
        if param is None:
            known = ", ".join(sorted([*self.params, *self.untracked])) or "(none)"
            raise KeyError(f"trial {self.id} has no parameter {name!r}; it has: {known}")
        if param.dill is None:
            return decode(param.value)
        with self.open(param.dill) as file:
            return load_dill(file)

    def read(self, name: str) -> bytes:
        """The bytes of a file in the trial's folder, e.g. ``output.log`` or a figure.

        Raises:
            StoreError: the trial has no such file (it failed before writing it), the store
                is gone, or the file is kept off the branch, not here, and no remote has it.
        """
        data = None if self._source is None else self._source.read(self, name)
        if data is None:
            raise self._missing(name)
        return data

    def open(self, name: str) -> IO[bytes]:
        """A file of the trial's folder, read as it goes (for files of any size); close it
        (``with trial.open("results/fit.dill") as f: ...``).

        Raises:
            StoreError: as for :meth:`read`.
        """
        file = None if self._source is None else self._source.open(self, name)
        if file is None:
            raise self._missing(name)
        return file

    def stat(self, name: str) -> FileInfo:
        """A file's size, whether its bytes are in this store, and whether it is kept off the
        trial's branch (reads no more than a pointer).

        Raises:
            StoreError: the trial has no such file.
        """
        info = None if self._source is None else self._source.stat(self, name)
        if info is None:
            raise self._missing(name)
        return info

    def _missing(self, name: str) -> StoreError:
        return StoreError(
            f"trial {self.id} has no {name!r} (status {self.status}); "
            f"it recorded: {', '.join(self.files) or 'no files'}"
        )


@cache
def converter() -> cattrs.Converter:
    """The one converter between records and JSON-ready dicts (made on first use: cattrs is
    imported only when records are read or written)."""
    import cattrs
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

    conv = cattrs.Converter(forbid_extra_keys=False, detailed_validation=False)
    omit = override(omit=True)
    # a step's "extra" is written only when it has some: records without it stay as they were
    conv.register_unstructure_hook(
        StepRecord,
        make_dict_unstructure_fn(StepRecord, conv, extra=override(omit_if_default=True)),
    )
    conv.register_unstructure_hook(
        Trial,
        make_dict_unstructure_fn(Trial, conv, location=omit, _source=omit),
    )
    conv.register_structure_hook(
        Trial,
        make_dict_structure_fn(Trial, conv, _source=omit),
    )
    return conv


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    if cls not in _NAMES:
        fields = attrs.fields(cls)
        _NAMES[cls] = tuple(f.name for f in fields if f.init and not f.name.startswith("_"))
    return _NAMES[cls]


def _plain(cls: type[Any], raw: dict[str, Any]) -> Any:
    return cls(**{name: raw[name] for name in _names(cls) if name in raw})


def trial_from_json(raw: dict[str, Any], location: str | None, source: Source | None) -> Trial:
    """A :class:`Trial` from its JSON record, built field by field: listing thousands of trials
    spends most of its time here, and this is a few times faster than the general converter,
    which stays the judge of anything unusual (it is called whenever this path fails).
    """
    try:
        code = raw.get("code")
        fields = {name: raw[name] for name in _names(Trial) if name in raw}
        fields.update(
            params={k: _plain(Param, v) for k, v in raw["params"].items()},
            untracked={k: _plain(Param, v) for k, v in (raw.get("untracked") or {}).items()},
            code=_plain(CodeState, code) if code is not None else None,
            steps=[_plain(StepRecord, step) for step in raw.get("steps") or []],
            location=location,
            source=source,
        )
        return Trial(**fields)
    except (TypeError, KeyError, AttributeError):
        trial = converter().structure({**raw, "location": location}, Trial)
        return attrs.evolve(trial, source=source)


@attrs.frozen
class Variant:
    """A variant name locked to its value on an experiment's branch.

    Attributes:
        param: the parameter.
        name: the variant's name.
        value: the value as canonical JSON, or None when only its pickle holds it.
        type: the qualified name of the value's type.
        fingerprint: what equality of values is decided by.
        pickled: whether a pickle of the value is stored beside the JSON.
        trials: how many trials on the branch used this variant.
    """

    param: str
    name: str
    value: Any
    type: str
    fingerprint: str
    pickled: bool
    trials: int


class InMemory(NamedTuple):
    """The files of a debug trial, which nothing stored: they live as long as its record."""

    files: dict[str, bytes]

    def read(self, trial: Trial, name: str) -> bytes | None:
        return self.files.get(name)

    def open(self, trial: Trial, name: str) -> IO[bytes] | None:
        data = self.files.get(name)
        return None if data is None else io.BytesIO(data)

    def stat(self, trial: Trial, name: str) -> FileInfo | None:
        data = self.files.get(name)
        return None if data is None else FileInfo(len(data), here=True, detached=False)
