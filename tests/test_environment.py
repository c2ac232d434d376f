"""What a trial records of its environment: requirements, code state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import git

from mitosis.run.environment import CodeSnapshot, read_code, requirements


def make_dist(site: Path, folder: str, direct_url: dict | None = None, version: str = "") -> None:
    info = site / folder
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: x\nVersion: {version}\n\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))


def test_requirements_record_pinned_editable_and_vcs_installs(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    make_dist(first, "Plain_Pkg-1.2.3.dist-info")
    make_dist(
        first,
        "editable_pkg-0.1.dist-info",
        {"url": "file:///home/me/pkg", "dir_info": {"editable": True}},
    )
    make_dist(
        first,
        "vcs_pkg-2.0.dist-info",
        {
            "url": "https://bob:pw@example.org/vcs.git",
            "vcs_info": {"vcs": "git", "commit_id": "abc123"},
        },
    )
    make_dist(first, "source_tree.egg-info", version="0.9")  # no version in the folder name
    make_dist(second, "plain_pkg-9.9.dist-info")  # shadowed: the first on the path wins
    listed = requirements([str(first), str(second), str(tmp_path / "missing")]).splitlines()
    assert listed == [
        "-e file:///home/me/pkg#egg=editable-pkg  # editable-pkg==0.1 (editable)",
        "plain-pkg==1.2.3",
        "source-tree==0.9",
        "vcs-pkg @ git+https://example.org/vcs.git@abc123",
    ]


def test_requirements_agree_with_pip_freeze():
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ours = {line.split("==")[0] for line in requirements().splitlines() if "==" in line}
    theirs = {
        line.split("==")[0].lower().replace("_", "-").replace(".", "-")
        for line in freeze.splitlines()
        if "==" in line
    }
    assert theirs <= ours


def test_code_state_of_a_clean_dirty_and_missing_repository(tmp_path):
    assert read_code(tmp_path) == CodeSnapshot(None, b"")
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "work", cwd=repo)
    state, diff = _code(repo)
    assert state is not None and state.commit is None and state.branch == "work"
    (repo / "a.py").write_text("x = 1\n")
    git("add", "a.py", cwd=repo)
    git("commit", "-qm", "a", cwd=repo)
    state, diff = _code(repo)
    assert state is not None and not state.dirty and diff == b""
    assert state.commit == git("rev-parse", "HEAD", cwd=repo).strip()
    (repo / "a.py").write_text("x = 2\n")
    (repo / "b.py").write_text("y = 1\n")
    (repo / "big.bin").write_bytes(b"0" * (2 << 20))
    state, diff = _code(repo / "a.py")
    assert state is not None and state.dirty
    text = diff.decode()
    assert "-x = 1\n+x = 2" in text and "+y = 1" in text
    assert "untracked file not copied (over 1 MiB): big.bin" in text
    # the recorded diff applies with git itself to the commit
    (repo / "a.py").write_text("x = 1\n")
    (repo / "b.py").unlink()
    patch = tmp_path / "code.diff"
    patch.write_bytes(diff.replace(b"# untracked file not copied (over 1 MiB): big.bin\n", b""))
    git("apply", str(patch), cwd=repo)
    assert (repo / "a.py").read_text() == "x = 2\n" and (repo / "b.py").read_text() == "y = 1\n"
    git("checkout", "-q", "--detach", cwd=repo)
    state, _ = _code(repo)
    assert state is not None and state.branch is None


def test_untracked_files_in_new_folders_and_a_nested_store(tmp_path):
    repo = tmp_path / "repo"
    (repo / "newpkg").mkdir(parents=True)
    git("init", "-q", cwd=repo)
    (repo / "newpkg" / "helper.py").write_text("HELP = 1\n")
    git("init", "-q", "--bare", str(repo / "trials.git"))
    state, diff = _code(repo, exclude=str(repo / "trials.git"))
    assert state is not None and state.dirty
    assert b"+HELP = 1" in diff and b"newpkg/helper.py" in diff
    assert b"trials.git" not in diff
    state, diff = _code(repo, exclude=str(repo))  # the store is this repository itself
    assert b"newpkg/helper.py" in diff


def _code(start, exclude=None):
    """The code state and diff that a trial would record from ``start``."""
    snapshot = read_code(start, exclude)
    return snapshot.state, snapshot.diff


def test_the_code_state_is_read_without_writing_the_index(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    (repo / "a.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text("build/\n*.log\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.py").write_text("ignored\n")
    (repo / "run.log").write_text("ignored\n")
    git("add", "a.py", ".gitignore", cwd=repo)
    git("commit", "-qm", "a", cwd=repo)
    index = repo / ".git" / "index"
    before = index.read_bytes()
    # the file's stat changes but not its content: git status would refresh the index
    (repo / "a.py").write_text("x = 1\n")
    state, diff = _code(repo)
    assert state is not None and not state.dirty and diff == b""
    assert index.read_bytes() == before
    git("add", "a.py", cwd=repo)  # staged, and the work tree the same as HEAD
    (repo / "a.py").write_text("x = 3\n")
    git("add", "a.py", cwd=repo)
    (repo / "a.py").write_text("x = 1\n")
    state, diff = _code(repo)
    assert state is not None and state.dirty  # a staged change is a change
    assert b"build/out.py" not in diff and b"run.log" not in diff


def test_the_environment_is_computed_once_per_interpreter_path_and_variables(tmp_path):
    cache = tmp_path / "environment"
    script = (
        "import json, os, sys\n"
        "from mitosis.run import environment as e\n"
        "calls = []\n"
        "real = e.requirements\n"
        "e.requirements = lambda: calls.append(1) or real()\n"
        f"files = e.environment_files({str(cache)!r})\n"
        "env = json.loads(files['environment.json'])\n"
        "print(json.dumps([len(calls), env['variables'].get('MITOSIS_T')]))\n"
    )

    def run(value: str) -> list:
        env = {**os.environ, "MITOSIS_T": value}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)

    assert run("a") == [1, "a"]  # computed
    assert run("a") == [0, "a"]  # read back in a new process
    assert run("b") == [1, "b"]  # another environment: computed again
    for kept in cache.iterdir():  # a damaged cache file is computed again, never trusted
        kept.write_text('{"format": "mitosis-environment-1", "environment.json": 1}')
    assert run("a") == [1, "a"]
    for kept in cache.iterdir():
        kept.write_bytes(b"\x00garbage")
    assert run("b") == [1, "b"]
    assert not [p for p in cache.iterdir() if p.suffix == ".tmp"]


def test_an_origin_keeps_the_default_results_threshold():
    from mitosis.model.layout import RESULTS_THRESHOLD
    from mitosis.run.trial import Origin

    assert Origin().results_threshold == RESULTS_THRESHOLD
