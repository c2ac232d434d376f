"""The store format's names, in one place: branches, folders and files of a store, and how the
parameters and metrics of a chain's steps are named in records (``step.param``). The format
itself is specified in ``docs/store-format.md``.

Every module that reads or writes a store builds its paths here; nothing here does I/O.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = [
    "BRANCH_PREFIX",
    "ENVIRONMENT",
    "FORMAT",
    "FORMAT_INLINE",
    "OUTPUT",
    "POINTER",
    "REQUIREMENTS",
    "RESULTS_PREFIX",
    "RESULTS_THRESHOLD",
    "TRIAL",
    "alias_path",
    "branch",
    "figure_name",
    "is_result",
    "param_name",
    "pointer_name",
    "qualified",
    "result_name",
    "results_id",
    "results_ref",
    "split_qualified",
    "tracking_branch",
    "trial_dir",
    "variant_path",
]

#: The newest store format this mitosis reads and writes (see docs/store-format.md). A trial
#: is written in format 2 only when its folder holds pointers (results kept off the branch);
#: any other trial is a format 1 trial, which older readers read as they always did.
FORMAT = 2
#: The format of a trial whose files are all on its branch.
FORMAT_INLINE = 1

#: A result bigger than this many bytes is kept off the trial branches (by default).
RESULTS_THRESHOLD = 1 << 20
#: Where a trial's results kept off the branches are reachable from: one ref per trial.
RESULTS_PREFIX = b"refs/mitosis-results/"
#: A file kept off the branch leaves a pointer of this name (plus the suffix) in the folder.
POINTER = ".pointer"

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


def is_result(name: str) -> bool:
    """Whether a file of a trial's folder is a step's result (what may be kept off the branch)."""
    return name.startswith(RESULTS) and not name.endswith(POINTER)


def pointer_name(name: str) -> str:
    """The pointer left in a trial's folder for a file kept off the branch."""
    return name + POINTER


def results_ref(trial_id: str) -> bytes:
    """``refs/mitosis-results/<id>``: what keeps a trial's big results in the store, outside
    ``refs/heads/`` so that clones and fetches of the branches leave them behind."""
    return RESULTS_PREFIX + trial_id.encode()


_TRIAL_ID = re.compile(rb"[0-9a-f]{4,64}")


def results_id(ref: bytes) -> str | None:
    """The trial id of a results ref (:func:`results_ref`); None for a ref of another name
    (a ref from elsewhere may be named anything)."""
    if ref.startswith(RESULTS_PREFIX) and _TRIAL_ID.fullmatch(ref, len(RESULTS_PREFIX)):
        return ref[len(RESULTS_PREFIX) :].decode()
    return None


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
