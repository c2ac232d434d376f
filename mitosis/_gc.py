"""Packing a store in the background: ``python -m mitosis._gc GIT_DIR``.

A store's writer starts this, detached, once the store has many loose objects, so that no trial
waits for the packing. One packer at a time: ``<git dir>/mitosis/gc.lock`` is taken with
O_EXCL, and a lock older than an hour is taken to be left by a packer that died.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main", "start"]

_STALE = 3600.0


def _lock_path(git_dir: str) -> Path:
    return Path(git_dir, "mitosis", "gc.lock")


def start(git_dir: str) -> None:
    """Start a detached packer for the store at ``git_dir``, unless one is running."""
    lock = _lock_path(git_dir)
    if lock.exists() and time.time() - lock.stat().st_mtime < _STALE:
        return
    subprocess.Popen(
        [sys.executable, "-m", "mitosis._gc", git_dir],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main(git_dir: str) -> int:
    from dulwich.repo import Repo

    from ._store import Store, pack_loose

    lock = _lock_path(git_dir)
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        if lock.exists() and time.time() - lock.stat().st_mtime >= _STALE:
            lock.unlink()
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except OSError:
        return 0  # another packer is at work
    try:
        os.write(fd, str(os.getpid()).encode())
        with Store(Repo(git_dir)) as store:
            pack_loose(store)
    finally:
        os.close(fd)
        lock.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
