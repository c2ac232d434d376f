"""The packer's claim, and packing in the background.

One packer at a time works on a store: it holds the claim ``<git dir>/mitosis/gc.lock`` (created
with O_EXCL; it names the packer's process and host), which :func:`release` removes when done.
A claim was left by a packer that died when its process is gone (on this host), or when it is
older than an hour. A store's writer calls :func:`start` once the store has many loose objects,
which claims the store and starts ``python -m mitosis.store.pack GIT_DIR``, detached (the claim
then names it), so that no trial waits for the packing.

Nothing here opens the store: :mod:`mitosis.store.repo` starts packers, and the packer
(:mod:`mitosis.store.pack`) opens the store itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["claim", "release", "start"]

_STALE = 3600.0


def _claim_file(git_dir: str) -> Path:
    return Path(git_dir, "mitosis", "gc.lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _left(path: Path) -> os.stat_result | None:
    """The claim's file status when a packer that died left it, else None."""
    try:
        found = path.stat()
        text = path.read_text().split()
    except (OSError, UnicodeDecodeError):
        return None  # no claim: the usual case
    if time.time() - found.st_mtime >= _STALE:
        return found
    if len(text) == 2 and text[0].isdigit() and text[1] == socket.gethostname():
        return None if _alive(int(text[0])) else found
    return None  # a claim from another host (a shared disk) or being written: wait for it


def _name(pid: int) -> bytes:
    return f"{pid} {socket.gethostname()}\n".encode()


def claim(git_dir: str) -> bool:
    """Claim the store for a packer; False if a live packer holds the claim."""
    path = _claim_file(git_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    found = _left(path)
    if found is not None:  # set aside and removed only if it is still the file found
        aside = path.with_name(f"gc.lock.stale-{os.getpid()}")
        try:
            os.rename(path, aside)
            if os.stat(aside).st_ino == found.st_ino:
                os.remove(aside)
            else:  # a live packer claimed meanwhile: put its claim back
                os.link(aside, path)
                os.remove(aside)
        except OSError:
            pass
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(fd, _name(os.getpid()))
    finally:
        os.close(fd)
    return True


def _hand_over(git_dir: str, pid: int) -> None:
    """The claim now names the packer ``pid`` this process started (if it is still this
    process's claim: the packer may be done already)."""
    path = _claim_file(git_dir)
    try:
        if path.read_bytes() != _name(os.getpid()):
            return
    except OSError:
        return
    temporary = path.with_name(f"gc.lock.{pid}")
    temporary.write_bytes(_name(pid))
    os.replace(temporary, path)


def release(git_dir: str) -> None:
    """Give the packer's claim back."""
    _claim_file(git_dir).unlink(missing_ok=True)


def start(git_dir: str) -> None:
    """Start a detached packer for the store at ``git_dir``, unless one is at work."""
    if not claim(git_dir):
        return
    try:
        packer = subprocess.Popen(
            [sys.executable, "-m", "mitosis.store.pack", git_dir],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        release(git_dir)
        return
    _hand_over(git_dir, packer.pid)
