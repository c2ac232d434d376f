"""``mitosis.gc``: packing a store's loose objects now, under the packer's claim."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import attrs

from ..exceptions import StoreError, SyncError
from .background import claim, holder, release
from .clean import clean
from .pack import pack_loose
from .repo import Store, disk_size

__all__ = ["Packed", "gc", "packing"]


@contextlib.contextmanager
def packing(st: Store, why: str = "", clear: bool = True) -> Iterator[bool]:
    """The packer's claim, and whether it was free (one packer at a time; a stale claim is
    taken over); with it, what writers that stopped left is removed first (see
    :func:`~mitosis.store.clean.clean`).
    A packing that fails inside is a :class:`StoreError` (``why`` completes its message), and
    nothing loose is lost."""
    from dulwich.file import FileLocked

    git_dir = st.repo.controldir()
    if not claim(git_dir):
        yield False
        return
    try:
        if clear:
            clean(git_dir)
        yield True
    except OSError as exc:
        raise StoreError(f"cannot pack {st.path}{why}: {exc}") from None
    except FileLocked as exc:
        lock = os.fsdecode(exc.lockfilename)
        raise StoreError(
            f"cannot pack {st.path}{why}: {lock} is locked by another writer; try again when "
            "it is done, or remove the file if no git or mitosis process is at work there"
        ) from None
    finally:
        release(git_dir)


@attrs.frozen
class Packed:
    """What :func:`gc` did: objects packed, the store's size on disk before and after, and
    how many files that writers which died left behind were removed."""

    objects: int
    before: int
    after: int
    removed: int = 0


def gc(
    *,
    store: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Packed:
    """Pack the store's loose objects with deltas, so that many trials take little room.

    Every trial adds a few loose objects; a store of thousands of trials is much smaller and
    faster to read once packed. Objects are packed in batches (memory stays bounded), and
    objects that trials write meanwhile stay loose for the next run. Big blobs (results) are
    packed whole, streamed, never delta-compressed. First, what writers and packers that died
    left behind (temporary objects and packs, trial folders of the spool) is removed.
    """
    with Store.open(store) as st, packing(st, clear=False) as mine:
        git_dir = st.repo.controldir()
        if not mine:
            owner = holder(git_dir)
            if owner is None:
                raise StoreError(
                    f"cannot claim {st.path} for packing: {git_dir}/mitosis cannot be written"
                )
            raise SyncError(
                f"another packer is at work on {st.path} ({owner}; its claim is "
                f"{git_dir}/mitosis/gc.lock); try again when it is done"
            )
        removed = clean(git_dir)
        before = disk_size(git_dir)
        count = pack_loose(st, progress=progress)
        return Packed(objects=count, before=before, after=disk_size(git_dir), removed=len(removed))
