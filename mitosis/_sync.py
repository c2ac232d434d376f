"""Sharing trials: push, pull (fetch, then fast-forward or merge), bundles.

Trials never collide in a tree (their ids are unique), so two histories of an experiment always
merge by taking the union of their trees. The one possible conflict is a variant name locked to
different values on the two sides: the pull of that experiment then stops before changing the
local branch and reports both values and the trials that used them; the fetched history stays in
``refs/remotes/<remote>/mitosis/<experiment>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import attrs

from ._environment import strip_credentials
from ._pack import pack_loose
from ._recorder import describe_lock, load_json, read_trials
from ._store import BRANCH_PREFIX, Store, backoff, disk_size
from .exceptions import StoreError, SyncConflict, SyncError

if TYPE_CHECKING:
    from dulwich.objects import ObjectID
    from dulwich.refs import Ref

__all__ = ["Conflict", "Packed", "SyncReport", "bundle", "conflicts", "gc", "pull", "push"]

_BUNDLE_SIGNATURES = (b"# v2 git bundle", b"# v3 git bundle")
# Loose objects travel whole; past this many (about 200 trials), a push packs them first.
PUSH_PACK_OBJECTS = 2_000
_RETRIES = 50


@attrs.frozen
class Conflict:
    """A variant name locked to different values on the two sides of a pull.

    Attributes:
        experiment: the experiment.
        param: the parameter.
        variant: the variant name.
        local: the value locked in this store.
        remote: the value locked on the remote.
        local_trials: ids of this store's trials that used the name.
        remote_trials: ids of the remote's trials that used the name.
    """

    experiment: str
    param: str
    variant: str
    local: str
    remote: str
    local_trials: list[str]
    remote_trials: list[str]

    def __str__(self) -> str:
        def trials(ids: list[str]) -> str:
            return ", ".join(ids) if ids else "no trial"

        return (
            f"{self.experiment}: {self.param}={self.variant} is {self.local} here "
            f"({trials(self.local_trials)}) but {self.remote} on the remote "
            f"({trials(self.remote_trials)})"
        )


@attrs.frozen
class SyncReport:
    """What a push or a pull did, experiment by experiment.

    Attributes:
        remote: the remote as given (a name, or a URL shown without credentials).
        experiments: experiment to what happened: ``new``, ``fast-forward``, ``merged``,
            ``up to date``, ``pushed``, or ``conflict``.
        conflicts: the variant conflicts that stopped pulls.
    """

    remote: str
    experiments: dict[str, str]
    conflicts: list[Conflict] = attrs.field(factory=list)


# -- remotes -------------------------------------------------------------------------------


def _is_bundle(location: str) -> bool:
    path = Path(location)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(16).startswith(_BUNDLE_SIGNATURES)


def remote_names(store: Store) -> list[str]:
    """The remotes configured in the store's repository, sorted."""
    config = store.repo.get_config()
    return sorted(s[1].decode() for s in config.sections() if len(s) == 2 and s[0] == b"remote")


def is_location(text: str) -> bool:
    """Whether ``text`` is a URL or a path rather than a remote's name."""
    return "://" in text or ":" in text or os.path.exists(text)


def _resolve(store: Store, remote: str) -> tuple[str, str]:
    """``(name for remote-tracking refs, URL)`` of a configured remote's name or a URL/path."""
    config = store.repo.get_config()
    try:
        url = config.get((b"remote", remote.encode()), b"url").decode()
    except KeyError:
        url = ""
    if url:
        return remote, url
    if is_location(remote):
        location = os.path.abspath(remote) if os.path.exists(remote) else remote
        digest = hashlib.sha1(strip_credentials(location).encode()).hexdigest()[:10]
        return f"url-{digest}", location
    names = remote_names(store)
    raise SyncError(
        f"no remote named {remote!r} in the store {store.path} (remotes: "
        f"{', '.join(names) or 'none'}); give a configured remote, a URL or a path, or add one "
        f"with `git -C {store.path} remote add {remote} URL`"
    )


