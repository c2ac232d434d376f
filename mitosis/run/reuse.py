"""Reuse of identical first steps: an earlier trial's stored result instead of recomputing it.

A prefix of steps is identical when each step has the same function (``module:qualname`` and a
hash of its compiled code; closures and wrapped functions have none and are never reused) and
the same tracked parameter values (by fingerprint), and both trials ran at the same code commit
with no uncommitted changes. The last step always runs.
"""

from __future__ import annotations

import attrs

from ..exceptions import StoreError
from ..model.layout import result_name, split_qualified
from ..model.records import CodeState, InStore, StepRecord, Trial
from ..store.repo import Store
from ..store.results import pointer_of
from ..store.trials import read_trials
from .experiment import Chain
from .params import Resolved

__all__ = ["Reuse", "find_reusable"]


@attrs.frozen
class Reuse:
    """The first ``count`` steps, taken from earlier trials.

    Attributes:
        count: how many steps are reused.
        steps: their records, with ``reused_from`` naming the trial that computed each.
        results: step name (in the new chain) to its stored, pickled result: its bytes, or,
            for a result kept off the branch, its blob in the store (the new trial points at
            the same blob: it is never copied).
    """

    count: int
    steps: list[StepRecord]
    results: dict[str, bytes | InStore]


def _fingerprints(trial: Trial, index: int) -> dict[str, str]:
    """The tracked parameters of one step of ``trial``, by the function's own names."""
    if len(trial.steps) == 1:
        return {name: p.fingerprint for name, p in trial.params.items()}
    step = trial.steps[index].name
    named = {split_qualified(name): p.fingerprint for name, p in trial.params.items()}
    return {arg: fingerprint for (of, arg), fingerprint in named.items() if of == step}


def _matching_prefix(trial: Trial, wanted: list[tuple[str, str | None, dict[str, str]]]) -> int:
    count = 0
    for index, (function, code, fingerprints) in enumerate(wanted):
        if index >= len(trial.steps) or code is None:  # no code hash: never reused
            break
        step = trial.steps[index]
        if step.status != "ok" or step.function != function or step.code != code:
            break
        if _fingerprints(trial, index) != fingerprints:
            break
        count += 1
    return count


def find_reusable(
    store: Store, chain: Chain, resolved: list[Resolved], code: CodeState | None
) -> Reuse | None:
    """The longest identical prefix of ``chain`` that a successful trial in ``store`` ran
    (the newest such trial), or None. Never across a dirty or different code state."""
    if chain.single or code is None or code.dirty or code.commit is None:
        return None
    wanted = [
        (
            step.function,
            step.code,
            {r.arg: r.encoded.fingerprint for r in resolved if r.step == i and r.tracked},
        )
        for i, step in enumerate(chain.steps[:-1])
    ]
    best: tuple[int, str, Trial] | None = None
    for experiment in store.experiments():
        for trial in read_trials(store, experiment):
            if trial.status != "ok" or trial.code is None or trial.code.dirty:
                continue
            if trial.code.commit != code.commit:
                continue
            count = _matching_prefix(trial, wanted)
            if count and (best is None or (count, trial.started) > best[:2]):
                best = (count, trial.started, trial)
    if best is None:
        return None
    count, _, source = best
    steps: list[StepRecord] = []
    results: dict[str, bytes | InStore] = {}
    for index in range(count):
        old = source.steps[index]
        data = _stored_result(store, source, result_name(old.name))
        if data is None:
            break
        new_name = chain.steps[index].name
        results[new_name] = data
        steps.append(attrs.evolve(old, reused_from=old.reused_from or source.id))
    return Reuse(len(steps), steps, results) if steps else None


def _stored_result(store: Store, trial: Trial, name: str) -> bytes | InStore | None:
    """A result of ``trial`` to reuse: its bytes, or its blob when it is kept off the branch
    (fetched from a remote that has it if it is not here); None when it cannot be had."""
    if name not in trial.detached:
        return store.read_file(trial.experiment, f"{trial.path}/{name}")
    pointer = pointer_of(store, trial, name)
    if pointer is None:
        return None
    if not store.has(pointer.blob):
        from ..store.sync import fetch_missing  # on first need: results not here are rare

        try:
            fetch_missing(store, trial, name, pointer)
        except StoreError:
            return None  # not reusable here: the step runs again
    return InStore(store.path, pointer.blob, pointer.size)
