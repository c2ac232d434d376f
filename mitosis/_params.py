"""Experiments' names and lookup dictionaries, and resolving parameters against them."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload

import attrs

from ._serialize import Encoded, encode
from .exceptions import BadParameter, UnknownVariant

__all__ = [
    "Chain",
    "ExperimentSpec",
    "Resolved",
    "Step",
    "chain_of",
    "code_fingerprint",
    "experiment",
    "function_name",
    "resolve",
    "spec_of",
    "with_untracked",
]

F = TypeVar("F", bound=Callable[..., Any])
Lookup = Mapping[str, Mapping[str, Any]]
_ATTRIBUTE = "__mitosis__"
_MAX_NAME = 200


@attrs.frozen
class ExperimentSpec:
    """What mitosis knows of an experiment function besides the function itself."""

    name: str
    lookup: Lookup
    untracked: frozenset[str]


@overload
def experiment(fn: F, /) -> F: ...


@overload
def experiment(
    *, name: str | None = None, lookup: Lookup | None = None, untracked: Iterable[str] = ()
) -> Callable[[F], F]: ...


def experiment(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    lookup: Lookup | None = None,
    untracked: Iterable[str] = (),
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

    Example:
        >>> import mitosis
        >>> @mitosis.experiment(lookup={"noise": {"low": 0.01}}, untracked=["gpu"])
        ... def sine(amplitude: float, noise: float, gpu: int = 0) -> float:
        ...     return amplitude * noise
        >>> sine(2, 0.5)
        1.0
    """

    def attach(f: F) -> F:
        spec = ExperimentSpec(
            name=name or f.__name__,
            lookup=_check_lookup(lookup or {}),
            untracked=frozenset(untracked),
        )
        setattr(f, _ATTRIBUTE, spec)
        return f

    return attach(fn) if fn is not None else attach


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
    step_names = [s.name for s in steps]
    for full in names:
        index, param = 0, full
        if not chain.single:
            step, dot, param = full.partition(".")
            if not dot or step not in step_names:
                raise BadParameter(
                    f"untracked parameter {full!r}: in a chain, name it step.param with a "
                    f"step of {', '.join(step_names)}"
                )
            index = step_names.index(step)
        spec = steps[index].spec
        steps[index] = attrs.evolve(
            steps[index], spec=attrs.evolve(spec, untracked=spec.untracked | {param})
        )
    return attrs.evolve(chain, steps=tuple(steps))


@attrs.frozen
class Resolved:
    """A parameter resolved to its value, with how it is recorded.

    ``name`` is how it is addressed and recorded (``param``, or ``step.param`` in a chain);
    ``arg`` is the function's own parameter name, in step number ``step``.
    """

    name: str
    value: Any
    variant: str
    source: str  # "variant", "literal" or "default"
    tracked: bool
    encoded: Encoded
    step: int = 0
    arg: str = ""


def _display(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_NAME else text[: _MAX_NAME - 1] + "…"


def _resolve_one(
    arg: str, value: Any, source: str, spec: ExperimentSpec, step: int, prefix: str
) -> Resolved:
    table = spec.lookup.get(arg)
    variant = _display(value)
    name = prefix + arg
    if source == "literal" and table is not None and isinstance(value, str):
        if value not in table:
            raise UnknownVariant(name, value, sorted(table))
        variant, value, source = value, table[value], "variant"
    tracked = arg not in spec.untracked
    return Resolved(name, value, variant, source, tracked, encode(value), step, arg)


def _resolve_step(step: Step, index: int, params: dict[str, Any], prefix: str) -> list[Resolved]:
    spec, fn = step.spec, step.fn
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise BadParameter(f"cannot read the signature of {fn!r}: {exc}") from None
    accepted = {
        n: p
        for n, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    where = f"{spec.name}{signature}"
    if index > 0:  # the first positional parameter receives the previous step's "data"
        positional = [
            n
            for n, p in signature.parameters.items()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if not positional:
            raise BadParameter(
                f"step {spec.name} takes no positional parameter for the data of the step "
                f"before it; its signature is {where}"
            )
        accepted.pop(positional[0], None)
    open_ended = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    for name in params:
        if not isinstance(name, str) or (name not in accepted and not open_ended):
            raise BadParameter(
                f"{spec.name} has no parameter {prefix + str(name)!r}; its signature is {where}. "
                "Fix the name, or add the parameter to the function."
            )
    for name in sorted(spec.untracked):
        if name not in accepted and name not in params:
            raise BadParameter(
                f"untracked parameter {prefix + name!r} is not a parameter of {where}; fix the name"
            )
    missing = [n for n, p in accepted.items() if p.default is p.empty and n not in params]
    if missing:
        raise BadParameter(
            f"{spec.name} needs a value for {', '.join(repr(prefix + m) for m in missing)}; its "
            f"signature is {where}. Pass it in params (e.g. {{{prefix + missing[0]!r}: ...}})."
        )
    resolved = [_resolve_one(n, v, "literal", spec, index, prefix) for n, v in params.items()]
    resolved += [
        _resolve_one(n, p.default, "default", spec, index, prefix)
        for n, p in accepted.items()
        if n not in params
    ]
    return resolved


def resolve(chain: Chain, params: Mapping[str, Any] | None) -> list[Resolved]:
    """Resolve ``params`` for every step: variant names through the lookup dictionary, literals
    as they are, and defaults for what is not given. In a chain, parameters are addressed
    ``step.param``.

    Raises:
        BadParameter: a parameter no step accepts, or a required one missing.
        UnknownVariant: a string that names no variant of a parameter with a lookup table.
    """
    given = dict(params or {})
    if chain.single:
        return sorted(_resolve_step(chain.steps[0], 0, given, ""), key=lambda r: r.name)
    names = [s.name for s in chain.steps]
    per_step: list[dict[str, Any]] = [{} for _ in names]
    for full, value in given.items():
        step, dot, arg = str(full).partition(".")
        if not dot or step not in names:
            raise BadParameter(
                f"parameter {full!r} addresses no step of the chain {' -> '.join(names)}; "
                "write it as step.param"
            )
        per_step[names.index(step)][arg] = value
    resolved = [
        r
        for i, step in enumerate(chain.steps)
        for r in _resolve_step(step, i, per_step[i], f"{step.name}.")
    ]
    return sorted(resolved, key=lambda r: (r.step, r.name))
