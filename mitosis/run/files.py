"""Writing what a record or a tree names into a folder, and never outside it.

Paths come from records and trees that may be a collaborator's (see
:mod:`mitosis.model.checks`): each is checked, and every folder on the way to a file must be a
real folder inside the root, never a symlink that a tree wrote a moment before.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..exceptions import RerunError
from ..model.checks import path_problem

if TYPE_CHECKING:
    from dulwich.objects import ObjectID
    from dulwich.repo import Repo

__all__ = ["inside", "write_tree"]


def inside(root: Path, relative: str, what: str) -> Path:
    """The path of ``relative`` under ``root``, its folders made; ``what`` names it in errors.

    Raises:
        RerunError: ``relative`` is absolute, holds ``..``, or goes through a symlink.
    """
    problem = path_problem(relative)
    if problem is not None:
        raise RerunError(f"{what}: {problem}; nothing is written outside {root}")
    folder = root
    for part in relative.split("/")[:-1]:
        folder = folder / part
        try:
            mode = os.lstat(folder).st_mode
        except FileNotFoundError:
            folder.mkdir()
            continue
        if not stat.S_ISDIR(mode):
            raise RerunError(
                f"{what}: {relative!r} goes through {folder.relative_to(root)}, which is not a "
                f"folder (a symlink?); nothing is written outside {root}"
            )
    return root / relative


def write_tree(
    repo: Repo,
    tree: ObjectID,
    dest: Path,
    what: str,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Write the files of ``tree`` into ``dest`` (modes and symlinks kept, submodules as empty
    folders), each through :func:`inside`: a symlink is written, never followed. ``progress``
    is told how many files are written, every hundred."""
    from dulwich.objects import S_ISGITLINK

    dest.mkdir(parents=True, exist_ok=True)
    for number, entry in enumerate(repo.object_store.iter_tree_contents(tree)):
        if progress is not None and number % 100 == 0:
            progress(f"{what}: {number} files written")
        assert entry.path is not None and entry.mode is not None and entry.sha is not None
        target = inside(dest, os.fsdecode(entry.path), what)
        if os.path.lexists(target):
            raise RerunError(f"{what}: {entry.path!r} appears twice; nothing more is written")
        if S_ISGITLINK(entry.mode):  # a submodule: its code is not in this repository
            target.mkdir()
            continue
        data = repo.object_store[entry.sha].as_raw_string()
        if stat.S_ISLNK(entry.mode):
            os.symlink(os.fsdecode(data), target)
            continue
        target.write_bytes(data)
        if entry.mode & 0o111:
            target.chmod(0o755)
