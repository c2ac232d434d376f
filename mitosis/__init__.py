"""mitosis: reproducible, describable, reusable and composable experiments, shared through git.

>>> import mitosis
>>> trial = mitosis.run(my_experiment, {"noise": "low"})  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .exceptions import (
    AmbiguousTrialId,
    BadParameter,
    BadQuery,
    BadRecord,
    ConfigError,
    EnvironmentDiffers,
    MitosisError,
    PlotError,
    RerunError,
    SiteError,
    StoreError,
    SyncConflict,
    SyncError,
    SyncRefused,
    TrialFailed,
    UnknownExperiment,
    UnknownField,
    UnknownTrial,
    UnknownVariant,
    VariantConflict,
    VariantRenamed,
)
from .run.trial import run  # binds `mitosis.run` to the function, after the package `mitosis.run`

if TYPE_CHECKING:
    from .model.query import Row
    from .model.records import CodeState, FileInfo, Param, Trial, Variant
    from .run.experiment import experiment
    from .run.export import export
    from .run.legacy import Imported, import_06, load_trial_data
    from .run.params import literal
    from .run.rerun import Agreement, Rerun, rerun
    from .run.sweep import sweep
    from .site.build import Site, browse
    from .site.plot import plot
    from .store.gc import Packed, gc
    from .store.merge import Conflict, conflicts
    from .store.sync import SyncReport, bundle, pull, push
    from .store.trials import Trials, load, trials
    from .store.variants import rename_variant, variants

# Imported on first use, so that `import mitosis` (and every trial's caller) stays quick.
_LATER = {
    "Row": "model.query",
    "CodeState": "model.records",
    "FileInfo": "model.records",
    "Param": "model.records",
    "Trial": "model.records",
    "Variant": "model.records",
    "experiment": "run.experiment",
    "literal": "run.params",
    "load": "store.trials",
    "trials": "store.trials",
    "Trials": "store.trials",
    "rename_variant": "store.variants",
    "variants": "store.variants",
    "Site": "site.build",
    "browse": "site.build",
    "plot": "site.plot",
    "export": "run.export",
    "load_trial_data": "run.legacy",
    "Imported": "run.legacy",
    "import_06": "run.legacy",
    "Agreement": "run.rerun",
    "Rerun": "run.rerun",
    "rerun": "run.rerun",
    "sweep": "run.sweep",
    "Conflict": "store.merge",
    "conflicts": "store.merge",
    "Packed": "store.gc",
    "gc": "store.gc",
    "SyncReport": "store.sync",
    "bundle": "store.sync",
    "pull": "store.sync",
    "push": "store.sync",
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
    "BadRecord",
    "CodeState",
    "ConfigError",
    "Conflict",
    "EnvironmentDiffers",
    "FileInfo",
    "Imported",
    "MitosisError",
    "Packed",
    "Param",
    "PlotError",
    "Rerun",
    "RerunError",
    "Row",
    "Site",
    "SiteError",
    "StoreError",
    "SyncConflict",
    "SyncError",
    "SyncRefused",
    "SyncReport",
    "Trial",
    "TrialFailed",
    "Trials",
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
    "import_06",
    "literal",
    "load",
    "load_trial_data",
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
