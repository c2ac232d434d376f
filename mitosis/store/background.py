"""The packer's claim, and packing in the background.

One packer at a time works on a store: it holds the claim ``<git dir>/mitosis/gc.lock`` (created
with O_EXCL), which :func:`release` removes when done; a claim older than an hour was left by a
packer that died. A store's writer calls :func:`start` once the store has many loose objects,
which claims the store and starts ``python -m mitosis.store.pack GIT_DIR``, detached, so that no
trial waits for the packing.

Nothing here opens the store: :mod:`mitosis.store.repo` starts packers, and the packer
(:mod:`mitosis.store.pack`) opens the store itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["claim", "release", "start"]

_STALE = 3600.0


def _claim_file(git_dir: str) -> Path:
    return Path(git_dir, "mitosis", "gc.lock")


def claim(git_dir: str) -> bool:
    """Claim the store for a packer; False if a live packer holds the claim."""
    path = _claim_file(git_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if time.time() - path.stat().st_mtime >= _STALE:
            path.unlink()
    except OSError:
        pass  # no claim: the usual case
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except OSError:
        return False
    return True


def release(git_dir: str) -> None:
    """Give the packer's claim back."""
    _claim_file(git_dir).unlink(missing_ok=True)


def start(git_dir: str) -> None:
    """Start a detached packer for the store at ``git_dir``, unless one is at work."""
    if not claim(git_dir):
        return
    try:
        subprocess.Popen(
            [sys.executable, "-m", "mitosis.store.pack", git_dir],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        release(git_dir)
