"""mitosis: reproducible, describable, reusable and composable experiments, shared through git.

>>> import mitosis
>>> trial = mitosis.run(my_experiment, {"noise": "low"})  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._model import CodeState, Param, Trial
from ._params import experiment
from ._recorder import Variant, load, rename_variant, trials, variants
from ._runner import run
from .exceptions import (
    AmbiguousTrialId,
    BadParameter,
    BadQuery,
    ConfigError,
    EnvironmentDiffers,
    MitosisError,
    PlotError,
    RerunError,
    SiteError,
    StoreError,
    SyncConflict,
    SyncError,
    TrialFailed,
    UnknownExperiment,
    UnknownField,
    UnknownTrial,
    UnknownVariant,
    VariantConflict,
    VariantRenamed,
)

if TYPE_CHECKING:
    from ._browse import Site, browse
    from ._export import export
    from ._plot import plot
    from ._rerun import Agreement, Rerun, rerun
    from ._sweep import sweep
    from ._sync import Conflict, Packed, SyncReport, bundle, conflicts, gc, pull, push

__version__ = "0.1.0"

# Imported on first use, so that `import mitosis` (and every trial's caller) stays quick.
_LATER = {
    "Site": "_browse",
    "browse": "_browse",
    "export": "_export",
    "plot": "_plot",
    "Agreement": "_rerun",
    "Rerun": "_rerun",
    "rerun": "_rerun",
    "sweep": "_sweep",
    "Conflict": "_sync",
    "Packed": "_sync",
    "SyncReport": "_sync",
    "bundle": "_sync",
    "conflicts": "_sync",
    "gc": "_sync",
    "pull": "_sync",
    "push": "_sync",
}


def __getattr__(name: str) -> Any:
    if name not in _LATER:
        raise AttributeError(f"module 'mitosis' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LATER[name]}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Agreement",
    "AmbiguousTrialId",
    "BadParameter",
    "BadQuery",
    "CodeState",
    "ConfigError",
    "Conflict",
    "EnvironmentDiffers",
    "MitosisError",
    "Packed",
    "Param",
    "PlotError",
    "Rerun",
    "RerunError",
    "Site",
    "SiteError",
    "StoreError",
    "SyncConflict",
    "SyncError",
    "SyncReport",
    "Trial",
    "TrialFailed",
    "UnknownExperiment",
    "UnknownField",
    "UnknownTrial",
    "UnknownVariant",
    "Variant",
    "VariantConflict",
    "VariantRenamed",
    "__version__",
    "browse",
    "bundle",
    "conflicts",
    "experiment",
    "export",
    "gc",
    "load",
    "plot",
    "pull",
    "push",
    "rename_variant",
    "rerun",
    "run",
    "sweep",
    "trials",
    "variants",
]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
