"""Warm-started trial processes: a sweep forks each trial process from a process that imported
the experiment's modules once; each trial still starts pristine and is recorded as before."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import attrs
import pytest

import mitosis
from mitosis.run import warm
from mitosis.run.experiment import chain_of
from mitosis.run.process import perform
from mitosis.run.sweep import run_sweep
from mitosis.run.trial import prepare
from tests.conftest import bare_modules, committed_module, console_script, git, processes

pytestmark = pytest.mark.skipif(
    not warm.forkable() or not Path("/proc/self/cmdline").exists(),
    reason="warm trial processes fork (not on this platform); the tests read /proc",
)


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A git repository with the warm-start experiments committed; the current directory."""
    yield from committed_module(tmp_path / "lab", "warm_experiments", monkeypatch)


def _servers(marker: str) -> list[int]:
    """The warm servers alive whose command line holds ``marker`` (a module's unique name);
    not the trial processes forked from them, which have the same command line."""
    found = {
        p.pid: p.parent
        for p in processes()
        if b"--serve" in p.command and marker.encode() in p.command
    }
    return sorted(pid for pid, parent in found.items() if parent not in found)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has ended


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_each_trial_starts_pristine_in_its_own_forked_process(lab):
    trials = mitosis.sweep(lab.meddles, {"x": [1, 2, 3, 4]}, jobs=2)
    assert [t.status for t in trials] == ["ok"] * 4
    found = [t.results()["data"] for t in trials]
    seeded_random = __import__("random").Random(7).random()
    seeded_numpy = float(__import__("numpy").random.RandomState(7).random_sample())
    for seen in found:
        assert seen["calls"] == 0  # the global mutated by the trials before
        assert seen["figures"] == []  # the figures they left open
        assert seen["random"] != seeded_random  # the generators they seeded
        assert seen["numpy"] != seeded_numpy
        assert seen["ppid"] != os.getpid()  # forked by the warm process, not started here
        assert seen["argv"][0].endswith("spec")  # the trial process's own arguments
    assert len({s["pid"] for s in found}) == 4  # a process of its own each
    # fresh entropy in each trial process, as in one started afresh
    assert len({s["random"] for s in found}) == 4
    assert len({s["numpy"] for s in found}) == 4
    assert [len(t.figures) for t in trials] == [1] * 4  # each trial's own figure only
    assert _servers(lab.__name__) == []  # stopped at the end of the sweep


def test_a_warm_trial_is_recorded_as_one_started_afresh(lab):
    (warm_trial,) = mitosis.sweep(lab.writes, {"x": [3]}, jobs=1)
    spawned = mitosis.experiment(start="spawn")(lab.writes)
    (cold_trial,) = mitosis.sweep(spawned, {"x": [3]}, jobs=1)
    assert warm_trial.status == cold_trial.status == "ok"

    def files(trial: mitosis.Trial) -> dict[str, str]:
        """Each file of the trial's folder: its blob id (the same bytes, the same id)."""
        listing = git("ls-tree", "-r", f"mitosis/writes:trials/{trial.id[:2]}/{trial.id}")
        return {line.split("\t")[1]: line.split()[2] for line in listing.splitlines()}

    warm_files, cold_files = files(warm_trial), files(cold_trial)
    assert sorted(warm_files) == sorted(cold_files)
    assert "figures/writes-0.png" in warm_files
    for name in warm_files:
        if name not in ("trial.json", "output.log"):
            assert warm_files[name] == cold_files[name], name
    # stdout and stderr interleave as they come (print writes the line, then its end), in a
    # trial started afresh as in a warm one
    for trial in (warm_trial, cold_trial):
        assert sorted(trial.read("output.log")) == sorted(b"out 3\nerr 3\n")

    def record(trial: mitosis.Trial) -> dict[str, object]:
        shown = attrs.asdict(trial, recurse=False)
        for varying in ("id", "started", "ended", "duration", "steps", "store", "commit"):
            shown.pop(varying, None)
        return shown

    assert record(warm_trial) == record(cold_trial)

    def steps(trial: mitosis.Trial) -> list[dict[str, object]]:
        return [{**attrs.asdict(s), "duration": None} for s in trial.steps]

    assert steps(warm_trial) == steps(cold_trial)
    assert warm_trial.results() == cold_trial.results()


