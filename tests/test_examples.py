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
