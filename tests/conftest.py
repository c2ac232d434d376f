"""Fixtures: real temporary git repositories, with no personal git configuration leaking in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner

ASSETS = Path(__file__).parent / "assets"


def git(
    *args: str,
    cwd: Path | str | None = None,
    check: bool = True,
    input: str | None = None,
    text: bool = True,
) -> Any:
    """Run the git CLI, the independent peer that reads what mitosis wrote; its stdout."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        input=input if text else None,
        text=text,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def run_writers(script: str, *args: str, count: int) -> None:
    """Run ``count`` processes of ``python -c script args`` at once; each must succeed."""
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(count)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=900)
        assert writer.returncode == 0, err.decode()


def wait_for_packer(repo: Path, timeout: float = 120.0) -> None:
    """Wait while a background packer (started past a number of loose objects) is at work in
    ``repo``, so that git fsck does not race with it moving objects into a pack."""
    import time

    git_dir = Path(git("rev-parse", "--git-dir", cwd=repo).strip())
    lock = (git_dir if git_dir.is_absolute() else repo / git_dir) / "mitosis" / "gc.lock"
    deadline = time.monotonic() + timeout
    while lock.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture(autouse=True)
def clean_git_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith("GIT_") or name.startswith("MITOSIS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "author@example.org")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test Author")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "author@example.org")


@pytest.fixture
def investigation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A git repository with one committed experiments module; the current directory is it.

    Yields the imported module (a unique name per test, so each trial imports this copy).
    """
    root = tmp_path / "investigation"
    root.mkdir()
    name = f"experiments_{uuid.uuid4().hex[:8]}"
    shutil.copy(ASSETS / "experiments.py", root / f"{name}.py")
    git("init", "-q", "-b", "main", cwd=root)
    git("add", ".", cwd=root)
    git("commit", "-q", "-m", "experiments", cwd=root)
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    module = __import__(name)
    yield module
    sys.modules.pop(name, None)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    """A bare repository that machines push to and pull from."""
    path = tmp_path / "hub.git"
    git("init", "-q", "--bare", str(path))
    return path


def server(tmp_path: Path, name: str, hub: Path) -> Path:
    """A machine's store: a repository whose origin is the hub."""
    path = tmp_path / name
    git("init", "-q", str(path))
    git("remote", "add", "origin", str(hub), cwd=path)
    return path
