"""Experiments made of steps: data forwarding, per-step records, failures, reuse, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git

import mitosis


@pytest.fixture
def chain(investigation):
    return [
        ("make_data", investigation.make_data, investigation.data_lookup),
        investigation.fit,
    ]


def test_data_flows_and_each_step_is_recorded(investigation, chain):
    trial = mitosis.run(chain, {"make_data.noise": "high", "fit.alpha": 2.0})
    assert trial.experiment == "make_data+fit"
    assert trial.main == pytest.approx(4.0)  # 4 points of 0.5, times 2
    assert trial.metrics == {"make_data.points": 4, "fit.n": 4}
    assert [(s.name, s.status, s.main) for s in trial.steps] == [
        ("make_data", "ok", 4.0),
        ("fit", "ok", 4.0),
    ]
    assert all(s.duration >= 0 and s.code.startswith("sha256:") for s in trial.steps)
    assert trial.variants == {
        "make_data.noise": "high",
        "make_data.points": "4",
        "fit.alpha": "2.0",
    }
    assert trial.results("make_data")["data"] == [0.5] * 4
    assert trial.results()["data"] == [1.0] * 4
    with pytest.raises(KeyError, match="no step 'score'; its steps: make_data, fit"):
        trial.results("score")
    files = git("ls-tree", "-r", "--name-only", "mitosis/make_data+fit").split()
    assert f"{trial.path}/results/make_data.dill" in files
    assert f"{trial.path}/results/fit.dill" in files
    assert "variants/make_data.noise/high.json" in files  # locked per step's lookup
    loaded = mitosis.load(trial.id)
    assert loaded.steps == trial.steps


def test_three_steps_with_decorated_functions(investigation):
    steps = [
        mitosis.experiment(lookup=investigation.data_lookup)(investigation.make_data),
        investigation.fit,
        investigation.scale,
    ]
    trial = mitosis.run(steps, {"make_data.noise": "low", "scale.factor": 10})
    assert trial.main == pytest.approx(0.1)
    assert [s.name for s in trial.steps] == ["make_data", "fit", "scale"]


def test_failure_in_step_two(investigation, chain):
    with pytest.raises(mitosis.TrialFailed, match="cannot fit 4 points") as err:
        mitosis.run([chain[0], investigation.fit_fails], {"make_data.noise": "low"})
    trial = mitosis.load(err.value.trial_id)
    assert trial.status == "failed"
    assert [(s.name, s.status) for s in trial.steps] == [
        ("make_data", "ok"),
        ("fit_fails", "failed"),
    ]
    assert "RuntimeError: cannot fit 4 points" in trial.error
    assert trial.results("make_data")["data"] == [0.01] * 4
    with pytest.raises(mitosis.StoreError, match=r"no 'results/fit_fails\.dill'"):
        trial.results()


def test_a_step_killed_marks_later_steps_not_run(investigation, chain):
    steps = [chain[0], ("kill", lambda data: investigation.kills_itself()), investigation.scale]
    with pytest.raises(mitosis.TrialFailed) as err:
        mitosis.run(steps, {"make_data.noise": "low"})
    trial = mitosis.load(err.value.trial_id)
    assert [(s.name, s.status) for s in trial.steps] == [
        ("make_data", "ok"),
        ("kill", "killed"),
        ("scale", "not run"),
    ]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"model.alpha": 1}, "addresses no step of the chain make_data -> fit"),
        ({"alpha": 1}, "write it as step.param"),
        ({"fit.beta": 1}, r"fit has no parameter 'fit\.beta'"),
        ({}, r"make_data needs a value for 'make_data\.noise'"),
    ],
)
def test_parameter_errors_in_a_chain(investigation, chain, params, expected):
    with pytest.raises(mitosis.BadParameter, match=expected):
        mitosis.run(chain, {"make_data.noise": "low", **params} if params else params)


def test_chain_construction_errors(investigation, chain):
    with pytest.raises(mitosis.BadParameter, match="appear twice"):
        mitosis.run([investigation.fit, investigation.fit], {})
    with pytest.raises(mitosis.BadParameter, match="lookup= is for one function"):
        mitosis.run(chain, {}, lookup={"noise": {}})
    with pytest.raises(mitosis.BadParameter, match="takes no positional parameter"):
        mitosis.run([chain[0], investigation.wrong_shape], {"make_data.noise": "low"})
    with pytest.raises(mitosis.BadParameter, match="a step is a function, or a tuple"):
        mitosis.run([chain[0], 3], {})
    with pytest.raises(mitosis.BadParameter, match="untracked parameter 'alpha': in a chain"):
        mitosis.run(chain, {"make_data.noise": "low"}, untracked=["alpha"])
    with pytest.raises(mitosis.BadParameter, match=r"cannot hold '\.'"):
        mitosis.run([("a.b", investigation.make_data), investigation.fit], {})


def test_untracked_in_a_chain(investigation, chain):
    trial = mitosis.run(
        chain, {"make_data.noise": "low", "fit.alpha": 3.0}, untracked=["fit.alpha"]
    )
    assert "fit.alpha" in trial.untracked and "fit.alpha" not in trial.params


def test_step_without_data_and_wrong_shape(investigation):
    with pytest.raises(mitosis.TrialFailed, match='step no_data returned no "data"'):
        mitosis.run([investigation.no_data, investigation.scale], {})
    with pytest.raises(mitosis.TrialFailed, match="step shape returned str 'oops'"):
        mitosis.run([("shape", lambda: "oops"), investigation.scale], {})


def test_reuse_hit(investigation, chain, capfd):
    params = {"make_data.noise": "low", "fit.alpha": 2.0}
    first = mitosis.run(chain, params, reuse=True)
    assert first.steps[0].reused_from is None
    capfd.readouterr()
    second = mitosis.run(chain, {**params, "fit.alpha": 3.0}, reuse=True)
    assert "making data" not in capfd.readouterr().out  # the first step did not run
    assert second.steps[0].reused_from == first.id and second.steps[0].main == 4.0
    assert second.steps[1].reused_from is None
    assert second.main == pytest.approx(0.12)
    assert second.results("make_data") == first.results("make_data")
    # a reused result is reused again with the trial that computed it named
    third = mitosis.run(chain, params, reuse=True)
    assert third.steps[0].reused_from == first.id
    # without reuse=True, everything runs
    assert mitosis.run(chain, params).steps[0].reused_from is None


def test_reuse_miss_on_changed_parameter(investigation, chain):
    mitosis.run(chain, {"make_data.noise": "low"}, reuse=True)
    other = mitosis.run(chain, {"make_data.noise": "high"}, reuse=True)
    assert other.steps[0].reused_from is None


def test_reuse_miss_on_dirty_tree_and_new_commit(investigation, chain):
    mitosis.run(chain, {"make_data.noise": "low"}, reuse=True)
    Path("notes.txt").write_text("uncommitted\n")
    dirty = mitosis.run(chain, {"make_data.noise": "low"}, reuse=True)
    assert dirty.code.dirty and dirty.steps[0].reused_from is None
    git("add", "notes.txt")
    git("commit", "-qm", "notes")
    moved = mitosis.run(chain, {"make_data.noise": "low"}, reuse=True)
    assert not moved.code.dirty and moved.steps[0].reused_from is None
    again = mitosis.run(chain, {"make_data.noise": "low"}, reuse=True)
    assert again.steps[0].reused_from == moved.id


def test_reuse_miss_on_other_code_of_the_same_name(investigation):
    def make(noise: float = 0.1):
        return {"main": 1.0, "data": [1]}

    first = make

    def make(noise: float = 0.1):  # same name, other code
        return {"main": 2.0, "data": [2]}

    mitosis.run([first, investigation.scale], {}, reuse=True)
    trial = mitosis.run([make, investigation.scale], {}, reuse=True)
    assert trial.steps[0].reused_from is None and trial.main == 4


def test_debug_chain(investigation, chain):
    trial = mitosis.run(chain, {"make_data.noise": "low"}, debug=True)
    assert trial.results("make_data")["main"] == 4.0
    assert git("for-each-ref", "refs/heads/mitosis") == ""


def test_closures_are_never_reused(investigation):
    def make_step(value: float):
        def gen():
            return {"main": value, "data": [value]}

        return gen

    first = mitosis.run([("gen", make_step(1.0)), investigation.scale], {}, reuse=True)
    second = mitosis.run([("gen", make_step(2.0)), investigation.scale], {}, reuse=True)
    assert first.main == 2 and second.main == 4
    assert second.steps[0].reused_from is None and second.steps[0].code is None
