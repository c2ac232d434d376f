"""mitosis: reproducible, describable, reusable and composable experiments, shared through git.

>>> import mitosis
>>> trial = mitosis.run(my_experiment, {"noise": "low"})  # doctest: +SKIP
"""

from __future__ import annotations

from ._model import CodeState, Param, Trial
from ._params import experiment
from ._recorder import Variant, load, rename_variant, trials, variants
from ._rerun import Agreement, Rerun, export, rerun
from ._runner import run
from ._sweep import sweep
from ._sync import Conflict, Packed, SyncReport, bundle, conflicts, gc, pull, push
from .exceptions import (
    AmbiguousTrialId,
    BadParameter,
    ConfigError,
    EnvironmentDiffers,
    MitosisError,
    RerunError,
    StoreError,
    SyncConflict,
    SyncError,
    TrialFailed,
    UnknownExperiment,
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
    "CodeState",
    "ConfigError",
    "Conflict",
    "EnvironmentDiffers",
    "MitosisError",
    "Packed",
    "Param",
    "Rerun",
    "RerunError",
    "StoreError",
    "SyncConflict",
    "SyncError",
    "SyncReport",
    "Trial",
    "TrialFailed",
    "UnknownExperiment",
    "UnknownTrial",
    "UnknownVariant",
    "Variant",
    "VariantConflict",
    "VariantRenamed",
    "__version__",
    "bundle",
    "conflicts",
    "experiment",
    "export",
    "gc",
    "load",
    "pull",
    "push",
    "rename_variant",
    "rerun",
    "run",
    "sweep",
    "trials",
    "variants",
]
