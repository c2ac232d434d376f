"""Packing a store in the background: ``python -m mitosis._gc GIT_DIR``.

A store's writer starts this, detached, once the store has many loose objects, so that no trial
waits for the packing. One packer at a time: the writer takes ``<git dir>/mitosis/gc.lock``
(O_EXCL) before it starts the packer, which removes it when done; a lock older than an hour was
left by a packer that died.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main", "release", "start", "take"]

_STALE = 3600.0


def _lock(git_dir: str) -> Path:
    return Path(git_dir, "mitosis", "gc.lock")


def take(git_dir: str) -> bool:
    """Take the packer's lock; False if a live packer holds it."""
    lock = _lock(git_dir)
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        if time.time() - lock.stat().st_mtime >= _STALE:
            lock.unlink()
    except OSError:
        pass  # no lock: the usual case
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except OSError:
        return False
    return True


def release(git_dir: str) -> None:
    _lock(git_dir).unlink(missing_ok=True)


def start(git_dir: str) -> None:
    """Start a detached packer for the store at ``git_dir``, unless one is at work."""
    if not take(git_dir):
        return
    try:
        subprocess.Popen(
            [sys.executable, "-m", "mitosis._gc", git_dir],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        release(git_dir)


def main(git_dir: str) -> int:
    """Pack the loose objects; the lock was taken by :func:`start`."""
    from dulwich.repo import Repo

    from ._pack import pack_loose
    from ._store import Store

    try:
        with Store(Repo(git_dir)) as store:
            pack_loose(store)
    finally:
        release(git_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
