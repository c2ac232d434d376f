"""Results kept off the branches, shared: pushed beside the records, left behind by clones and
plain pulls, brought on demand through a real git daemon, carried by bundles when asked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import git
from test_sync import daemon  # noqa: F401 - fixtures

import mitosis
from mitosis.cli import main
from mitosis.exceptions import StoreError

MiB = 1 << 20


def blob_of(trial: mitosis.Trial, cwd: Path | str) -> str:
    path = f"mitosis/{trial.experiment}:{trial.path}/results/big.dill.pointer"
    return str(json.loads(git("cat-file", "blob", path, cwd=cwd))["blob"])


def has(cwd: Path | str, blob: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", blob], cwd=cwd).returncode == 0


def results_refs(cwd: Path | str) -> set[str]:
    listed = git("for-each-ref", "--format=%(refname)", "refs/mitosis-results/", cwd=cwd)
    return {ref.rpartition("/")[2] for ref in listed.split()}


@pytest.fixture
def recorded(investigation, tmp_path):
    """A store (the investigation) with two trials of big results and one small one."""
    first = mitosis.run(investigation.big, {"mib": 3})
    second = mitosis.run(investigation.big, {"mib": 4, "seed": 1})
    small = mitosis.run(investigation.big, {"mib": 0.25, "seed": 2})
    return first, second, small


def test_push_sends_results_and_a_clone_brings_them_on_demand(recorded, tmp_path, hub, daemon):  # noqa: F811
    first, second, _ = recorded
    git("remote", "add", "lab", daemon)
    report = mitosis.push("lab")
    assert report.experiments == {"big": "new"} and report.results == sorted([first.id, second.id])
    assert results_refs(hub) == {first.id, second.id}
    git("fsck", "--strict", "--no-dangling", cwd=hub)
    assert mitosis.push("lab").results == []  # a results ref is sent once
    clone = tmp_path / "clone"
    git("clone", "-q", daemon, str(clone))
    blobs = [blob_of(t, clone / ".." / "investigation") for t in (first, second)]
    assert not has(clone, blobs[0]) and not has(clone, blobs[1])
    here = mitosis.load(first.id, store=clone)
    assert not here.stat("results/big.dill").here
    assert here.results()["main"] == first.main  # fetched from origin, the git daemon
    assert has(clone, blobs[0]) and not has(clone, blobs[1])  # that trial's results only
    assert results_refs(clone) == {first.id}
    assert here.stat("results/big.dill").here
    git("fsck", "--strict", "--no-dangling", cwd=clone)


def test_pull_results_of_one_trial_brings_that_trial_s_only(recorded, tmp_path, hub, runner):
    first, second, small = recorded
    mitosis.push(str(hub))
    other = tmp_path / "other"
    git("init", "-q", str(other))
    git("remote", "add", "origin", str(hub), cwd=other)
    blobs = [blob_of(t, Path.cwd()) for t in (first, second)]
    result = runner.invoke(main, ["pull", "--store", str(other)])
    assert result.exit_code == 0, result.output
    assert "results" not in result.output and results_refs(other) == set()
    result = runner.invoke(main, ["pull", "--results", first.id[:8], "--store", str(other)])
    assert result.exit_code == 0, result.output
    assert "brought the results of 1 trial(s)" in result.output
    assert has(other, blobs[0]) and not has(other, blobs[1])
    assert results_refs(other) == {first.id}
    result = runner.invoke(main, ["pull", "origin", "big", "--results", "--store", str(other)])
    assert result.exit_code == 0, result.output
    assert "brought the results of 1 trial(s)" in result.output  # the other one
    assert has(other, blobs[1]) and results_refs(other) == {first.id, second.id}
    assert mitosis.pull(store=other, results=True).results == []
    assert mitosis.load(small.id, store=other).results()["main"] == small.main
    git("fsck", "--strict", "--no-dangling", cwd=other)
    with pytest.raises(mitosis.UnknownTrial):
        mitosis.pull(store=other, results=["ffffffff"])


def test_push_no_results_sends_records_only(recorded, tmp_path, hub, runner):
    first, second, _ = recorded
    git("remote", "add", "origin", str(hub))
    result = runner.invoke(main, ["push", "--no-results"])
    assert result.exit_code == 0, result.output and "results" not in result.output
    assert results_refs(hub) == set()
    assert git("rev-parse", "mitosis/big", cwd=hub) == git("rev-parse", "mitosis/big")
    clone = tmp_path / "clone"
    git("clone", "-q", f"file://{hub}", str(clone))
    with pytest.raises(
        StoreError, match=rf"origin: no results of this trial\).*--results {first.id}"
    ):
        mitosis.load(first.id, store=clone).results()
    result = runner.invoke(main, ["push"])
    assert result.exit_code == 0, result.output
    assert "sent the results of 2 trial(s)" in result.output
    assert results_refs(hub) == {first.id, second.id}
    assert mitosis.load(second.id, store=clone).results()["main"] == second.main


def test_a_remote_that_cannot_be_reached_is_named_in_the_error(recorded, tmp_path, hub):
    first, _, _ = recorded
    mitosis.push(str(hub), results=False)
    clone = tmp_path / "clone"
    git("clone", "-q", f"file://{hub}", str(clone))
    git("remote", "add", "gone", str(tmp_path / "no-such-store"), cwd=clone)
    with pytest.raises(StoreError) as error:
        mitosis.load(first.id, store=clone).results()
    message = str(error.value)
    assert "asked origin: no results of this trial; gone: fetching results from" in message
    assert f"mitosis pull REMOTE --results {first.id}" in message


def test_bundles_carry_results_when_asked(investigation, recorded, tmp_path, runner):
    first, second, small = recorded
    records = tmp_path / "records.bundle"
    full = tmp_path / "full.bundle"
    assert mitosis.bundle(records) == 1
    result = runner.invoke(main, ["bundle", str(full), "--results"])
    assert result.exit_code == 0, result.output
    assert full.stat().st_size > records.stat().st_size + 7 * MiB
    assert records.stat().st_size < MiB
    for path in (records, full):
        git("bundle", "verify", str(path))
    blobs = [blob_of(t, Path.cwd()) for t in (first, second)]
    away = tmp_path / "away"
    git("init", "-q", str(away))
    mitosis.pull(str(records), store=away)
    assert not has(away, blobs[0]) and results_refs(away) == set()
    mitosis.pull(str(full), store=away)
    assert has(away, blobs[0]) and has(away, blobs[1])
    assert results_refs(away) == {first.id, second.id}
    assert mitosis.load(second.id, store=away).results()["main"] == second.main
    git("fsck", "--strict", "--no-dangling", cwd=away)
    later = mitosis.run(investigation.big, {"mib": 2, "seed": 5})
    since = tmp_path / "since.bundle"
    mitosis.bundle(since, since=full, results=True)
    assert since.stat().st_size < 3 * MiB  # the new trial's result, not the earlier ones
    mitosis.pull(str(since), store=away)
    assert results_refs(away) == {first.id, second.id, later.id}
    assert small.id in {t.id for t in mitosis.trials("big", store=away)}


def test_results_are_copied_streamed_from_a_store_on_a_path(recorded, tmp_path):
    first, second, _ = recorded
    # dulwich reads this store's loose objects only up to 1 MiB; mitosis streams them itself
    git("config", "core.bigFileThreshold", "1048576")
    clone = tmp_path / "clone"
    git("clone", "-q", "--no-local", str(Path.cwd()), str(clone))
    assert mitosis.load(second.id, store=clone).results()["main"] == second.main
    report = mitosis.pull(store=clone, results=True)
    assert report.results == [first.id]
    assert results_refs(clone) == {first.id, second.id}
    git("fsck", "--strict", "--no-dangling", cwd=clone)
