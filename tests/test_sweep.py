"""Sweeps: many trials at once, through a local pool or any concurrent.futures executor."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

import mitosis
from tests.conftest import console_script, foreground_job, git, processes


def _recorded(experiment: str) -> list[mitosis.Trial]:
    found = mitosis.trials(experiment)
    assert len({t.id for t in found}) == len(found)
    return found


def test_a_sweep_of_50_trials_records_each_once_with_its_failures(investigation):
    trials = mitosis.sweep(investigation.sometimes, {"x": list(range(50))}, jobs=2)
    assert [t.params["x"].value for t in trials] == list(range(50))  # in the grid's order
    failed = [t.params["x"].value for t in trials if t.status == "failed"]
    assert failed == [x for x in range(50) if x % 7 == 3]
    assert all("is unlucky" in t.error for t in trials if t.status == "failed")
    recorded = _recorded("sometimes")
    assert sorted(t.params["x"].value for t in recorded) == list(range(50))
    assert len({t.metrics["pid"] for t in recorded if t.status == "ok"}) == 43  # fresh processes
    # one commit per trial (plus the lock commit of none: literals lock nothing)
    assert git("rev-list", "--count", "mitosis/sometimes").strip() == "50"
    git("fsck", "--strict")


def test_a_sweep_through_a_process_pool_and_a_list_of_combinations(investigation):
    grid = [{"x": 1}, {"x": 3}, {"x": 5}]
    with ProcessPoolExecutor(max_workers=2) as pool:
        trials = mitosis.sweep(investigation.sometimes, grid, executor=pool)
    assert [(t.params["x"].value, t.status) for t in trials] == [
        (1, "ok"),
        (3, "failed"),
        (5, "ok"),
    ]
    assert len(_recorded("sometimes")) == 3


def test_workers_can_commit_their_own_trials(investigation):
    with ProcessPoolExecutor(max_workers=2) as pool:
        trials = mitosis.sweep(
            investigation.sometimes, {"x": list(range(8))}, executor=pool, commit_in_workers=True
        )
    assert len(trials) == 8 and len(_recorded("sometimes")) == 8
    git("fsck", "--strict")


def test_a_sweep_through_dask_distributed(investigation):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        trials = mitosis.sweep(
            investigation.sometimes, {"x": list(range(10))}, executor=client.get_executor()
        )
    assert sorted(t.params["x"].value for t in trials) == list(range(10))
    assert [t.status for t in trials].count("failed") == 1  # x = 3
    assert len(_recorded("sometimes")) == 10


def test_a_task_the_executor_loses_is_recorded_as_failed(investigation):
    # started afresh, the trial process's parent is the pool's worker, which it kills
    experiment = mitosis.experiment(start="spawn")(investigation.kills_its_runner)
    with ProcessPoolExecutor(max_workers=1) as pool:
        trials = mitosis.sweep(experiment, {"x": [0, 1]}, executor=pool)
    by_x = {t.params["x"].value: t for t in trials}
    assert by_x[0].status == "ok"
    assert by_x[1].status == "failed"
    assert "the executor could not run the trial: BrokenProcessPool" in by_x[1].error
    assert len(_recorded("kills_its_runner")) == 2


def test_fail_fast_starts_nothing_after_a_failure(investigation):
    trials = mitosis.sweep(
        investigation.sometimes, {"x": [3, 4, 5, 6, 8, 9, 10, 11]}, jobs=1, fail_fast=True
    )
    assert trials[0].status == "failed"
    assert len(trials) <= 2  # the failed one, and at most one already queued
    assert len(_recorded("sometimes")) == len(trials)


def test_skip_done_runs_only_what_has_no_ok_trial_at_this_code(investigation):
    first = mitosis.sweep(investigation.sometimes, {"x": [1, 2, 3]}, jobs=2)
    again = mitosis.sweep(investigation.sometimes, {"x": [1, 2, 3, 4]}, jobs=2, skip_done=True)
    assert [t.id for t in again[:2]] == [t.id for t in first[:2]]  # the earlier ok trials
    assert again[2].id != first[2].id  # x = 3 failed before: it runs again
    assert len(_recorded("sometimes")) == 5
    Path("notes.txt").write_text("the code changed")  # another code state: nothing is done
    third = mitosis.sweep(investigation.sometimes, {"x": [1]}, jobs=1, skip_done=True)
    assert third[0].id not in {t.id for t in first}


def test_a_bad_grid_or_combination_runs_nothing(investigation):
    with pytest.raises(mitosis.BadParameter, match="must be a list of values"):
        mitosis.sweep(investigation.sometimes, {"x": 3})
    with pytest.raises(mitosis.BadParameter, match="list of parameter dicts"):
        mitosis.sweep(investigation.sometimes, 3)  # type: ignore[arg-type]
    with pytest.raises(mitosis.UnknownVariant):
        mitosis.sweep(
            investigation.sine,
            {"amplitude": [1.0], "noise": ["low", "medium"]},
            lookup=investigation.lookup,
        )
    assert mitosis.trials() == []


def test_debug_sweep_records_nothing(investigation):
    trials = mitosis.sweep(investigation.sometimes, {"x": [1, 2]}, debug=True)
    assert [t.main for t in trials] == [2.0, 4.0]
    assert mitosis.trials() == []


def _sweep_cli(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [console_script(), "run", "marks", *args, "-e", f"+folder='{folder}'"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=foreground_job,
    )


def test_ctrl_c_records_running_trials_as_interrupted_and_skip_done_finishes(
    investigation, tmp_path
):
    Path("pyproject.toml").write_text(
        f'[tool.mitosis.experiments]\nmarks = {{ run = "{investigation.__name__}:marks_start" }}\n'
    )
    marks = tmp_path / "marks"
    marks.mkdir()
    done = _sweep_cli(marks, "-e", "value=1,2", "-e", "+seconds=0")
    _, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    sweep = _sweep_cli(
        marks, "-e", "value=1,2,3,4,5,6", "-e", "+seconds=30", "-j", "2", "--skip-done"
    )
    deadline = time.monotonic() + 60
    while not {"3", "4"} <= {p.name for p in marks.iterdir()} and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(sweep.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole group
    out, err = sweep.communicate(timeout=60)
    assert sweep.returncode == 130, err
    assert "interrupted: 4 of 6 trials recorded" in err
    assert "--skip-done" in err
    statuses = sorted((t.params["value"].value, t.status) for t in mitosis.trials("marks"))
    assert statuses == [(1, "ok"), (2, "ok"), (3, "interrupted"), (4, "interrupted")]
    assert _warm_servers(investigation.__name__) == []  # the trials were forked: none is left
    git("fsck", "--strict")
    finish = _sweep_cli(marks, "-e", "value=1,2,3,4,5,6", "-e", "+seconds=0", "--skip-done")
    out, err = finish.communicate(timeout=120)
    assert finish.returncode == 0, err
    assert "skipping 2 combinations" in err
    ok = sorted(t.params["value"].value for t in mitosis.trials("marks") if t.status == "ok")
    assert ok == [1, 2, 3, 4, 5, 6]
    assert out.count("(done before)") == 2


def _warm_servers(marker: str) -> list[str]:
    """The command lines of the warm processes still alive whose command line holds ``marker``."""
    return [
        p.command.decode(errors="replace")
        for p in processes()
        if b"--serve" in p.command and marker.encode() in p.command
    ]


def test_a_trial_refused_at_its_commit_is_reported_not_recorded(investigation, tmp_path):
    import threading

    from mitosis.run.experiment import chain_of
    from mitosis.run.sweep import run_sweep

    marks = tmp_path / "marks"
    marks.mkdir()
    chain = chain_of(investigation.marks_start, lookup={"value": {"one": 1}})

    def rename_while_it_runs() -> None:  # a colleague settles a conflict meanwhile
        deadline = time.monotonic() + 60
        while not (marks / "1").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        mitosis.rename_variant("marks_start", "value", "one", "uno")

    renamer = threading.Thread(target=rename_while_it_runs)
    renamer.start()
    (item,) = run_sweep(
        chain, [{"value": "one", "seconds": 2.0, "folder": str(marks)}], store=None, jobs=1
    )
    renamer.join()
    assert item.trial is None and item.id is None
    assert "was renamed to 'uno'" in (item.error or "")
    assert mitosis.trials("marks_start") == []
    git("fsck", "--strict")
