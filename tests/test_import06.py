"""Importing the history of the earlier mitosis (0.6): trials folders written by the real 0.6,
run in a virtualenv of its own (cached between runs), then imported with ``mitosis import-0.6``."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import ASSETS, git

import mitosis
from mitosis.cli import main
from mitosis.run.legacy import _step_names

VERSION = "0.6.1"
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "mitosis-tests"
    / f"mitosis-{VERSION}-py{sys.version_info[0]}.{sys.version_info[1]}"
)
# what pip says when it cannot reach the index (the only reason to skip)
_OFFLINE = (
    "NewConnectionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "No matching distribution found for mitosis",
    "Could not find a version that satisfies the requirement mitosis",
)
PYPROJECT = """\
[tool.mitosis.steps]
data = ["legacy_experiments:gen_data", "legacy_experiments:data_config"]
fit = ["legacy_experiments:fit_and_score", "legacy_experiments:meth_config"]
nothing = ["legacy_experiments:do_nothing", "legacy_experiments:anything"]
"""
# (0.6's command line arguments, whether the trial succeeds)
TRIALS = [
    (
        ["data", "fit", "-p", "data.length=short", "-p", "fit.metric=len", "-e", "data.extra=True"],
        True,
    ),
    (["data", "fit", "-p", "data.length=long", "-p", "fit.metric=zero"], True),
    (["nothing", "-p", "nothing.solver=fast"], True),
    (["fit", "-p", "fit.metric=len"], False),  # no data for fit: a failed trial
]


def _python06() -> Path:
    """The Python of a virtualenv with mitosis 0.6 (made once, then cached)."""
    python = CACHE / "bin" / "python"
    if (CACHE / "ready").exists():
        return python
    shutil.rmtree(CACHE, ignore_errors=True)
    venv.create(CACHE, with_pip=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"mitosis=={VERSION}", "numpy", "ipykernel"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(CACHE, ignore_errors=True)
        if any(marker in done.stdout + done.stderr for marker in _OFFLINE):
            pytest.skip(
                f"mitosis=={VERSION} cannot be installed (PyPI unreachable): {done.stderr[-300:]}"
            )
        raise AssertionError(f"pip could not install mitosis=={VERSION}:\n{done.stderr}")
    (CACHE / "ready").write_text(VERSION)
    return python


@pytest.fixture(scope="module")
def trials06(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trials folder written by the real mitosis 0.6: three trials that succeeded (a chain of
    two steps twice, a step with a defaultdict lookup) and one that failed."""
    python = _python06()
    root = tmp_path_factory.mktemp("investigation06")
    shutil.copy(ASSETS / "legacy_experiments.py", root / "legacy_experiments.py")
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / ".gitignore").write_text("trials/\n__pycache__/\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "MITOSIS_"))},
        "PYTHONPATH": str(root),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Old Author",
        "GIT_AUTHOR_EMAIL": "old@example.org",
        "GIT_COMMITTER_NAME": "Old Author",
        "GIT_COMMITTER_EMAIL": "old@example.org",
    }
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["commit", "-q", "-m", "0.6 experiments"],
    ):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)
    for args, succeeds in TRIALS:
        done = subprocess.run(
            [str(python), "-m", "mitosis", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert (done.returncode == 0) == succeeds, done.stderr[-2000:]
    return root / "trials"


def _import(runner, folder: Path, store: Path) -> str:
    result = runner.invoke(main, ["import-0.6", str(folder), "--store", str(store)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.legacy
def test_import_of_real_06_trials(trials06, tmp_path, runner):
    store = tmp_path / "store"
    code = git("rev-parse", "HEAD", cwd=trials06.parent).strip()
    output = _import(runner, trials06, store)
    assert "4 trials imported, 0 already there, 0 things skipped" in output
    assert "locked data+fit data.length=short" in output
    found = mitosis.trials(store=store)
    assert len(found) == 4
    by_experiment = {}
    for trial in found:
        by_experiment.setdefault(trial.experiment, []).append(trial)
    assert sorted(by_experiment) == ["data+fit", "fit", "nothing"]
    chain = sorted(by_experiment["data+fit"], key=lambda t: t.params["data.length"].variant)
    long, short = chain
    assert short.status == "ok" and short.main == 3 and long.main == 0
    assert short.code.commit == code and not short.code.dirty
    assert short.function == "legacy_experiments:gen_data, legacy_experiments:fit_and_score"
    assert short.params["data.length"].source == "variant" and short.value("data.length") == 3
    assert short.params["data.extra"].source == "literal" and short.value("data.extra") is True
    assert short.value("fit.metric") == "len"
    # the pickled results were copied; they load as 0.6 wrote them
    first, last = mitosis.load_trial_data(short.id, store=store)
    assert first == {"data": [1.0] * 3, "extra": True, "note": {"kind": "ones"}}
    assert last == {"main": 3, "metrics": {"n": 3}}
    assert "making 3 points" in short.read("output.log").decode()
    assert b"<html" in short.read("legacy/notebook.html").lower()
    # the original times: the commit is dated when the trial ran, as its record says
    dated = git("log", "--format=%at %ct", "--grep", short.id, "mitosis/data+fit", cwd=store)
    ran = int(dt.datetime.fromisoformat(short.started).timestamp())
    assert dated.split() == [str(ran), str(ran)]
    folders = [p.name for p in trials06.iterdir() if p.is_dir()]
    assert any(name.startswith(short.started[:10]) for name in folders)
    nothing = by_experiment["nothing"][0]
    assert nothing.main is None and nothing.value("solver") is None
    assert nothing.params["solver"].variant == "fast"
    failed = by_experiment["fit"][0]
    assert failed.status == "failed" and "notebook.html" in failed.error
    assert [s.status for s in failed.steps] == ["failed"]
    # the command line reads them beside new trials: log, show, variants
    log = runner.invoke(main, ["log", "data+fit", "--store", str(store), "--json"])
    assert log.exit_code == 0 and len(json.loads(log.output)) == 2
    show = runner.invoke(main, ["show", short.id, "--store", str(store)])
    assert "data.length = short = 3  (variant)" in show.output
    assert "legacy/source.py" in show.output
    variants = runner.invoke(main, ["variants", "data+fit", "--store", str(store)])
    assert "short" in variants.output and "long" in variants.output
    git("fsck", "--strict", cwd=store)
    # a second import adds nothing
    before = git("rev-parse", "--all", cwd=store)
    assert "0 trials imported, 4 already there" in _import(runner, trials06, store)
    assert git("rev-parse", "--all", cwd=store) == before


@pytest.mark.legacy
def test_import_of_a_damaged_06_folder(trials06, tmp_path, runner):
    damaged = tmp_path / "trials"
    shutil.copytree(trials06, damaged, symlinks=True)
    short = next(
        p
        for p in damaged.iterdir()
        if (p / "config.txt").exists() and "'length': 3" in (p / "config.txt").read_text()
    )
    (short / "results_1.dill").unlink()
    with sqlite3.connect(damaged / "data_fit.db") as conn:
        conn.execute(
            """UPDATE trials_data_fit SET "commit" = 'garbage' WHERE variant LIKE '%long%'"""
        )
    (damaged / "broken.db").write_bytes(b"not a database at all" * 10)
    # a result whose unpickling would run code: the import copies it and never unpickles it
    marker = tmp_path / "unpickled"
    nothing = next(
        p
        for p in damaged.iterdir()
        if (p / "config.txt").exists() and "solver" in (p / "config.txt").read_text()
    )
    (nothing / "results_0.dill").write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    store = tmp_path / "store"
    output = _import(runner, damaged, store)
    assert "3 trials imported" in output
    assert "results_1.dill missing; imported without it" in output
    assert "its commit 'garbage' is not a commit id" in output
    assert "broken.db: not a readable SQLite database" in output
    assert not marker.exists()
    imported = mitosis.trials("data+fit", store=store)
    assert len(imported) == 1 and imported[0].main == 3
    assert "results/fit.dill" not in imported[0].files
    again = _import(runner, damaged, store)
    assert "0 trials imported, 3 already there" in again


def test_import_refuses_what_is_no_folder(tmp_path, runner):
    with pytest.raises(mitosis.BadParameter, match="is not a folder"):
        mitosis.import_06(tmp_path / "nowhere", store=tmp_path / "store")
    result = runner.invoke(main, ["import-0.6", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_import_of_a_folder_without_06_trials(tmp_path, runner):
    (tmp_path / "trials").mkdir()
    output = _import(runner, tmp_path / "trials", tmp_path / "store")
    assert "0 trials imported" in output and "no 0.6 database (*.db) here" in output


@pytest.mark.parametrize(
    ("name", "variant", "count", "expected"),
    [
        ("data_fit", "data-True-short+fit-len", 2, ["data", "fit"]),
        ("make_data_fit", "make_data-a+fit-b", 2, ["make_data", "fit"]),
        ("make_data_fit", "noparams+fit-b", 2, ["make_data", "fit"]),
        ("sine", "noparams", 1, ["sine"]),
        ("sine", "sine-low", 1, ["sine"]),
        ("data_fit", "data-a", 2, None),  # one step's variant for two steps
        ("data_fit", "other-a+fit-b", 2, None),
    ],
)
def test_the_steps_names_of_a_06_trial(name, variant, count, expected):
    assert _step_names(name, variant, count) == expected


def _folder_of(root: Path, text: str) -> Path:
    """The 0.6 trial folder whose config.txt holds ``text``."""
    return next(
        p
        for p in root.iterdir()
        if (p / "config.txt").is_file() and text in (p / "config.txt").read_text()
    )


@pytest.mark.legacy
def test_a_06_folder_brings_no_file_from_outside_it(trials06, tmp_path):
    """A trials folder from someone else: symbolic links to files of this machine (a secret,
    the importing process's own environment), a trial folder that is a link, a notebook name
    that climbs out; none of what they reach enters the store, and each is said."""
    hostile = tmp_path / "sent" / "trials"
    shutil.copytree(trials06, hostile, symlinks=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("AUDIT-SECRET-IN-A-FILE\n")
    short = _folder_of(hostile, "'length': 3")
    (short / "results_0.dill").unlink()
    (short / "results_0.dill").symlink_to(secret)
    (short / "experiment.log").unlink()
    (short / "experiment.log").symlink_to("/proc/self/environ")
    long = _folder_of(hostile, "'length': 5")
    (short / "requirements.txt").unlink()
    (short / "requirements.txt").symlink_to(long / "requirements.txt")  # inside: left out too
    outside = tmp_path / "outside-folder"
    shutil.move(long, outside)
    long.symlink_to(outside)  # a trial folder that is a link
    with sqlite3.connect(hostile / "nothing.db") as conn:
        (filename,) = conn.execute("SELECT filename FROM trials_nothing").fetchone()
        key = filename.rsplit("_", 1)[1]
        climbing = f"trial_x/../../outside_{key}"
        conn.execute("UPDATE trials_nothing SET filename = ?", (climbing,))
    (hostile / "trial_x").mkdir()
    (tmp_path / "sent" / f"outside_{key}").write_text("AUDIT-SECRET-NOTEBOOK")
    for folder in hostile.iterdir():  # Python the parser cannot build (MemoryError, Recursion)
        if folder.is_dir() and not folder.is_symlink() and folder not in (short, long):
            (folder / "config.txt").write_text("-" * 100_000 + "1\n")
            (folder / "source.py").write_text("a" + ".a" * 100_000 + "\n")
    store = tmp_path / "store"
    env = {**os.environ, "AUDIT_TOKEN": "AUDIT-SECRET-IN-THE-ENVIRONMENT"}
    done = subprocess.run(
        [shutil.which("mitosis") or "mitosis", "import-0.6", str(hostile), "--store", str(store)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"{short.name}/results_0.dill is a symbolic link: left out" in out
    assert f"{short.name}/experiment.log is a symbolic link: left out" in out
    assert f"{short.name}/requirements.txt is a symbolic link: left out" in out
    assert f"its folder {long.name} is a symbolic link" in out
    assert f"its notebook '{climbing}' is not a file name of the folder" in out
    # the failed trial's source.py and config.txt: parsed, refused, never a crash
    assert "/source.py names no steps" in out
    # the short trial, without what its links reach; not the linked folder, the one whose
    # notebook climbs out, nor the failed one
    assert "1 trials imported" in out
    everything = subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch"], cwd=store, capture_output=True
    ).stdout
    history = subprocess.run(["git", "log", "--all", "-p"], cwd=store, capture_output=True)
    assert b"AUDIT-SECRET" not in everything and b"AUDIT-SECRET" not in history.stdout
    git("fsck", "--strict", cwd=store)


@pytest.mark.legacy
def test_a_big_06_result_is_streamed_and_kept_off_the_branch(trials06, tmp_path):
    big = tmp_path / "trials"
    shutil.copytree(trials06, big, symlinks=True)
    short = _folder_of(big, "'length': 3")
    blob = os.urandom(3 << 20)  # over the threshold of results kept off the branch
    (short / "results_1.dill").write_bytes(blob)
    with (short / "experiment.log").open("ab") as log:  # a line longer than a slice read
        log.write(b"x" * (1 << 17) + b"INFO:2001-01-01 00:00:00,000: not a line's start\n")
    store = tmp_path / "store"
    report = mitosis.import_06(big, store=store)
    assert len(report.imported) == 4, report
    (trial,) = [t for t in mitosis.trials("data+fit", store=store) if t.main == 3]
    assert trial.detached == ["results/fit.dill"] and trial.format == 2
    assert trial.read("results/fit.dill") == blob
    assert not trial.started.startswith("2001")
    tree = git("ls-tree", "-r", "--name-only", "mitosis/data+fit", cwd=store)
    assert f"trials/{trial.id[:2]}/{trial.id}/results/fit.dill.pointer" in tree.split()
    git("fsck", "--strict", cwd=store)
