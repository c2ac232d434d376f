"""What experiments written for the earlier mitosis (0.6) rely on: its return contract, data
handed to *args, lookup tables that answer any name, logging in the trial's log, its type names
and its load_trial_data."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from conftest import committed_module, git

import mitosis


@pytest.fixture
def legacy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A committed investigation holding the 0.6-style experiments; the module, imported."""
    yield from committed_module(tmp_path / "legacy", "legacy_experiments", monkeypatch)


def test_a_step_before_the_last_may_return_data_alone_and_extra_keys(legacy):
    chain = [("data", legacy.gen_data, legacy.data_config), ("fit", legacy.fit_and_score)]
    trial = mitosis.run(chain, {"data.length": "short", "data.extra": True})
    assert trial.main == 3
    first, last = trial.steps
    assert first.main is None and first.extra == {"extra": True, "note": {"kind": "ones"}}
    assert last.extra == {} and last.metrics == {"n": 3}
    loaded = mitosis.load(trial.id)
    assert loaded.steps == trial.steps  # the extra keys are in the record
    record = git("show", f"mitosis/data+fit:{trial.path}/trial.json")
    assert '"extra": true' in record and record.count('"extra": {') == 1  # none for the last
    # the pickled result keeps the whole dict
    assert trial.results("data") == {
        "data": [1.0] * 3,
        "extra": True,
        "note": {"kind": "ones"},
    }
    assert mitosis.load_trial_data(trial.id[:6]) == [trial.results("data"), trial.results()]


def test_the_last_step_still_needs_main(legacy):
    with pytest.raises(mitosis.TrialFailed, match='no "main" key') as err:
        mitosis.run(
            [("data", legacy.gen_data, legacy.data_config), ("last", lambda data: {"data": data})],
            {"data.length": "short"},
        )
    trial = mitosis.load(err.value.trial_id)
    assert trial.status == "failed"
    assert [s.status for s in trial.steps] == ["ok", "failed"]
    assert 'step last returned a dict with no "main" key' in trial.error
    # a failed step records no result: load_trial_data returns the ones that did
    assert mitosis.load_trial_data(trial.id) == [trial.results("data")]
    expected = 'step x returned no "data" for the next step, only_data'
    with pytest.raises(mitosis.TrialFailed, match=expected):
        mitosis.run([("x", lambda: {"main": 1}), legacy.only_data, legacy.fit_and_score], {})


def test_a_plain_function_with_extra_keys(legacy):
    trial = mitosis.run(lambda: {"main": 1.5, "seed": 7})
    assert trial.main == 1.5 and trial.steps[0].extra == {"seed": 7}


def test_data_handed_to_star_args(legacy):
    trial = mitosis.run(
        [("data", legacy.gen_data, legacy.data_config), ("nothing", legacy.do_nothing)],
        {"data.length": "long", "nothing.anything": 4},
    )
    assert trial.main == 5
    assert "got 1 positional, keywords ['anything']" in trial.read("output.log").decode()
    # a first step has no data: *args stays empty
    assert mitosis.run(legacy.do_nothing).main is None


def test_a_later_step_without_a_positional_parameter_is_still_refused(legacy):
    with pytest.raises(mitosis.BadParameter, match="takes no positional parameter"):
        mitosis.run(
            [("data", legacy.gen_data, legacy.data_config), legacy.keyword_only],
            {"data.length": "short"},
        )


def test_lookup_tables_answer_through_their_own_getitem(legacy):
    # a defaultdict of defaultdicts: every parameter has a table, every name means None
    trial = mitosis.run(legacy.do_nothing, {"solver": "fast"}, lookup=legacy.anything)
    assert trial.params["solver"].source == "variant"
    assert trial.params["solver"].variant == "fast" and trial.value("solver") is None
    assert "variants/solver/fast.json" in git("ls-tree", "-r", "--name-only", "mitosis/do_nothing")
    # a table with __missing__: a name it does not hold is still a variant
    trial = mitosis.run(legacy.take_word, {"word": "ab", "count": "one"}, lookup=legacy.doubled)
    assert trial.main == 4 and trial.value("word") == "abab"
    assert trial.params["word"].source == "variant"
    # a plain table still refuses a name it does not hold
    with pytest.raises(mitosis.UnknownVariant, match="two"):
        mitosis.run(legacy.take_word, {"count": "two"}, lookup=legacy.doubled)


def test_logging_reaches_the_trial_log(legacy):
    chain = [("data", legacy.gen_data, legacy.data_config), ("fit", legacy.fit_and_score)]
    trial = mitosis.run(chain, {"data.length": "short"})
    log = trial.read("output.log").decode()
    assert "INFO" in log and "making 3 points" in log
    assert "debug detail" not in log
    debug = mitosis.run(chain, {"data.length": "short"}, debug=True)
    assert "debug detail" in debug.read("output.log").decode()


def test_an_experiment_that_configures_logging_keeps_its_own(legacy):
    Path("configured.py").write_text(
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format='OWN %(message)s')\n"
        "def run():\n"
        "    logging.getLogger('x').warning('warned')\n"
        "    logging.getLogger('x').info('not shown')\n"
        "    return {'main': 1}\n"
    )
    import configured

    try:
        log = mitosis.run(configured.run).read("output.log").decode()
    finally:
        sys.modules.pop("configured", None)
    assert "OWN warned" in log and "not shown" not in log


def test_the_earlier_type_names():
    import typing

    from mitosis._typing import ExpResults, ExpRun

    assert ExpResults.__required_keys__ == {"main"}
    assert ExpResults.__optional_keys__ == {"metrics", "data", "figures"}
    assert typing.get_origin(ExpRun) is not None
    assert set(mitosis._typing.__all__) == {"ExpResults", "ExpRun", "P"}


def test_load_trial_data_of_an_unknown_trial(legacy):
    mitosis.run(legacy.do_nothing)
    with pytest.raises(mitosis.UnknownTrial):
        mitosis.load_trial_data("ffffffff")
