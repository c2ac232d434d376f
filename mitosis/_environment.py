"""What a trial ran on: packages, environment variables (secrets redacted), platform, code state."""

from __future__ import annotations

import fnmatch
import getpass
import io
import json
import os
import platform
import re
import socket
import sys
from importlib import metadata
from pathlib import Path

from ._model import CodeState, Environment

__all__ = [
    "SECRET_PATTERNS",
    "code_state",
    "environment",
    "hostname",
    "redact_env",
    "requirements",
    "strip_credentials",
    "username",
]

#: Names of environment variables whose values are recorded as ``<redacted>`` (case-insensitive
#: globs). Add more with the ``MITOSIS_REDACT`` environment variable, a comma-separated list.
SECRET_PATTERNS = (
    "*TOKEN*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*KEY*",
    "*CREDENTIAL*",
    "*AUTH*",
    "*COOKIE*",
    "*PRIVATE*",
)
REDACTED = "<redacted>"
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_UNTRACKED_LIMIT = 1 << 20  # untracked files larger than this are named, not copied, in code.diff


def strip_credentials(text: str) -> str:
    """Remove user names and passwords from URLs: ``https://u:p@host`` -> ``https://host``."""
    return _URL_USERINFO.sub(r"\g<scheme>", text)


def redact_env(env: dict[str, str], extra: str | None = None) -> dict[str, str]:
    """Environment variables with secret-looking names redacted and URL credentials removed."""
    patterns = [
        *SECRET_PATTERNS,
        *(p.strip().upper() for p in (extra or "").split(",") if p.strip()),
    ]
    return {
        name: REDACTED
        if any(fnmatch.fnmatchcase(name.upper(), p) for p in patterns)
        else strip_credentials(value)
        for name, value in sorted(env.items())
    }


def hostname() -> str:
    return socket.gethostname()


def username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def environment() -> Environment:
    """The interpreter, platform and environment variables of this process."""
    return Environment(
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        executable=sys.executable,
        platform=platform.platform(),
        machine=platform.machine(),
        host=hostname(),
        user=username(),
        cwd=os.getcwd(),
        variables=redact_env(dict(os.environ), os.environ.get("MITOSIS_REDACT")),
    )


def _requirement(dist: metadata.Distribution) -> str:
    name = dist.metadata["Name"]
    version = dist.version
    text = dist.read_text("direct_url.json")
    if not text:
        return f"{name}=={version}"
    try:
        direct = json.loads(text)
        url = strip_credentials(direct["url"])
    except (ValueError, KeyError, TypeError):
        return f"{name}=={version}"
    if direct.get("dir_info", {}).get("editable"):
        return f"-e {url}  # {name}=={version} (editable)"
    vcs = direct.get("vcs_info")
    if vcs:
        return f"{name} @ {vcs.get('vcs', 'git')}+{url}@{vcs.get('commit_id', '')}"
    return f"{name} @ {url}"


def requirements() -> str:
    """The installed distributions as a pip-style pinned list, one per line, sorted by name.

    Editable installs appear as ``-e URL``, VCS installs as ``name @ git+URL@commit``.
    """
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        key = re.sub(r"[-_.]+", "-", name).lower()
        seen.setdefault(key, _requirement(dist))  # the first on sys.path is the one imported
    return "".join(f"{seen[k]}\n" for k in sorted(seen))


def code_state(start: str | os.PathLike[str]) -> tuple[CodeState | None, bytes]:
    """The git state of the repository containing ``start``, and its uncommitted diff.

    The diff holds tracked files changed since HEAD (staged or not) and untracked, not ignored,
    files as new files (those over 1 MiB are only named). Returns ``(None, b"")`` outside git.
    """
    from dulwich import porcelain
    from dulwich.errors import NotGitRepository
    from dulwich.refs import HEADREF
    from dulwich.repo import Repo

    try:
        repo = Repo.discover(str(start))
    except NotGitRepository:
        return None, b""
    with repo:
        if repo.bare:
            return None, b""
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
                remotes[section[1].decode()] = strip_credentials(url)
        diff = io.BytesIO()
        status = porcelain.status(repo)
        if head is not None:
            porcelain.diff(repo, commit=head, outstream=diff)
        _diff_untracked(repo.path, status.untracked, diff)
        dirty = bool(diff.getvalue()) or any(status.staged.values()) or bool(status.unstaged)
        state = CodeState(
            repository=str(Path(repo.path).resolve()),
            commit=head.decode() if head else None,
            branch=branch,
            remotes=remotes,
            dirty=dirty,
        )
        return state, diff.getvalue()


def _diff_untracked(root: str, paths: list[str] | list[bytes], out: io.BytesIO) -> None:
    from dulwich.objects import Blob
    from dulwich.patch import write_blob_diff

    for raw in paths:
        rel = raw.decode() if isinstance(raw, bytes) else raw
        file = Path(root, rel)
        if not file.is_file():
            continue
        if file.stat().st_size > _UNTRACKED_LIMIT:
            out.write(f"# untracked file not copied (over 1 MiB): {rel}\n".encode())
            continue
        blob = Blob.from_string(file.read_bytes())
        write_blob_diff(out, (None, None, None), (rel.encode(), 0o100644, blob))
