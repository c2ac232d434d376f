"""Experiments' names and lookup dictionaries, and resolving parameters against them."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

import attrs

from ._serialize import Encoded, encode
from .exceptions import BadParameter, UnknownVariant

__all__ = ["ExperimentSpec", "Resolved", "experiment", "resolve", "spec_of"]

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


@attrs.frozen
class Resolved:
    """A parameter resolved to its value, with how it is recorded."""

    name: str
    value: Any
    variant: str
    source: str  # "variant", "literal" or "default"
    tracked: bool
    encoded: Encoded


def _display(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_NAME else text[: _MAX_NAME - 1] + "…"


def _resolve_one(name: str, value: Any, source: str, spec: ExperimentSpec) -> Resolved:
    table = spec.lookup.get(name)
    variant = _display(value)
    if source == "literal" and table is not None and isinstance(value, str):
        if value not in table:
            raise UnknownVariant(name, value, sorted(table))
        variant, value, source = value, table[value], "variant"
    return Resolved(name, value, variant, source, name not in spec.untracked, encode(value))


def resolve(
    fn: Callable[..., Any], spec: ExperimentSpec, params: Mapping[str, Any] | None
) -> list[Resolved]:
    """Resolve ``params`` for ``fn``: variant names through the lookup dictionary, literals as
    they are, and defaults for what is not given.

    Raises:
        BadParameter: a parameter ``fn`` does not accept, or a required one missing.
        UnknownVariant: a string that names no variant of a parameter with a lookup table.
    """
    params = dict(params or {})
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise BadParameter(f"cannot read the signature of {fn!r}: {exc}") from None
    accepted = {
        n: p
        for n, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    open_ended = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    where = f"{spec.name}{signature}"
    for name in params:
        if not isinstance(name, str) or (name not in accepted and not open_ended):
            raise BadParameter(
                f"{spec.name} has no parameter {name!r}; its signature is {where}. "
                "Fix the name, or add the parameter to the function."
            )
    for name in sorted(spec.untracked):
        if name not in accepted and name not in params:
            raise BadParameter(
                f"untracked parameter {name!r} is not a parameter of {where}; fix the name"
            )
    missing = [n for n, p in accepted.items() if p.default is p.empty and n not in params]
    if missing:
        raise BadParameter(
            f"{spec.name} needs a value for {', '.join(map(repr, missing))}; its signature is "
            f"{where}. Pass it in params (e.g. {{{missing[0]!r}: ...}})."
        )
    resolved = [_resolve_one(n, v, "literal", spec) for n, v in params.items()]
    resolved += [
        _resolve_one(n, p.default, "default", spec) for n, p in accepted.items() if n not in params
    ]
    return sorted(resolved, key=lambda r: r.name)
