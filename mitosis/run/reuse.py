"""Reuse of identical first steps: an earlier trial's stored result instead of recomputing it.

A prefix of steps is identical when each step has the same function (``module:qualname`` and a
hash of its compiled code; closures and wrapped functions have none and are never reused) and
the same tracked parameter values (by fingerprint), and both trials ran at the same code commit
with no uncommitted changes. The last step always runs.
"""

from __future__ import annotations

from collections.abc import Collection

import attrs

from ..exceptions import StoreError
from ..model.layout import result_name, split_qualified
from ..model.records import CodeState, InStore, StepRecord, Trial
from ..store.provenance import HERE, sources
from ..store.repo import Store, warn
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
    store: Store,
    chain: Chain,
    resolved: list[Resolved],
    code: CodeState | None,
    trusted: Collection[str] = (),
) -> Reuse | None:
    """The longest identical prefix of ``chain`` that a successful trial in the store ran (the
    newest such trial, of any experiment with the same first steps), or None. Never across a
    dirty or different code state, and only from a trial whose provenance is accepted:
    recorded in this store, or pulled from one of the ``trusted`` remotes (its results are
    unpickled in the trial process). A matching trial from elsewhere is declined, and that is
    said."""
    if chain.single:
        return None
    if code is None or code.dirty or code.commit is None:
        _not_clean(chain, code)
        return None
    wanted = [
        (
            step.function,
            step.code,
            {r.arg: r.encoded.fingerprint for r in resolved if r.step == i and r.tracked},
        )
        for i, step in enumerate(chain.steps[:-1])
    ]
    accepted = {HERE, *(f"pull {remote}" for remote in trusted)}
    best: tuple[int, str, Trial] | None = None
    declined: list[tuple[Trial, str]] = []
    for experiment in store.experiments():
        provenance = sources(store, experiment)
        for trial in read_trials(store, experiment):
            count = _matches(trial, wanted, code)
            if count == 0:
                continue
            came = provenance.get(trial.id, "")
            if came not in accepted:
                declined.append((trial, came))
                continue
            if best is None or (count, trial.started) > best[:2]:
                best = (count, trial.started, trial)
    if best is None:
        if declined:
            _decline(declined, chain.name, trusted)
        return None
    return _reuse(store, chain, best[2], best[0])


def _matches(
    trial: Trial, wanted: list[tuple[str, str | None, dict[str, str]]], code: CodeState
) -> int:
    """How many first steps ``trial`` ran as ``wanted`` at the clean commit of ``code``."""
    if trial.status != "ok" or trial.code is None or trial.code.dirty:
        return 0
    if trial.code.commit != code.commit:
        return 0
    return _matching_prefix(trial, wanted)


_said: set[str] = set()  # each reason once per process, not once per trial of a sweep


def _not_clean(chain: Chain, code: CodeState | None) -> None:
    if code is None:
        why = "the code is in no git repository"
    elif code.commit is None:
        why = "the git repository has no commit yet"
    else:
        why = "the code has uncommitted changes or untracked files (see git status)"
    first = ", ".join(step.name for step in chain.steps[:-1])
    message = (
        f"mitosis: not reusing the first steps ({first}) of {chain.name}: {why}, and reuse "
        "needs a clean commit; commit the changes (or ignore the files in .gitignore) and run "
        "again"
    )
    if message not in _said:
        _said.add(message)
        warn("%s", message)


def _decline(declined: list[tuple[Trial, str]], experiment: str, trusted: Collection[str]) -> None:
    shown = [
        f"{trial.id} of {trial.experiment} "
        f"({came.replace('pull ', 'from ', 1) if came else 'from no place this store saw'})"
        for trial, came in declined[:5]
    ]
    more = f" and {len(declined) - 5} more" if len(declined) > 5 else ""
    warn(
        "mitosis: not reusing for %s the matching trials %s%s: reuse unpickles only trials "
        "recorded in this store or pulled from the remotes named by trusted_remotes of "
        "[tool.mitosis] (now: %s); its first steps run again",
        experiment,
        ", ".join(shown),
        more,
        ", ".join(trusted) or "none",
    )


def _reuse(store: Store, chain: Chain, source: Trial, count: int) -> Reuse | None:
    """The first ``count`` steps of ``source``, for ``chain`` (a result kept off the branch is
    referenced by its blob, not copied)."""
    steps: list[StepRecord] = []
    results: dict[str, bytes | InStore] = {}
    for index in range(count):
        old = source.steps[index]
        data = _stored_result(store, source, result_name(old.name))
        if data is None:
            break
        results[chain.steps[index].name] = data
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
