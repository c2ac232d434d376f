"""A single trial's process starts at once and waits while the store is opened and the variants
locked: it runs the trial only when told to, and nothing of it when the caller gives up."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest

import mitosis
from tests.conftest import git, processes

EXPERIMENT = """
import sys
from pathlib import Path

if sys.argv[0].endswith("worker.py") and REFUSE:
    raise RuntimeError("this module refuses the trial process")


def marks(noise: float, folder: str = "") -> float:
    Path(folder, "ran").write_text("ran")
    return float(noise)
"""


def _module(refuse: bool = False) -> ModuleType:
    """An experiments module committed in the current repository, imported."""
    name = f"gated_{uuid.uuid4().hex[:8]}"
    Path(f"{name}.py").write_text(f"REFUSE = {refuse}\n" + textwrap.dedent(EXPERIMENT))
    git("add", f"{name}.py")
    git("commit", "-qm", name)
    return importlib.import_module(name)


def _gated_children(parent: int) -> list[int]:
    """The trial processes of ``parent`` still waiting at their gate."""
    return [
        p.pid
        for p in processes()
        if b"--gate" in p.command.split(b"\0") and p.parent == parent and p.state != "Z"
    ]


pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="the tests read processes from /proc"
)


def test_a_refused_variant_runs_nothing_of_the_trial(investigation, tmp_path):
    module = _module()
    folder = str(tmp_path)
    mitosis.run(module.marks, {"noise": "low", "folder": folder}, lookup={"noise": {"low": 0.1}})
    (tmp_path / "ran").unlink()
    with pytest.raises(mitosis.VariantConflict):
        mitosis.run(
            module.marks, {"noise": "low", "folder": folder}, lookup={"noise": {"low": 0.2}}
        )
    assert not (tmp_path / "ran").exists()  # the waiting process never ran the step
    assert _gated_children(os.getpid()) == []  # and it has ended
    assert len(mitosis.trials("marks")) == 1


def test_a_module_that_fails_only_in_the_trial_process_fails_the_trial_as_before(
    investigation, tmp_path
):
    module = _module(refuse=True)
    with pytest.raises(mitosis.TrialFailed) as raised:
        mitosis.run(module.marks, {"noise": 0.5, "folder": str(tmp_path)})
    (trial,) = mitosis.trials("marks")
    assert trial.status == "failed" and raised.value.trial_id == trial.id
    assert "refuses the trial process" in (trial.error or "")
    assert not (tmp_path / "ran").exists()


def test_a_caller_killed_while_its_trial_process_waits_leaves_nothing(investigation, tmp_path):
    module = _module()
    script = Path("caller.py")
    script.write_text(
        f"import mitosis\nfrom {module.__name__} import marks\n"
        f"mitosis.run(marks, {{'noise': 'low', 'folder': {str(tmp_path)!r}}},\n"
        "            lookup={'noise': {'low': 0.5}})\n"
    )
    # the caller stops itself as it commits the new variant lock: its trial process waits
    env = {**os.environ, "MITOSIS_FAULT_STOP": "blobs"}
    caller = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    waiting: list[int] = []
    state = ""
    while time.monotonic() < deadline and state not in ("T", "Z"):
        state = Path(f"/proc/{caller.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        waiting = _gated_children(caller.pid)
        time.sleep(0.05)
    if state != "T":
        caller.kill()
        _, err = caller.communicate()
        pytest.fail(f"the caller did not stop at its lock's commit ({state}): {err.decode()}")
    assert waiting, "the trial process started before the store was written"
    caller.kill()
    caller.communicate()
    while any(Path(f"/proc/{pid}").exists() for pid in waiting):  # reaped by init
        assert time.monotonic() < deadline + 30, "the waiting trial process outlived its caller"
        time.sleep(0.05)
    assert not (tmp_path / "ran").exists()
    assert "mitosis/marks" not in git("branch", "--list", "mitosis/*")


def test_a_single_trial_still_runs_and_records_as_before(investigation, tmp_path):
    module = _module()
    trial = mitosis.run(module.marks, {"noise": 0.25, "folder": str(tmp_path)})
    assert trial.status == "ok" and trial.main == 0.25
    assert (tmp_path / "ran").read_text() == "ran"
    assert _gated_children(os.getpid()) == []  # (Ctrl-C of a waiting trial: test_errors.py)