def _client(store: Store, url: str) -> tuple[Any, str]:
    """The dulwich client for ``url``; over ssh, with the command git would use
    (``GIT_SSH_COMMAND``, else ``GIT_SSH``, else ``core.sshCommand``, else ``ssh``)."""
    from dulwich.client import SSHGitClient, get_transport_and_path

    try:
        client, path = get_transport_and_path(url, config=store.repo.get_config_stack())
    except Exception as exc:
        raise SyncError(f"cannot reach {strip_credentials(url)}: {exc}") from None
    command = os.environ.get("GIT_SSH_COMMAND") or os.environ.get("GIT_SSH")
    if command and isinstance(client, SSHGitClient):
        client.ssh_command = command
    return client, path


def _pack_before_sending(st: Store, progress: Callable[[bytes], None] | None) -> None:
    """Pack the loose objects first when there are many: dulwich sends loose objects without
    deltas, packed ones with theirs. Skipped when another packer is at work."""
    if st.loose_estimate() <= PUSH_PACK_OBJECTS:
        return
    with _packing(st, " before the push") as mine:
        if mine:
            if progress is not None:
                progress(b"packing loose objects before sending them\n")
            pack_loose(st)


@contextlib.contextmanager
def _packing(st: Store, why: str = "") -> Iterator[bool]:
    """The packer's lock, and whether it was free (one packer at a time); a packing that fails
    inside is a :class:`StoreError` (``why`` completes its message), and nothing loose is lost."""
    from ._gc import release, take

    git_dir = st.repo.controldir()
    if not take(git_dir):
        yield False
        return
    try:
        yield True
    except OSError as exc:
        raise StoreError(f"cannot pack {st.path}{why}: {exc}") from None
    finally:
        release(git_dir)


def _selected(experiments: Sequence[str]) -> Callable[[bytes], bool]:
    wanted = {BRANCH_PREFIX + e.encode() for e in experiments}
    return lambda ref: ref.startswith(BRANCH_PREFIX) and (not wanted or ref in wanted)


def is_ancestor(st: Store, ancestor: ObjectID, descendant: ObjectID) -> bool:
    """Whether ``ancestor`` is in the history of ``descendant`` (a plain walk of parents:
    dulwich's ``can_fast_forward`` prunes by commit time and misses commits of one second)."""
    seen: set[bytes] = set()
    stack = [descendant]
    while stack:
        commit_id = stack.pop()
        if commit_id == ancestor:
            return True
        if commit_id in seen or commit_id not in st.repo.object_store:
            continue
        seen.add(commit_id)
        stack.extend(st.get(commit_id).parents)  # type: ignore[attr-defined]
    return False


# -- push ----------------------------------------------------------------------------------


