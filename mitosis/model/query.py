"""Fields of trials, the ``where`` filter and the sort, shared by :func:`mitosis.trials`,
``mitosis log`` and :func:`mitosis.plot` (the browser shows fields as text the same way):
``NAME OP VALUE`` clauses joined with ``and``; a parameter matches by variant name (the name
its value has now: a renamed variant by its new name), or by value where both sides are numbers.

A listing holds a :class:`Row` per trial: the fields ``log`` prints, filters and sorts by, as the
listing index keeps them (see :mod:`mitosis.store.index`), so that listing builds no
:class:`Trial` where no one asks for one. Filters and sorts read a row and a trial alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

from ..exceptions import BadQuery, UnknownField
from .records import Trial
from .values import decode, dumps_json, tagged

__all__ = [
    "BUILTIN_FIELDS",
    "Condition",
    "Row",
    "columns",
    "conditions",
    "decoded",
    "field",
    "fields",
    "matches",
    "number",
    "row_of",
    "select",
    "sort_key",
    "tagged",
]

#: Fields every trial has, besides its parameters and metrics.
BUILTIN_FIELDS = ("main", "status", "id", "experiment", "started", "duration", "host")
_OPERATORS = ("!=", "<=", ">=", "=", "<", ">")

#: ``(name, operator, value)``
Condition = tuple[str, str, str]


class Row(NamedTuple):
    """One trial as a listing holds it (``mitosis log``'s columns): read from the listing
    index without building a :class:`Trial`. Rows are shared by the listings of a process:
    read them, never change them.

    Attributes:
        id: the trial's id.
        experiment: its experiment.
        status: ``ok``, ``failed``, ``killed`` or ``interrupted``.
        started: when it started, ISO 8601 in UTC.
        duration: seconds from start to end.
        host: the machine's name.
        main: the headline result (decoded, as :attr:`Trial.main`).
        metrics: named results (decoded, as :attr:`Trial.metrics`).
        variants: each tracked parameter's variant name (as :attr:`Trial.variants`).
        untracked: each untracked parameter's variant name.
        numbers: each parameter's value as a number, or None (what filters compare).
        commit: the code's commit, or None.
        dirty: whether the code had uncommitted changes, or None without a code state.
        blob: the git blob id of the trial's ``trial.json``.
        record: that ``trial.json``'s bytes as the index keeps them (they passed their checks;
            they are the blob's when :attr:`blob` is their blob id): what a :class:`Trial` is
            built from when one is asked for.
    """

    id: str
    experiment: str
    status: str
    started: str
    duration: float
    host: str
    main: Any
    metrics: dict[str, Any]
    variants: dict[str, str]
    untracked: dict[str, str]
    numbers: dict[str, float | None]
    commit: str | None
    dirty: bool | None
    blob: str
    record: bytes | memoryview


def decoded(value: Any) -> Any:
    """A result (``main``, ``metrics``) as recorded, with its tags (``{"py/float": "nan"}``)
    decoded; most results hold none, and are returned as they are."""
    return decode(value) if tagged(value) else value


def columns(record: dict[str, Any]) -> list[Any]:
    """What a :class:`Row` holds of a ``trial.json`` record that passed its checks, as JSON
    (results as recorded, whether they hold tags, parameters as variant names and numbers):
    what the listing index keeps after the trial's id, tree id, blob id, offset and size.
    :func:`row_of` makes the row."""
    code = record.get("code")
    params, untracked = record.get("params") or {}, record.get("untracked") or {}
    main, metrics = record.get("main"), record.get("metrics") or {}
    numbers = {k: number(p.get("value")) for k, p in untracked.items()} if untracked else {}
    for k, p in params.items():  # a tracked parameter's number wins, as in field()
        numbers[k] = number(p.get("value"))
    return [
        int(tagged(main) or tagged(metrics)),
        record["status"],
        record["started"],
        record["duration"],
        record["host"],
        main,
        metrics,
        {k: p["variant"] for k, p in params.items()},
        {k: p["variant"] for k, p in untracked.items()},
        numbers,
        code.get("commit") if code else None,
        code.get("dirty") if code else None,
    ]


def row_of(entry: list[Any], experiment: str, records: bytes | memoryview) -> Row:
    """The row of a trial from its entry in the listing index, ``[trial id, tree id, blob id,
    offset, size, *columns, ...]`` (see :func:`columns`; what follows them is the index's
    own), its record at ``offset`` in ``records``."""
    (trial_id, _, blob, offset, size, tags, status, started, duration, host, main, metrics,
     variants, untracked, numbers, commit, dirty, *_) = entry  # fmt: skip
    if tags:
        main, metrics = decoded(main), decoded(metrics)
    return Row(
        trial_id,
        experiment,
        status,
        started,
        duration,
        host,
        main,
        metrics,
        variants,
        untracked,
        numbers,
        commit,
        dirty,
        blob,
        records[offset : offset + size],
    )


def number(value: Any) -> float | None:
    """``value`` as a float, or None (booleans are not numbers here); an integer too big for a
    float (JSON holds any) is an infinity of its sign."""
    try:
        if type(value) in (float, int):  # the usual case, first
            return float(value)
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return float(value)
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    except (TypeError, ValueError):
        return None


def text(value: Any) -> str:
    """A value in full as text: strings as they are, anything else as JSON."""
    return "" if value is None else value if isinstance(value, str) else dumps_json(value)


#: What listings, filters and sorts take: trials, or their rows.
Listed = TypeVar("Listed", Trial, Row)


def field(trial: Trial | Row, name: str) -> tuple[str, float | None] | None:
    """A field's text and number (for filters and sorting); None when the trial lacks it."""
    if name in BUILTIN_FIELDS:
        value = getattr(trial, name)
        return _flat(value), number(value)
    if isinstance(trial, Row):
        variant = trial.variants.get(name, trial.untracked.get(name))
        if variant is not None:
            return variant, trial.numbers[name]
    elif name in trial.params or name in trial.untracked:
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


def fields(found: Iterable[Trial | Row]) -> set[str]:
    """Every field name the trials have."""
    names = set(BUILTIN_FIELDS)
    for t in found:
        names.update(t.variants if isinstance(t, Row) else t.params, t.untracked, t.metrics)
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


def matches(trial: Trial | Row, condition: Condition, known: set[str]) -> bool:
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


def sort_key(trial: Trial | Row, name: str) -> tuple[int, float, str]:
    """Numbers first, ascending; then text; trials without the field last."""
    found = field(trial, name)
    if found is None:
        return (2, 0.0, "")
    shown, value = found
    return (0, value, "") if value is not None else (1, 0.0, shown)


def select(
    found: Sequence[Listed],
    where: str | Sequence[str] | None = None,
    sort: str | None = None,
    *,
    label: str = "sort",
) -> list[Listed]:
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
