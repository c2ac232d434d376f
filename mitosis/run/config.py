"""The investigation's ``pyproject.toml``: which experiments exist, and where trials go.

```toml
[tool.mitosis]
store = "."                                   # optional, relative to this file
figure_dpi = 150                              # optional: dots per inch of recorded figures
trusted_remotes = ["origin"]                  # optional: --reuse may unpickle trials pulled from
results_threshold = "1MiB"                    # optional: bigger results stay off the branches
[tool.mitosis.experiments]
sine = { run = "sine_experiment:run", lookup = "sine_experiment:lookup_dict", untracked = ["gpu"] }
cosine = "sine_experiment:cosine"             # a function alone: the shorthand
[tool.mitosis.steps]                          # the earlier format, still read
sine = ["sine_experiment:run", "sine_experiment:lookup_dict"]
```

The runner imports the experiments named here; the experiments never import the runner.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..exceptions import BadParameter, ConfigError
from .experiment import Chain, Start, Step, check_start, spec_of

__all__ = ["Config", "Entry", "find_pyproject", "load_config", "parse_size"]

_ENTRY_FORM = (
    '{ run = "module:function", lookup = "module:dictionary", untracked = ["param"], '
    'start = "fork" }'
)
_STEPS_ENTRY_FORM = '{ steps = ["first_experiment", "second_experiment"] }'
_STEPS_FORM = '["module:function", "module:dictionary"]'


@attrs.frozen
class Entry:
    """One registered experiment: where its function and lookup dictionary are."""

    name: str
    run: str | None = None
    lookup: str | None = None
    untracked: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    start: Start | None = None


@attrs.frozen
class Config:
    """What ``[tool.mitosis]`` says, or nothing when there is no ``pyproject.toml``."""

    path: Path | None
    store: Path | None
    experiments: dict[str, Entry]
    figure_dpi: float | None = None
    trusted_remotes: tuple[str, ...] = ()
    results_threshold: int | None = None

    @property
    def root(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def entry(self, name: str) -> Entry:
        try:
            return self.experiments[name]
        except KeyError:
            known = ", ".join(sorted(self.experiments)) or "none"
            where = str(self.path) if self.path else "no pyproject.toml found"
            raise ConfigError(
                f"unknown experiment {name!r} (registered: {known}; {where}). Register it under "
                f"[tool.mitosis.experiments] as {name} = {_ENTRY_FORM}"
            ) from None

    def step(self, name: str) -> Step:
        """Import a registered one-function experiment as a step, under its registered name.

        The folder of ``pyproject.toml`` goes first on ``sys.path`` (and so on the trial
        process's), so the investigation's modules import without being installed.
        """
        entry = self.entry(name)
        if entry.run is None:
            raise ConfigError(
                f"experiment {name!r} is itself a chain of steps ({', '.join(entry.steps)}); "
                'a step must be a registered function (run = "module:function")'
            )
        self.importable()
        fn = _import(entry.run, f"run of experiment {name!r}")
        if not callable(fn):
            raise ConfigError(f"run = {entry.run!r} of experiment {name!r} is not callable")
        lookup = _import(entry.lookup, f"lookup of experiment {name!r}") if entry.lookup else None
        if lookup is not None and not isinstance(lookup, Mapping):
            raise ConfigError(
                f"lookup = {entry.lookup!r} of experiment {name!r} is a "
                f"{type(lookup).__name__}, not a dict of {{param: {{variant: value}}}}"
            )
        # What pyproject leaves out, the function's @mitosis.experiment may give.
        spec = spec_of(fn, lookup, entry.untracked or None)
        return Step(attrs.evolve(spec, name=name, start=entry.start or spec.start), fn)

    def module_chain(self, ref: str) -> Chain:
        """A mitosis 0.6 experiment module (``package.module``, or ``module:object``): an
        object with ``run``, ``lookup_dict`` and ``name``, as the experiment ``name``. The
        folder of ``pyproject.toml`` (else the current one) goes first on ``sys.path``."""
        self.importable()
        module, _, qualname = ref.partition(":")
        obj = _import(f"{module}:{qualname}" if qualname else module, f"-m {ref}")
        missing = [a for a in ("run", "lookup_dict", "name") if not hasattr(obj, a)]
        if missing:
            raise ConfigError(
                f"-m {ref}: a mitosis 0.6 experiment module has run, lookup_dict and name; "
                f"this one lacks {', '.join(missing)}. Add them, or register the function in "
                f"pyproject.toml as name = {_ENTRY_FORM}"
            )
        if not callable(obj.run) or not isinstance(obj.lookup_dict, Mapping):
            raise ConfigError(
                f"-m {ref}: run must be a function and lookup_dict a dict of "
                "{param: {variant: value}}"
            )
        if not isinstance(obj.name, str) or not obj.name:
            raise ConfigError(f"-m {ref}: name must be the experiment's name, a string")
        spec = spec_of(obj.run, obj.lookup_dict, None)
        return Chain(obj.name, (Step(attrs.evolve(spec, name=obj.name), obj.run),))

    def importable(self) -> None:
        """Put the folder of ``pyproject.toml`` (else the current one) first on ``sys.path``, so
        that the investigation's modules import without being installed."""
        root = str(self.root)
        if root not in sys.path:
            sys.path.insert(0, root)

    def modules(self, names: Sequence[str]) -> tuple[str, ...]:
        """The modules of the functions that the chain of ``names`` runs (see
        :meth:`Chain.modules`), named without importing them (none for a name that is not
        registered: :meth:`chain` says why)."""
        found = []
        for name in names:
            entry = self.experiments.get(name)
            steps = map(self.experiments.get, entry.steps) if entry and entry.steps else [entry]
            found += [step.run.partition(":")[0] for step in steps if step and step.run]
        return tuple(dict.fromkeys(found))

    def chain(self, names: Sequence[str]) -> Chain:
        """The registered experiment ``names[0]`` (a function or a list of steps), or the chain
        of the registered functions ``names``."""
        if len(names) == 1 and self.entry(names[0]).steps:
            entry = self.entry(names[0])
            return Chain(entry.name, tuple(self.step(n) for n in entry.steps))
        steps = tuple(self.step(n) for n in names)
        return Chain("+".join(names), steps)


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?)b?|b)?\s*", re.I)