def push(
    remote: str = "origin",
    experiments: Sequence[str] = (),
    *,
    store: str | os.PathLike[str] | None = None,
    progress: Callable[[bytes], None] | None = None,
) -> SyncReport:
    """Send the store's trial branches (all, or the named experiments) to a remote.

    Args:
        remote: a remote configured in the store's repository, or a URL or path (``file://``,
            ``git://``, ``ssh://``, scp-style, ``http(s)://``).
        experiments: the experiments to push (default: every ``mitosis/*`` branch).
        store: the store (default as for :func:`mitosis.run`).
        progress: called with the remote's progress messages (bytes), as ``git push`` shows.

    Raises:
        SyncError: the remote cannot be reached, or it has trials this store lacks (pull first).
    """
    with Store.open(store) as st:
        name, url = _resolve(st, remote)
        shown = strip_credentials(url)
        for experiment in experiments:
            if st.local_tip(experiment) is None:
                raise SyncError(f"the store has no experiment {experiment!r} to push")
        _pack_before_sending(st, progress)
        selected = _selected(experiments)
        local = {
            ref: sha
            for ref, sha in st.repo.refs.as_dict(cast("Ref", b"refs/heads/mitosis")).items()
        }
        ours = {cast("Ref", BRANCH_PREFIX + ref): sha for ref, sha in local.items()}
        ours = {ref: sha for ref, sha in ours.items() if selected(ref)}
        report: dict[str, str] = {}
        behind: list[str] = []

        def update_refs(refs: dict[Ref, ObjectID]) -> dict[Ref, ObjectID]:
            new = dict(refs)
            for ref, sha in ours.items():
                name = ref[len(BRANCH_PREFIX) :].decode()
                theirs = refs.get(ref)
                if theirs == sha:
                    report[name] = "up to date"
                elif theirs is None:
                    new[ref] = sha
                    report[name] = "new"
                elif is_ancestor(st, theirs, sha):
                    new[ref] = sha
                    report[name] = "pushed"
                else:
                    behind.append(name)
            if behind:  # push nothing rather than part
                return dict(refs)
            return new

        client, path = _client(st, url)
        try:
            result = client.send_pack(
                path, update_refs, generate_pack_data=st.repo.generate_pack_data, progress=progress
            )
        except Exception as exc:
            raise SyncError(f"push to {shown} failed: {exc}") from None
        if behind:
            raise SyncError(
                f"{shown} has trials of {', '.join(sorted(behind))} that this store lacks: "
                f"pull first (`mitosis pull {remote}`), then push again"
            )
        refused = {
            ref.decode(): why for ref, why in (result.ref_status or {}).items() if why is not None
        }
        if refused:
            raise SyncError(f"{shown} refused {refused}")
        return SyncReport(remote=remote if name == remote else shown, experiments=report)


# -- fetch and merge -------------------------------------------------------------------------


