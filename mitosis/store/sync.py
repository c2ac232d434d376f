"""Sharing trials: push, pull (fetch, then fast-forward or merge: see
:mod:`mitosis.store.merge`), bundles. What a pull fetches is checked in quarantine before any
ref moves (see :mod:`mitosis.store.incoming`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import attrs

from ..exceptions import StoreError, SyncConflict, SyncError, SyncRefused
from ..model.checks import experiment_problem
from ..model.layout import (
    BRANCH_PREFIX,
    RESULTS_PREFIX,
    branch,
    results_id,
    results_ref,
    tracking_branch,
)
from ..model.records import InStore, Pointer, Trial, human_size
from ..model.redact import strip_credentials
from .incoming import Aside, admit, damaged, history_problem, lock_problems, quarantine
from .merge import Conflict, integrate, is_ancestor
from .provenance import added, note, trial_ids
from .reader import Reader, collector_paused
from .repo import Store, warn
from .results import results_refs
from .send import copy, copy_all

if TYPE_CHECKING:
    from dulwich.objects import ObjectID
    from dulwich.refs import Ref

__all__ = [
    "SyncReport",
    "bundle",
    "fetch_missing",
    "fetch_results",
    "is_location",
    "pull",
    "push",
    "remote_names",
]

_BUNDLE_SIGNATURES = (b"# v2 git bundle", b"# v3 git bundle")
#: A store on this machine with more loose objects than this is never copied whole (its loose
#: objects would arrive without deltas): what the tips lack is copied instead.
_COPY_LOOSE = 2_000


@attrs.frozen
class SyncReport:
    """What a push or a pull did, experiment by experiment.

    Attributes:
        remote: the remote as given (a name, or a URL shown without credentials).
        experiments: experiment to what happened: ``new``, ``fast-forward``, ``merged``,
            ``up to date``, ``pushed``, or ``conflict``.
        conflicts: the variant conflicts that stopped pulls.
        results: the trials whose results (kept off the branches) were sent or brought.
    """

    remote: str
    experiments: dict[str, str]
    conflicts: list[Conflict] = attrs.field(factory=list)
    results: list[str] = attrs.field(factory=list)


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


def _selected(experiments: Sequence[str]) -> Callable[[bytes], bool]:
    """Which refs to send or take: the trial branches (all, or those of ``experiments``) whose
    names can be an experiment's (others, arrived from elsewhere, are left where they are)."""
    wanted = {branch(e) for e in experiments}

    def selected(ref: bytes) -> bool:
        if not ref.startswith(BRANCH_PREFIX) or (wanted and ref not in wanted):
            return False
        name = ref[len(BRANCH_PREFIX) :].decode("utf-8", "replace")
        problem = experiment_problem(name)
        if problem is not None:
            warn(
                "mitosis: left out the branch %s: %s",
                ascii(ref.decode("utf-8", "replace")),
                problem,
            )
        return problem is None

    return selected


# -- push ----------------------------------------------------------------------------------


