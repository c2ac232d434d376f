"""The store: a git repository written with dulwich alone.

It knows experiments as branches (``refs/heads/mitosis/<experiment>``) and trials and variants as
files on them; it knows nothing about running code. Every write builds blobs, trees and a commit
straight into the object store (no index, no work tree) and moves the branch by compare-and-swap,
retrying against the new tip when another writer got there first.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, NamedTuple, cast

from ..exceptions import AmbiguousTrialId, StoreError, UnknownTrial
from ..model.checks import experiment_problem
from ..model.layout import BRANCH_PREFIX, TRIALS, branch, tracking_branch
from ..model.types import FileData, InStore, OnDisk

if TYPE_CHECKING:  # dulwich itself is imported where it is used, to keep `import mitosis` light
    from dulwich.file import FileLocked
    from dulwich.objects import Commit, ObjectID, ShaFile
    from dulwich.refs import Ref
    from dulwich.repo import Repo

__all__ = [
    "Check",
    "Store",
    "Written",
    "backoff",
    "default_store_path",
    "disk_size",
    "fault_point",
    "warn",
]

_RETRIES = 400
#: A lock file older than this was left by a writer that died: git holds them for milliseconds.
STALE_LOCK_SECONDS = 10.0
#: Past about this many loose objects (a few hundred trials), a background packer starts.
AUTO_PACK_OBJECTS = 8000
#: Test hook: called with the name of each point of a commit ("blobs": its blobs are written;
#: "tree": its tree; "commit": the commit, before the ref moves; "stream": the first chunk of a
#: big file streamed into its temporary object file; "streamed": that file complete, before its
#: rename; "results": a trial's results ref set, before its branch moves) and of packing (see
#: :mod:`mitosis.store.pack`), so that tests can kill the writer there or act at that moment.
#: None in normal use. A process of its own (``mitosis gc``, say) is stopped there instead by
#: ``MITOSIS_FAULT_STOP=<point>`` (SIGSTOP), for a test to kill it (see :func:`fault_point`).
fault: Callable[[str], None] | None = None
_MIN_PREFIX = 4

#: Called with the tip's tree id (None for a new branch) before each attempt to commit.
Check = Callable[["Store", "ObjectID | None"], None]


class Written(NamedTuple):
    """A file of a commit whose blob is in the store already (streamed there before)."""

    id: ObjectID


def default_store_path() -> Path:
    """Where trials go when no store is named: ``$MITOSIS_STORE``, else the git repository
    containing the current directory, else ``./trials`` (created on first use)."""
    from dulwich.errors import NotGitRepository
    from dulwich.repo import Repo

    env = os.environ.get("MITOSIS_STORE")
    if env:
        return Path(env)
    try:
        with Repo.discover(os.getcwd()) as repo:
            return Path(repo.path)
    except NotGitRepository:
        return Path("trials")


class Store:
    """An open store; use as a context manager so the repository is closed."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.path = str(Path(repo.path).resolve())
        self._empty_tree: bytes | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, create: bool = False) -> Store:
        """Open the store at ``path`` (see :func:`default_store_path` for None).

        With ``create``, a path that does not exist becomes a new bare repository, and mitosis
        says so on stderr; reading never creates one.

        Raises:
            StoreError: the path is not a git repository (or does not exist, without ``create``).
        """
        from dulwich.errors import NotGitRepository
        from dulwich.repo import Repo

        target = Path(path) if path is not None else default_store_path()
        if not target.exists() and not create:
            raise StoreError(
                f"there is no store at {target}: no trial has been recorded there yet; check the "
                "path (store=..., --store, MITOSIS_STORE), or record a trial first"
            )
        if not target.exists():
            try:
                repo = Repo.init_bare(str(target), mkdir=True)
            except OSError as exc:
                raise StoreError(f"cannot create a store at {target}: {exc}") from exc
            warn("mitosis: created a new store (bare git repository) at %s", target)
            return cls(repo)
        try:
            return cls(Repo(str(target)))
        except NotGitRepository:
            raise StoreError(
                f"the store {str(target)!r} is not a git repository; make it one with "
                f"`git init {target}`, or name another store (store=..., --store, MITOSIS_STORE)"
            ) from None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.repo.close()

    @property
    def spool(self) -> str:
        """``<git dir>/mitosis/spool``: where trial processes leave their files until their
        trials are recorded (on the store's disk, never pushed)."""
        return os.path.join(self.repo.controldir(), "mitosis", "spool")

    def _maybe_pack(self, commit_id: ObjectID) -> None:
        """Start a background packer when loose objects pile up. Their number is estimated
        from the one fan-out folder the new commit went into (a 256th of them)."""
        folder = os.path.join(self.repo.object_store.path, commit_id[:2].decode())
        try:
            estimate = 256 * len(os.listdir(folder))
        except OSError:
            return
        if estimate > AUTO_PACK_OBJECTS:
            from .background import start  # on first need: it starts a process

            start(self.repo.controldir())

    # -- reading ---------------------------------------------------------------------------

    @staticmethod
    def ref(experiment: str) -> Ref:
        """The branch of an experiment.

        Raises:
            StoreError: the name cannot be part of a git branch name.
        """
        problem = experiment_problem(experiment)
        if problem is not None:
            raise StoreError(problem)
        return cast("Ref", branch(experiment))

    def experiments(self) -> list[str]:
        """Names of the experiments that have a branch in the store, or only a remote-tracking
        branch (``refs/remotes/<remote>/mitosis/<experiment>``, e.g. after ``git clone``)."""
        keys: set[bytes] = set(self.repo.refs.keys(base=cast("Ref", BRANCH_PREFIX.rstrip(b"/"))))
        keys.update(name for _, name in self.tracking())
        return sorted(name for name in map(_experiment_of, keys) if name is not None)

    def tracking(self) -> list[tuple[str, bytes]]:
        """``(remote, experiment)`` of every remote-tracking trial branch, origin first."""
        found = []
        for key in self.repo.refs.keys(base=cast("Ref", b"refs/remotes")):
            remote, _, rest = key.partition(b"/")
            if rest.startswith(b"mitosis/") and _experiment_of(rest[len(b"mitosis/") :]):
                found.append((remote.decode(errors="replace"), rest[len(b"mitosis/") :]))
        return sorted(found, key=lambda item: (item[0] != "origin", item))

    def local_tip(self, experiment: str) -> ObjectID | None:
        """The commit id at the tip of the experiment's own branch, or None."""
        try:
            return self.repo.refs[self.ref(experiment)]
        except KeyError:
            return None

    def tip(self, experiment: str) -> ObjectID | None:
        """The tip of the experiment's branch; where the store has none yet, that of its
        remote-tracking branch (origin first), which a first new trial then builds on."""
        local = self.local_tip(experiment)
        if local is not None:
            return local
        name = experiment.encode()
        for remote, tracked in self.tracking():
            if tracked == name:
                ref = cast("Ref", tracking_branch(remote, experiment))
                return self.repo.refs[ref]
        return None

    def tree_of(self, commit_id: ObjectID | None) -> ObjectID | None:
        from dulwich.objects import Commit

        if commit_id is None:
            return None
        commit = self.get(commit_id)
        assert isinstance(commit, Commit)
        tree: ObjectID = commit.tree
        return tree

    def get(self, object_id: ObjectID) -> ShaFile:
        """An object by id; asked twice, since a packer may move it from loose into a pack
        between dulwich's look in the packs and its look at the loose objects."""
        try:
            return self.repo.object_store[object_id]
        except KeyError:
            return self.repo.object_store[object_id]  # the second look rescans the packs

    def lookup(self, tree_id: ObjectID | None, path: str) -> ShaFile | None:
        """The object at ``path`` (``a/b/c``) under a tree, or None."""
        from dulwich.objects import Tree

        obj: ShaFile | None = self.get(tree_id) if tree_id else None
        for part in path.split("/") if path else []:
            if not isinstance(obj, Tree):
                return None
            try:
                _, sha = obj[part.encode()]
            except KeyError:
                return None
            obj = self.get(sha)
        return obj

    def entry(self, tree_id: ObjectID | None, path: str) -> tuple[int, ObjectID] | None:
        """``(mode, object id)`` of the entry at ``path`` under a tree, without reading the
        object itself (a big blob is then opened as a stream), or None."""
        from dulwich.objects import Tree

        folder, _, name = path.rpartition("/")
        parent = self.lookup(tree_id, folder)
        if not isinstance(parent, Tree):
            return None
        try:
            mode, sha = parent[name.encode()]
        except KeyError:
            return None
        return mode, sha

    def read_file(
        self, experiment: str, path: str, tree_id: ObjectID | None = None
    ) -> bytes | None:
        """A file's bytes on the experiment's branch (or under ``tree_id``), or None."""
        from dulwich.objects import Blob

        if tree_id is None:
            tree_id = self.tree_of(self.tip(experiment))
        obj = self.lookup(tree_id, path)
        return obj.as_raw_string() if isinstance(obj, Blob) else None

    def children(self, tree_id: ObjectID | None, path: str) -> list[tuple[str, ObjectID]]:
        """Names and object ids of the entries of the tree at ``path`` (a name that is not
        UTF-8, which git allows and mitosis never writes, with replacement characters: its
        readers then find no trial or lock of that name)."""
        from dulwich.objects import Tree

        obj = self.lookup(tree_id, path)
        if not isinstance(obj, Tree):
            return []
        return [(e.path.decode("utf-8", "replace"), e.sha) for e in obj.iteritems()]

    def trial_dirs(
        self, experiment: str, shard: str | None = None
    ) -> Iterator[tuple[str, ObjectID]]:
        """``(trial id, tree id)`` of each trial folder on the branch (or in one shard)."""
        root = self.tree_of(self.tip(experiment))
        shards = [shard] if shard else [name for name, _ in self.children(root, "trials")]
        for name in shards:
            yield from self.children(root, f"{TRIALS}/{name}")

    def find(self, prefix: str) -> tuple[str, str]:
        """``(experiment, trial id)`` of the one trial whose id starts with ``prefix``.

        Raises:
            UnknownTrial: no trial matches (or the prefix is not 4+ hex digits).
            AmbiguousTrialId: several trials match.
        """
        prefix = prefix.strip().lower()
        if len(prefix) < _MIN_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
            raise UnknownTrial(
                f"{prefix!r} is not a trial id: give 4 or more hex digits of one "
                "(see the ids with `mitosis log`, or mitosis.trials() in Python)"
            )
        matches = [
            (experiment, trial_id)
            for experiment in self.experiments()
            for trial_id, _ in self.trial_dirs(experiment, shard=prefix[:2])
            if trial_id.startswith(prefix)
        ]
        if not matches:
            raise UnknownTrial(
                f"no trial in the store {self.path} has an id starting with {prefix!r}; "
                "check the id, or pull the trials it belongs to"
            )
        if len(matches) > 1:
            listed = ", ".join(f"{tid} ({exp})" for exp, tid in matches)
            raise AmbiguousTrialId(
                f"{prefix!r} matches {len(matches)} trials: {listed}; give more characters"
            )
        return matches[0]

    # -- writing ---------------------------------------------------------------------------

    def add(self, obj: ShaFile) -> ObjectID:
        """Store an object; two writers storing the same object at once both succeed."""
        from dulwich.file import FileLocked

        for attempt in range(_RETRIES):
            try:
                self.repo.object_store.add_object(obj)
                return obj.id
            except FileLocked as locked:
                if obj.id in self.repo.object_store:
                    return obj.id
                _clear_if_stale(locked)
                backoff(attempt)
        raise StoreError(f"could not write object {obj.id.decode()} to {self.path}: always locked")

    def add_blob(self, data: bytes) -> ObjectID:
        from dulwich.objects import Blob

        return self.add(Blob.from_string(data))

    def add_data(self, data: FileData) -> ObjectID:
        """Store a file's bytes as a blob: small ones as any object, bigger ones (and every file
        waiting on disk) streamed (see :mod:`mitosis.store.blobs`), a blob of this store by its
        id. Identical bytes are stored once.

        Raises:
            StoreError: a blob named by ``data`` is not in its store, or a file changed while
                it was read.
            OSError: the store cannot be written.
        """
        from . import blobs  # on first need: most files are small

        objects = os.fspath(self.repo.object_store.path)
        if isinstance(data, InStore):
            if os.path.realpath(data.store) == self.path and self.has(data.blob):
                return cast("ObjectID", data.blob.encode())
            with Store.open(data.store) as other:
                source = other.open_blob(data.blob, f"blob {data.blob} of {data.store}")
            if source is None:
                raise StoreError(f"the store {data.store} has no blob {data.blob} to copy")
            with source:
                found = blobs.write_blob(objects, source, data.size, checkpoint=fault_point)
        elif isinstance(data, OnDisk):
            with open(data.path, "rb") as file:
                found = blobs.write_blob(objects, file, data.size, checkpoint=fault_point)
        elif len(data) > blobs.BIG:
            found = blobs.write_blob(objects, data, len(data), checkpoint=fault_point)
        else:
            return self.add_blob(data)
        return cast("ObjectID", found.encode())

    def has(self, object_id: str) -> bool:
        """Whether the store holds the object (loose or packed)."""
        return cast("ObjectID", object_id.encode()) in self.repo.object_store

    def open_blob(self, blob_id: str, where: str) -> IO[bytes] | None:
        """A blob's bytes as a file read as it goes, or None when the store lacks it."""
        from . import blobs  # on first need

        return blobs.open_blob(self.repo.object_store, blob_id, where)

    def blob_size(self, blob_id: str) -> int | None:
        """A blob's size, read from its header alone, or None when the store lacks it."""
        from . import blobs  # on first need

        return blobs.stored_size(self.repo.object_store, blob_id)

    def build_tree(
        self, tree_id: ObjectID | None, files: Mapping[str, ObjectID | None]
    ) -> ObjectID:
        """A new tree: ``tree_id`` with ``files`` (path to blob id) added or replaced, or
        removed where the id is None (a folder left empty goes too).

        Only the trees on the paths of the changed files are rewritten; the rest is shared.
        """
        from dulwich.objects import Tree

        tree = Tree()
        if tree_id is not None:
            old = self.get(tree_id)
            assert isinstance(old, Tree)
            for entry in old.iteritems():
                tree.add(entry.path, entry.mode, entry.sha)
        nested: dict[str, dict[str, ObjectID | None]] = {}
        for path, blob_id in files.items():
            head, _, rest = path.partition("/")
            if rest:
                nested.setdefault(head, {})[rest] = blob_id
            elif blob_id is None:
                if head.encode() in tree:
                    del tree[head.encode()]
            else:
                tree.add(head.encode(), stat.S_IFREG | 0o644, blob_id)
        for name, subfiles in nested.items():
            key = name.encode()
            existing = tree[key][1] if key in tree else None
            subtree = self.build_tree(existing, subfiles)
            if len(self.get(subtree)) == 0:  # type: ignore[arg-type]
                if key in tree:
                    del tree[key]
            else:
                tree.add(key, stat.S_IFDIR, subtree)
        return self.add(tree)

    def new_commit(
        self,
        tree: ObjectID,
        parents: list[ObjectID],
        message: str,
        when: tuple[int, int] | None = None,
    ) -> Commit:
        """The one commit builder: a commit of ``tree`` on ``parents``, by the user git's
        configuration names (``user.name``, ``GIT_AUTHOR_NAME``, ...), now in the local time
        zone unless ``GIT_AUTHOR_DATE`` / ``GIT_COMMITTER_DATE`` say otherwise (as for git), or
        at ``when`` (seconds since 1970, offset from UTC in seconds: an imported trial keeps
        its time), stored (no ref moves).

        Raises:
            StoreError: a ``GIT_*_DATE`` that is not a date.
        """
        from dulwich.objects import Commit
        from dulwich.repo import get_user_identity

        config = self.repo.get_config_stack()
        commit = Commit()
        commit.tree = tree
        commit.parents = parents
        commit.author = get_user_identity(config, "AUTHOR")
        commit.committer = get_user_identity(config, "COMMITTER")
        commit.author_time, commit.author_timezone = when or _when("GIT_AUTHOR_DATE")
        commit.commit_time, commit.commit_timezone = when or _when("GIT_COMMITTER_DATE")
        commit.encoding = b"UTF-8"
        commit.message = message.encode()
        self.add(commit)
        return commit

    def commit(
        self,
        experiment: str,
        files: Mapping[str, bytes | Written | None],
        message: str,
        check: Check | None = None,
        when: tuple[int, int] | None = None,
    ) -> ObjectID:
        """Add ``files`` (path to content, or to a blob stored before; None removes the path)
        to the experiment's branch in one new commit (dated ``when``, if given: see
        :meth:`new_commit`).

        ``check`` runs against the tip's tree before every attempt (and may raise to abandon the
        commit). The branch moves by compare-and-swap: a writer that loses re-reads the tip and
        tries again, so concurrent writers never lose a commit.

        Returns:
            The new commit's id.

        Raises:
            StoreError: the store cannot be written.
        """
        try:
            return self._commit(experiment, files, message, check, when)
        except OSError as exc:
            raise StoreError(f"cannot write to the store {self.path}: {exc}") from exc

    def _commit(
        self,
        experiment: str,
        files: Mapping[str, bytes | Written | None],
        message: str,
        check: Check | None,
        when: tuple[int, int] | None = None,
    ) -> ObjectID:
        from dulwich.file import FileLocked

        ref = self.ref(experiment)
        stored: dict[str, ObjectID | None] = {}
        for path, data in files.items():
            if isinstance(data, Written):
                stored[path] = data.id
            else:
                stored[path] = None if data is None else self.add_blob(data)
        fault_point("blobs")
        for attempt in range(_RETRIES):
            local = self.local_tip(experiment)
            tip = local if local is not None else self.tip(experiment)
            base = self.tree_of(tip)
            if check is not None:
                check(self, base)
            tree = self.build_tree(base, stored)
            fault_point("tree")
            if tip is not None and tree == base:
                return tip  # nothing new: another writer committed the same files already
            commit = self.new_commit(tree, [tip] if tip else [], message, when)
            fault_point("commit")
            reflog = b"mitosis: " + message.splitlines()[0].encode()
            try:
                if local is None:
                    moved = self.repo.refs.add_if_new(ref, commit.id, message=reflog)
                else:
                    moved = self.repo.refs.set_if_equals(ref, tip, commit.id, message=reflog)
            except FileLocked as locked:
                _clear_if_stale(locked)
                moved = False
            if moved:
                self._maybe_pack(commit.id)
                return commit.id
            backoff(attempt)
        raise StoreError(
            f"could not move {ref.decode()} in {self.path} after {_RETRIES} attempts: "
            "too many writers at once; the trial was not recorded"
        )


