"""The errors mitosis raises.

Every error derives from :class:`MitosisError`; where a builtin exception fits, the error also
derives from it, so ``except KeyError`` still catches an :class:`UnknownVariant`. Each message
names the thing that is wrong and how to fix it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AmbiguousTrialId",
    "BadParameter",
    "BadQuery",
    "BadRecord",
    "ConfigError",
    "EnvironmentDiffers",
    "MitosisError",
    "PlotError",
    "RerunError",
    "StoreError",
    "SyncConflict",
    "SyncError",
    "SyncRefused",
    "TrialFailed",
    "UnknownExperiment",
    "UnknownField",
    "UnknownTrial",
    "UnknownVariant",
    "VariantConflict",
    "VariantRenamed",
]


class MitosisError(Exception):
    """The root of every error mitosis raises on purpose."""

    def __str__(self) -> str:
        # KeyError quotes its message; a mitosis error is read by people, not by repr().
        return str(self.args[0]) if self.args else self.__class__.__name__


class BadParameter(MitosisError, TypeError):
    """A parameter the experiment does not accept, or a required one that is missing."""


class UnknownVariant(MitosisError, KeyError):
    """A string names no variant of a parameter that has a lookup table."""

    def __init__(self, param: str, variant: str, known: list[str]) -> None:
        self.param = param
        self.variant = variant
        self.known = known
        names = ", ".join(known) if known else "(none)"
        super().__init__(
            f"unknown variant {variant!r} for parameter {param!r}; known variants: {names}. "
            f"Add {variant!r} to the lookup dictionary of {param!r}, or pick a known name."
        )


class VariantConflict(MitosisError, ValueError):
    """A variant name is already locked in the store to a different value."""

    def __init__(
        self,
        experiment: str,
        param: str,
        variant: str,
        locked: str,
        new: str,
        locked_by: str,
    ) -> None:
        self.experiment = experiment
        self.param = param
        self.variant = variant
        self.locked = locked
        self.new = new
        self.locked_by = locked_by
        super().__init__(
            f"variant {param}={variant} of experiment {experiment!r} was locked to {locked} "
            f"by trial {locked_by}, but now means {new}. A name keeps the value it was first "
            f"used with: give the new value another name (e.g. {variant!r} -> "
            f"'{variant}_v2') in the lookup dictionary."
        )


class VariantRenamed(MitosisError, ValueError):
    """A variant name was given a new name for this value (to settle a conflict)."""

    def __init__(self, experiment: str, param: str, variant: str, renamed_to: str | None) -> None:
        self.experiment = experiment
        self.param = param
        self.variant = variant
        self.renamed_to = renamed_to
        super().__init__(
            f"variant {param}={variant} of experiment {experiment!r} with this value was renamed "
            f"to {renamed_to!r} (the name {variant!r} may now mean another value); use "
            f"{renamed_to!r} in the lookup dictionary"
        )


class TrialFailed(MitosisError, RuntimeError):
    """The experiment raised, was killed or was interrupted; the trial is recorded all the same."""

    def __init__(self, trial_id: str | None, status: str, error: str) -> None:
        self.trial_id = trial_id
        self.status = status
        self.error = error
        where = f"trial {trial_id}" if trial_id else "the trial (debug, not recorded)"
        hint = f" See it with mitosis.load({trial_id!r})." if trial_id else ""
        last = error.strip().splitlines()[-1] if error.strip() else status
        super().__init__(f"{where} {status}: {last}.{hint}")


class ConfigError(MitosisError, ValueError):
    """``[tool.mitosis]`` in pyproject.toml is malformed, or names what cannot be imported."""


class StoreError(MitosisError, OSError):
    """The store cannot be opened, read or written."""


class BadRecord(StoreError, ValueError):
    """A record or tree read from the store fails validation (a field of the wrong type, a path
    that leaves its folder, an id that is not its folder's name): written by hand, damaged, or
    forged on a branch from elsewhere. Listings skip such records and say so."""


class SyncError(MitosisError, RuntimeError):
    """A push or a pull could not be done (unreachable remote, rejected push, ...)."""


class SyncConflict(SyncError):
    """A pull found variant names locked to different values on the two sides.

    Attributes:
        conflicts: each conflicting variant, with both values and the trials that used them.
        report: what the pull did for the other experiments.
    """

    def __init__(self, conflicts: list[Any], report: Any) -> None:
        self.conflicts = conflicts
        self.report = report
        listed = "; ".join(str(c) for c in conflicts)
        super().__init__(
            f"{len(conflicts)} variant conflict(s), so those experiments were not merged (the "
            f"fetched trials wait in refs/remotes/): {listed}. A name keeps one value: give the "
            "other value a new name on one side (`mitosis variants EXPERIMENT PARAM --rename "
            "OLD NEW`), then pull again"
        )


class SyncRefused(SyncError):
    """What a remote or a bundle brought would rewrite this store's history (delete or change
    a trial or a variant lock), or is malformed: the experiment's branch was left as it was.

    Attributes:
        experiment: the experiment whose branch did not move.
        source: the remote or bundle, as shown.
        problems: what it would have done, one line each.
        report: the whole pull's report, once the other experiments are pulled (or None).
    """

    def __init__(
        self, experiment: str, source: str, problems: list[str], report: Any = None
    ) -> None:
        self.experiment = experiment
        self.source = source
        self.problems = problems
        self.report = report
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        super().__init__(
            f"refused the history of {experiment} from {source}: it {shown}. A store only adds "
            f"trials and locks; nothing changed here (what was fetched waits in "
            f"refs/remotes/ when it is well formed; compare it with git log). Ask whoever wrote "
            f"it, and pull from a store that did not rewrite history"
        )


class UnknownExperiment(MitosisError, LookupError):
    """The store has no branch for the named experiment."""

    def __init__(self, experiment: str, known: list[str], store: str) -> None:
        self.experiment = experiment
        self.known = known
        names = ", ".join(known) if known else "none yet"
        super().__init__(
            f"no experiment {experiment!r} in the store {store} (experiments there: {names}); "
            "check the name, or the store"
        )


class UnknownTrial(MitosisError, LookupError):
    """No trial in the store has an id starting with the given prefix."""


class AmbiguousTrialId(MitosisError, LookupError):
    """Several trials have ids starting with the given prefix."""


class RerunError(MitosisError, RuntimeError):
    """A trial cannot be rerun or exported: its code cannot be rebuilt or imported."""


class EnvironmentDiffers(RerunError):
    """A strict rerun refused to run: the environment differs from the recorded one."""

    def __init__(self, trial_id: str, differences: list[str]) -> None:
        self.trial_id = trial_id
        self.differences = differences
        shown = "; ".join(differences[:10]) + ("; ..." if len(differences) > 10 else "")
        super().__init__(
            f"not rerunning trial {trial_id}: {len(differences)} difference(s) from the recorded "
            f"environment ({shown}). Install the recorded packages (requirements.txt of the "
            "trial, or `mitosis export`), or rerun without --strict."
        )


class UnknownField(MitosisError, KeyError):
    """No trial has the parameter or metric named (in a filter, a sort or a plot)."""


class BadQuery(MitosisError, ValueError):
    """A ``where`` filter that is not ``NAME OP VALUE`` clauses joined with ``and``."""


class PlotError(MitosisError, ValueError):
    """A plot that cannot be drawn or saved (nothing to plot, an unknown file type)."""


class SiteError(MitosisError, OSError):
    """The browser's site cannot be written or served (a folder in the way, a port in use)."""
