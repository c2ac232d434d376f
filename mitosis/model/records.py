"""The records mitosis keeps, as frozen attrs classes, their typed statuses, and the one cattrs
converter between them and JSON. No I/O: a :class:`Trial` reads its files through the
:class:`Source` it was made with (the store's, or a debug trial's memory)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

import attrs

from ..exceptions import StoreError
from .layout import FIGURES, FORMAT, result_name, trial_dir
from .values import Encoded, decode, loads_dill

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "CodeState",
    "Environment",
    "InMemory",
    "Param",
    "Source",
    "Status",
    "StepRecord",
    "StepStatus",
    "Trial",
    "Variant",
    "VariantLock",
    "converter",
    "trial_from_json",
]

#: How a trial ended: it returned (``ok``), raised or returned a wrong shape (``failed``), was
#: stopped by SIGINT or Ctrl-C (``interrupted``), or by another signal (``killed``).
Status = Literal["ok", "failed", "killed", "interrupted"]
#: A step's status: a trial's, or ``not run`` for the steps after one that did not succeed.
StepStatus = Literal["ok", "failed", "killed", "interrupted", "not run"]
#: Where a parameter's value came from: a variant name of a lookup dictionary, a literal value
#: given by the caller, or the function's default.
ValueSource = Literal["variant", "literal", "default"]


class Source(Protocol):
    """Where a trial's files are read from (see :meth:`Trial.read`)."""

    def read(self, trial: Trial, name: str) -> bytes | None:
        """The bytes of ``name`` in ``trial``'s folder, or None when it has no such file."""


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
            return (order.get(step, len(order)), step, int(number) if number.isdigit() else 0)

        return sorted((f for f in self.files if f.startswith(FIGURES)), key=key)

    @property
    def path(self) -> str:
        """The trial's folder inside the experiment branch's tree."""
        return trial_dir(self.id)

    def results(self, step: str | None = None) -> Any:
        """What the experiment (or one of its steps; default the last) returned, unpickled.

        This and :meth:`value` are the only methods that unpickle: call them on trials from
        stores you trust.

        Raises:
            StoreError: the step recorded no results (it failed) or the store is gone.
            KeyError: the trial has no step ``step``.
        """
        names = [s.name for s in self.steps] or [self.experiment]
        if step is None:
            step = names[-1]
        elif step not in names:
            raise KeyError(f"trial {self.id} has no step {step!r}; its steps: {', '.join(names)}")
        return loads_dill(self.read(result_name(step)))

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
        return loads_dill(self.read(param.dill))

    def read(self, name: str) -> bytes:
        """The bytes of a file in the trial's folder, e.g. ``output.log`` or a figure.

        Raises:
            StoreError: the trial has no such file (it failed before writing it), or the store
                is gone.
        """
        data = None if self._source is None else self._source.read(self, name)
        if data is None:
            raise StoreError(
                f"trial {self.id} has no {name!r} (status {self.status}); "
                f"it recorded: {', '.join(self.files) or 'no files'}"
            )
        return data


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


class VariantLock(NamedTuple):  # a named tuple: cheaper to define than attrs, at import
    """A variant name meant for a value: what a lock file on an experiment's branch holds.

    Attributes:
        param: the parameter (``step.param`` in a chain).
        variant: the variant's name.
        encoded: the value, encoded (see :mod:`mitosis.model.values`).
    """

    param: str
    variant: str
    encoded: Encoded


class InMemory(NamedTuple):
    """The files of a debug trial, which nothing stored: they live as long as its record."""

    files: dict[str, bytes]

    def read(self, trial: Trial, name: str) -> bytes | None:
        return self.files.get(name)