_REPORTED: set[bytes] = set()


def _experiment_of(ref_name: bytes) -> str | None:
    """The experiment a branch under ``mitosis/`` names, or None (said once) for a name that
    is none: a branch ``mitosis/a/b`` or with control characters, arrived from elsewhere."""
    try:
        name = ref_name.decode()
    except UnicodeDecodeError:
        name = ref_name.decode(errors="replace")
    problem = experiment_problem(name)
    if problem is None:
        return name
    if ref_name not in _REPORTED:
        _REPORTED.add(ref_name)
        warn("mitosis: skipped the branch mitosis/%s: %s", ascii(name)[1:-1], problem)
    return None


def warn(message: str, *args: object) -> None:
    """Say what the store did on its own (a store created, a stale lock file removed): a
    warning of the logger ``mitosis``, which Python shows on stderr unless logging is
    configured to put it elsewhere."""
    import logging  # on first need: most runs have nothing to say

    logging.getLogger("mitosis").warning(message, *args)


def fault_point(point: str) -> None:
    """A point where tests may act (:data:`fault`); a process whose ``MITOSIS_FAULT_STOP``
    names the point stops itself there (SIGSTOP), for a test to kill it at that moment."""
    if fault is not None:
        fault(point)
    if os.environ.get("MITOSIS_FAULT_STOP") == point and hasattr(signal, "SIGSTOP"):
        os.kill(os.getpid(), signal.SIGSTOP)