def push(
    remote: str = "origin",
    experiments: Sequence[str] = (),
    *,
    results: bool = True,
    store: str | os.PathLike[str] | None = None,
    progress: Callable[[bytes], None] | None = None,
) -> SyncReport:
    """Send the store's trial branches (all, or the named experiments) to a remote.

    Args:
        remote: a remote configured in the store's repository, or a URL or path (``file://``,
            ``git://``, ``ssh://``, scp-style, ``http(s)://``).
        experiments: the experiments to push (default: every ``mitosis/*`` branch).
        results: also send the results kept off the branches (``refs/mitosis-results/<id>``)
            of the pushed trials that this store has; False sends the records only. Big
            results are streamed into the pack, never held whole.
        store: the store (default as for :func:`mitosis.run`).
        progress: called with the remote's progress messages (bytes), as ``git push`` shows.

    Raises:
        SyncError: the remote cannot be reached, or it has trials this store lacks (pull first).
    """
    from dulwich.client import LocalGitClient

    from .send import send_local, sender  # on first need: only pushes send packs

    with Store.open(store) as st:
        name, url = _resolve(st, remote)
        shown = strip_credentials(url)
        for experiment in experiments:
            if st.local_tip(experiment) is None:
                raise SyncError(f"the store has no experiment {experiment!r} to push")
        selected = _selected(experiments)
        local = {
            ref: sha
            for ref, sha in st.repo.refs.as_dict(cast("Ref", b"refs/heads/mitosis")).items()
        }
        ours = {cast("Ref", BRANCH_PREFIX + ref): sha for ref, sha in local.items()}
        ours = {ref: sha for ref, sha in ours.items() if selected(ref)}
        kept: dict[Ref, ObjectID] = {}
        stored = results_refs(st) if results else {}
        if stored:  # the results of the pushed trials
            pushed = {name for ref in ours for name in trial_ids(st, st.tip(_experiment_of(ref)))}
            kept = {
                cast("Ref", results_ref(trial_id)): sha
                for trial_id, sha in stored.items()
                if trial_id in pushed
            }
        report: dict[str, str] = {}
        sent: list[str] = []
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
            for ref, sha in kept.items():
                if ref not in refs:  # a results ref never moves once set
                    new[ref] = sha
                    sent.append(ref[len(RESULTS_PREFIX) :].decode())
            return new

        client, path = _client(st, url)
        try:
            if isinstance(client, LocalGitClient):  # a store on this machine: written directly
                objects, where = st.repo.object_store, os.fsdecode(path)
                refused_refs = send_local(objects, where, update_refs, progress)
                ref_status: dict[bytes, str | None] = dict(refused_refs)
            else:
                generate = sender(st.repo.object_store, progress)

                def pack_data(have: Any, want: Any, **_: Any) -> Any:
                    return generate(have, want)

                result = client.send_pack(
                    path, update_refs, generate_pack_data=pack_data, progress=progress
                )
                ref_status = dict(result.ref_status or {})
        except Exception as exc:
            raise SyncError(f"push to {shown} failed: {exc}") from None
        if behind:
            raise SyncError(
                f"{shown} has trials of {', '.join(sorted(behind))} that this store lacks: "
                f"pull first (`mitosis pull {remote}`), then push again"
            )
        refused = {ref.decode(): why for ref, why in ref_status.items() if why is not None}
        if refused:
            raise SyncError(f"{shown} refused {refused}")
        return SyncReport(
            remote=remote if name == remote else shown, experiments=report, results=sorted(sent)
        )


def _experiment_of(ref: bytes) -> str:
    return ref[len(BRANCH_PREFIX) :].decode()


# -- fetch and merge -------------------------------------------------------------------------


def _fetch(
    st: Store,
    remote: str,
    experiments: Sequence[str],
    progress: Callable[[bytes], None] | None = None,
) -> tuple[str, str, dict[str, ObjectID]]:
    """Fetch the remote's trial branches into ``refs/remotes/<name>/mitosis/*``, once their new
    commits and trees are checked in quarantine (see :mod:`mitosis.store.incoming`).

    Returns:
        The name for remote-tracking refs, the location shown, and experiment to fetched tip.

    Raises:
        SyncRefused: some fetched history is malformed; nothing entered the store.
    """
    from dulwich.client import LocalGitClient

    selected = _selected(experiments)
    for whole in (True, False):  # a whole store copied, else what the tips lack (see below)
        with quarantine(st) as held, collector_paused():
            claimed: set[bytes] = set()  # ids taken from a copied store's index, unchecked
            everything = False
            if _is_bundle(remote):
                name, shown = "bundle", remote
                refs, carried = _read_bundle(held, remote, selected)
            else:
                carried = {}
                name, url = _resolve(st, remote)
                shown = strip_credentials(url)
                client, path = _client(st, url)
                if isinstance(client, LocalGitClient):  # a store on this machine: copied
                    where = os.fsdecode(path)
                    refs, claimed, everything = _copy_local(
                        st, held, where, selected, shown, whole, progress
                    )
                else:
                    refs = _fetch_remote(held, client, path, selected, shown, progress)
            copied = set(claimed)
            reached: set[bytes] = set()
            # Checked in quarantine: what is malformed never enters the store.
            malformed = []
            # the quarantine's packs read directly; the store's few objects read (its side of
            # the walk, the trees before the first new commit) come through git's alternates
            with (
                Aside(held, claimed) as aside,
                Reader(held.repo.object_store, strict=True, claimed=claimed) as reader,
            ):
                for ref, sha in sorted(refs.items()):
                    experiment = ref[len(BRANCH_PREFIX) :].decode()
                    tracked = cast(
                        "ObjectID | None", st.repo.refs.read_ref(_tracking(name, experiment))
                    )
                    known = [st.local_tip(experiment), tracked]
                    problem = history_problem(reader, sha, known, reached if everything else None)
                    if problem is not None:
                        malformed.append(f"{experiment}: {problem}")
                if everything and not malformed and not copied <= reached:
                    continue  # the store held more than the tips reach: copy what they reach
                # a file the tips reach that was not copied (the walk reads no file) is here
                lost = [o.hex() for o in reached - copied if not st.has(o.hex())]
                if lost and not malformed:
                    malformed += [f"{_experiment_of(r)}: {lost[0]} is missing" for r in refs]
                problem = None if malformed else aside.take(claimed) or damaged(reader)
                if problem is not None:  # copied, met by no history, and forged
                    malformed += [f"{_experiment_of(ref)}: {problem}" for ref in sorted(refs)]
            malformed += _results_problems(held, carried)  # a bundle's results, as fetched
            if malformed:
                raise SyncRefused(
                    ", ".join(sorted({m.split(":")[0] for m in malformed})),
                    shown,
                    [f"brings malformed objects ({m})" for m in malformed],
                )
            admit(held, st)
            break
    for ref, sha in carried.items():  # a bundle's results came with it: keep them
        st.repo.refs.add_if_new(ref, sha, message=b"mitosis: results")
    fetched: dict[str, ObjectID] = {}
    for ref, sha in refs.items():
        experiment = ref[len(BRANCH_PREFIX) :].decode()
        st.repo.refs.set_if_equals(
            _tracking(name, experiment), None, sha, message=b"mitosis: fetch"
        )
        fetched[experiment] = sha
    for experiment in experiments:
        if experiment not in fetched:
            raise SyncError(f"{shown} has no experiment {experiment!r}")
    return name, shown, fetched


