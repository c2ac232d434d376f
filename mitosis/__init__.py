"""mitosis: reproducible, describable, reusable and composable experiments, shared through git.

>>> import mitosis
>>> trial = mitosis.run(my_experiment, {"noise": "low"})  # doctest: +SKIP
"""

from __future__ import annotations

from ._browse import Site, browse
from ._export import export
from ._model import CodeState, Param, Trial
from ._params import experiment
from ._plot import plot
from ._recorder import Variant, load, rename_variant, trials, variants
from ._rerun import Agreement, Rerun, rerun
from ._runner import run
from ._sweep import sweep
from ._sync import Conflict, Packed, SyncReport, bundle, conflicts, gc, pull, push
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

__version__ = "0.1.0"

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
