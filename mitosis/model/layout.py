"""The store format's names, in one place: branches, folders and files of a store, and how the
parameters and metrics of a chain's steps are named in records (``step.param``). The format
itself is specified in ``docs/store-format.md``.

Every module that reads or writes a store builds its paths here; nothing here does I/O.
"""

from __future__ import annotations

from urllib.parse import quote

__all__ = [
    "BRANCH_PREFIX",
    "ENVIRONMENT",
    "FORMAT",
    "OUTPUT",
    "REQUIREMENTS",
    "TRIAL",
    "alias_path",
    "branch",
    "figure_name",
    "param_name",
    "qualified",
    "result_name",
    "split_qualified",
    "tracking_branch",
    "trial_dir",
    "variant_path",
]

#: Version of the store format written by this mitosis (see docs/store-format.md).
FORMAT = 1

#: Every experiment's branch is this prefix and its name: ``refs/heads/mitosis/<experiment>``.
BRANCH_PREFIX = b"refs/heads/mitosis/"

# The files of a trial's folder (besides results, figures and pickled parameters, below).
TRIAL = "trial.json"
ENVIRONMENT = "environment.json"
REQUIREMENTS = "requirements.txt"
OUTPUT = "output.log"
CODE_DIFF = "code.diff"

# Folders of an experiment branch's tree.
TRIALS = "trials"
VARIANTS = "variants"
RESULTS = "results/"
FIGURES = "figures/"


def branch(experiment: str) -> bytes:
    """``refs/heads/mitosis/<experiment>`` (the name is not checked here: see the store)."""
    return BRANCH_PREFIX + experiment.encode()


def tracking_branch(remote: str, experiment: str) -> bytes:
    """Where a remote's branch of an experiment is kept after a fetch."""
    return f"refs/remotes/{remote}/mitosis/{experiment}".encode()


def trial_dir(trial_id: str) -> str:
    """``trials/<id[:2]>/<id>``: sharded so that a commit rewrites a few small trees."""
    return f"{TRIALS}/{trial_id[:2]}/{trial_id}"


def result_name(step: str) -> str:
    """A step's returned value, pickled, inside its trial's folder."""
    return f"{RESULTS}{step}.dill"


def figure_name(step: str, number: int) -> str:
    """A step's figure (PNG) inside its trial's folder."""
    return f"{FIGURES}{step}-{number}.png"


def param_name(name: str) -> str:
    """A parameter value that JSON cannot hold exactly, pickled, inside its trial's folder."""
    return f"params/{name}.dill"


def variant_path(param: str, variant: str) -> str:
    """``variants/<param>/<variant>`` without extension (``.json`` for the lock, ``.dill`` for
    its pickle); the variant's name is %-escaped to be a file name."""
    return f"{VARIANTS}/{param}/{quote(variant, safe=' -_.,=+@()')}"


def alias_path(variant_base: str, fingerprint: str) -> str:
    """Where a renamed variant's old name points to its new one, for one value."""
    return f"{variant_base}.renamed/{fingerprint.removeprefix('sha256:')[:16]}.json"


def qualified(step: str | None, name: str) -> str:
    """How a step's parameter or metric is named in a chain's records: ``step.name`` (a single
    function's, ``step`` None, go by their own names)."""
    return name if step is None else f"{step}.{name}"


def split_qualified(name: str) -> tuple[str | None, str]:
    """``step.name`` -> ``(step, name)``; a name without a dot -> ``(None, name)``. Step names
    hold no ``.``, so the first one splits."""
    step, dot, rest = name.partition(".")
    return (step, rest) if dot else (None, name)
