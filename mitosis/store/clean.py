"""What writers that died leave behind, found and removed by the packer (``mitosis gc`` and the
background packer, which hold the packer's claim), which says so on the logger ``mitosis``.

mitosis's own temporary files (``objects/tmp_mitosis_*``, ``objects/pack/tmp_mitosis_*``: a
streamed blob, a fetched pack, a pack being written and its index) and the trial folders of its
spool (``<git dir>/mitosis/spool/trial-*``) are held under ``flock`` by their writer while in
use (made under another name, ``tmp_mitosis_new_*`` or ``new-*``, and renamed once held): one
that nobody holds belongs to a writer that died, and goes at once; one still under its first
name goes after a minute. A pack goes into place before its index (as git does): the index
waits as ``tmp_mitosis_pack-<checksum>.idx``, named after its pack, so that when its writer died
between the two, the pack it names, in place without an index, goes with it.
Files other programs write without such a lock (git's ``tmp_pack_*`` and ``tmp_idx_*``,
dulwich's ``tmp*.pack``, a pack without its index) go only when nobody holds them and they
have not changed for an hour; lock files of the pack folder (``*.idx.lock``) after a minute.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time

from .blobs import NEW, TEMP_PREFIX
from .repo import warn

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
    """Remove what writers that died left in the store at ``git_dir``, saying so on the logger
    ``mitosis``; the paths removed."""
    removed: list[str] = []
    objects = os.path.join(git_dir, "objects")
    packs = os.path.join(objects, "pack")
    spool = os.path.join(git_dir, "mitosis", "spool")
    for folder in (objects, packs):
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(folder)):
                path = os.path.join(folder, name)
                if name.startswith(TEMP_PREFIX):
                    young = name.startswith(TEMP_PREFIX + NEW) and _age(path) <= LOCK_STALE
                    if young or _held(path):
                        continue
                    _remove(path, removed)
                    if name.startswith(TEMP_PREFIX + "pack-") and name.endswith(".idx"):
                        named = os.path.join(folder, name[len(TEMP_PREFIX) : -len(".idx")])
                        if _remove_orphan(named):
                            removed.append(named + ".pack")
                elif (  # git's, fetching
                    folder == objects
                    and name.startswith("tmp_pack_")
                    and _age(path) > FOREIGN_STALE
                    and not _held(path)
                ):
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
        for name in sorted(os.listdir(spool)):
            path = os.path.join(spool, name)
            young = not name.startswith("trial-") and _age(path) <= LOCK_STALE
            if os.path.isdir(path) and not young and not _held(path):
                _remove(path, removed)
    if removed:
        warn(
            "mitosis: removed %d file(s) that writers which stopped (packers, fetches, "
            "recordings) left in %s: %s",
            len(removed),
            git_dir,
            ", ".join(os.path.relpath(path, git_dir) for path in removed),
        )
    return removed


def _remove_orphan(base: str) -> bool:
    """Remove the pack ``base + ".pack"`` if it has no index; whether it did. It is renamed
    aside first, and put back if its index appears meanwhile (its packer was alive after all:
    it checks that its pack is still there before it deletes any loose object)."""
    pack, index = base + ".pack", base + ".idx"
    if not os.path.exists(pack) or os.path.exists(index):
        return False
    aside = f"{base}.orphan-{os.getpid()}"
    try:
        os.rename(pack, aside)
    except FileNotFoundError:
        return False
    if os.path.exists(index):
        os.rename(aside, pack)
        return False
    os.remove(aside)
    return True
