"""The type names the earlier mitosis (0.6) published, so experiments written for it import
unchanged: ``from mitosis._typing import ExpResults``.

Standard library only, so that an experiment importing it costs its trial nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypedDict

__all__ = ["ExpResults", "ExpRun", "P"]


class _Main(TypedDict):
    main: object


class ExpResults(_Main, total=False):
    """What a step returns: ``main`` (the headline result), and optionally ``metrics`` (named
    results), ``data`` (handed to the next step) and ``figures``. Other keys are kept with the
    step's results (see the store format's step ``extra``)."""

    metrics: Mapping[str, Any]
    data: Any
    figures: Any


P = ParamSpec("P")
#: An experiment step: any callable returning :class:`ExpResults`.
ExpRun = Callable[P, ExpResults]
