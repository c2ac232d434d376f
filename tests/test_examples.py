"""The examples run as a new user runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import git

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_sine_example_records_a_trial_with_a_figure(tmp_path):
    shutil.copy(EXAMPLES / "sine.py", tmp_path / "sine.py")
    git("init", "-q", cwd=tmp_path)
    proc = subprocess.run(
        [sys.executable, "sine.py", "2", "high"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "estimated amplitude" in proc.stdout and ": ok, main=" in proc.stdout
    files = git("ls-tree", "-r", "--name-only", "mitosis/fit_sine", cwd=tmp_path).split()
    assert any(f.endswith("figures/fit_sine-0.png") for f in files)
    assert "noise=high" in git("log", "--format=%s", "mitosis/fit_sine", cwd=tmp_path)


def run_example(tmp_path: Path, name: str) -> str:
    shutil.copy(EXAMPLES / name, tmp_path / name)
    git("init", "-q", cwd=tmp_path)
    git("add", name, cwd=tmp_path)
    git("commit", "-qm", "example", cwd=tmp_path)
    proc = subprocess.run([sys.executable, name], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_two_step_example_reuses_its_data(tmp_path):
    out = run_example(tmp_path, "data_fit.py").splitlines()
    first_id = out[0].split()[1].rstrip(":")
    assert "make_data: 0.5" in out[0]
    assert f"make_data: reused from {first_id}" in out[1]
    assert out[0].split("main=")[1].split()[0] == out[1].split("main=")[1].split()[0]
    log = git("log", "--format=%s", "mitosis/make_data+fit", cwd=tmp_path).splitlines()
    assert len(log) == 3 and log[-1] == "make_data+fit: lock make_data.noise=low fit.method=ols"


def test_three_step_example(tmp_path):
    out = run_example(tmp_path, "three_steps.py")
    assert "window=narrow" in out and "window=wide" in out
    log = git("log", "--format=%s", "mitosis/load+smooth+score", cwd=tmp_path)
    assert "smooth.window=wide" in log and "smooth.window=narrow" in log


def test_the_readme_example_runs_as_written(tmp_path):
    readme = (EXAMPLES.parent / "README.md").read_text()
    blocks = [part.split("```", 1)[0] for part in readme.split("```python\n")[1:]]
    code = "\n".join(blocks)  # the later examples build on the first
    (tmp_path / "readme_example.py").write_text(code + "\nprint('TRIAL', trial.id)\n")
    git("init", "-q", cwd=tmp_path)
    proc = subprocess.run(
        [sys.executable, "readme_example.py"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    trial_id = proc.stdout.split("TRIAL")[1].split()[0]
    log = git("log", "mitosis/sine", cwd=tmp_path)
    assert "sine: amplitude=4 noise=low -> main=0.04 (ok)" in log
    assert f"Mitosis-Trial: {trial_id}" in log and "sine: lock noise=low" in log
    assert "sine: amplitude=2 noise=high -> main=1 (ok)" in log  # the sweep


def test_two_servers_share_trials_and_settle_a_variant_conflict(tmp_path):
    shutil.copy(EXAMPLES / "two_servers.py", tmp_path / "two_servers.py")
    git("init", "-q", cwd=tmp_path)
    proc = subprocess.run(
        [sys.executable, "two_servers.py", "out"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "conflict: noise=medium is 0.5 (float) on server_b, 0.3 (float) on the hub" in out
    assert "noise=medium_b: 0.5 (1 trial(s))" in out and "refused: " in out
    tip = out.splitlines()[-1].split()[2]
    for repo in ("hub.git", "server_a", "server_b"):  # the git CLI agrees: one history
        assert git("rev-parse", "mitosis/sine", cwd=tmp_path / "out" / repo).strip() == tip
    files = git("ls-tree", "-r", "--name-only", tip, cwd=tmp_path / "out" / "hub.git").split()
    assert "variants/noise/medium.json" in files and "variants/noise/medium_b.json" in files
    assert sum(f.endswith("/trial.json") for f in files) == 5
    git("fsck", "--strict", cwd=tmp_path / "out" / "hub.git")
