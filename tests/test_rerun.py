"""Reproducing a trial from its record: `mitosis rerun` and `mitosis export`."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import attrs
import pytest

import mitosis
from tests.conftest import git

COMMITTED = """\
FACTOR = 2


class Scaler:
    def __init__(self, k):
        self.k = k


def fit(scale, scaler, offset=0.0):
    print("fitting with factor", FACTOR)
    return {"main": FACTOR * scale * scaler.k + offset, "metrics": {"factor": FACTOR}}
"""

# The trial runs with uncommitted changes: another factor, and a new (untracked) module.
DIRTY = COMMITTED.replace("FACTOR = 2", "from .extra import BONUS\n\nFACTOR = 3").replace(
    "+ offset,", "+ offset + BONUS,"
)

# Later, the code moves on: the tree is cleaned, the factor changes, the class is renamed.
LATER = COMMITTED.replace("FACTOR = 2", "FACTOR = 5").replace("Scaler", "Multiplier")


class Study:
    """An investigation repository with a package ``pkg`` whose ``model.fit`` is the
    experiment; a trial was recorded with uncommitted changes, then the code moved on."""

    def __init__(self, root: Path, pkg: str) -> None:
        self.root = root
        self.pkg = pkg
        self.model = root / pkg / "model.py"

    def cli(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """The installed `mitosis` command, as a user runs it (not `python -m mitosis`, which
        puts the current folder on the import path)."""
        command = shutil.which("mitosis")
        assert command is not None, "pip install -e . installs the mitosis command"
        return subprocess.run(
            [command, *args],
            cwd=cwd or self.root,
            capture_output=True,
            text=True,
        )

    def forget(self) -> None:
        """Forget the imported package, as a new process would."""
        for name in [n for n in sys.modules if n == self.pkg or n.startswith(self.pkg + ".")]:
            del sys.modules[name]

    def import_model(self) -> ModuleType:
        self.forget()
        return importlib.import_module(f"{self.pkg}.model")

    def move_on(self) -> None:
        """Clean the tree and commit other code."""
        git("checkout", "--", ".", cwd=self.root)
        git("clean", "-qfd", cwd=self.root)
        self.model.write_text(LATER)
        git("commit", "-qam", "later", cwd=self.root)


@pytest.fixture
def study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Study, mitosis.Trial]]:
    root = tmp_path / "study"
    pkg = f"pkg_{uuid.uuid4().hex[:8]}"
    (root / pkg).mkdir(parents=True)
    (root / pkg / "__init__.py").write_text("")
    s = Study(root, pkg)
    s.model.write_text(COMMITTED)
    git("init", "-q", "-b", "main", cwd=root)
    git("add", ".", cwd=root)
    git("commit", "-qm", "model", cwd=root)
    s.model.write_text(DIRTY)
    (root / pkg / "extra.py").write_text("BONUS = 0.5\n")
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    model = s.import_model()
    trial = mitosis.run(
        model.fit,
        {"scale": 2.0, "scaler": model.Scaler(10), "offset": "none"},
        lookup={"offset": {"none": 0.0}},
    )
    assert trial.main == 3 * 2.0 * 10 + 0.5 and trial.code is not None and trial.code.dirty
    s.move_on()
    yield s, trial
    s.forget()


def test_rerun_rebuilds_the_recorded_code_and_reproduces_the_results(study):
    s, original = study
    result = mitosis.rerun(original.id)
    assert result.agrees, result.results
    assert result.trial.main == original.main == 60.5
    assert result.trial.metrics == {"factor": 3}
    assert result.trial.rerun_of == original.id
    assert result.trial.code == attrs.evolve(original.code, repository=str(s.root.resolve()))
    assert result.trial.params == original.params  # the same values, names and fingerprints
    assert {a.name for a in result.results} == {"status", "main", "factor"}
    assert "fitting with factor 3" in result.trial.read("output.log").decode()
    trailers = git(
        "log",
        "-1",
        "--format=%(trailers:key=Mitosis-Rerun-Of,valueonly)",
        f"mitosis/{original.experiment}",
    )
    assert trailers.strip() == original.id
    assert git("status", "--porcelain", cwd=s.root) == ""  # the checkout was not touched
    assert "FACTOR = 5" in s.model.read_text()


def test_rerun_here_runs_the_current_checkout_and_says_how_it_differs(study):
    s, original = study
    proc = s.cli("rerun", original.id[:6], "--here")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # the value's class is gone from the current code: the rerun fails, and says why
    assert "Multiplier" not in proc.stderr and "Scaler" in proc.stderr
    assert f"code: commit: recorded {original.code.commit}" in proc.stderr
    assert f"code: changed: {s.pkg}/model.py" in proc.stderr
    assert f"code: only in the record: {s.pkg}/extra.py" in proc.stderr
    assert "does not reproduce" in proc.stderr
    (rerun,) = [t for t in mitosis.trials(original.experiment) if t.rerun_of == original.id]
    assert rerun.status == "failed" and "Scaler" in rerun.error
    assert "NO" in proc.stdout


def test_rerun_here_with_a_loadable_value_reports_other_results(study):
    s, original = study
    s.model.write_text(LATER.replace("Multiplier", "Scaler"))  # the class is back, factor 5
    git("commit", "-qam", "class back", cwd=s.root)
    s.forget()
    result = mitosis.rerun(original.id, here=True)
    assert not result.agrees
    assert result.trial.main == 5 * 2.0 * 10
    main = next(a for a in result.results if a.name == "main")
    assert (main.original, main.rerun, main.agrees) == (60.5, 100.0, False)
    assert f"changed: {s.pkg}/model.py" in result.code
    assert f"only in the record: {s.pkg}/extra.py" in result.code
    tolerant = mitosis.rerun(original.id, here=True, rel_tol=0.5)
    assert tolerant.agrees


def test_rerun_from_the_command_line(study):
    s, original = study
    proc = s.cli("rerun", original.id)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"rerunning trial {original.id}" in proc.stderr
    assert "reproduces trial" in proc.stdout
    assert "60.5" in proc.stdout


def test_a_colleague_reruns_in_a_fresh_clone_after_a_pull(study, tmp_path):
    s, original = study
    hub = tmp_path / "hub.git"
    git("init", "-q", "--bare", str(hub))
    git("remote", "add", "origin", str(hub), cwd=s.root)
    git("push", "-q", "origin", "main", cwd=s.root)
    mitosis.push("origin")
    clone = tmp_path / "colleague"
    git("clone", "-q", str(hub), str(clone))
    assert s.cli("pull", cwd=clone).returncode == 0
    proc = s.cli("rerun", original.id, cwd=clone)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reruns = [t for t in mitosis.trials(store=clone) if t.rerun_of == original.id]
    assert [t.main for t in reruns] == [60.5]
    assert reruns[0].code.repository == str(clone.resolve())


def _fake_distribution(folder: Path, name: str, version: str) -> None:
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Name: {name}\nVersion: {version}\n")


def test_environment_differences_are_reported_and_strict_refuses(
    investigation, tmp_path, monkeypatch
):
    then, now = tmp_path / "then", tmp_path / "now"
    _fake_distribution(then, "leftpad", "1.0")
    _fake_distribution(then, "colorama-fake", "2.0")
    _fake_distribution(now, "colorama-fake", "3.0")
    path = list(sys.path)
    sys.path.insert(0, str(then))
    trial = mitosis.run(
        investigation.sine, {"amplitude": 1.0, "noise": "low"}, lookup=investigation.lookup
    )
    sys.path[:] = [str(now), *path]
    try:
        differences = {(d.section, d.key): (d.a, d.b) for d in mitosis.rerun(trial.id).environment}
        assert differences[("packages", "leftpad")] == ("==1.0", None)
        assert differences[("packages", "colorama-fake")] == ("==2.0", "==3.0")
        count = len(mitosis.trials())
        with pytest.raises(mitosis.EnvironmentDiffers, match=r"leftpad: recorded ==1.0, now"):
            mitosis.rerun(trial.id, strict=True)
        assert len(mitosis.trials()) == count  # nothing ran
    finally:
        sys.path[:] = path


def test_export_then_run_py_reproduces_main(study, tmp_path):
    s, original = study
    out = tmp_path / "review"
    mitosis.export(original.id, out)
    assert (out / "code" / s.pkg / "extra.py").read_text() == "BONUS = 0.5\n"
    assert "FACTOR = 3" in (out / "code" / s.pkg / "model.py").read_text()
    assert (out / "record" / "trial.json").is_file()
    assert (out / "record" / "output.log").is_file()
    assert "==" in (out / "requirements.txt").read_text()
    assert '"variant": "none"' in (out / "params.json").read_text()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "run.py"], cwd=out, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "main = 60.5 (recorded: 60.5, the same)" in proc.stdout


def test_export_from_the_command_line_refuses_a_folder_in_use(study, tmp_path):
    s, original = study
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    proc = s.cli("export", original.id, str(used))
    assert proc.returncode == 1
    assert "is not an empty folder" in proc.stderr
    assert (used / "notes.txt").read_text() == "mine"
    proc = s.cli("export", original.id, str(tmp_path / "fresh"))
    assert proc.returncode == 0, proc.stderr
    assert "python run.py" in proc.stdout


# -- what cannot be rerun says so ------------------------------------------------------------


def test_a_commit_missing_from_the_repository_says_to_fetch_it(study, tmp_path):
    _, original = study
    other = tmp_path / "other"
    git("init", "-q", str(other))
    with pytest.raises(mitosis.RerunError, match=f"{original.code.commit} .* is not in .*fetch"):
        mitosis.rerun(original.id, code=other)
    with pytest.raises(mitosis.RerunError, match="fetch"):
        mitosis.export(original.id, tmp_path / "out", code=other)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_diff_that_does_not_apply_is_refused(study, tmp_path):
    s, original = study
    work = tmp_path / "branch"
    branch = f"mitosis/{original.experiment}"
    git("worktree", "add", "-q", str(work), branch, cwd=s.root)
    diff = work / original.path / "code.diff"
    diff.write_bytes(diff.read_bytes().replace(b"-FACTOR = 2", b"-FACTOR = 7"))
    git("commit", "-qam", "a hand-edited record", cwd=work)
    git("worktree", "remove", str(work), cwd=s.root)
    with pytest.raises(mitosis.RerunError, match="does not apply to commit"):
        mitosis.rerun(original.id)


def test_functions_that_cannot_be_imported_again_are_refused(investigation):
    def local(x: float = 1.0) -> float:
        return x

    trial = mitosis.run(local, {})
    with pytest.raises(mitosis.RerunError, match="cannot be imported again"):
        mitosis.rerun(trial.id)


def test_code_outside_git_cannot_be_rebuilt(tmp_path, monkeypatch):
    loose = tmp_path / "loose"
    loose.mkdir()
    name = f"loose_{uuid.uuid4().hex[:8]}"
    (loose / f"{name}.py").write_text("def f(x=1.0):\n    return x\n")
    monkeypatch.syspath_prepend(str(loose))
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    trial = mitosis.run(module.f, {}, store=tmp_path / "store")
    with pytest.raises(mitosis.RerunError, match=r"recorded no code commit.*--here"):
        mitosis.rerun(trial.id, store=tmp_path / "store")
    assert mitosis.rerun(trial.id, store=tmp_path / "store", here=True).agrees
    sys.modules.pop(name, None)


def test_here_refuses_a_function_gone_from_the_checkout(study):
    s, original = study
    s.model.unlink()
    s.forget()
    with pytest.raises(mitosis.RerunError, match=r"cannot import .*fit.*without --here"):
        mitosis.rerun(original.id, here=True)


def test_a_chain_of_steps_reruns_with_each_step_s_values(investigation):
    chain = [("make_data", investigation.make_data, investigation.data_lookup), investigation.fit]
    original = mitosis.run(
        chain, {"make_data.noise": "high", "make_data.points": 3, "fit.alpha": 2.0}
    )
    result = mitosis.rerun(original.id)
    assert result.agrees, result.results
    assert result.trial.main == original.main == 3.0
    assert [s.name for s in result.trial.steps] == ["make_data", "fit"]
    assert result.trial.params == original.params
    assert {a.name for a in result.results} >= {"make_data.points", "fit.n"}
