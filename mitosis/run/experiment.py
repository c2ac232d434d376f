"""Experiments and their steps: names, lookup dictionaries, untracked parameters, and how a
callable or a list of steps becomes the :class:`Chain` that a trial runs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar, get_args, overload

import attrs

from ..exceptions import BadParameter
from ..model.layout import qualified, split_qualified
from ..model.text import check_name

__all__ = [
    "Chain",
    "ExperimentSpec",
    "Start",
    "Step",
    "chain_of",
    "check_start",
    "code_fingerprint",
    "experiment",
    "function_name",
    "spec_of",
    "table_of",
    "with_untracked",
]

F = TypeVar("F", bound=Callable[..., Any])
Lookup = Mapping[str, Mapping[str, Any]]
#: How a sweep starts its trial processes: ``"fork"`` from a warm process that imported the
#: experiment's modules, where that is safe (else afresh), or ``"spawn"``: always afresh.
Start = Literal["fork", "spawn"]
_ATTRIBUTE = "__mitosis__"


@attrs.frozen
class ExperimentSpec:
    """What mitosis knows of an experiment function besides the function itself."""

    name: str
    lookup: Lookup
    untracked: frozenset[str]
    start: Start = "fork"


@overload
def experiment(fn: F, /) -> F: ...


@overload
def experiment(
    *,
    name: str | None = None,
    lookup: Lookup | None = None,
    untracked: Iterable[str] = (),
    start: Start = "fork",
) -> Callable[[F], F]: ...


def experiment(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    lookup: Lookup | None = None,
    untracked: Iterable[str] = (),
    start: Start = "fork",
) -> F | Callable[[F], F]:
    """Attach a name, a lookup dictionary and untracked parameter names to a function.

    The function is returned unchanged (still callable directly); :func:`mitosis.run` reads what
    was attached, and its own arguments override it.

    Args:
        name: the experiment's name, which names its branch ``mitosis/<name>`` (default: the
            function's name).
        lookup: parameter name to ``{variant name: value}``.
        untracked: parameters that do not change the result (a GPU index, a scratch folder):
            recorded, never locked.
        start: how a sweep starts the trial processes: ``"fork"`` (the default) forks each
            from a process that imported the experiment's modules once, where forking is safe;
            ``"spawn"`` starts each afresh (for modules that do not survive a fork, e.g. ones
            that start threads or hold connections when imported). Either way each trial runs
            in its own new process.

    Example:
        >>> import mitosis
        >>> @mitosis.experiment(lookup={"noise": {"low": 0.01}}, untracked=["gpu"])
        ... def sine(amplitude: float, noise: float, gpu: int = 0) -> float:
        ...     return amplitude * noise
        >>> sine(2, 0.5)
        1.0
    """

    check_start(start, "@mitosis.experiment(start=...)")

    def attach(f: F) -> F:
        spec = ExperimentSpec(
            name=name or f.__name__,
            lookup=_check_lookup(lookup or {}),
            untracked=frozenset(untracked),
            start=start,
        )
        setattr(f, _ATTRIBUTE, spec)
        return f

    return attach(fn) if fn is not None else attach


def check_start(start: Any, where: str) -> Start:
    """``start`` when it is one of :data:`Start`, else a clear error naming ``where``."""
    if start not in get_args(Start):
        raise BadParameter(
            f'{where} must be "fork" (fork trial processes from a warm one where safe) or '
            f'"spawn" (start each afresh); got {start!r}'
        )
    started: Start = start
    return started


def _check_lookup(lookup: Any) -> Lookup:
    if not isinstance(lookup, Mapping):
        raise BadParameter(
            f"a lookup dictionary maps parameter names to {{variant name: value}}; got "
            f"{type(lookup).__name__}"
        )
    for param, table in lookup.items():
        if not isinstance(table, Mapping) or not all(isinstance(k, str) for k in table):
            raise BadParameter(
                f"lookup[{param!r}] must map variant names (str) to values, e.g. "
                f"{{{param!r}: {{'low': 0.1, 'high': 1.0}}}}; got {type(table).__name__}"
            )
    return lookup


def table_of(lookup: Lookup, param: str) -> Mapping[str, Any] | None:
    """The lookup table of ``param`` in ``lookup``, or None when it has none.

    Looked up through the lookup's own ``__getitem__``, so any mapping serves: a
    ``defaultdict`` or a class with ``__missing__`` may hold a table for every name, as the
    earlier mitosis allowed. A value that is not a mapping is no table.
    """
    try:
        table = lookup[param]
    except KeyError:
        return None
    return table if isinstance(table, Mapping) else None


def spec_of(
    fn: Callable[..., Any], lookup: Lookup | None, untracked: Iterable[str] | None
) -> ExperimentSpec:
    """The experiment spec of ``fn``, with explicit arguments overriding its decorator's."""
    if not callable(fn):
        raise BadParameter(f"an experiment is a callable; got {type(fn).__name__} {fn!r:.60}")
    attached: ExperimentSpec | None = getattr(fn, _ATTRIBUTE, None)
    name = attached.name if attached else getattr(fn, "__name__", type(fn).__name__)
    return ExperimentSpec(
        name=name,
        lookup=_check_lookup(lookup) if lookup is not None else attached.lookup if attached else {},
        untracked=frozenset(untracked)
        if untracked is not None
        else attached.untracked
        if attached
        else frozenset(),
        start=attached.start if attached else "fork",
    )


