"""Canonical JSON, pickled payloads, and the equality rule for parameter values.

The equality rule (also in docs/architecture.md): two values are *the same value* when their
fingerprints are equal. A value's fingerprint is the SHA-256 of its canonical JSON text when JSON
can hold it, else of its pickle (plain pickle where that can hold it, dill's otherwise).

Canonical JSON is built from plain JSON types, with tagged objects for what JSON lacks:
``{"py/tuple": [...]}``, ``{"py/set": [...]}`` and ``{"py/frozenset": [...]}`` (elements
sorted), ``{"py/dict": [[key, value], ...]}`` (non-string keys, sorted), ``{"py/float": "nan"}``,
and ``{"py/type": "module.Class", field: value, ...}`` for attrs classes and dataclasses.
Dictionaries compare regardless of insertion order, sets regardless of hash order.

So values without a meaningful ``==`` (a scikit-learn estimator, a lambda) compare by content,
and comparing never unpickles anything read from a store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from typing import IO, Any

import attrs

from ..exceptions import BadParameter
from .portable import NeedsDill, dumps, plain

__all__ = [
    "Encoded",
    "decode",
    "dumps_json",
    "encode",
    "load_dill",
    "loads_dill",
    "tagged",
    "type_name",
    "undecodable",
]

_TAGS = ("py/tuple", "py/set", "py/frozenset", "py/dict", "py/float", "py/type")


class _NotJSON(Exception):
    """Raised inside :func:`_canonical` when JSON cannot hold a value."""


@attrs.frozen
class Encoded:
    """A value made ready for the store.

    Attributes:
        json: the canonical JSON form, or None when JSON cannot hold the value.
        exact: whether :func:`decode` of ``json`` gives back an equal value of the same types
            (if not, the value must be stored with dill too).
        fingerprint: ``sha256:<hex>`` of the canonical JSON text, else of the dill bytes.
        type: the qualified name of the value's type.
        pickled: the value's pickle (see :func:`mitosis.model.portable.dumps`) when not ``exact``.
    """

    json: Any
    exact: bool
    fingerprint: str
    type: str
    pickled: bytes | None = attrs.field(default=None, repr=False)


def type_name(value: Any) -> str:
    cls = type(value)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def dumps_json(value: Any, *, indent: int | None = None) -> str:
    """The one JSON text form used for canonical comparison and for files in the store (strict
    JSON: NaN and infinities are written as ``{"py/float": "nan"}``)."""
    value = plain(value)
    if indent is None:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(value, sort_keys=True, indent=indent, ensure_ascii=False) + "\n"


def _sorted(items: list[Any]) -> list[Any]:
    return sorted(items, key=dumps_json)


def _canonical(value: Any, state: dict[str, bool]) -> Any:
    cls = type(value)
    if value is None or cls in (bool, int, str):
        return value
    if cls is float:
        return value if math.isfinite(value) else {"py/float": repr(value)}
    if cls is list:
        return [_canonical(v, state) for v in value]
    if cls is tuple:
        return {"py/tuple": [_canonical(v, state) for v in value]}
    if cls in (set, frozenset):
        tag = "py/set" if cls is set else "py/frozenset"
        return {tag: _sorted([_canonical(v, state) for v in value])}
    if cls is dict:
        if all(type(k) is str and k not in _TAGS for k in value):
            return {k: _canonical(v, state) for k, v in value.items()}
        pairs = [[_canonical(k, state), _canonical(v, state)] for k, v in value.items()]
        return {"py/dict": _sorted(pairs)}
    if attrs.has(cls):
        names = [f.name for f in attrs.fields(cls)]
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in dataclasses.fields(value)]
    else:
        raise _NotJSON
    state["exact"] = False
    fields = {name: _canonical(getattr(value, name), state) for name in names}
    return {"py/type": type_name(value), **fields}


def encode(value: Any) -> Encoded:
    """Encode ``value`` for the store, pickling it only when JSON cannot hold it exactly.

    >>> encode((1, "a")).json
    {'py/tuple': [1, 'a']}

    Raises:
        BadParameter: the value cannot be stored (it cannot be pickled, or it holds text with a
            lone surrogate); the message says why, for the caller to name the parameter.
    """
    state = {"exact": True}
    try:
        canonical = _canonical(value, state)
    except (_NotJSON, RecursionError):
        digest = hashlib.sha256(_pickled(canonical_pickle, value)).hexdigest()
        return Encoded(None, False, f"sha256:{digest}", type_name(value), _pickled(dumps, value))
    try:
        text = dumps_json(canonical).encode()
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise BadParameter(
            f"its value ({_a(type_name(value))}) cannot be stored: it holds text with a lone "
            f"surrogate ({bad!r}), which UTF-8 cannot encode; pass valid text (decode bytes with "
            "errors='replace', say) or the bytes themselves"
        ) from None
    digest = hashlib.sha256(text).hexdigest()
    exact = state["exact"]
    pickled = None if exact else _pickled(dumps, value)
    return Encoded(canonical, exact, f"sha256:{digest}", type_name(value), pickled)


def _a(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _pickled(pickler: Callable[[Any], bytes], value: Any) -> bytes:
    """``pickler(value)``; a value that neither pickle nor dill can hold is a BadParameter."""
    try:
        return pickler(value)
    except Exception as exc:  # whatever a value's __reduce__ or __getstate__ raises
        raise BadParameter(
            f"its value ({_a(type_name(value))}) cannot be stored: pickling failed: "
            f"{type(exc).__name__}: {exc}; pass a value that pickle or dill can store (a list "
            "rather than a generator or an iterator, a path rather than an open file)"
        ) from None


def _canonical_picklers() -> tuple[type[Any], type[Any]]:
    """Picklers (plain, then dill's) that write sets and dicts sorted, so that equal values give
    equal bytes whatever the hash seed or the order items were inserted in. They subclass the
    pure-Python pickler, whose dispatch table can be changed."""
    import pickle

    import dill

    def save_set(self: Any, obj: Any) -> None:
        self.save_reduce(type(obj), (sorted(obj, key=canonical_pickle),), obj=obj)

    def batch_setitems(self: Any, items: Any, *rest: Any) -> None:
        ordered = sorted(items, key=lambda item: canonical_pickle(item[0]))
        pickle._Pickler._batch_setitems(self, iter(ordered), *rest)  # type: ignore[attr-defined]

    def main_needs_dill(self: Any, obj: Any) -> Any:
        if getattr(obj, "__module__", None) == "__main__" and callable(obj):
            raise NeedsDill
        return NotImplemented

    def make(base: type[Any], **methods: Any) -> type[Any]:
        dispatch = base.dispatch.copy()
        dispatch[set] = dispatch[frozenset] = save_set
        return type("Canonical", (base,), {"dispatch": dispatch, **methods})

    return (
        make(pickle._Pickler, _batch_setitems=batch_setitems, reducer_override=main_needs_dill),
        make(dill.Pickler, _batch_setitems=batch_setitems),
    )


_PICKLERS: list[tuple[type[Any], type[Any]]] = []


def canonical_pickle(value: Any) -> bytes:
    """The bytes a value's fingerprint is taken from when JSON cannot hold it."""
    import io

    if not _PICKLERS:
        _PICKLERS.append(_canonical_picklers())
    plain, with_dill = _PICKLERS[0]
    buffer = io.BytesIO()
    try:
        plain(buffer, protocol=4).dump(value)
    except Exception:  # what plain pickle cannot hold (or only by reference to __main__)
        buffer = io.BytesIO()
        with_dill(buffer, protocol=4, recurse=True).dump(value)
    return buffer.getvalue()


def decode(canonical: Any) -> Any:
    """Turn canonical JSON back into the value; ``py/type`` objects need their dill file instead.

    >>> decode({"py/set": [1, 2]})
    {1, 2}
    """
    if isinstance(canonical, list):
        return [decode(v) for v in canonical]
    if not isinstance(canonical, dict):
        return canonical
    if len(canonical) == 1:
        ((tag, inner),) = canonical.items()
        if tag == "py/tuple":
            return tuple(decode(v) for v in inner)
        if tag == "py/set":
            return {decode(v) for v in inner}
        if tag == "py/frozenset":
            return frozenset(decode(v) for v in inner)
        if tag == "py/dict":
            return {decode(k): decode(v) for k, v in inner}
        if tag == "py/float":
            return float(inner)
    if "py/type" in canonical:
        raise ValueError(f"{canonical['py/type']} values are loaded from their dill file")
    return {k: decode(v) for k, v in canonical.items()}


def tagged(value: Any) -> bool:
    """Whether a result (``main``, ``metrics``) may hold a tag (only containers can) that
    :func:`decode` turns into a value: most hold plain numbers."""
    if type(value) is dict:
        return "py/float" in value or any(type(v) in (dict, list) for v in value.values())
    return type(value) is list


def undecodable(value: Any) -> str | None:
    """Why :func:`decode` cannot make a value of recorded JSON (a tag mitosis never writes,
    such as ``{"py/set": [[1]]}``), or None."""
    try:
        decode(value)
    except (TypeError, ValueError, AttributeError, RecursionError) as exc:
        return f"holds a tag mitosis never writes ({type(exc).__name__}: {exc})"
    return None


def loads_dill(data: bytes) -> Any:
    """Unpickle with dill. This runs code from the data: only for what the user asked to load."""
    import dill

    return dill.loads(data)


def load_dill(file: IO[bytes]) -> Any:
    """Unpickle with dill from a file, read as it goes (a result of gigabytes is never held
    twice). This runs code from the data: only for what the user asked to load."""
    import dill

    return dill.load(file)
