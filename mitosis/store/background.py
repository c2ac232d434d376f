"""The packer's claim, and packing in the background.

One packer at a time works on a store: it holds the claim ``<git dir>/mitosis/gc.lock``, created
with O_EXCL, which records its owner: process id, host, pid namespace, the process's start time
and when the claim was taken (JSON). :func:`release` removes it when the packer is done. A claim
is stale, and the next packer removes it (saying so on the logger ``mitosis``), when

- its owner's process is gone: same host and pid namespace, and no process has its id
  (``os.kill(pid, 0)`` raises ``ProcessLookupError``), or it has ended and waits to be reaped
  (a zombie), or the process with its id started at another time (the id was reused). The last
  two are read from ``/proc``; where there is none they are not checked, and a reused id keeps
  the claim until it is old;
- or it is old: not renewed for :data:`STALE_CLAIM_SECONDS` (an hour). A packer renews its claim
  after each pack it writes, so a claim of another host (whose processes cannot be looked at),
  or one that cannot be read (written by an earlier mitosis, or by a packer killed between
  creating the file and writing it), is taken over only once its owner has been silent that
  long.

A store's writer calls :func:`start` once the store has many loose objects, which claims the
store, starts ``python -m mitosis.store.pack GIT_DIR`` detached (so that no trial waits for the
packing) and hands the claim to it.

Nothing here opens the store: :mod:`mitosis.store.repo` starts packers, and the packer
(:mod:`mitosis.store.pack`) opens the store itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .repo import warn

__all__ = ["STALE_CLAIM_SECONDS", "claim", "holder", "release", "renew", "start"]

#: A claim not renewed for this long was left by a packer that stopped.
STALE_CLAIM_SECONDS = 3600.0
_MUTEX = threading.Lock()


def _claim_file(git_dir: str) -> Path:
    return Path(git_dir, "mitosis", "gc.lock")


def _pid_namespace() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _process(pid: int) -> tuple[str, str] | None:
    """The state of process ``pid`` (``R``, ``S``, ``Z`` for a zombie, ...) and when it started
    (clock ticks since boot), from ``/proc``; None where there is no ``/proc`` or no such
    process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rpartition(b")")[2].split()
        return fields[0].decode(), fields[19].decode()  # fields 3 and 22 of proc_pid_stat(5)
    except (OSError, IndexError):
        return None


def _process_start(pid: int) -> str | None:
    found = _process(pid)
    return found[1] if found else None


def _owner(pid: int) -> dict[str, Any]:
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "pid_namespace": _pid_namespace(),
        "process_start": _process_start(pid),
        "claimed": time.time(),
    }


def _read(path: Path) -> dict[str, Any] | None:
    """The owner a claim records, or None if it records none that can be read."""
    try:
        owner = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return None
    return owner


def _here(owner: dict[str, Any]) -> bool:
    """Whether the owner's process is one this process can look at: same host, same pid
    namespace (a container sharing the host's name has its own)."""
    return (
        owner.get("host") == socket.gethostname() and owner.get("pid_namespace") == _pid_namespace()
    )


def _alive(owner: dict[str, Any]) -> bool | None:
    """Whether the owner's process runs: None when it cannot be told (another host)."""
    if not _here(owner) or os.name != "posix":
        return None
    pid = owner["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it runs
    now = _process(pid)
    if now is None:
        return True  # no /proc to tell more: it runs, or its id was reused (then it goes old)
    state, started = now
    if state in ("Z", "X"):
        return False  # ended, not yet reaped by its parent
    return owner.get("process_start") in (None, started)  # else its id was reused


def _describe(owner: dict[str, Any] | None) -> str:
    if owner is None:
        return "a packer that did not say who it is"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("claimed") or 0))
    return f"process {owner['pid']} on {owner.get('host')!r} since {since}"


def _stale(path: Path) -> tuple[str, os.stat_result] | None:
    """Why the claim at ``path`` is stale (and the file found), or None if it holds."""
    try:
        found = path.stat()
    except OSError:
        return None
    owner = _read(path)
    age = time.time() - found.st_mtime
    if owner is None:  # an earlier mitosis's, or one being written: only its age tells
        if age < STALE_CLAIM_SECONDS:
            return None
        return f"left {age:.0f} s ago by {_describe(owner)}", found
    alive = _alive(owner)
    if alive is False:
        return f"left by {_describe(owner)}, which is no longer running", found
    if age >= STALE_CLAIM_SECONDS:
        return f"left by {_describe(owner)}, silent for {age:.0f} s", found
    return None


def _remove_stale(path: Path) -> None:
    """Remove the claim at ``path`` if it is stale. The file is renamed aside first and removed
    only if it is still the one found stale (same inode): a claim that a live packer took
    meanwhile is put back."""
    with _MUTEX:
        stale = _stale(path)
        if stale is None:
            return
        why, found = stale
        aside = path.with_name(f"{path.name}.stale-{os.getpid()}-{threading.get_ident()}")
        try:
            os.rename(path, aside)
        except OSError:
            return  # gone meanwhile
        if os.stat(aside).st_ino != found.st_ino:  # a new claim: put it back
            with contextlib.suppress(OSError):
                os.link(aside, path)
            os.remove(aside)
            return
        os.remove(aside)
    warn("mitosis: removed the packer's stale claim %s, %s", path, why)


def _create(path: Path, owner: dict[str, Any]) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as file:
        file.write(json.dumps(owner))
    return True


def claim(git_dir: str) -> bool:
    """Claim the store for a packer (this process); False if a live packer holds the claim, or
    if the claim cannot be written (a store that cannot be written is not packed). A stale claim
    is removed first, with a message (see the module's docstring)."""
    path = _claim_file(git_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if _create(path, _owner(os.getpid())):
            return True
        _remove_stale(path)
        return _create(path, _owner(os.getpid()))
    except OSError:
        return False


def holder(git_dir: str) -> str | None:
    """Who holds the claim, for a message (``process 123 on 'host' since ...``); None when
    there is no claim."""
    path = _claim_file(git_dir)
    return _describe(_read(path)) if path.exists() else None


def _mine(path: Path) -> bool:
    owner = _read(path)
    return owner is not None and owner["pid"] == os.getpid() and _here(owner)


def renew(git_dir: str) -> None:
    """Say that the packer holding the claim (this process) is still at work."""
    path = _claim_file(git_dir)
    if _mine(path):
        with contextlib.suppress(OSError):
            os.utime(path)


def release(git_dir: str) -> None:
    """Give the packer's claim back, if this process holds it (a claim taken over meanwhile,
    when this packer had been silent too long, is the new holder's)."""
    path = _claim_file(git_dir)
    if _mine(path):
        path.unlink(missing_ok=True)


def _hand_over(git_dir: str, pid: int) -> None:
    """Make process ``pid`` (a packer this process started) the claim's owner."""
    path = _claim_file(git_dir)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(_owner(pid)))
    os.replace(temporary, path)


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
    with contextlib.suppress(OSError):  # else the claim stays this process's: stale once it ends
        _hand_over(git_dir, packer.pid)