def _fetch(
    st: Store,
    remote: str,
    experiments: Sequence[str],
    progress: Callable[[bytes], None] | None = None,
) -> tuple[str, str, dict[str, ObjectID]]:
    """Fetch the remote's trial branches into ``refs/remotes/<name>/mitosis/*``.

    Returns:
        The name for remote-tracking refs, the location shown, and experiment to fetched tip.
    """
    selected = _selected(experiments)
    if _is_bundle(remote):
        from dulwich.bundle import read_bundle
        from dulwich.pack import PackInflater

        name = "bundle"
        try:
            with open(remote, "rb") as f, read_bundle(f) as data:
                missing = [p for p, _ in data.prerequisites if p not in st.repo.object_store]
                if missing:
                    raise SyncError(
                        f"the bundle {remote} builds on {len(missing)} commits this store lacks "
                        f"(e.g. {missing[0].decode()}); pull the bundle it was made after first"
                    )
                # An incremental bundle may hold deltas against objects this store has.
                objects = st.repo.object_store
                for obj in PackInflater.for_pack_data(
                    data.pack_data,  # type: ignore[arg-type]  # a file-backed PackData here
                    resolve_ext_ref=objects.get_raw,
                ):
                    st.add(obj)
                refs = {r: sha for r, sha in data.references.items() if selected(r)}
        except SyncError:
            raise
        except Exception as exc:
            raise SyncError(
                f"cannot read the bundle {remote}: {type(exc).__name__}: {exc}"
            ) from None
        shown = remote
    else:
        name, url = _resolve(st, remote)
        shown = strip_credentials(url)
        client, path = _client(st, url)

        def determine_wants(refs: dict[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
            return [
                sha
                for ref, sha in refs.items()
                if selected(ref) and sha not in st.repo.object_store
            ]

        try:
            result = client.fetch(path, st.repo, determine_wants=determine_wants, progress=progress)
        except Exception as exc:
            raise SyncError(f"fetch from {shown} failed: {exc}") from None
        refs = {r: sha for r, sha in result.refs.items() if selected(r)}
    fetched: dict[str, ObjectID] = {}
    for ref, sha in refs.items():
        experiment = ref[len(BRANCH_PREFIX) :].decode()
        tracking = cast("Ref", f"refs/remotes/{name}/mitosis/{experiment}".encode())
        st.repo.refs.set_if_equals(tracking, None, sha, message=b"mitosis: fetch")
        fetched[experiment] = sha
    for experiment in experiments:
        if experiment not in fetched:
            raise SyncError(f"{shown} has no experiment {experiment!r}")
    return name, shown, fetched


def _lock(st: Store, blob: ObjectID, path: str) -> dict[str, Any]:
    data = load_json(st.get(blob).as_raw_string(), path)
    return data if isinstance(data, dict) else {}


def _union(
    st: Store, ours: ObjectID | None, theirs: ObjectID | None, path: str, clashes: list[Any]
) -> ObjectID | None:
    """The union of two trees; ``clashes`` collects ``(path, our lock, their lock)``."""
    from dulwich.objects import Tree

    if ours is None or ours == theirs:
        return theirs if ours is None else ours
    if theirs is None:
        return ours
    a, b = st.get(ours), st.get(theirs)
    assert isinstance(a, Tree) and isinstance(b, Tree)
    merged = Tree()
    left_entries = {e.path: (e.mode, e.sha) for e in a.iteritems()}
    right_entries = {e.path: (e.mode, e.sha) for e in b.iteritems()}
    for name in sorted(left_entries.keys() | right_entries.keys()):
        left, right = left_entries.get(name), right_entries.get(name)
        full = f"{path}/{name.decode()}" if path else name.decode()
        if left is None or right is None or left[1] == right[1]:
            mode, sha = left or right  # type: ignore[misc]
        elif stat.S_ISDIR(left[0]) and stat.S_ISDIR(right[0]):
            mode, sha = left[0], _union(st, left[1], right[1], full, clashes)
        elif full.startswith("variants/") and full.endswith(".json"):
            ours_lock, theirs_lock = _lock(st, left[1], full), _lock(st, right[1], full)
            if ours_lock.get("fingerprint") != theirs_lock.get("fingerprint"):
                clashes.append((full, ours_lock, theirs_lock))
            mode, sha = left
        elif full.startswith("variants/"):
            mode, sha = left  # a pickle beside a lock: decided by the lock
        else:
            clashes.append((full, None, None))
            mode, sha = left
        merged.add(name, mode, sha)
    if path.startswith("variants/") and path.count("/") == 1:
        _drop_renamed(st, merged, path)
    return st.add(merged)


def _drop_renamed(st: Store, folder: Any, path: str) -> None:
    """In a merged ``variants/<param>`` tree, drop the locks that one side renamed: a lock
    ``X.json`` whose value has a note ``X.renamed/<fingerprint>.json`` was renamed there."""
    entries = {e.path.decode(): e for e in folder.iteritems()}
    for name, entry in entries.items():
        renamed = (
            entries.get(name[: -len(".json")] + ".renamed") if name.endswith(".json") else None
        )
        if renamed is None:
            continue
        lock = _lock(st, entry.sha, f"{path}/{name}")
        note = f"{lock.get('fingerprint', '').removeprefix('sha256:')[:16]}.json".encode()
        notes = st.get(renamed.sha)
        if note in notes:  # type: ignore[operator]
            del folder[entry.path]
            pickle_name = entry.path[: -len(b".json")] + b".dill"
            if pickle_name in folder:
                del folder[pickle_name]


def _users(st: Store, experiment: str, commit: ObjectID, param: str, variant: str) -> list[str]:
    return [
        t.id
        for t in read_trials(st, experiment, commit)
        if param in t.params and t.params[param].variant == variant
    ]


def _compare(
    st: Store, experiment: str, ours: ObjectID, theirs: ObjectID, source: str
) -> tuple[ObjectID | None, list[Conflict]]:
    """The union of the two sides' trees, and the variant conflicts that forbid it."""
    clashes: list[Any] = []
    tree = _union(st, st.tree_of(ours), st.tree_of(theirs), "", clashes)
    found = []
    for path, mine, other in clashes:
        if mine is None:
            raise StoreError(
                f"{experiment}: {path} differs between this store and {source}, which never "
                "happens to trials mitosis wrote; compare the two with git before merging"
            )
        param, variant = mine.get("param", "?"), mine.get("variant", "?")
        found.append(
            Conflict(
                experiment=experiment,
                param=param,
                variant=variant,
                local=describe_lock(mine),
                remote=describe_lock(other),
                local_trials=_users(st, experiment, ours, param, variant),
                remote_trials=_users(st, experiment, theirs, param, variant),
            )
        )
    return tree, found


def _merge(
    st: Store, experiment: str, ours: ObjectID, theirs: ObjectID, source: str
) -> tuple[str, list[Conflict]]:
    """Merge ``theirs`` into the branch at ``ours``: a merge commit, or the conflicts."""
    from dulwich.objects import Commit
    from dulwich.repo import get_user_identity

    tree, found = _compare(st, experiment, ours, theirs, source)
    if found:
        return "conflict", found
    assert tree is not None
    config = st.repo.get_config_stack()
    commit = Commit()
    commit.tree = tree
    commit.parents = [ours, theirs]
    commit.author = get_user_identity(config, "AUTHOR")
    commit.committer = get_user_identity(config, "COMMITTER")
    commit.author_time = commit.commit_time = int(time.time())
    commit.author_timezone = commit.commit_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = (
        f"{experiment}: merge trials from {source}\n\nMitosis-Merge: {source}\n".encode()
    )
    st.add(commit)
    moved = st.repo.refs.set_if_equals(
        st.ref(experiment), ours, commit.id, message=f"mitosis: merge {source}".encode()
    )
    return ("merged" if moved else "retry"), []


def _integrate(
    st: Store, experiment: str, theirs: ObjectID, source: str
) -> tuple[str, list[Conflict]]:
    """Bring the fetched tip into the local branch: new, fast-forward, merge or conflict."""
    from dulwich.file import FileLocked

    ref = st.ref(experiment)
    for attempt in range(_RETRIES):
        ours = st.local_tip(experiment)
        try:
            if ours is None:
                outcome = "new" if st.repo.refs.add_if_new(ref, theirs) else "retry"
            elif is_ancestor(st, theirs, ours):
                return "up to date", []
            elif is_ancestor(st, ours, theirs):
                moved = st.repo.refs.set_if_equals(ref, ours, theirs, message=b"mitosis: pull")
                outcome = "fast-forward" if moved else "retry"
            else:
                outcome, found = _merge(st, experiment, ours, theirs, source)
                if found:
                    return outcome, found
        except FileLocked:
            outcome = "retry"
        if outcome != "retry":
            return outcome, []
        backoff(attempt)  # a trial finished meanwhile: merge again with it
    raise StoreError(f"could not update mitosis/{experiment}: too many writers at once")


def pull(
    remote: str = "origin",
    experiments: Sequence[str] = (),
    *,
    store: str | os.PathLike[str] | None = None,
    progress: Callable[[bytes], None] | None = None,
) -> SyncReport:
    """Fetch a remote's (or a bundle file's) trial branches and merge them into the store's.

    Each experiment fast-forwards where it can, else gets a merge commit whose tree is the union
    of both sides. An experiment whose two sides locked one variant name to different values
    is left as it was (its fetched history stays in ``refs/remotes/<remote>/mitosis/``); the
    others are merged all the same.

    Raises:
        SyncError: the remote cannot be reached, or has no such experiment.
        SyncConflict: some experiment had variant conflicts (``.conflicts``, ``.report``).
    """
    with Store.open(store, create=True) as st:
        # The store reads an experiment it has no branch of from a remote-tracking branch (after
        # git clone): make that its branch before fetching moves the remote-tracking refs.
        for experiment in st.experiments():
            adopted = st.tip(experiment)
            if st.local_tip(experiment) is None and adopted is not None:
                st.repo.refs.add_if_new(st.ref(experiment), adopted, message=b"mitosis: adopt")
        name, shown, fetched = _fetch(st, remote, experiments, progress)
        report: dict[str, str] = {}
        found: list[Conflict] = []
        for experiment, theirs in sorted(fetched.items()):
            report[experiment], conflicts_here = _integrate(st, experiment, theirs, shown)
            found += conflicts_here
    result = SyncReport(
        remote=remote if name == remote else shown, experiments=report, conflicts=found
    )
    if found:
        raise SyncConflict(found, result)
    return result


def conflicts(
    experiment: str | None = None, *, store: str | os.PathLike[str] | None = None
) -> list[Conflict]:
    """The variant conflicts between the store's branches and its remote-tracking branches
    (what a pull would stop on), without changing anything."""
    found: list[Conflict] = []
    with Store.open(store) as st:
        for remote, name in st.tracking():
            exp = name.decode()
            if experiment is not None and exp != experiment:
                continue
            ours = st.local_tip(exp)
            ref = cast("Ref", f"refs/remotes/{remote}/mitosis/{exp}".encode())
            theirs = st.repo.refs[ref]
            if ours is None or ours == theirs:
                continue
            found += _compare(st, exp, ours, theirs, remote)[1]
    return found


def bundle(
    file: str | os.PathLike[str],
    experiments: Sequence[str] = (),
    *,
    since: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
) -> int:
    """Write the trial branches (all, or the named experiments) to a git bundle file, for
    machines without a network path to each other; ``mitosis.pull(FILE)`` reads it.

    Args:
        since: an earlier bundle: leave out what it already carried.

    Returns:
        The number of branches written.
    """
    from dulwich.bundle import create_bundle_from_repo, read_bundle, write_bundle

    with Store.open(store) as st:
        selected = _selected(experiments)
        refs = [
            cast("Ref", BRANCH_PREFIX + name.encode())
            for name in st.experiments()
            if st.local_tip(name) is not None and selected(BRANCH_PREFIX + name.encode())
        ]
        if not refs:
            raise SyncError(
                "no trial branches to bundle"
                + (f" among {list(experiments)}" if experiments else "")
            )
        prerequisites: list[bytes] = []
        if since is not None:
            if not _is_bundle(str(since)):
                raise SyncError(f"{since} is not a git bundle")
            with open(since, "rb") as f, read_bundle(f) as earlier:
                prerequisites = [
                    sha for sha in earlier.references.values() if sha in st.repo.object_store
                ]
        try:
            with (
                create_bundle_from_repo(st.repo, refs=refs, prerequisites=prerequisites) as data,
                open(file, "wb") as out,
            ):
                write_bundle(out, data)
        except OSError as exc:
            raise SyncError(f"cannot write the bundle {file}: {exc}") from None
    return len(refs)


@attrs.frozen
class Packed:
    """What :func:`gc` did: objects packed, and the store's size on disk before and after."""

    objects: int
    before: int
    after: int


def gc(
    *,
    store: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Packed:
    """Pack the store's loose objects with deltas, so that many trials take little room.

    Every trial adds a few loose objects; a store of thousands of trials is much smaller and
    faster to read once packed. Objects are packed in batches (memory stays bounded), and
    objects that trials write meanwhile stay loose for the next run.
    """
    with Store.open(store) as st, _packing(st) as mine:
        git_dir = st.repo.controldir()
        if not mine:
            raise SyncError(
                f"another packer is at work on {st.path} ({git_dir}/mitosis/gc.lock); "
                "try again when it is done"
            )
        before = disk_size(git_dir)
        count = pack_loose(st, progress=progress)
        return Packed(objects=count, before=before, after=disk_size(git_dir))