def parse_size(value: object) -> int:
    """A number of bytes from an integer or a text such as ``"1MiB"``, ``"512 KiB"``, ``"2MB"``
    or ``"100"`` (``KiB``, ``MiB``, ``GiB`` are powers of 1024; ``kB``, ``MB``, ``GB`` of 1000).

    Raises:
        ValueError: not a size (the message shows the forms).
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    found = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise ValueError(
            f"{value!r} is not a size: give a number of bytes (1048576) or a text such as "
            '"1MiB", "512KiB" or "2GB"'
        )
    number, prefix, binary = found.groups()
    power = "kmgt".index(prefix.lower()) + 1 if prefix else 0
    return int(float(number) * (1024 if binary else 1000) ** power)


def _import(target: str, what: str) -> Any:
    module_name, _, attribute = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attribute.split(".") if attribute else ():
            obj = getattr(obj, part)
    except Exception as exc:
        raise ConfigError(
            f"cannot import {target!r} ({what}): {type(exc).__name__}: {exc}. Check the module "
            "and name, and that the module is importable from the folder of pyproject.toml"
        ) from None
    return obj


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` with a ``[tool.mitosis]`` table, walking up from ``start``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and "mitosis" in _read(candidate).get("tool", {}):
            return candidate
    return None


def _read(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = tomllib.load(f)
            return data
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def _target(value: Any, key: str) -> str:
    if not isinstance(value, str) or value.count(":") != 1 or value.startswith(":"):
        raise ConfigError(f'{key} must be a string "module:name"; got {value!r}')
    return value


def _entry(name: str, table: Any) -> Entry:
    key = f"[tool.mitosis.experiments] {name}"
    if isinstance(table, str):  # the shorthand name = "module:function"
        return Entry(name=name, run=_target(table, key))
    if isinstance(table, Mapping) and "steps" in table and "run" not in table:
        steps = table["steps"]
        if (
            set(table) != {"steps"}
            or not isinstance(steps, list)
            or len(steps) < 2
            or not all(isinstance(s, str) for s in steps)
        ):
            raise ConfigError(
                f"{key} must be {name} = {_STEPS_ENTRY_FORM}, naming two or more registered "
                f"experiments; got {table!r}"
            )
        return Entry(name=name, steps=tuple(steps))
    if not isinstance(table, Mapping) or "run" not in table:
        raise ConfigError(
            f"{key} must be a table like {name} = {_ENTRY_FORM} (or {_STEPS_ENTRY_FORM}, or "
            f'{name} = "module:function"); got {table!r}'
        )
    unknown = sorted(set(table) - {"run", "lookup", "untracked", "start"})
    if unknown:
        raise ConfigError(f"{key} has unknown keys {unknown}; the form is {name} = {_ENTRY_FORM}")
    untracked = table.get("untracked", [])
    if not isinstance(untracked, list) or not all(isinstance(u, str) for u in untracked):
        raise ConfigError(f"{key}.untracked must be a list of parameter names, e.g. ['gpu']")
    lookup = table.get("lookup")
    start = table.get("start")
    if start is not None:
        try:
            start = check_start(start, f"{key}.start")
        except BadParameter as exc:
            raise ConfigError(str(exc)) from None
    return Entry(
        name=name,
        run=_target(table["run"], f"{key}.run"),
        lookup=_target(lookup, f"{key}.lookup") if lookup is not None else None,
        untracked=tuple(untracked),
        start=start,
    )


def _step(name: str, value: Any) -> Entry:
    key = f"[tool.mitosis.steps] {name}"
    if not isinstance(value, list) or not 1 <= len(value) <= 2:
        raise ConfigError(f"{key} must be a list like {name} = {_STEPS_FORM}; got {value!r}")
    return Entry(
        name=name,
        run=_target(value[0], f"{key}[0]"),
        lookup=_target(value[1], f"{key}[1]") if len(value) == 2 else None,
    )


def load_config(path: Path | None = None, start: Path | None = None) -> Config:
    """Read ``[tool.mitosis]`` from ``path``, or from the nearest ``pyproject.toml`` above
    ``start``; an empty configuration when there is none.

    Raises:
        ConfigError: the file or its table is malformed (the message names the key and shows
            the expected form).
    """
    if path is None:
        path = find_pyproject(start)
        if path is None:
            return Config(path=None, store=None, experiments={})
    elif not path.is_file():
        raise ConfigError(f"no such configuration file: {path}")
    path = path.resolve()
    tool = _read(path).get("tool", {}).get("mitosis", {})
    if not isinstance(tool, Mapping):
        raise ConfigError(f"[tool.mitosis] in {path} must be a table")
    keys = {"store", "figure_dpi", "trusted_remotes", "results_threshold", "experiments", "steps"}
    unknown = sorted(set(tool) - keys)
    if unknown:
        raise ConfigError(
            f"[tool.mitosis] in {path} has unknown keys {unknown}; "
            f"it may have {', '.join(sorted(keys))}"
        )
    trusted = tool.get("trusted_remotes", [])
    if not isinstance(trusted, list) or not all(isinstance(r, str) for r in trusted):
        raise ConfigError(
            f"[tool.mitosis] trusted_remotes in {path} must be a list of remote names or URLs, "
            f'e.g. ["origin"]; got {trusted!r}'
        )
    threshold = tool.get("results_threshold")
    if threshold is not None:
        try:
            threshold = parse_size(threshold)
        except ValueError as exc:
            raise ConfigError(f"[tool.mitosis] results_threshold in {path}: {exc}") from None
    dpi = tool.get("figure_dpi")
    if dpi is not None and (isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or dpi <= 0):
        raise ConfigError(
            f"[tool.mitosis] figure_dpi in {path} must be a positive number, e.g. 150; got {dpi!r}"
        )
    experiments: dict[str, Entry] = {}
    for section, make in (("steps", _step), ("experiments", _entry)):
        table = tool.get(section, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"[tool.mitosis.{section}] in {path} must be a table")
        for name, value in table.items():
            experiments[name] = make(name, value)
    for entry in experiments.values():
        for step in entry.steps:
            if step not in experiments or experiments[step].run is None:
                raise ConfigError(
                    f"[tool.mitosis.experiments] {entry.name}: step {step!r} is not a registered "
                    f'function; register it as {step} = {{ run = "module:function" }}'
                )
    store = tool.get("store")
    if store is not None and not isinstance(store, str):
        raise ConfigError(f'[tool.mitosis] store in {path} must be a path string, e.g. "."')
    return Config(
        path=path,
        store=(path.parent / os.path.expanduser(store)).resolve() if store else None,
        experiments=experiments,
        figure_dpi=float(dpi) if dpi is not None else None,
        trusted_remotes=tuple(trusted),
        results_threshold=threshold,
    )
