"""Warm-started trial processes: the caller's side of :mod:`mitosis.run.serve`.

A sweep's trials are forked from a server that imported the experiment's modules once (a
clean process started with ``worker.py --serve``, holding nothing of any trial), so each trial
still starts from the same pristine state and runs start to finish in its own process, without
paying for the interpreter's start and the experiment's imports. :func:`start` gives a
:class:`TrialProcess` like the :class:`subprocess.Popen` of a trial started afresh, or None
where a fork is not to be used; then the caller starts the trial afresh, as ever.

Servers are kept per interpreter, import path, environment, working folder and modules, in the
process that runs the trials (the sweep's, or each worker process of an executor), started on
first need, restarted when a file of the imported modules changes, and stopped by
:func:`shutdown` (and whenever the process that started them ends: they read its pipe).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import IO, Any, Protocol

__all__ = ["TrialProcess", "forkable", "shutdown", "start"]

_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
_SERVERS: dict[tuple[Any, ...], _Server] = {}
#: Servers that fork no more, until they end (their trial processes still run).
_RETIRED: list[_Server] = []
_LOCK = threading.Lock()
#: The servers of the process this one was forked from (a process pool's worker): not ours.
_INHERITED: list[_Server] = []


class TrialProcess(Protocol):
    """What a trial's process offers its caller, started afresh (:class:`subprocess.Popen`)
    or forked by a warm server."""

    @property
    def stdout(self) -> IO[bytes] | None: ...
    @property
    def stderr(self) -> IO[bytes] | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def kill(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any: ...


def forkable() -> bool:
    """Whether trial processes may be forked here: a POSIX system with ``fork`` and file
    descriptor passing, other than macOS (whose system libraries are not safe to use in a
    forked child, which is why :mod:`multiprocessing` spawns there)."""
    return hasattr(os, "fork") and hasattr(socket, "send_fds") and sys.platform != "darwin"


def start(
    spec: str, out: str, env: dict[str, str], path: Sequence[str], modules: Sequence[str]
) -> TrialProcess | None:
    """Fork the trial process of ``spec`` (writing to ``out``) from the warm server of
    ``path``, ``env`` and ``modules`` (started on first need, restarted when stale); None when
    it cannot be forked here (then start it afresh)."""
    if not forkable():
        return None
    key = (sys.executable, tuple(path), tuple(sorted(env.items())), os.getcwd(), tuple(modules))
    for _ in range(3):  # a stale server is replaced; one that keeps failing is given up
        with _LOCK:
            server = _SERVERS.get(key)
            if server is None:
                server = _SERVERS[key] = _Server(env, path, modules)
        if server.cold:
            return None
        forked = server.fork(spec, out)
        if forked is not None:
            return forked
        with _LOCK:
            if _SERVERS.get(key) is server:
                del _SERVERS[key]
            _RETIRED[:] = [r for r in _RETIRED if r.proc.poll() is None]
            _RETIRED.append(server)
        server.close()
    return None


def shutdown(timeout: float = 10.0) -> None:
    """Stop the warm servers of this process: each forks no more and ends once its running
    trial processes have ended (waited for up to ``timeout`` seconds, then left to end)."""
    with _LOCK:
        servers = [*_SERVERS.values(), *_RETIRED]
        _SERVERS.clear()
        _RETIRED.clear()
    for server in servers:
        server.close()
    # one whose trial processes still run (after an error) ends after them: not waited for
    running = [s for s in servers if s.running or not s.join(timeout)]
    with _LOCK:
        _RETIRED.extend(running)


def _forget_inherited() -> None:
    """In a process forked from one with servers: they are its parent's, not ours. Close our
    copies of their pipe and socket (so that they still see their parent's end of file), and
    keep the objects, which must not try to wait for processes that are not our children."""
    global _LOCK
    _LOCK = threading.Lock()
    servers = [*_SERVERS.values(), *_RETIRED]
    _SERVERS.clear()
    _RETIRED.clear()
    for server in servers:
        if server.proc.stdin is not None:
            with contextlib.suppress(OSError):
                server.proc.stdin.close()
        server.control.close()
    _INHERITED.extend(servers)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited)


class _Server:
    """One warm server process and the socket its requests go through."""

    def __init__(self, env: dict[str, str], path: Sequence[str], modules: Sequence[str]) -> None:
        self.lock = threading.Lock()
        self.running = 0  # its trial processes not known to have ended
        self.folder = tempfile.mkdtemp(prefix="mitosis-warm-")
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        with theirs:
            config = {
                "path": list(path),
                "modules": list(modules),
                "folder": self.folder,
                "control": theirs.fileno(),
            }
            self.proc = subprocess.Popen(
                [sys.executable, _WORKER, "--serve", json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                pass_fds=(theirs.fileno(),),
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode(errors="replace").strip()
        self.proc.stdout.close()
        self.cold = line != "ready"
        if self.cold:
            self.close()

    def fork(self, spec: str, out: str) -> _Forked | None:
        """The forked trial process, or None when the server is stale or gone."""
        answer, theirs = socket.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        request = json.dumps({"spec": spec, "out": out}).encode()
        try:
            with self.lock:
                socket.send_fds(self.control, [request], [theirs.fileno(), out_w, err_w])
        except OSError:  # the server is gone
            sent = False
        else:
            sent = True
        finally:
            theirs.close()
            os.close(out_w)
            os.close(err_w)
        forked = _Forked(answer, out_r, err_r, self)
        if sent and forked.started():
            with self.lock:
                self.running += 1
            return forked
        forked.close()
        return None

    def close(self) -> None:
        """Fork no more; the server ends once its trial processes have ended."""
        with self.lock:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
            self.control.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def join(self, timeout: float) -> bool:
        """Whether the server ended within ``timeout`` seconds (else its trial processes
        still run, and it ends after them)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


class _Forked:
    """A forked trial process, as far as its caller needs a :class:`subprocess.Popen`."""

    def __init__(self, answer: socket.socket, out_r: int, err_r: int, server: _Server) -> None:
        self.answer = answer
        self.server = server
        self.stdout: IO[bytes] | None = os.fdopen(out_r, "rb", buffering=0)
        self.stderr: IO[bytes] | None = os.fdopen(err_r, "rb", buffering=0)
        self.pid = 0
        self.returncode: int | None = None
        self.buffer = b""

    def _line(self, timeout: float | None) -> str | None:
        """The server's next line about this trial; None when the server is gone."""
        self.answer.settimeout(timeout)
        while b"\n" not in self.buffer:
            try:
                chunk = self.answer.recv(256)
            except TimeoutError:
                raise subprocess.TimeoutExpired(_WORKER, timeout or 0.0) from None
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def started(self) -> bool:
        line = self._line(None)
        if line is None or not line.startswith("pid "):
            return False
        self.pid = int(line[4:])
        return True

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            line = self._line(timeout)
            if line and line.startswith("exit "):
                self.returncode = int(line[5:])
            else:  # the server died: nothing would tell how the trial process ends, so end it
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.returncode = -signal.SIGKILL
            self.answer.close()
            with self.server.lock:
                self.server.running -= 1
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None and self.pid:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        for pipe in (self.stdout, self.stderr):
            if pipe is not None:
                pipe.close()
        self.answer.close()

    def __enter__(self) -> _Forked:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for pipe in (self.stdout, self.stderr):
            if pipe is not None:
                pipe.close()
        self.wait()