_STALE_CHECK_MUTEX = threading.Lock()


def _clear_if_stale(locked: FileLocked) -> None:
    """Remove a lock file left by a writer that died (it would block every later update).

    The stale file is first renamed aside and removed only if it is still the file found old
    (same inode), so that a lock a live writer took meanwhile is put back, not removed. Threads
    of one process check one at a time.
    """
    path = os.fsdecode(locked.lockfilename)
    aside = f"{path}.stale-{os.getpid()}-{threading.get_ident()}"
    with _STALE_CHECK_MUTEX:
        try:
            found = os.stat(path)
            age = time.time() - found.st_mtime
            if age <= STALE_LOCK_SECONDS:
                return
            os.rename(path, aside)
        except OSError:
            return  # gone meanwhile: its writer finished
        if os.stat(aside).st_ino != found.st_ino:  # a live writer's lock: put it back
            with contextlib.suppress(OSError):
                os.link(aside, path)
            os.remove(aside)
            return
        os.remove(aside)
    warn(
        "mitosis: removed a stale lock file %s, left %.0f s ago by a writer that stopped", path, age
    )


def backoff(attempt: int) -> None:
    """Randomized exponential backoff: 2 ms doubling to about 32 ms."""
    time.sleep(random.uniform(0.5, 1.0) * 0.002 * 2 ** min(attempt, 4))


def _when(variable: str) -> tuple[int, int]:
    """``(seconds since 1970, offset from UTC in seconds)`` from the environment variable
    ``variable`` as git reads it (``1700000000 +0100``, ``@1700000000``, or ISO 8601), else now
    in the local time zone."""
    import datetime as dt

    value = os.environ.get(variable, "").strip()
    if not value:
        return int(time.time()), _local_offset()
    seconds, _, zone = value.removeprefix("@").partition(" ")
    try:
        if seconds.isdigit():
            sign = -1 if zone.startswith("-") else 1
            digits = zone.lstrip("+-") or "0000"
            if len(digits) != 4 or not digits.isdigit():
                raise ValueError(zone)
            return int(seconds), sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise StoreError(
            f"{variable}={value!r} is not a date: give seconds since 1970 and a zone "
            "('1700000000 +0100') or an ISO 8601 time ('2026-11-29T12:00:00+01:00')"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    offset = moment.utcoffset()
    return int(moment.timestamp()), int(offset.total_seconds()) if offset else 0


def _local_offset() -> int:
    return -(time.altzone if time.daylight and time.localtime().tm_isdst else time.timezone)


def disk_size(path: str) -> int:
    """Bytes of the files under ``path``."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(folder, name)).st_size
    return total