def _fetch_remote(
    held: Store,
    client: Any,
    path: str,
    selected: Callable[[bytes], bool],
    shown: str,
    progress: Callable[[bytes], None] | None,
) -> dict[Ref, ObjectID]:
    """Fetch the selected refs of a remote server into the quarantine ``held``; the refs."""

    def determine_wants(refs: dict[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
        return [
            sha for ref, sha in refs.items() if selected(ref) and sha not in held.repo.object_store
        ]

    try:
        result = client.fetch(path, held.repo, determine_wants=determine_wants, progress=progress)
    except Exception as exc:
        raise SyncError(f"fetch from {shown} failed: {exc}") from None
    return {r: sha for r, sha in result.refs.items() if selected(r)}


def _copy_local(
    st: Store,
    held: Store,
    path: str,
    selected: Callable[[bytes], bool],
    shown: str,
    whole: bool = False,
    progress: Callable[[bytes], None] | None = None,
) -> tuple[dict[Ref, ObjectID], set[bytes], bool]:
    """Copy what the quarantine ``held`` lacks of the selected refs of the store at ``path`` on
    this machine, as one pack (see :func:`mitosis.store.send.copy`); the refs, the ids of the
    objects copied (taken from that store's index: each is to be checked against its content
    before it enters the store), and whether the whole store was copied.

    With ``whole``, a store that this one shares no history with, whose every ref is taken and
    that holds few loose objects (the first pull of a lab's store) is copied whole, without
    walking its history first (see :func:`mitosis.store.send.copy_all`): the check of what
    arrived walks it, and finds whether the tips reach every object copied (else the caller
    copies again, what the tips lack only)."""
    from dulwich.repo import Repo

    try:
        with Repo(path) as source:
            every = source.get_refs()
            refs = {r: sha for r, sha in every.items() if selected(r)}
            wants = sorted({sha for sha in refs.values() if sha not in held.repo.object_store})
            claimed: set[bytes] = set()
            if not wants:
                return refs, claimed, False
            objects = source.object_store
            haves = _common(st, objects)
            others = [r for r in every if r != b"HEAD" and r not in refs]
            if whole and not haves and not others and _loose(objects) <= _COPY_LOOSE:
                return refs, copy_all(objects, held.repo.object_store, progress), True
            claimed = copy(objects, held.repo.object_store, wants, haves, progress)
    except Exception as exc:
        raise SyncError(f"fetch from {shown} failed: {exc}") from None
    return refs, claimed, False


def _loose(objects: Any, folders: int = 8) -> int:
    """About how many loose objects a store holds, from ``folders`` of its 256 fan-out folders."""
    found = 0
    for prefix in range(folders):
        with contextlib.suppress(OSError):
            found += len(os.listdir(os.path.join(objects.path, f"{prefix:02x}")))
    return found * 256 // folders


def _common(st: Store, other: Any, most: int = 10_000) -> list[ObjectID]:
    """The newest commits of the store's branches (local and remote-tracking) that ``other``
    has too: walked back from each tip to the first ones ``other`` has (at most ``most``
    commits looked at)."""
    tips = list(st.repo.refs.as_dict(cast("Ref", b"refs/heads/mitosis")).values())
    tips += list(st.repo.refs.as_dict(cast("Ref", b"refs/remotes")).values())
    found: list[ObjectID] = []
    seen: set[ObjectID] = set()
    while tips and len(seen) < most:
        commit_id = tips.pop()
        if commit_id in seen:
            continue
        seen.add(commit_id)
        if commit_id in other:
            found.append(commit_id)
            continue
        try:
            tips.extend(st.get(commit_id).parents)  # type: ignore[attr-defined]
        except KeyError:
            continue
    return found


def _tracking(remote: str, experiment: str) -> Ref:
    return cast("Ref", tracking_branch(remote, experiment))


def _read_bundle(
    held: Store, bundle: str, selected: Callable[[bytes], bool]
) -> tuple[dict[Ref, ObjectID], dict[Ref, ObjectID]]:
    """Add a bundle file's objects to the quarantine ``held`` (streamed: an incremental bundle
    may hold deltas against objects this store has, and big results are streamed into their
    objects); its selected refs, and the refs of the results it carries
    (``refs/mitosis-results/<trial id>``, ids checked)."""
    from .receive import bundle_header, unpack_bundle  # on first need: bundles are rare

    try:
        prerequisites, references = bundle_header(bundle)
        missing = [p for p in prerequisites if p not in held.repo.object_store]
        if missing:
            raise SyncError(
                f"the bundle {bundle} builds on {len(missing)} commits this store lacks "
                f"(e.g. {missing[0].decode()}); pull the bundle it was made after first"
            )
        unpack_bundle(held, bundle)
    except SyncError:
        raise
    except Exception as exc:
        raise SyncError(f"cannot read the bundle {bundle}: {type(exc).__name__}: {exc}") from None
    refs = {cast("Ref", r): sha for r, sha in references.items() if selected(r)}
    carried = {cast("Ref", r): sha for r, sha in references.items() if results_id(r)}
    return refs, carried


def pull(
    remote: str = "origin",
    experiments: Sequence[str] = (),
    *,
    results: bool | Sequence[str] = False,
    store: str | os.PathLike[str] | None = None,
    progress: Callable[[bytes], None] | None = None,
) -> SyncReport:
    """Fetch a remote's (or a bundle file's) trial branches and merge them into the store's.

    Each experiment fast-forwards where it can, else gets a merge commit whose tree is the union
    of both sides. An experiment whose two sides locked one variant name to different values
    is left as it was (its fetched history stays in ``refs/remotes/<remote>/mitosis/``); the
    others are merged all the same.

    What arrives is checked first: a history with malformed commits or trees (that ``git fsck
    --strict`` would refuse), or that would delete or change a trial or a lock of this store,
    is refused (its branch left as it was); the other experiments are pulled all the same.
    Results kept off the branches (bigger than the threshold) stay behind unless asked for.

    Args:
        remote: a remote configured in the store's repository, a URL or path, or a bundle file
            (whose results, if it carries any, come with it).
        experiments: the experiments to pull (default: all the remote has).
        results: True brings the results of the pulled experiments' trials (of every trial,
            when no experiment is named); a list of trial ids (or unique prefixes) brings
            those trials' results only.
        store: the store (default as for :func:`mitosis.run`).
        progress: called with the remote's progress messages (bytes).

    Raises:
        SyncError: the remote cannot be reached, or has no such experiment.
        SyncRefused: some experiment's history was refused (``.problems``, ``.report``).
        SyncConflict: some experiment had variant conflicts (``.conflicts``, ``.report``).
        UnknownTrial, AmbiguousTrialId: a trial of ``results`` is not in the store.
    """
    with Store.open(store, create=True) as st:
        # The store reads an experiment it has no branch of from a remote-tracking branch (after
        # git clone): make that its branch before fetching moves the remote-tracking refs,
        # unless it brings locks mitosis never writes (a refused pull left it there).
        for remote_name, tracked in st.tracking():
            experiment = tracked.decode()
            adopted = st.tip(experiment)
            if (
                st.local_tip(experiment) is None
                and adopted is not None
                and not lock_problems(st, None, st.tree_of(adopted))
            ):
                st.repo.refs.add_if_new(st.ref(experiment), adopted, message=b"mitosis: adopt")
                note(st, experiment, trial_ids(st, adopted), f"pull {remote_name}")
        name, shown, fetched = _fetch(st, remote, experiments, progress)
        refused: list[SyncRefused] = []
        report: dict[str, str] = {}
        found: list[Conflict] = []
        source = remote if name == remote else shown
        for experiment, theirs in sorted(fetched.items()):
            before = st.local_tip(experiment)
            try:
                report[experiment], conflicts_here = integrate(st, experiment, theirs, shown)
            except SyncRefused as refusal:
                report[experiment], conflicts_here = "refused", []
                refused.append(refusal)
            if report[experiment] in ("new", "fast-forward", "merged"):
                note(st, experiment, added(st, before, theirs), f"pull {source}")
            found += conflicts_here
        brought: list[str] = []
        if results is not False and not _is_bundle(remote):
            if results is True:
                wanted = None
                if experiments:
                    wanted = {t for e in experiments for t in trial_ids(st, st.tip(e))}
            else:
                wanted = {st.find(prefix)[1] for prefix in results}
            brought = fetch_results(st, remote, wanted, progress)
    result = SyncReport(remote=source, experiments=report, conflicts=found, results=brought)
    if refused:
        refused[0].report = result
        raise refused[0]
    if found:
        raise SyncConflict(found, result)
    return result


def bundle(
    file: str | os.PathLike[str],
    experiments: Sequence[str] = (),
    *,
    since: str | os.PathLike[str] | None = None,
    results: bool = False,
    store: str | os.PathLike[str] | None = None,
) -> int:
    """Write the trial branches (all, or the named experiments) to a git bundle file, for
    machines without a network path to each other; ``mitosis.pull(FILE)`` reads it.

    Args:
        since: an earlier bundle: leave out what it already carried.
        results: also carry the results kept off the branches (``refs/mitosis-results/*``)
            of the bundled trials that this store has; big ones are streamed into the file.

    Returns:
        The number of branches written.
    """
    from .blobs import write_bundle  # on first need: only bundles are written here
    from .receive import bundle_header

    with Store.open(store) as st:
        selected = _selected(experiments)
        refs = [
            cast("Ref", branch(name))
            for name in st.experiments()
            if st.local_tip(name) is not None and selected(branch(name))
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
            try:
                _, earlier = bundle_header(str(since))
            except StoreError as exc:
                raise SyncError(str(exc)) from None
            prerequisites = [sha for sha in earlier.values() if sha in st.repo.object_store]
        tips: dict[bytes, ObjectID] = {ref: st.repo.refs[ref] for ref in refs}
        if results:
            bundled = {t for ref in refs for t in trial_ids(st, st.tip(_experiment_of(ref)))}
            for trial_id, sha in results_refs(st).items():
                if trial_id in bundled:
                    tips[results_ref(trial_id)] = sha
        try:
            with open(file, "wb") as out:
                write_bundle(
                    out,
                    st.repo.object_store,
                    tips,
                    cast("list[ObjectID]", prerequisites),
                )
        except OSError as exc:
            raise SyncError(f"cannot write the bundle {file}: {exc}") from None
    return len(refs)


# -- results on demand -----------------------------------------------------------------------


def fetch_results(
    st: Store,
    remote: str,
    trial_ids: set[str] | None = None,
    progress: Callable[[bytes], None] | None = None,
) -> list[str]:
    """Fetch the remote's results refs (``refs/mitosis-results/<id>``, of ``trial_ids`` or all)
    that this store lacks, and keep them under the same names (a results ref never moves).
    What comes is checked in quarantine first, as a pull's branches are.

    Returns:
        The trial ids whose results came.

    Raises:
        SyncRefused: a results commit or tree is malformed; nothing entered the store.
        SyncError: the remote cannot be reached.
    """
    from dulwich.client import LocalGitClient

    _, url = _resolve(st, remote)
    shown = strip_credentials(url)
    client, path = _client(st, url)
    local = results_refs(st)

    def wanted(ref: bytes) -> bool:
        trial_id = results_id(ref)
        return (
            trial_id is not None
            and trial_id not in local
            and (trial_ids is None or trial_id in trial_ids)
        )

    with quarantine(st) as held:
        if isinstance(client, LocalGitClient):  # a store on this machine: copied, streamed
            try:
                refs = _copy_results(held, os.fsdecode(path), wanted)
            except (OSError, StoreError) as exc:
                raise SyncError(f"fetching results from {shown} failed: {exc}") from None
        else:

            def determine_wants(
                refs: dict[Ref, ObjectID], depth: int | None = None
            ) -> list[ObjectID]:
                shas = {sha for ref, sha in refs.items() if wanted(ref)}
                return sorted(sha for sha in shas if sha not in held.repo.object_store)

            from .receive import fetch_streamed  # on first need: only results fetches stream

            try:  # big results streamed in, never held whole
                result = fetch_streamed(held, client, path, determine_wants, progress)
            except Exception as exc:
                raise SyncError(f"fetching results from {shown} failed: {exc}") from None
            refs = {
                cast("Ref", ref): sha
                for ref, sha in result.refs.items()
                if wanted(ref) and sha in held.repo.object_store
            }
        malformed = _results_problems(held, refs)
        if malformed:
            raise SyncRefused(
                "the results", shown, [f"brings malformed objects ({m})" for m in malformed]
            )
        admit(held, st)
    for ref, sha in refs.items():
        st.repo.refs.add_if_new(ref, sha, message=b"mitosis: fetch results")
    return sorted(str(results_id(ref)) for ref in refs)


def _results_problems(held: Store, refs: Mapping[Ref, ObjectID]) -> list[str]:
    """What is malformed in the results commits ``refs`` point at and their trees (read in the
    quarantine ``held``), one line per trial (see
    :func:`~mitosis.store.incoming.history_problem`)."""
    if not refs:
        return []  # none: the quarantine's packs are not read again
    with Reader(held.repo.object_store, strict=True) as reader:
        found = {ref: history_problem(reader, sha, []) for ref, sha in sorted(refs.items())}
    return [
        f"results of trial {results_id(ref)}: {problem}"
        for ref, problem in found.items()
        if problem is not None
    ]


def _copy_results(held: Store, source: str, wanted: Callable[[bytes], bool]) -> dict[Ref, ObjectID]:
    """Copy into the quarantine ``held`` what the wanted results refs of the store at ``source``
    on this machine reach, their big blobs streamed (dulwich's local transport reads every
    object whole, and refuses loose objects over its ``loose_object_size_limit``); the refs."""
    from dulwich.objects import Commit, Tree

    from .blobs import streamable  # on first need: only copies from a path stream blobs

    refs: dict[Ref, ObjectID] = {}
    with Store.open(source) as other:
        for trial_id, commit_id in sorted(results_refs(other).items()):
            ref = cast("Ref", results_ref(trial_id))
            if not wanted(ref):
                continue
            todo: list[ObjectID] = [commit_id]
            found: list[ObjectID] = []  # what the commit reaches, parents before children
            while todo:
                sha = todo.pop()
                if held.has(sha.decode()):
                    continue
                size = streamable(other.repo.object_store, sha.decode())
                if size is not None:  # a blob: streamed
                    held.add_data(InStore(other.path, sha.decode(), size))
                    continue
                obj = other.get(sha)
                found.append(sha)
                if isinstance(obj, Commit):
                    todo.append(obj.tree)
                elif isinstance(obj, Tree):
                    todo.extend(entry.sha for entry in obj.iteritems())
            for sha in reversed(found):  # children first: a tree after its blobs
                held.add(other.get(sha))
            refs[ref] = commit_id
    return refs


def fetch_missing(st: Store, trial: Trial, name: str, pointer: Pointer) -> None:
    """Bring the blob of a file kept off the branch that this store lacks, from the store's
    remotes that have the trial's results ref, ``origin`` first.

    Raises:
        StoreError: no remote of the store has it; the message says which
            ``mitosis pull --results`` to run.
    """
    tried = []
    for remote in sorted(remote_names(st), key=lambda r: (r != "origin", r)):
        try:
            fetch_results(st, remote, {trial.id})
        except SyncError as exc:
            tried.append(f"{remote}: {exc}")
            continue
        if st.has(pointer.blob):
            return
        tried.append(f"{remote}: no results of this trial")
    asked = f" (asked {'; '.join(tried)})" if tried else " (the store has no remotes)"
    raise StoreError(
        f"{name} of trial {trial.id} ({human_size(pointer.size)}) is kept off the trial branches "
        f"and is not in the store {st.path}{asked}: bring it with "
        f"`mitosis pull REMOTE --results {trial.id}` from a store that has it (the trial was "
        f"recorded on {trial.host})"
    )
