"""The trial record the benchmarks write for the synthetic stores they build: a valid
``trial.json`` of the store format (every field that mitosis checks), to be given an id, times
and a main value."""

from __future__ import annotations

from typing import Any

RECORD: dict[str, Any] = {
    "format": 1,
    "experiment": "sine",
    "status": "ok",
    "main": 0.5,
    "metrics": {"err": 0.25, "n": 3},
    "untracked": {},
    "host": "bench",
    "user": "bench",
    "function": "bench:sine",
    "error": None,
    "mitosis": "0.1.0",
    "duration": 0.05,
    "files": ["environment.json", "output.log", "requirements.txt", "results/sine.dill"],
    "code": {
        "repository": "/lab",
        "commit": "ab" * 20,
        "branch": "main",
        "remotes": {},
        "dirty": False,
    },
}


def record(trial_id: str, i: int, **fields: Any) -> dict[str, Any]:
    """The ``i``-th synthetic trial's record, named ``trial_id``, with ``fields`` over it."""
    when = f"2026-01-01T00:00:{i:06d}+00:00"
    return {**RECORD, "id": trial_id, "started": when, "ended": when, **fields}
