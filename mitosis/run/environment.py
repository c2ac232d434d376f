"""What a trial ran on: packages, environment variables (secrets redacted), platform, code state."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path

import attrs

from ..model.records import CodeState, Environment
from ..model.redact import redact_env, redact_value, storable, strip_credentials

__all__ = [
    "UNTRACKED_NOTE",
    "CodeSnapshot",
    "environment",
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
    store inside the work tree) are left out. The state is None outside git.
    """
    from dulwich import porcelain
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
            head: bytes | None = repo.head()
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
        diff = io.BytesIO()
        status = porcelain.status(repo, untracked_files="all")
        if head is not None:
            porcelain.diff(repo, commit=head, outstream=diff)
        untracked = [p.decode() if isinstance(p, bytes) else p for p in status.untracked]
        skip = Path(exclude).resolve() if exclude else None
        if skip is not None and skip != Path(repo.path).resolve():  # a store nested in the tree
            untracked = [
                p for p in untracked if not Path(repo.path, p).resolve().is_relative_to(skip)
            ]
        _diff_untracked(repo.path, untracked, diff)
        dirty = bool(diff.getvalue()) or any(status.staged.values()) or bool(status.unstaged)
        state = CodeState(
            repository=str(Path(repo.path).resolve()),
            commit=head.decode() if head else None,
            branch=branch,
            remotes=remotes,
            dirty=dirty,
        )
        return CodeSnapshot(state, diff.getvalue())


def _diff_untracked(root: str, paths: list[str], out: io.BytesIO) -> None:
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
