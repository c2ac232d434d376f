"""What a trial ran on: packages, environment variables (secrets redacted), platform, code state."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from ..model.layout import ENVIRONMENT, REQUIREMENTS
from ..model.records import CodeState, Environment, converter
from ..model.redact import redact_env, redact_value, storable, strip_credentials
from ..model.values import dumps_json

if TYPE_CHECKING:
    from dulwich.objects import ObjectID
    from dulwich.repo import Repo

__all__ = [
    "UNTRACKED_NOTE",
    "CodeSnapshot",
    "environment",
    "environment_files",
    "hostname",
    "read_code",
    "redact_env",
    "redact_value",
    "requirements",
    "strip_credentials",
    "username",
]

_UNTRACKED_LIMIT = 1 << 20  # untracked files larger than this are named, not copied, in code.diff
UNTRACKED_NOTE = "# untracked file not copied (over 1 MiB): "


def hostname() -> str:
    import socket  # on first need, as platform and getpass: a trial's caller starts quicker

    return socket.gethostname()


def username() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def environment() -> Environment:
    """The interpreter, platform and environment variables of this process."""
    import platform

    return Environment(
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        executable=storable(sys.executable),
        platform=platform.platform(),
        machine=platform.machine(),
        host=storable(hostname()),
        user=storable(username()),
        cwd=storable(os.getcwd()),
        variables=redact_env(dict(os.environ), os.environ.get("MITOSIS_REDACT")),
    )


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _direct_url(folder: str, name: str, version: str) -> str | None:
    """The requirement of an editable or VCS install, from its PEP 610 ``direct_url.json``."""
    try:
        with open(os.path.join(folder, "direct_url.json"), encoding="utf-8") as f:
            direct = json.load(f)
        url = redact_value(direct["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if direct.get("dir_info", {}).get("editable"):
        return f"-e {url}#egg={name}  # {name}=={version} (editable)"
    vcs = direct.get("vcs_info")
    if vcs:
        return f"{name} @ {vcs.get('vcs', 'git')}+{url}@{vcs.get('commit_id', '')}"
    return f"{name} @ {url}"


def _metadata_version(folder: str) -> str | None:
    for file in ("PKG-INFO", "METADATA"):
        try:
            with open(os.path.join(folder, file), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip()
                    if not line.strip():
                        break
        except OSError:
            continue
    return None


def _distributions(entry: str) -> list[tuple[str, str, str]]:
    """``(name, version, folder)`` of the distributions installed in one import path entry,
    read from the names of their ``.dist-info`` / ``.egg-info`` folders."""
    folder = entry or os.getcwd()
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    found = []
    for item in names:
        stem, dot, kind = item.rpartition(".")
        if not dot or kind not in ("dist-info", "egg-info"):
            continue
        name, _, rest = stem.partition("-")
        path = os.path.join(folder, item)
        version = rest.split("-py", 1)[0] if rest else _metadata_version(path)
        if name and version:
            found.append((_normalize(name), version, path))
    return found


def requirements(path: list[str] | None = None) -> str:
    """The distributions installed on the import path as a pip-style pinned list, sorted.

    Names are normalized (PEP 503). Editable installs appear as ``-e URL#egg=name``, VCS installs as
    ``name @ git+URL@commit``; where a distribution is installed twice, the one found first on
    the path (the one Python imports) is listed.
    """
    seen: dict[str, str] = {}
    for entry in sys.path if path is None else path:
        for name, version, folder in _distributions(entry):
            if name not in seen:
                seen[name] = _direct_url(folder, name, version) or f"{name}=={version}"
    return "".join(f"{seen[k]}\n" for k in sorted(seen))


def environment_files(cache: str | None = None) -> dict[str, bytes]:
    """``environment.json`` and ``requirements.txt`` of this process.

    They are computed once for what determines them (the interpreter, the import path and the
    times its folders last changed, which an install or removal of a package moves, the
    environment variables, the working directory, host, user and system) and kept in memory,
    and in the folder ``cache`` when given (a file per key, written atomically), so that a
    sweep's trials and the next runs share them; git stores the identical blobs once."""
    key = _environment_key()
    if key in _ENVIRONMENT:
        return _ENVIRONMENT[key]
    file = os.path.join(cache, key + ".json") if cache else None
    files = _cached(file) if file else None
    if files is None:
        try:
            env = environment()
            files = {
                ENVIRONMENT: dumps_json(converter().unstructure(env), indent=2).encode(),
                REQUIREMENTS: requirements().encode(),
            }
        except Exception:  # a trial is never lost for want of a detail of its environment
            return {"environment-error.txt": traceback.format_exc().encode()}
        if file:
            _keep(file, files)
    _ENVIRONMENT.clear()
    _ENVIRONMENT[key] = files
    return files


_ENVIRONMENT: dict[str, dict[str, bytes]] = {}


def _environment_key() -> str:
    """A digest of everything :func:`environment` and :func:`requirements` read."""
    import hashlib

    def changed(entry: str) -> float:
        try:
            return os.stat(entry or os.getcwd()).st_mtime
        except OSError:
            return 0.0

    parts = [
        _CACHE_FORMAT,
        sys.executable,
        sys.version,
        os.getcwd(),
        *os.uname(),
        str(os.getuid()) if hasattr(os, "getuid") else "",
        *(f"{entry}\0{changed(entry)}" for entry in sys.path),
        *(f"{name}={value}" for name, value in sorted(os.environ.items())),
    ]
    text = "\0\n".join(parts).encode("utf-8", "surrogateescape")
    return hashlib.sha256(text).hexdigest()[:32]


_CACHE_FORMAT = "mitosis-environment-1"


