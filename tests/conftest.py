"""Fixtures: real temporary git repositories, with no personal git configuration leaking in."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

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
    yield from committed_module(tmp_path / "investigation", "experiments", monkeypatch)


def committed_module(
    root: Path, asset: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    """The module ``tests/assets/<asset>.py``, committed alone in a new git repository at
    ``root`` (the current directory while it lives), imported under a unique name."""
    root.mkdir()
    name = f"{asset}_{uuid.uuid4().hex[:8]}"
    shutil.copy(ASSETS / f"{asset}.py", root / f"{name}.py")
    git("init", "-q", "-b", "main", cwd=root)
    git("add", ".", cwd=root)
    git("commit", "-q", "-m", "experiments", cwd=root)
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    module = __import__(name)
    yield module
    sys.modules.pop(name, None)


class Process(NamedTuple):
    """A process of this machine, as ``/proc`` tells it."""

    pid: int
    parent: int
    state: str  # "Z": it has ended, not reaped yet
    command: bytes  # its arguments, each ended by NUL


def processes() -> list[Process]:
    """Every process of this machine (none where there is no ``/proc``); one that ends while
    they are read is left out."""
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        found.append(Process(int(entry), int(stat[1]), stat[0], command))
    return found


def bare_modules() -> set[str]:
    """The modules any interpreter here loads at start (an editable install's hook, .pth
    files), which a trial process has without importing them."""
    return set(
        subprocess.run(
            [sys.executable, "-c", "import sys; print(' '.join(sys.modules))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    )


def foreground_job() -> None:
    """A ``preexec_fn`` that makes a subprocess a terminal's foreground job as to Ctrl-C: its
    SIGINT default, whatever the test runner inherited (a background shell job ignores
    SIGINT, and so would every process it starts)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def console_script() -> str:
    """The installed `mitosis` command of this environment, which a user runs."""
    script = shutil.which("mitosis", path=str(Path(sys.executable).parent))
    assert script is not None, "pip install -e . installs the mitosis command"
    return script


PYPROJECT = """\
[project]
name = "investigation"

[tool.mitosis]

[tool.mitosis.experiments]
sine = {{ run = "{m}:sine", lookup = "{m}:lookup", untracked = ["gpu"] }}
echo = {{ run = "{m}:echo", lookup = "{m}:lookup" }}
fails = {{ run = "{m}:fails" }}
log = {{ run = "{m}:bare_number" }}
make_data = {{ run = "{m}:make_data", lookup = "{m}:data_lookup" }}
fit = {{ run = "{m}:fit" }}
pipeline = {{ steps = ["make_data", "fit"] }}

[tool.mitosis.steps]
legacy = ["{m}:sine", "{m}:lookup"]
"""


class Lab:
    """A temporary investigation: its folder and its experiments module's name."""

    def __init__(self, root: Path, module: str) -> None:
        self.root = root
        self.module = module

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the installed `mitosis ARGS` in the investigation, as a user would."""
        proc = subprocess.run(
            [console_script(), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env={**os.environ},
        )
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    root = tmp_path / "lab"
    root.mkdir()
    module = f"lab_{uuid.uuid4().hex[:8]}"
    shutil.copy(ASSETS / "experiments.py", root / f"{module}.py")
    (root / "pyproject.toml").write_text(PYPROJECT.format(m=module))
    git("init", "-q", "-b", "main", cwd=root)
    git("add", ".", cwd=root)
    git("commit", "-q", "-m", "investigation", cwd=root)
    monkeypatch.chdir(root)
    path = list(sys.path)
    yield Lab(root, module)
    sys.path[:] = path
    sys.modules.pop(module, None)


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
