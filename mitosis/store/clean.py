"""What writers that died leave behind, found and removed by the packer (``mitosis gc`` and the
background packer, which hold the packer's claim).

mitosis's own temporary files (``objects/tmp_mitosis_*``, ``objects/pack/tmp_mitosis_*``) and
the trial folders of its spool (``<git dir>/mitosis/spool/trial-*``) are held under ``flock`` by
their writer while in use (made under another name, ``tmp_mitosis_new_*`` or ``new-*``, and
renamed once held): one that nobody holds belongs to a writer that died, and goes at once; one
still under its first name goes after a minute.
Files other programs write in the pack folder without such a lock (git's ``tmp_pack_*``,
dulwich's ``tmp*.pack``, a pack without its index) go only when nobody holds them and they
have not changed for an hour; lock files there (``*.idx.lock``) after a minute.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time

from .blobs import NEW, TEMP_PREFIX

__all__ = ["clean"]

#: Files of other programs, unchanged for this long, were left by one that died.
FOREIGN_STALE = 3600.0
#: A lock file of the pack folder (dulwich's ``*.idx.lock``) older than this was left too, and
#: so was a temporary file or folder still under its first name.
LOCK_STALE = 60.0


def _held(path: str) -> bool:
    """Whether a live writer holds ``path`` (a file or folder) under flock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # gone meanwhile, or not ours to judge
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _age(path: str) -> float:
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return 0.0


def _remove(path: str, removed: list[str]) -> None:
    try:
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    except FileNotFoundError:
        return
    removed.append(path)


def clean(git_dir: str) -> list[str]:
    """Remove what writers that died left in the store at ``git_dir``; the paths removed."""
    removed: list[str] = []
    objects = os.path.join(git_dir, "objects")
    packs = os.path.join(objects, "pack")
    spool = os.path.join(git_dir, "mitosis", "spool")
    for folder in (objects, packs):
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if not name.startswith(TEMP_PREFIX):
                    continue
                young = name.startswith(TEMP_PREFIX + NEW) and _age(path) <= LOCK_STALE
                if not young and not _held(path):
                    _remove(path, removed)
    with contextlib.suppress(FileNotFoundError):
        names = set(os.listdir(packs))
        for name in sorted(names):
            path = os.path.join(packs, name)
            if name.endswith(".lock"):
                if _age(path) > LOCK_STALE:
                    _remove(path, removed)
                continue
            foreign = name.startswith("tmp") and not name.startswith(TEMP_PREFIX)
            orphan = name.endswith(".pack") and name[: -len(".pack")] + ".idx" not in names
            if (foreign or orphan) and _age(path) > FOREIGN_STALE and not _held(path):
                _remove(path, removed)
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(spool):
            path = os.path.join(spool, name)
            young = not name.startswith("trial-") and _age(path) <= LOCK_STALE
            if os.path.isdir(path) and not young and not _held(path):
                _remove(path, removed)
    return removed
