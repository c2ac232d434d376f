"""Faults while a big result is written: a recorder killed at any moment, a full disk (a file
size limit, RLIMIT_FSIZE, which fails writes with EFBIG). The store stays ``git fsck --strict``
clean, no partial object is ever visible, earlier trials stay whole, and the trial is recorded
as failed with its cause, or not recorded with the error shown; never a hang."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import git

import mitosis

MiB = 1 << 20

RECORDER = textwrap.dedent("""
    import os, resource, signal, sys
    import mitosis
    from mitosis.store import repo as _store

    sys.path.insert(0, sys.argv[1])
    experiments = __import__(sys.argv[2])
    point, action = sys.argv[3], sys.argv[4]

    def hook(reached):
        if reached != point:
            return
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        limit = int(action)  # the disk is full from now on
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    _store.fault = hook
    try:
        trial = mitosis.run(experiments.big, {"mib": 6, "seed": 3})
    except mitosis.TrialFailed as failed:
        print("FAILED", failed.trial_id)
        sys.exit(2)
    except mitosis.MitosisError as error:
        print("ERROR", error)
        sys.exit(1)
    print("RECORDED", trial.id)
""")


def record(
    investigation, point: str, action: str, limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Record a trial of a 6 MiB result in a process of its own, faulted at ``point``."""

    def full_disk() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-c", RECORDER, str(Path.cwd()), investigation.__name__, point, action],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=full_disk,
    )


def objects_are_whole() -> None:
    """Every object file git can see is a whole object (git fsck reads them all; a ``.lock``
    beside one, of a write that failed, is no object)."""
    git("fsck", "--strict", "--no-dangling", "--full")
    for folder in Path(".git/objects").iterdir():
        if len(folder.name) == 2:
            for path in folder.iterdir():
                if len(path.name) == 38:
                    git("cat-file", "-t", folder.name + path.name)


@pytest.mark.parametrize("point", ["stream", "streamed", "results", "blobs", "tree", "commit"])
def test_a_recorder_killed_while_it_stores_a_big_result_harms_nothing(investigation, point):
    before = mitosis.run(investigation.big, {"mib": 3})
    tip = git("rev-parse", "mitosis/big").strip()
    proc = record(investigation, point, "kill")
    assert proc.returncode == -9, proc.stdout + proc.stderr
    assert git("rev-parse", "mitosis/big").strip() == tip
    objects_are_whole()
    assert [t.id for t in mitosis.trials("big")] == [before.id]
    assert mitosis.load(before.id).results()["main"] == before.main
    left = [p for p in Path(".git/objects").iterdir() if p.name.startswith("tmp_")]
    assert len(left) == (1 if point in ("stream", "streamed") else 0)  # never a partial object
    packed = mitosis.gc()  # removes the dead writer's files: its temporary object, its folder
    assert packed.removed == len(left) + 1
    assert not [p for p in Path(".git/objects").iterdir() if p.name.startswith("tmp_")]
    assert list(Path(".git/mitosis/spool").iterdir()) == []
    after = mitosis.run(investigation.big, {"mib": 3, "seed": 1})
    assert [t.id for t in mitosis.trials("big")] == [before.id, after.id]
    objects_are_whole()


def test_a_full_disk_while_the_trial_writes_its_result_fails_the_trial(investigation):
    proc = record(investigation, "never", "kill", limit=2 * MiB)  # the trial process's limit
    assert proc.returncode == 2, proc.stdout + proc.stderr
    trial = mitosis.trials("big")[0]
    assert trial.status == "failed" and "File too large" in trial.error
    assert trial.detached == [] and not any(f.startswith("results/") for f in trial.files)
    objects_are_whole()


def test_a_full_disk_while_the_store_takes_the_result_records_a_failed_trial(investigation):
    before = mitosis.run(investigation.big, {"mib": 3})
    proc = record(investigation, "stream", str(256 * 1024))  # room for small files only
    assert proc.returncode == 2, proc.stdout + proc.stderr
    trial = mitosis.load(proc.stdout.split()[1])
    assert trial.status == "failed" and trial.main is None
    assert "mitosis could not store results/big.dill" in trial.error
    assert "File too large" in trial.error
    assert trial.detached == [] and "results/big.dill" not in trial.files
    assert trial.read("output.log") is not None
    record_json = json.loads(git("cat-file", "blob", f"mitosis/big:{trial.path}/trial.json"))
    assert record_json["format"] == 1 and record_json["status"] == "failed"
    assert not [p for p in Path(".git/objects").iterdir() if p.name.startswith("tmp_")]
    assert git("for-each-ref", "refs/mitosis-results/" + trial.id).strip() == ""
    objects_are_whole()
    assert mitosis.load(before.id).results()["main"] == before.main


def test_a_disk_too_full_for_any_record_records_nothing_and_says_why(investigation):
    before = mitosis.run(investigation.big, {"mib": 3})
    tip = git("rev-parse", "mitosis/big").strip()
    proc = record(investigation, "stream", "0")  # nothing can be written any more
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ERROR cannot write to the store")
    assert "File too large" in proc.stdout
    assert git("rev-parse", "mitosis/big").strip() == tip
    assert [t.id for t in mitosis.trials("big")] == [before.id]
    objects_are_whole()
    assert not [p for p in Path(".git/objects").iterdir() if p.name.startswith("tmp_")]
    assert list(Path(".git/mitosis/spool").iterdir()) == []  # the recorder cleaned up
    assert mitosis.gc().removed == 0
