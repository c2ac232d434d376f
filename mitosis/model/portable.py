"""What the trial process shares with the rest of mitosis: pickling, and JSON-ready values.

Standard library only (dill is imported when plain pickle cannot hold a value): the trial process
loads this one file by its path, without the mitosis package (see :mod:`mitosis.run.worker`).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the trial's start
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["NeedsDill", "dump", "dumps", "plain", "write_file"]


class NeedsDill(Exception):
    """Raised by a pickler for what only dill can hold (or only by reference to ``__main__``)."""


class _Pickler(pickle.Pickler):
    """A plain pickler that refuses what only exists in ``__main__`` (the other process has
    another ``__main__``), so that such objects travel by value with dill instead."""

    def reducer_override(self, obj: Any) -> Any:
        if getattr(obj, "__module__", None) == "__main__" and (
            isinstance(obj, type) or callable(obj)
        ):
            raise NeedsDill
        return NotImplemented


def dumps(obj: Any) -> bytes:
    """Pickle ``obj``: plain pickle where it is enough (loads without dill), else dill."""
    import io

    buffer = io.BytesIO()
    try:
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        return buffer.getvalue()
    except (NeedsDill, pickle.PicklingError, AttributeError, TypeError):
        import dill

        return bytes(dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL, recurse=True))


def dump(obj: Any, path: str) -> None:
    """Pickle ``obj`` straight into the file ``path`` (as :func:`dumps` would: plain pickle
    where it is enough, else dill), never holding the pickle in memory. The file appears under
    its name only once complete (it is written as ``path.tmp``, then renamed), so a process
    killed while pickling leaves no result that looks whole."""
    import os

    partial = path + ".tmp"
    with open(partial, "wb") as file:
        try:
            _Pickler(file, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        except (NeedsDill, pickle.PicklingError, AttributeError, TypeError):
            import dill

            file.seek(0)
            file.truncate()
            dill.dump(obj, file, protocol=pickle.HIGHEST_PROTOCOL, recurse=True)
    os.replace(partial, path)


def plain(value: Any, nonfinite: Callable[[float], Any] | None = None) -> Any:
    """The one JSON-ready copy of a value: numpy scalars become numbers, tuples lists, keys
    strings, NaN and infinities the tag ``{"py/float": "nan"}`` (strict JSON has no such numbers;
    ``nonfinite`` may make something else of them), anything else its repr."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"py/float": repr(value)} if nonfinite is None else nonfinite(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v, nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, nonfinite) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        try:
            return plain(item(), nonfinite)
        except (TypeError, ValueError):
            pass
    return repr(value)


def write_file(path: str, data: bytes) -> None:
    """Write ``data`` to the file ``path`` (the trial process's folders are its own)."""
    with open(path, "wb") as f:
        f.write(data)
