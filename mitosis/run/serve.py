"""The warm start of a sweep's trials: a clean process that imports the experiment's modules
once, then forks a fresh trial process for each trial.

Standard library only, like :mod:`mitosis.run.worker`, which loads this file by its path when
started as ``python .../worker.py --serve CONFIG``. CONFIG is JSON: ``{"path": the import path,
"modules": the modules to import, "folder": a folder for what the imports print, "control":
the socket of requests}``. The server is single-threaded (forking is safe), ignores
Ctrl-C (the trial processes get it, as they do today), and talks to the process that started it
through:

- its stdout: one line once the modules are imported, ``ready``, or ``cold <why>`` when it
  will not fork (a module failed to import, or started a thread; then it exits);
- the file descriptor ``control``, a datagram socket: each request is
  ``{"spec": SPEC, "out": OUT}`` with three file descriptors, a stream socket for the answer
  and the write ends of the trial's stdout and stderr pipes. The answer is ``pid <n>`` and,
  when the trial process ended, ``exit <code>`` (``-<signal>`` when a signal stopped it, as
  :mod:`subprocess` says it); or ``stale`` when a file of the imported modules changed since
  they were imported (then the caller starts a new server);
- its stdin: at end of file the server forks no more, waits for its trial processes and
  exits (so it never outlives the process that started it).

A forked child closes every descriptor of the server, takes the pipes as its stdout and stderr
(``/dev/null`` as stdin), replays what the imports printed, and returns ``(SPEC, OUT)`` from
:func:`serve`, so that ``worker.py`` runs the trial exactly as a trial process started afresh.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def serve(config: dict[str, Any]) -> tuple[str, str] | None:
    """Import the modules of ``config``, then fork a trial process per request.

    Returns ``(spec, out)`` in a forked child (which then runs the trial), None in the server
    once it is done."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.path[:] = config["path"]
    generators = _Generators()
    sys.meta_path.insert(0, generators)
    try:
        printed, why, files = _preload(config["modules"], config["folder"])
    finally:
        sys.meta_path.remove(generators)
    generators.settle()
    os.write(1, b"ready\n" if why is None else f"cold {why}\n".encode())
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    if why is not None:
        return None
    # Whatever the garbage collector would touch in a trial process, the fork copies: what the
    # server holds is left out of collections (it is never garbage in a trial process)
    gc.freeze()
    server = _Server(config["control"], files, printed, devnull, generators)
    return server.loop()


def _preload(modules: list[str], folder: str) -> tuple[list[bytes], str | None, dict[str, Any]]:
    """Import ``modules``; what they printed (stdout, stderr: kept in files of ``folder``
    meanwhile), why forking is unsafe (None when it is safe), and the stamps of the files of
    every module imported meanwhile."""
    before = set(sys.modules)
    saved = [os.dup(1), os.dup(2)]
    captured = []
    for fd, name in ((1, "stdout"), (2, "stderr")):
        path = os.path.join(folder, name)
        captured.append(path)
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    why = None
    try:
        for name in modules:
            importlib.import_module(name)
    except BaseException as exc:  # the trial will import it afresh and record the error
        why = f"importing the experiment's modules failed: {type(exc).__name__}"
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, old in zip((1, 2), saved, strict=True):
            os.dup2(old, fd)
            os.close(old)
    printed = []
    for path in captured:
        with open(path, "rb") as f:
            printed.append(f.read())
        os.unlink(path)
    threading = sys.modules.get("threading")
    if why is None and threading is not None and threading.active_count() > 1:
        why = "the experiment's modules started a thread, which a fork would not copy"
    files = {}
    for name in set(sys.modules) - before:
        source = getattr(sys.modules[name], "__file__", None)
        if isinstance(source, str):
            files[source] = _stamp(source)
    return printed, why, files


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class _Generators:
    """The global random generators, of :mod:`random` and of numpy. A process started afresh
    seeds them from fresh entropy when it imports them; the experiment's modules may then seed
    them when imported. So a forked trial process gets fresh entropy, unless importing the
    modules changed a generator's state: then the state they left (as in a process started
    afresh that imported them).

    Also a meta path finder that notes numpy's global state right after ``numpy.random`` is
    imported, before the modules can seed it."""

    def __init__(self) -> None:
        import random

        self.random = random
        self.random_before = random.getstate()
        self.random_kept: Any = None
        self.numpy_imported: bytes | None = None
        self.numpy_reseed = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "numpy.random":
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path, target)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def run(module: Any) -> None:
            exec_module(module)
            self.numpy_imported = _numpy_state(module)

        loader.exec_module = run
        return spec

    def settle(self) -> None:
        """Once the modules are imported: what each trial process keeps."""
        state = self.random.getstate()
        self.random_kept = state if state != self.random_before else None
        numpy_random = sys.modules.get("numpy.random")
        self.numpy_reseed = numpy_random is not None and (
            self.numpy_imported is None or _numpy_state(numpy_random) == self.numpy_imported
        )

    def in_child(self) -> None:
        """In a forked trial process (where :mod:`random` has reseeded itself already)."""
        if self.random_kept is not None:
            self.random.setstate(self.random_kept)
        if self.numpy_reseed:
            sys.modules["numpy.random"].seed()