def function_name(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of a function, as trials record it."""
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def code_fingerprint(fn: Callable[..., Any]) -> str | None:
    """A hash of a function's compiled code (bytecode, constants, names, lines), so that two
    functions of one name but other code are told apart. None where code alone does not say
    what the function does: callables without code, closures (their captured values count
    too) and wrappers (the wrapped function counts too). Steps without it are never reused."""
    code = getattr(fn, "__code__", None)
    if code is None or getattr(fn, "__closure__", None) or hasattr(fn, "__wrapped__"):
        return None
    import hashlib
    import marshal

    return "sha256:" + hashlib.sha256(marshal.dumps(code)).hexdigest()


@attrs.frozen
class Step:
    """One step of an experiment: its function and what is attached to it.

    ``ref`` (``(module, qualname)``) is set when the trial process imports the function itself,
    from code this process must not import (a rerun of rebuilt code); ``fn`` then only stands in.
    """

    spec: ExperimentSpec
    fn: Callable[..., Any]
    ref: tuple[str, str] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def function(self) -> str:
        """``module:qualname``, as trials record it."""
        return ":".join(self.ref) if self.ref else function_name(self.fn)

    @property
    def code(self) -> str | None:
        """The hash of the function's compiled code (None when not known here)."""
        return None if self.ref else code_fingerprint(self.fn)


@attrs.frozen
class Chain:
    """An experiment as mitosis runs it: one step, or several whose ``"data"`` flows on."""

    name: str
    steps: tuple[Step, ...]

    @property
    def single(self) -> bool:
        return len(self.steps) == 1

    @property
    def start(self) -> Start:
        """``"spawn"`` when a step asks for it, else ``"fork"``."""
        return "spawn" if any(s.spec.start == "spawn" for s in self.steps) else "fork"

    def modules(self) -> tuple[str, ...]:
        """The modules of the steps' functions that a trial process imports by name (a
        function sent by value, from ``__main__`` or a closure, gives none)."""
        modules = []
        for step in self.steps:
            if step.ref is not None:
                modules.append(step.ref[0])
                continue
            module = getattr(step.fn, "__module__", None)
            qualname = getattr(step.fn, "__qualname__", "<")
            if module in sys.modules and module != "__main__" and "<" not in qualname:
                modules.append(module)
        return tuple(dict.fromkeys(modules))

    def name_of(self, index: int, arg: str) -> str:
        """How step ``index``'s parameter ``arg`` is addressed and recorded: ``arg`` for a
        single function, ``step.arg`` in a chain."""
        return qualified(None if self.single else self.steps[index].name, arg)

    def locate(self, name: str) -> tuple[int, str] | None:
        """``(step index, parameter)`` that ``name`` addresses (``step.param`` in a chain), or
        None when it addresses no step."""
        if self.single:
            return 0, name
        step, arg = split_qualified(name)
        names = [s.name for s in self.steps]
        return (names.index(step), arg) if step in names else None


def _step(item: Any) -> Step:
    if callable(item):
        return Step(spec_of(item, None, None), item)
    if isinstance(item, tuple) and 2 <= len(item) <= 4 and isinstance(item[0], str):
        name, fn, *rest = item
        lookup = rest[0] if rest else None
        untracked = rest[1] if len(rest) > 1 else None
        spec = spec_of(fn, lookup, untracked)
        return Step(attrs.evolve(spec, name=name), fn)
    raise BadParameter(
        "a step is a function, or a tuple (name, function[, lookup[, untracked]]); "
        f"got {item!r:.80}"
    )


def chain_of(
    experiment: Callable[..., Any] | Sequence[Any],
    lookup: Lookup | None = None,
    untracked: Iterable[str] | None = None,
) -> Chain:
    """The chain of steps of ``experiment``: a callable, or a list of steps.

    Raises:
        BadParameter: not a callable or a list of steps, duplicate step names, ``lookup`` given
            for a chain (give each step its own), or an untracked name that is not
            ``step.param``.
    """
    if callable(experiment):
        spec = spec_of(experiment, lookup, untracked)
        return Chain(spec.name, (Step(spec, experiment),))
    if not isinstance(experiment, (list, tuple)) or not experiment:
        raise BadParameter(
            "an experiment is a callable or a non-empty list of steps; got "
            f"{type(experiment).__name__} {experiment!r:.60}"
        )
    if lookup is not None:
        raise BadParameter(
            "lookup= is for one function; in a chain give each step its own lookup dictionary, "
            "as (name, fn, lookup) or with @mitosis.experiment(lookup=...)"
        )
    steps = [_step(item) for item in experiment]
    names = [s.name for s in steps]
    for name in names:
        check_name("step name", name, "name the step with printable text")
    dotted = [n for n in names if "." in n or "+" in n]
    if dotted:
        raise BadParameter(
            f"step names cannot hold '.' or '+' (parameters are step.param): {dotted}"
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BadParameter(
            f"steps {duplicates} appear twice in the chain; name them apart with "
            "(name, fn, lookup) tuples"
        )
    return with_untracked(Chain("+".join(names), tuple(steps)), untracked or ())


def with_untracked(chain: Chain, names: Iterable[str]) -> Chain:
    """``chain`` with more untracked parameters (``step.param`` in a chain).

    Raises:
        BadParameter: in a chain, a name that is not ``step.param`` of one of its steps.
    """
    steps = list(chain.steps)
    for full in names:
        found = chain.locate(full)
        if found is None:
            raise BadParameter(
                f"untracked parameter {full!r}: in a chain, name it step.param with a "
                f"step of {', '.join(s.name for s in steps)}"
            )
        index, param = found
        spec = steps[index].spec
        steps[index] = attrs.evolve(
            steps[index], spec=attrs.evolve(spec, untracked=spec.untracked | {param})
        )
    return attrs.evolve(chain, steps=tuple(steps))
