"""A single trial's process starts at once and waits while the store is opened and the variants
locked: it runs the trial only when told to, and nothing of it when the caller gives up."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest

import mitosis
from tests.conftest import console_script, foreground_job, git, processes

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


@pytest.mark.parametrize(
    ("params", "options", "error"),
    [
        ({"noise": 0.1, "nosie": 1}, {}, mitosis.BadParameter),
        ({"noise": "loud"}, {"lookup": {"noise": {"low": 0.1}}}, mitosis.UnknownVariant),
        ({"noise": 0.1}, {"figure_dpi": 0}, mitosis.BadParameter),
        ({"noise": 0.1}, {"store": "/dev/null/store"}, mitosis.MitosisError),
    ],
)
def test_a_call_refused_ends_the_process_started_ahead(
    investigation, tmp_path, params, options, error
):
    """mitosis.run starts the trial's interpreter before it reads its arguments: whatever it
    then refuses, that process ends having run nothing."""
    module = _module()
    with pytest.raises(error):
        mitosis.run(module.marks, {**params, "folder": str(tmp_path)}, **options)
    assert _gated_children(os.getpid()) == []
    assert not (tmp_path / "ran").exists()
    assert "mitosis/marks" not in git("branch", "--list", "mitosis/*")


def test_the_command_line_ends_the_process_it_started_ahead(investigation, runner, tmp_path):
    from mitosis.cli import main

    module = _module()
    Path("pyproject.toml").write_text(
        f'[tool.mitosis.experiments]\nmarks = {{ run = "{module.__name__}:marks" }}\n'
    )
    refused = runner.invoke(main, ["run", "marks", "-e", "nosie=1"])
    assert refused.exit_code != 0 and "nosie" in refused.output
    assert _gated_children(os.getpid()) == []
    ran = runner.invoke(
        main, ["run", "marks", "-e", "noise=0.5", "-e", f"folder={str(tmp_path)!r}"]
    )
    assert ran.exit_code == 0, ran.output
    assert (tmp_path / "ran").read_text() == "ran"
    assert _gated_children(os.getpid()) == []
    (trial,) = mitosis.trials("marks")
    assert trial.main == 0.5


def test_a_trial_that_ignores_ctrl_c_is_killed_after_the_grace_time(investigation, tmp_path):
    Path("stubborn.py").write_text(
        textwrap.dedent("""
        import signal, time
        from pathlib import Path

        def stubborn(folder: str) -> float:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            Path(folder, "started").write_text("started")
            time.sleep(120)
            return 1.0
        """)
    )
    git("add", "stubborn.py")
    git("commit", "-qm", "stubborn")
    script = Path("caller.py")
    script.write_text(
        "import mitosis\nfrom mitosis.run import spawn\nfrom stubborn import stubborn\n"
        "spawn.INTERRUPT_GRACE = 1.0\n"
        f"mitosis.run(stubborn, {{'folder': {str(tmp_path)!r}}})\n"
    )
    caller = subprocess.Popen(
        [sys.executable, str(script)],
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=foreground_job,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline and caller.poll() is None, "the trial never started"
        time.sleep(0.05)
    os.killpg(caller.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole group
    _, err = caller.communicate(timeout=60)
    assert caller.returncode != 0 and b"KeyboardInterrupt" in err
    (trial,) = mitosis.trials("stubborn")
    assert trial.status == "killed" and "SIGKILL" in (trial.error or "")
    assert trial.duration < 60


def test_the_command_line_s_trial_process_imports_the_experiment_alongside(investigation, tmp_path):
    """`mitosis run` names the experiment's modules to the trial process it started ahead
    before it imports them itself: both import at once (the module here lets the command line
    import it only once the trial process has)."""
    marker = tmp_path / "imported"
    Path("alongside.py").write_text(
        textwrap.dedent(f"""
        import sys, time
        from pathlib import Path

        MARK = Path({str(marker)!r})
        if sys.argv[0].endswith("worker.py"):
            MARK.write_text(sys.argv[1])  # "--gate": imported while the process waits
        else:  # the command line: the trial process is importing this module too
            deadline = time.monotonic() + 60
            while not MARK.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("the trial process never imported this module")
                time.sleep(0.02)


        def alongside(x: float) -> float:
            return x
        """)
    )
    Path("pyproject.toml").write_text(
        '[tool.mitosis.experiments]\nalongside = { run = "alongside:alongside" }\n'
    )
    git("add", "alongside.py", "pyproject.toml")
    git("commit", "-qm", "alongside")
    done = subprocess.run(
        [console_script(), "run", "alongside", "-e", "x=2"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "--gate"
    (trial,) = mitosis.trials("alongside")
    assert trial.status == "ok" and trial.main == 2


def test_the_modules_a_registered_chain_runs_are_named_without_importing_them(tmp_path):
    from mitosis.run.config import load_config

    (tmp_path / "pyproject.toml").write_text(
        "[tool.mitosis.experiments]\n"
        'make = { run = "pkg.data:make", lookup = "pkg.lookups:make" }\n'
        'fit = { run = "pkg.models:fit" }\n'
        'pipeline = { steps = ["make", "fit"] }\n'
    )
    config = load_config(tmp_path / "pyproject.toml")
    assert config.modules(["make"]) == ("pkg.data",)  # the function's, not the lookup's
    assert config.modules(["pipeline"]) == ("pkg.data", "pkg.models")
    assert config.modules(["make", "fit", "make"]) == ("pkg.data", "pkg.models")
    assert config.modules(["unknown"]) == ()
    assert "pkg" not in sys.modules
