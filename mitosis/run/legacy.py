"""What the earlier mitosis (0.6) offered that has no other home: its ``load_trial_data``."""

from __future__ import annotations

import os
from typing import Any

from ..model.layout import result_name
from ..store.trials import load

__all__ = ["load_trial_data"]


def load_trial_data(trial_id: str, *, store: str | os.PathLike[str] | None = None) -> list[Any]:
    """What each step of a trial returned, unpickled, in the order the steps ran: one entry per
    step that recorded a result (a step that failed, or never ran, records none), as the earlier
    mitosis's ``load_trial_data`` returned them. ``mitosis.load(trial_id).results(step)`` reads
    one step's.

    This unpickles: call it on trials from stores you trust.

    Raises:
        UnknownTrial: no trial has an id starting with ``trial_id``.
        AmbiguousTrialId: more than one has.

    Example:
        >>> first, last = mitosis.load_trial_data("3fa9c1d2")  # doctest: +SKIP
        >>> last["main"]  # doctest: +SKIP
    """
    trial = load(trial_id, store=store)
    return [trial.results(s.name) for s in trial.steps if result_name(s.name) in trial.files]
