"""The typed statuses, and the small records that travel before a trial is recorded: named
tuples, not attrs classes, so that starting a trial's process imports little (see
:mod:`mitosis.run.trial`). :mod:`mitosis.model.records` re-exports them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from .values import Encoded

__all__ = [
    "FileData",
    "InStore",
    "OnDisk",
    "Status",
    "StepStatus",
    "ValueSource",
    "VariantLock",
]

#: How a trial ended: it returned (``ok``), raised or returned a wrong shape (``failed``), was
#: stopped by SIGINT or Ctrl-C (``interrupted``), or by another signal (``killed``).
Status = Literal["ok", "failed", "killed", "interrupted"]
#: A step's status: a trial's, or ``not run`` for the steps after one that did not succeed.
StepStatus = Literal["ok", "failed", "killed", "interrupted", "not run"]
#: Where a parameter's value came from: a variant name of a lookup dictionary, a literal value
#: given by the caller, or the function's default.
ValueSource = Literal["variant", "literal", "default"]


class OnDisk(NamedTuple):
    """A file's bytes waiting in a file of this machine (the trial process wrote them), to be
    streamed into the store without being read whole.

    Attributes:
        path: the file.
        size: its size in bytes.
    """

    path: str
    size: int


class InStore(NamedTuple):
    """A file's bytes already kept in a store, as a blob (a reused step's result).

    Attributes:
        store: the store's path.
        blob: the blob's id (40 hex digits).
        size: its size in bytes.
    """

    store: str
    blob: str
    size: int


#: A file of a trial on its way to the store: its bytes, or where they wait.
FileData = bytes | OnDisk | InStore


class VariantLock(NamedTuple):
    """A variant name meant for a value: what a lock file on an experiment's branch holds.

    Attributes:
        param: the parameter (``step.param`` in a chain).
        variant: the variant's name.
        encoded: the value, encoded (see :mod:`mitosis.model.values`).
    """

    param: str
    variant: str
    encoded: Encoded
