"""Fields of trials, the ``where`` filter and the sort, shared by :func:`mitosis.trials`,
``mitosis log`` and :func:`mitosis.plot` (the browser shows fields as text the same way):
``NAME OP VALUE`` clauses joined with ``and``; a parameter matches by variant name, or by value
where both sides are numbers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..exceptions import BadQuery, UnknownField
from .records import Trial
from .values import dumps_json

__all__ = [
    "BUILTIN_FIELDS",
    "Condition",
    "conditions",
    "field",
    "fields",
    "matches",
    "number",
    "select",
    "sort_key",
]

#: Fields every trial has, besides its parameters and metrics.
BUILTIN_FIELDS = ("main", "status", "id", "experiment", "started", "duration", "host")
_OPERATORS = ("!=", "<=", ">=", "=", "<", ">")

#: ``(name, operator, value)``
Condition = tuple[str, str, str]


def number(value: Any) -> float | None:
    """``value`` as a float, or None (booleans are not numbers here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def text(value: Any) -> str:
    """A value in full as text: strings as they are, anything else as JSON."""
    return "" if value is None else value if isinstance(value, str) else dumps_json(value)


def field(trial: Trial, name: str) -> tuple[str, float | None] | None:
    """A field's text and number (for filters and sorting); None when the trial lacks it."""
    if name in BUILTIN_FIELDS:
        value = getattr(trial, name)
        return _flat(value), number(value)
    if name in trial.params or name in trial.untracked:
        param = trial.params.get(name) or trial.untracked[name]
        return param.variant, number(param.value)
    if name in trial.metrics:
        value = trial.metrics[name]
        return _flat(value), number(value)
    return None


def _flat(value: Any) -> str:
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, int):
        return str(value)
    return " ".join(text(value).split())


def fields(found: Iterable[Trial]) -> set[str]:
    """Every field name the trials have."""
    names = set(BUILTIN_FIELDS)
    for t in found:
        names.update(t.params, t.untracked, t.metrics)
    return names


def conditions(where: str | Sequence[str] | None) -> list[Condition]:
    """Parse ``where`` clauses (``'noise=low and main<0.1'``; several are joined by ``and``).

    Raises:
        BadQuery: a clause is not ``NAME OP VALUE``.
    """
    clauses = [where] if isinstance(where, str) else list(where or ())
    found = []
    for clause in clauses:
        for part in clause.replace(" AND ", " and ").split(" and "):
            part = part.strip()
            if not part:
                continue
            for op in _OPERATORS:
                name, hit, value = part.partition(op)
                if hit and name.strip():
                    if value.startswith("="):  # Python's ==
                        raise BadQuery(
                            f"where {part!r}: write one '=', as in {name.strip()}="
                            f"{value[1:].strip()} (a parameter is compared by its variant "
                            "name, or by value for numbers)"
                        )
                    found.append((name.strip(), op, value.strip()))
                    break
            else:
                raise BadQuery(
                    f"where {part!r}: write NAME OP VALUE with OP one of "
                    "=, !=, <, >, <=, >=, joined with 'and' (e.g. 'noise=low and main<0.1')"
                )
    return found


def unknown(what: str, name: str, known: Iterable[str]) -> UnknownField:
    """The error for a field no trial has."""
    return UnknownField(
        f"{what}: no parameter or metric {name!r}; the trials have: {', '.join(sorted(known))}"
    )


def matches(trial: Trial, condition: Condition, known: set[str]) -> bool:
    """Whether ``trial`` meets ``condition``; ``known`` holds the field names of all trials.

    Raises:
        UnknownField: no trial has the condition's field.
        BadQuery: an order comparison with a value that is not a number.
    """
    name, op, wanted = condition
    if name not in known:
        raise unknown("where", name, known)
    found = field(trial, name)
    if found is None:
        return False
    shown, value = found
    target = number(wanted)
    if op in ("=", "!="):
        same = shown == wanted or (value is not None and target is not None and value == target)
        return same if op == "=" else not same
    if target is None:
        raise BadQuery(
            f"where {name}{op}{wanted}: {op} compares numbers, and {wanted!r} is not one"
        )
    if value is None:  # no number here (e.g. the main of a failed trial): no match
        return False
    return {
        "<": value < target,
        ">": value > target,
        "<=": value <= target,
        ">=": value >= target,
    }[op]


def sort_key(trial: Trial, name: str) -> tuple[int, float, str]:
    """Numbers first, ascending; then text; trials without the field last."""
    found = field(trial, name)
    if found is None:
        return (2, 0.0, "")
    shown, value = found
    return (0, value, "") if value is not None else (1, 0.0, shown)


def select(
    found: Sequence[Trial],
    where: str | Sequence[str] | None = None,
    sort: str | None = None,
    *,
    label: str = "sort",
) -> list[Trial]:
    """The trials meeting every ``where`` clause, in their order or sorted by the field
    ``sort`` (a stable sort: ties keep their order).

    Raises:
        UnknownField: a field no trial has (named ``label`` for ``sort``).
        BadQuery: a clause is not ``NAME OP VALUE``.
    """
    known = fields(found)
    selected = list(found)
    for condition in conditions(where):
        selected = [t for t in selected if matches(t, condition, known)]
    if sort is not None:
        if sort not in known:
            raise unknown(label, sort, known)
        selected.sort(key=lambda t: sort_key(t, sort))
    return selected