def _cached(file: str) -> dict[str, bytes] | None:
    """The files kept in ``file``, or None when it is missing or not what
    :func:`_keep` wrote (then they are computed again)."""
    try:
        with open(file, "rb") as f:
            kept = json.load(f)
    except (OSError, ValueError):
        return None
    if not (
        isinstance(kept, dict)
        and kept.get("format") == _CACHE_FORMAT
        and isinstance(kept.get(ENVIRONMENT), str)
        and isinstance(kept.get(REQUIREMENTS), str)
    ):
        return None
    return {ENVIRONMENT: kept[ENVIRONMENT].encode(), REQUIREMENTS: kept[REQUIREMENTS].encode()}


def _keep(file: str, files: dict[str, bytes]) -> None:
    """Write ``files`` to ``file`` atomically; a cache that cannot be written is skipped."""
    text = json.dumps({"format": _CACHE_FORMAT, **{k: v.decode() for k, v in files.items()}})
    temporary = f"{file}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(file), exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, file)
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(temporary)


@attrs.frozen
class CodeSnapshot:
    """The code as a trial found it: the git state of its repository (None outside git) and the
    uncommitted diff (``code.diff`` of the trial's folder)."""

    state: CodeState | None
    diff: bytes = b""


def read_code(start: str | os.PathLike[str], exclude: str | None = None) -> CodeSnapshot:
    """The git state of the repository containing ``start``, and its uncommitted diff.

    The diff holds tracked files changed since HEAD (staged or not) and untracked, not ignored,
    files as new files (those over 1 MiB are only named); untracked files under ``exclude`` (a
    store inside the work tree) are left out. The state is None outside git. Nothing is written:
    the index's stat cache is read, never refreshed, and only changed files are read whole.
    """
    from dulwich.errors import NotGitRepository
    from dulwich.refs import HEADREF
    from dulwich.repo import Repo

    try:
        repo = Repo.discover(str(start))
    except NotGitRepository:
        return CodeSnapshot(None)
    with repo:
        if repo.bare:
            return CodeSnapshot(None)
        try:
            head: ObjectID | None = repo.head()
        except KeyError:
            head = None
        chain, _ = repo.refs.follow(HEADREF)
        branch = chain[-1].decode() if len(chain) > 1 else None
        if branch and branch.startswith("refs/heads/"):
            branch = branch[len("refs/heads/") :]
        config = repo.get_config()
        remotes = {}
        for section in config.sections():
            if len(section) == 2 and section[0] == b"remote":
                try:
                    url = config.get(section, b"url").decode()
                except KeyError:
                    continue
                remotes[section[1].decode()] = redact_value(url)
        changed, untracked = _changes(repo, head, exclude)
        diff = io.BytesIO()
        if head is not None and changed:
            from dulwich.diff import diff_working_tree_to_tree

            diff_working_tree_to_tree(repo, diff, head, sorted(changed))
        _diff_untracked(repo.path, untracked, diff)
        state = CodeState(
            repository=str(Path(repo.path).resolve()),
            commit=head.decode() if head else None,
            branch=branch,
            remotes=remotes,
            dirty=bool(changed) or bool(diff.getvalue()),
        )
        return CodeSnapshot(state, diff.getvalue())


def _changes(
    repo: Repo, head: ObjectID | None, exclude: str | None
) -> tuple[set[bytes], list[str]]:
    """The tracked paths changed since ``head`` (staged, or in the work tree by the index's
    stat cache), and the untracked, not ignored, files (without those under ``exclude``)."""
    from dulwich.index import get_unstaged_changes
    from dulwich.objects import Commit

    index = repo.open_index()
    tree = None
    if head is not None:
        commit = repo[head]
        tree = commit.tree if isinstance(commit, Commit) else None
    changed = {new or old for (old, new), _, _ in index.changes_from_tree(repo.object_store, tree)}
    changed.update(get_unstaged_changes(index, repo.path))
    changed.discard(None)
    tracked = set(index.paths())
    return {p for p in changed if p is not None}, _untracked(repo, tracked, exclude)


def _untracked(repo: Repo, tracked: set[bytes], exclude: str | None) -> list[str]:
    """Files of the work tree that the index does not hold and no ignore rule covers, walked
    without entering ignored folders, ``.git``, nested repositories or ``exclude``."""
    from dulwich.ignore import IgnoreFilterManager

    ignore = IgnoreFilterManager.from_repo(repo)
    root = os.path.realpath(repo.path)
    skip = os.path.realpath(exclude) if exclude else None
    found = []
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        dirs[:] = sorted(
            d
            for d in dirs
            if d != ".git"
            and os.path.join(folder, d) != skip
            and not os.path.exists(os.path.join(folder, d, ".git"))
            and not ignore.may_prune_directory(f"{prefix}{d}/")
        )
        for name in files:
            if name == ".git":  # a linked worktree's or a submodule's pointer to its git dir
                continue
            path = prefix + name
            if os.fsencode(path) not in tracked and ignore.is_ignored(path) is not True:
                found.append(path)
    return found


def _diff_untracked(root: str, paths: list[str], out: io.BytesIO) -> None:
    if not paths:
        return
    from dulwich.objects import Blob
    from dulwich.patch import write_blob_diff

    for rel in sorted(paths):
        file = Path(root, rel)
        if not file.is_file():
            continue
        if file.stat().st_size > _UNTRACKED_LIMIT:
            out.write(f"{UNTRACKED_NOTE}{rel}\n".encode())
            continue
        blob = Blob.from_string(file.read_bytes())
        write_blob_diff(out, (None, None, None), (rel.encode(), 0o100644, blob))