def _numpy_state(numpy_random: Any) -> bytes:
    import pickle

    state: bytes = pickle.dumps(numpy_random.get_state())
    return state


class _Server:
    def __init__(
        self,
        control: int,
        files: dict[str, Any],
        printed: list[bytes],
        devnull: int,
        generators: _Generators,
    ) -> None:
        self.generators = generators
        self.files = files
        self.printed = printed
        self.devnull = devnull
        self.children: dict[int, socket.socket] = {}
        self.control = socket.socket(fileno=control)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.control, selectors.EVENT_READ, "request")
        self.selector.register(0, selectors.EVENT_READ, "stdin")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "child")
        self.closing = False

    def loop(self) -> tuple[str, str] | None:
        while not (self.closing and not self.children):
            for key, _ in self.selector.select():
                if key.data == "request":
                    trial = self._request()
                    if trial is not None:
                        return trial  # the forked child
                elif key.data == "stdin":
                    if not os.read(0, 4096):
                        self.closing = True
                        self.selector.unregister(0)
                else:
                    while len(os.read(self.wake_r, 4096)) == 4096:
                        pass
                    self._reap()
            self._reap()
        return None

    def _request(self) -> tuple[str, str] | None:
        try:
            message, fds, _, _ = socket.recv_fds(self.control, 65536, 3)
        except BlockingIOError:
            return None
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            return None
        answer, out_w, err_w = fds
        conn = socket.socket(fileno=answer)
        if self.closing or self._stale():
            conn.sendall(b"stale\n")
            conn.close()
            os.close(out_w)
            os.close(err_w)
            return None
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            self._become_trial(conn, out_w, err_w)
            return request["spec"], request["out"]
        os.close(out_w)
        os.close(err_w)
        self.children[pid] = conn
        conn.sendall(f"pid {pid}\n".encode())
        return None

    def _stale(self) -> bool:
        return any(_stamp(path) != stamp for path, stamp in self.files.items())

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(OSError):  # the caller is gone: nobody to tell
                    conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
                conn.close()

    def _become_trial(self, conn: socket.socket, out_w: int, err_w: int) -> None:
        """In the forked child: drop everything of the server, become a fresh trial process."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        self.control.close()
        conn.close()
        for other in self.children.values():
            other.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        os.dup2(self.devnull, 0)
        os.close(self.devnull)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_w)
        os.close(err_w)
        for fd, text in zip((1, 2), self.printed, strict=True):
            while text:
                text = text[os.write(fd, text) :]
        self.generators.in_child()
