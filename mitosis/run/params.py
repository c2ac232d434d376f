"""Resolving a trial's parameters against its steps' signatures and lookup dictionaries."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..exceptions import BadParameter, UnknownVariant
from ..model.text import check_name
from ..model.types import ValueSource, VariantLock
from ..model.values import Encoded, encode, type_name
from .experiment import Chain, table_of

__all__ = ["Resolved", "literal", "locks_of", "resolve"]

_MAX_NAME = 200


@attrs.frozen
class literal:  # lower case: used as a function, mitosis.literal("low"), as functools.partial
    """A parameter's value to take as it is: a string wrapped in it is never looked up as a
    variant name, even for a parameter with a lookup table. It is recorded under its repr
    (``'low'``), as other literals are; ``mitosis run -e`` marks its values so.

    >>> import mitosis
    >>> mitosis.literal("low")  # the string 'low', not the variant named low
    literal(value='low')
    """

    value: Any


@attrs.frozen
class Resolved:
    """A parameter resolved to its value, with how it is recorded.

    ``name`` is how it is addressed and recorded (``param``, or ``step.param`` in a chain);
    ``arg`` is the function's own parameter name, in step number ``step``.
    """

    name: str
    value: Any
    variant: str
    source: ValueSource
    tracked: bool
    encoded: Encoded
    step: int = 0
    arg: str = ""

    @property
    def lock(self) -> VariantLock | None:
        """The variant lock this parameter needs: a tracked one named in a lookup table."""
        if self.tracked and self.source == "variant":
            return VariantLock(self.name, self.variant, self.encoded)
        return None


def locks_of(resolved: Iterable[Resolved]) -> tuple[VariantLock, ...]:
    """The variant locks that parameters ``resolved`` need."""
    return tuple(r.lock for r in resolved if r.lock is not None)


def _display(value: Any) -> str:
    """A literal's name: its repr, cut to fit; surrogates escaped (UTF-8 cannot store them)."""
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ should not stop the trial
        text = f"<{type_name(value)}: repr failed: {type(exc).__name__}>"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= _MAX_NAME else text[: _MAX_NAME - 1] + "…"


def _resolve_one(arg: str, value: Any, source: ValueSource, chain: Chain, step: int) -> Resolved:
    spec = chain.steps[step].spec
    table = table_of(spec.lookup, arg)
    marked = isinstance(value, literal)
    if marked:
        value = value.value
    variant = _display(value)
    name = chain.name_of(step, arg)
    if source == "literal" and table is not None and isinstance(value, str) and not marked:
        try:  # through the table's own __getitem__: a defaultdict or __missing__ may answer
            found = table[value]
        except KeyError:
            raise UnknownVariant(name, value, sorted(map(str, table))) from None
        check_name(
            f"parameter {name!r}: the variant name",
            value,
            f"rename it in the lookup dictionary of {spec.name}",
        )
        variant, value, source = value, found, "variant"
    tracked = arg not in spec.untracked
    try:
        encoded = encode(value)
    except BadParameter as exc:
        raise BadParameter(f"parameter {name!r}: {exc}") from None
    return Resolved(name, value, variant, source, tracked, encoded, step, arg)


def _resolve_step(chain: Chain, index: int, params: dict[str, Any]) -> list[Resolved]:
    spec, fn = chain.steps[index].spec, chain.steps[index].fn
    prefix = chain.name_of(index, "")
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
    if index > 0:  # the first positional parameter (or *args) receives the step before's "data"
        positional = [
            n
            for n, p in signature.parameters.items()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
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
        check_name("parameter name", prefix + name, "give the parameter another name")
    for name in sorted(spec.untracked):
        if name not in accepted and name not in params:
            raise BadParameter(
                f"untracked parameter {prefix + name!r} is not a parameter of {where}; fix the name"
            )
    missing = [n for n, p in accepted.items() if p.default is p.empty and n not in params]
    if missing:
        raise BadParameter(
            f"{spec.name} needs a value for {', '.join(repr(prefix + m) for m in missing)}; its "
            f"signature is {where}. Give it: -e {prefix + missing[0]}=... on the command line, "
            f"or params={{{prefix + missing[0]!r}: ...}} in Python."
        )
    resolved = [_resolve_one(n, v, "literal", chain, index) for n, v in params.items()]
    resolved += [
        _resolve_one(n, p.default, "default", chain, index)
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
        UnknownVariant: a string that names no variant of a parameter with a lookup table
            (a string wrapped in :func:`literal` is taken as it is).
    """
    per_step: list[dict[str, Any]] = [{} for _ in chain.steps]
    for full, value in (params or {}).items():
        found = chain.locate(full) if isinstance(full, str) else None
        if found is None and not chain.single:
            names = " -> ".join(s.name for s in chain.steps)
            raise BadParameter(
                f"parameter {full!r} addresses no step of the chain {names}; write it as step.param"
            )
        index, arg = found or (0, full)  # a name that is no str: its step refuses it
        per_step[index][arg] = value
    resolved = [
        r for i, step in enumerate(chain.steps) for r in _resolve_step(chain, i, per_step[i])
    ]
    return sorted(resolved, key=lambda r: (r.step, r.name))
