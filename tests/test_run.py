"""mitosis.run end to end: real trial processes, a real git store, read back with the git CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import git

import mitosis


def test_trial_is_a_readable_commit_on_its_branch(investigation):
    trial = mitosis.run(
        investigation.sine, {"amplitude": 4, "noise": "low"}, lookup=investigation.lookup
    )
    assert trial.status == "ok"
    assert trial.main == pytest.approx(0.04)
    assert trial.metrics == {"err": 0.005, "n": 3}
    assert trial.variants == {"amplitude": "4", "gpu": "0", "noise": "low"}
    assert len(trial.id) >= 10 and int(trial.id, 16) >= 0

    log = git("log", "mitosis/sine")
    assert "sine: amplitude=4 gpu=0 noise=low -> main=0.04 (ok)" in log
    message = git("log", "-1", "--format=%B", "mitosis/sine")
    trailers = git("interpret-trailers", "--parse", input=message)
    assert f"Mitosis-Trial: {trial.id}" in trailers
    head = git("rev-parse", "HEAD").strip()
    assert f"Mitosis-Code-Commit: {head}\n" in trailers
    assert "Mitosis-Status: ok" in trailers
    assert git("log", "--grep", f"Mitosis-Trial: {trial.id}", "--format=%H", "mitosis/sine")

    files = git("ls-tree", "-r", "--name-only", "mitosis/sine").split()
    folder = f"trials/{trial.id[:2]}/{trial.id}"
    for name in ("trial.json", "environment.json", "requirements.txt", "output.log"):
        assert f"{folder}/{name}" in files
    assert f"{folder}/results/sine.dill" in files
    assert "variants/noise/low.json" in files
    assert not any(f.startswith("variants/amplitude") for f in files)  # literals never lock

    record = json.loads(git("show", f"mitosis/sine:{folder}/trial.json"))
    assert record["params"]["noise"] == {
        "variant": "low",
        "value": 0.01,
        "source": "variant",
        "type": "float",
        "fingerprint": record["params"]["noise"]["fingerprint"],
        "dill": None,
    }
    assert record["code"]["commit"] == head and record["code"]["dirty"] is False
    assert "sine running amplitude=4 noise=0.01" in git("show", f"mitosis/sine:{folder}/output.log")
    git("fsck", "--strict")


def test_users_checkout_is_untouched(investigation):
    Path("notes.txt").write_text("work in progress\n")
    git("add", "notes.txt")
    Path(f"{investigation.__name__}.py").write_text(
        Path(f"{investigation.__name__}.py").read_text() + "\n# edited\n"
    )
    before = (
        git("rev-parse", "HEAD"),
        git("status", "--porcelain=v1"),
        Path(".git/index").read_bytes(),
        git("symbolic-ref", "HEAD"),
    )
    trial = mitosis.run(investigation.sine, {"amplitude": 1, "noise": 0.2})
    after = (
        git("rev-parse", "HEAD"),
        git("status", "--porcelain=v1"),
        Path(".git/index").read_bytes(),
        git("symbolic-ref", "HEAD"),
    )
    assert before == after
    assert trial.code is not None and trial.code.dirty
    diff = trial.read("code.diff").decode()
    assert "+# edited" in diff and "notes.txt" in diff


def test_results_params_and_load_by_prefix(investigation):
    trial = mitosis.run(
        investigation.sine, {"amplitude": 2, "noise": "high"}, lookup=investigation.lookup
    )
    assert trial.results() == {"main": 1.0, "metrics": {"err": 0.25, "n": 3}, "data": [2]}
    loaded = mitosis.load(trial.id[:6])
    assert loaded == trial
    assert loaded.results()["data"] == [2]
    assert loaded.value("noise") == 0.5 and loaded.value("gpu") == 0
    assert [t.id for t in mitosis.trials("sine")] == [trial.id]
    assert [t.id for t in mitosis.trials()] == [trial.id]


def test_trials_are_listed_oldest_first(investigation):
    ids = [mitosis.run(investigation.bare_number, {"x": float(i)}).id for i in range(3)]
    listed = mitosis.trials("bare_number")
    assert [t.id for t in listed] == ids
    assert [t.main for t in listed] == [0.0, 3.0, 6.0]


def test_decorator_attaches_and_run_arguments_override(investigation):
    fn = mitosis.experiment(name="wave", lookup={"noise": {"tiny": 1e-6}}, untracked=["gpu"])(
        investigation.sine
    )
    assert fn is investigation.sine  # an ordinary function still
    assert fn(2, 0.5)["main"] == 1.0
    trial = mitosis.run(fn, {"amplitude": 1, "noise": "tiny", "gpu": 3})
    assert trial.experiment == "wave"
    assert "gpu" not in trial.params and trial.untracked["gpu"].variant == "3"
    assert git("rev-parse", "--verify", "mitosis/wave")
    other = mitosis.run(fn, {"amplitude": 1, "noise": 0.3}, untracked=[])
    assert "gpu" in other.params


def test_a_bare_number_is_main(investigation):
    assert mitosis.run(investigation.bare_number).main == 6.0


def test_output_streams_live_and_is_recorded(investigation, capfd):
    trial = mitosis.run(investigation.noisy, {"lines": 2})
    captured = capfd.readouterr()
    assert "out 0\nout 1\n" in captured.out
    assert "err 0\nerr 1\n" in captured.err
    log = trial.read("output.log").decode()
    for line in ("out 0", "out 1", "err 0", "err 1"):
        assert line in log


def test_figures_left_open_are_saved_as_png(investigation):
    trial = mitosis.run(investigation.draws, {"n": 2})
    assert trial.figures == ["figures/draws-0.png", "figures/draws-1.png"]
    png = git("show", f"mitosis/draws:{trial.path}/figures/draws-1.png", text=False)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_debug_records_nothing(investigation):
    trial = mitosis.run(
        investigation.sine,
        {"amplitude": 3, "noise": "low"},
        lookup=investigation.lookup,
        debug=True,
    )
    assert trial.status == "ok" and trial.main == pytest.approx(0.03)
    assert trial.results()["data"] == [3]
    assert git("branch", "--list", "mitosis/*") == ""
    assert not git("for-each-ref", "refs/heads/mitosis")


def test_environment_and_code_state_are_recorded(investigation):
    git("remote", "add", "origin", "https://alice:hunter2@example.org/lab/investigation.git")
    trial = mitosis.run(
        investigation.sine, {"amplitude": 1, "noise": "low"}, lookup=investigation.lookup
    )
    assert trial.code is not None
    assert trial.code.branch == "main"
    assert trial.code.remotes == {"origin": "https://example.org/lab/investigation.git"}
    assert trial.code.repository == str(Path.cwd().resolve())
    env = json.loads(trial.read("environment.json"))
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["executable"] == sys.executable
    assert env["variables"]["HOME"] == os.environ["HOME"]
    requirements = trial.read("requirements.txt").decode().splitlines()
    from importlib.metadata import version

    assert f"dulwich=={version('dulwich')}" in requirements
    assert any("mitosis==" in line for line in requirements)


def test_default_store_outside_any_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "standalone.py"
    script.write_text(
        textwrap.dedent("""
        import mitosis

        def double(x=2):
            return x * 2

        trial = mitosis.run(double, {"x": 21})
        print("RESULT", trial.id, trial.main)
    """)
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "created a new store" in proc.stderr and "trials" in proc.stderr
    trial_id, main = proc.stdout.split("RESULT")[1].split()
    assert main == "42"
    assert trial_id in git("log", "mitosis/double", cwd=tmp_path / "trials")
    # a second run reuses ./trials without announcing it again
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0 and "created" not in proc.stderr
    assert len(git("rev-list", "mitosis/double", cwd=tmp_path / "trials").split()) == 2


def test_store_argument_names_another_repository(investigation, tmp_path):
    store = tmp_path / "elsewhere.git"
    git("init", "-q", "--bare", str(store))
    trial = mitosis.run(investigation.bare_number, store=store)
    assert trial.location == str(store.resolve())
    assert mitosis.load(trial.id, store=store).main == 6.0
    assert git("for-each-ref", "refs/heads/mitosis") == ""  # nothing in the investigation
    assert trial.id in git("log", "mitosis/bare_number", cwd=store)


def test_bare_decorator_and_end_time(investigation):
    @mitosis.experiment
    def triple(x: int = 2):
        return x * 3

    assert triple(1) == 3
    trial = mitosis.run(triple)
    assert trial.experiment == "triple" and trial.main == 6
    started, ended = (dt.datetime.fromisoformat(t) for t in (trial.started, trial.ended))
    assert started.tzinfo is not None and started <= ended
    assert (ended - started).total_seconds() == pytest.approx(trial.duration, abs=1e-3)


def test_variants_lists_locks_with_their_use(investigation):
    lookup = {"noise": {"low": 0.01, "high": 0.5}}
    for amplitude, noise in ((1, "low"), (2, "low"), (3, "high")):
        mitosis.run(investigation.sine, {"amplitude": amplitude, "noise": noise}, lookup=lookup)
    found = mitosis.variants("sine")
    assert [(v.param, v.name, v.value, v.trials, v.pickled) for v in found] == [
        ("noise", "high", 0.5, 1, False),
        ("noise", "low", 0.01, 2, False),
    ]
    assert mitosis.variants("sine", "amplitude") == []
    with pytest.raises(mitosis.UnknownExperiment):
        mitosis.variants("nope")


def test_changing_a_listed_trial_changes_no_later_listing(investigation):
    mitosis.run(investigation.bare_number)
    (first,) = mitosis.trials("bare_number")
    first.metrics["added"] = 1
    first.params.clear()
    (again,) = mitosis.trials("bare_number")
    assert again.metrics == {} and "x" in again.params


def test_trials_filters_and_sorts_from_python(investigation):
    made = {}
    for amplitude, noise in [(4, "low"), (1, "high"), (2, "low"), (3, "high")]:
        trial = mitosis.run(
            investigation.sine,
            {"amplitude": amplitude, "noise": noise},
            lookup=investigation.lookup,
        )
        made[amplitude, noise] = trial.id
    low = mitosis.trials("sine", where="noise=low")
    assert [t.id for t in low] == [made[4, "low"], made[2, "low"]]  # oldest first
    by_main = mitosis.trials("sine", where=["main>0.02", "noise=high"], sort="main")
    assert [t.main for t in by_main] == [0.5, 1.5]
    assert [t.variants["noise"] for t in mitosis.trials(sort="amplitude")] == [
        "high",
        "low",
        "high",
        "low",
    ]
    with pytest.raises(mitosis.UnknownField, match="sort: no parameter or metric 'mian'"):
        mitosis.trials("sine", sort="mian")
    with pytest.raises(mitosis.BadQuery, match="write NAME OP VALUE"):
        mitosis.trials("sine", where="noise low")