def test_a_warm_trial_flushes_the_files_it_left_open(lab, tmp_path):
    # at a normal exit Python flushes a file as it frees it; a warm trial leaves with os._exit
    trials = mitosis.sweep(lab.leaves_open, {"x": [0, 1, 2], "folder": [str(tmp_path)]}, jobs=1)
    assert [t.status for t in trials] == ["ok"] * 3
    for x in range(3):
        assert (tmp_path / f"note-{x}.txt").read_text() == f"trial {x}\n"


def test_start_spawn_never_forks(lab, tmp_path):
    spawned = mitosis.experiment(start="spawn")(lab.meddles)
    trials = mitosis.sweep(spawned, {"x": [1, 2]}, jobs=2)
    assert {t.results()["data"]["ppid"] for t in trials} == {os.getpid()}
    # and where the experiment is registered in pyproject.toml
    Path("pyproject.toml").write_text(
        "[tool.mitosis.experiments]\n"
        f'parent = {{ run = "{lab.__name__}:parent_command", start = "spawn" }}\n'
        f'forked = {{ run = "{lab.__name__}:parent_command" }}\n'
    )
    for name, forked in (("parent", False), ("forked", True)):
        proc = subprocess.run(
            [console_script(), "run", name, "-e", "x=1,2"], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        for trial in mitosis.trials(name):
            command = trial.results()["data"]
            assert (b"--serve" in command) is forked, command


def test_a_bad_start_is_refused_with_the_fix(lab):
    with pytest.raises(mitosis.BadParameter, match=r'must be "fork".*or "spawn"'):
        mitosis.experiment(start="thread")  # type: ignore[arg-type]
    Path("pyproject.toml").write_text(
        f'[tool.mitosis.experiments]\nbad = {{ run = "{lab.__name__}:writes", start = "x" }}\n'
    )
    proc = subprocess.run(
        [console_script(), "run", "bad", "-e", "x=1,2"], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert '[tool.mitosis.experiments] bad.start must be "fork"' in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_warm_process_restarts_when_a_module_file_changes(lab):
    path = str(Path(lab.__file__).resolve())
    trials = mitosis.sweep(lab.bumps_version, {"x": [0, 1, 2, 3], "path": [path]}, jobs=1)
    assert [t.main for t in trials] == [1.0, 1.0, 22.0, 22.0]
    servers = [t.results()["data"] for t in trials]
    assert servers[0] == servers[1] != servers[2] == servers[3] != os.getpid()


def test_a_trial_killed_with_sigkill_is_recorded_as_killed(lab, tmp_path):
    folder = tmp_path / "marks"
    folder.mkdir()
    chain = chain_of(lab.waits)
    result: list[list[object]] = []
    sweep = threading.Thread(
        target=lambda: result.append(
            run_sweep(chain, [{"x": 1, "folder": str(folder)}], store=None, jobs=1)
        )
    )
    sweep.start()
    _wait_for(folder / "1")
    pid, ppid = map(int, (folder / "1").read_text().split())
    assert ppid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    sweep.join(60)
    ((item,),) = result
    assert item.status == "killed"
    assert "SIGKILL" in (item.trial.error or "")


def test_a_killed_warm_process_takes_its_trial_with_it(lab, tmp_path):
    folder = tmp_path / "marks"
    folder.mkdir()
    chain = chain_of(lab.waits)
    result: list[list[object]] = []
    combos = [{"x": 1, "folder": str(folder)}, {"x": 2, "folder": str(folder), "seconds": 0.0}]
    sweep = threading.Thread(
        target=lambda: result.append(run_sweep(chain, combos, store=None, jobs=1))
    )
    sweep.start()
    _wait_for(folder / "1")
    pid, server = map(int, (folder / "1").read_text().split())
    os.kill(server, signal.SIGKILL)
    sweep.join(60)
    ((first, second),) = result
    assert first.status == "killed"
    assert second.status == "ok"  # a new warm process
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)  # not left running without anyone to report it
    assert _servers(lab.__name__) == []


def test_fail_fast_and_skip_done_with_warm_trials(lab):
    spawned = mitosis.experiment(start="spawn")(lab.writes)
    done = mitosis.sweep(spawned, {"x": [1, 2]}, jobs=1)
    trials = mitosis.sweep(lab.writes, {"x": [1, 2, 3]}, jobs=1, skip_done=True)
    assert [t.id for t in trials[:2]] == [t.id for t in done]  # skipped: same records
    assert trials[2].results()["data"] == [3, 3, 3]
    failing = mitosis.sweep(lab.meddles, {"x": ["not a number", 1, 2, 3]}, jobs=1, fail_fast=True)
    assert failing[0].status == "failed" and len(failing) <= 2
    assert _servers(lab.__name__) == []


def test_output_streams_live_from_a_warm_trial(lab, tmp_path, monkeypatch):
    folder = tmp_path / "seen"
    folder.mkdir()

    class Console(io.StringIO):
        def write(self, text: str) -> int:
            if "ready" in text:
                (folder / "seen").touch()  # the trial waits for this
            return super().write(text)

    console = Console()
    monkeypatch.setattr(sys, "stdout", console)
    chain = chain_of(lab.streams)
    from mitosis.run.params import resolve

    job = prepare(chain, resolve(chain, {"folder": str(folder)}), echo=True)
    ran = perform(attrs.evolve(job, preload=(lab.__name__,)))
    warm.shutdown()
    assert ran.outcome["status"] == "ok", ran.outcome
    assert ran.log == b"ready\n"
    assert console.getvalue() == "ready\n"


def test_no_warm_process_is_left_after_an_error(lab):
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            if "trial" in text:
                raise RuntimeError("the console broke")
            return super().write(text)

    with pytest.raises(RuntimeError, match="the console broke"):
        run_sweep(
            chain_of(lab.writes),
            [{"x": 1}, {"x": 2}, {"x": 3}],
            store=None,
            jobs=1,
            progress=True,
            stream=Broken(),
        )
    # a trial already started when the error came may still run: its server ends after it
    deadline = time.monotonic() + 30
    while _servers(lab.__name__) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _servers(lab.__name__) == []


def test_modules_unsafe_to_fork_start_each_trial_afresh(lab):
    Path("threads_at_import.py").write_text(
        "import threading, time, os\n"
        "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n"
        "def run(x=0):\n    return {'main': float(x), 'data': os.getppid()}\n"
    )
    import threads_at_import

    try:
        trials = mitosis.sweep(threads_at_import.run, {"x": [1, 2]}, jobs=2)
    finally:
        sys.modules.pop("threads_at_import", None)
    assert {t.results()["data"] for t in trials} == {os.getpid()}


def test_a_module_that_fails_to_import_fails_its_trials_as_before(lab):
    Path("fails_later.py").write_text(
        "import os\n"
        "if os.path.exists('broken'):\n    raise ImportError('broken on purpose')\n"
        "def run(x=0):\n    return float(x)\n"
    )
    import fails_later

    Path("broken").touch()
    try:
        trials = mitosis.sweep(fails_later.run, {"x": [1, 2]}, jobs=2)
    finally:
        sys.modules.pop("fails_later", None)
    assert [t.status for t in trials] == ["failed", "failed"]
    assert all("broken on purpose" in (t.error or "") for t in trials)


def test_a_warm_trial_loads_only_the_standard_library_and_the_experiment(lab, tmp_path):
    Path("lists_modules.py").write_text(
        "import sys\ndef run(x=0):\n    return {'main': 0.0, 'data': sorted(sys.modules)}\n"
    )
    import lists_modules

    try:
        (trial,) = mitosis.sweep(lists_modules.run, {"x": [1]}, jobs=1)
    finally:
        sys.modules.pop("lists_modules", None)
    loaded = set(trial.results()["data"])
    added = loaded - bare_modules() - {"lists_modules"}
    assert [m for m in added if "mitosis" in m] == []
    assert sorted(m for m in added if m.split(".")[0] not in sys.stdlib_module_names) == []


def test_a_process_pool_forked_beside_a_warm_process_forks_from_its_own(lab):
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    from mitosis.run.params import resolve

    chain = chain_of(lab.meddles)
    job = attrs.evolve(
        prepare(chain, resolve(chain, {"x": 1}), echo=False), preload=(lab.__name__,)
    )
    ran = perform(job)  # this process's warm server keeps running
    try:
        ours = pickle.loads(ran.results[0])["data"]["ppid"]
        assert _servers(lab.__name__) == [ours]
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
            trials = mitosis.sweep(lab.meddles, {"x": [1, 2, 3]}, executor=pool)
        assert [t.status for t in trials] == ["ok"] * 3
        parents = {t.results()["data"]["ppid"] for t in trials}
        assert ours not in parents and os.getpid() not in parents
    finally:
        warm.shutdown()
    deadline = time.monotonic() + 20  # the workers' servers end with the workers
    while _servers(lab.__name__) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _servers(lab.__name__) == []


def test_a_chain_spawns_when_a_step_asks_and_preloads_the_steps_modules(lab):
    from mitosis.run.sweep import preload_of

    assert preload_of(chain_of(lab.writes)) == (lab.__name__,)

    def local(x: int = 0) -> float:  # sent by value: nothing to import
        return float(x)

    assert preload_of(chain_of(local)) == ()
    spawned = mitosis.experiment(name="second", start="spawn")(lab.streams)
    chain = chain_of([("first", lab.writes), spawned])
    assert chain.start == "spawn"
    assert preload_of(chain) is None


def test_generators_seeded_when_the_modules_are_imported_stay_seeded(lab):
    Path("seeded_at_import.py").write_text(
        "import os, random\nimport numpy as np\n"
        "random.seed(5)\nnp.random.seed(5)\n"
        "def run(x=0):\n"
        "    drawn = (random.random(), float(np.random.random()), os.getppid())\n"
        "    return {'main': float(x), 'data': drawn}\n"
    )
    import seeded_at_import

    try:
        warm_trials = mitosis.sweep(seeded_at_import.run, {"x": [1, 2, 3]}, jobs=2)
        spawned = mitosis.experiment(name="spawned", start="spawn")(seeded_at_import.run)
        cold_trials = mitosis.sweep(spawned, {"x": [1]}, jobs=1)
    finally:
        sys.modules.pop("seeded_at_import", None)
    import random

    import numpy as np

    expected = (random.Random(5).random(), float(np.random.RandomState(5).random_sample()))
    for trial in warm_trials:
        *drawn, parent = trial.results()["data"]
        assert tuple(drawn) == expected  # as in a process started afresh that imported it
        assert parent != os.getpid()  # though forked
    assert tuple(cold_trials[0].results()["data"][:2]) == expected


def test_where_forking_is_unsafe_trials_start_afresh(lab, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(sys, "platform", "darwin")
        assert not warm.forkable()  # macOS: its system libraries do not survive a fork
    monkeypatch.setattr(warm, "forkable", lambda: False)  # as on Windows, or macOS
    trials = mitosis.sweep(lab.meddles, {"x": [1, 2]}, jobs=2)
    assert [t.status for t in trials] == ["ok", "ok"]
    assert {t.results()["data"]["ppid"] for t in trials} == {os.getpid()}
    assert _servers(lab.__name__) == []


def test_a_killed_coordinator_leaves_no_warm_process(lab, tmp_path):
    Path("pyproject.toml").write_text(
        f'[tool.mitosis.experiments]\nwaits = {{ run = "{lab.__name__}:waits" }}\n'
    )
    folder = tmp_path / "marks"
    folder.mkdir()
    command = ["run", "waits", "-e", "x=1,2", "-e", f"+folder='{folder}'", "-e", "+seconds=3"]
    sweep = subprocess.Popen(
        [console_script(), *command, "-j", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_for(folder / "1")
    _wait_for(folder / "2")
    assert len(_servers(lab.__name__)) == 1
    sweep.kill()  # SIGKILL: no chance to stop anything
    sweep.wait()
    trials = [int((folder / x).read_text().split()[0]) for x in ("1", "2")]
    deadline = time.monotonic() + 60  # the trials end as they would have; then their server
    while (_servers(lab.__name__) or any(map(_alive, trials))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _servers(lab.__name__) == []
    assert not any(map(_alive, trials))
