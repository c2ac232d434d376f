"""The checks of a trial record (mitosis.model.checks): a record that passes them builds a
Trial field by field (the listing builds none: it trusts the checks for it), and what the
checks remember of names and paths that passed never lets a bad one through."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mitosis.exceptions import BadRecord
from mitosis.model import checks
from mitosis.model.checks import check_record
from mitosis.model.records import CodeState, Param, StepRecord, trial_from_json
from mitosis.store.trials import _results

GOOD: dict[str, Any] = {
    "format": 2,
    "id": "0a1b2c3d4e5f",
    "experiment": "sine",
    "status": "ok",
    "main": 0.5,
    "metrics": {"err": 0.25},
    "params": {
        "noise": {
            "variant": "low",
            "value": 0.01,
            "source": "variant",
            "type": "float",
            "fingerprint": "sha256:y",
            "dill": None,
        }
    },
    "untracked": {
        "gpu": {"variant": "0", "value": 0, "source": "literal", "type": "int", "fingerprint": "z"}
    },
    "started": "2026-01-01T00:00:00+00:00",
    "ended": "2026-01-01T00:00:01+00:00",
    "duration": 1.0,
    "host": "h",
    "user": "u",
    "function": "m:f",
    "code": {
        "repository": "/r",
        "commit": "ab" * 20,
        "branch": "main",
        "remotes": {"origin": "https://example.org/lab.git"},
        "dirty": False,
    },
    "error": None,
    "files": ["output.log", "results/sine.dill", "figures/sine-0.png"],
    "captions": {"figures/sine-0.png": "a sine"},
    "steps": [{"name": "sine", "function": "m:f", "status": "ok", "main": 0.5, "metrics": {}}],
    "rerun_of": None,
    "detached": ["results/sine.dill"],
    "mitosis": "0.1.0",
}

# where a change goes: the record, a parameter, the code state, a step
PLACES = [(), ("params", "noise"), ("untracked", "gpu"), ("code",), ("steps", 0)]
FIELDS = sorted(
    {*GOOD, *GOOD["params"]["noise"], *GOOD["code"], *GOOD["steps"][0], "reused_from", "extra"}
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=3)
    | st.sampled_from([2**70, 10**400, -(10**400)])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["", "ok", "..", "/x", "a/b", "ab" * 20, ".git", "\x1b[2J", "0a1b2c3d4e5f"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
CHANGE = st.tuples(st.sampled_from(PLACES), st.sampled_from(FIELDS), st.none() | JSON)


def changed(changes: list[tuple[tuple[Any, ...], str, Any]]) -> dict[str, Any]:
    """GOOD with each change made: a field set to a value, or removed (None for the value's
    place means removed; a JSON null is ``[None]``)."""
    record = copy.deepcopy(GOOD)
    for place, field, value in changes:
        target: Any = record
        for key in place:
            if isinstance(target, dict):
                target = target.get(key)
            elif isinstance(target, list) and isinstance(key, int) and key < len(target):
                target = target[key]
            else:
                target = None
        if not isinstance(target, dict):
            continue
        if value is None:
            target.pop(field, None)
        else:
            target[field] = value
    return record


@settings(max_examples=400, deadline=None)
@given(changes=st.lists(CHANGE, min_size=1, max_size=3))
def test_a_record_that_passes_its_checks_builds_a_trial_field_by_field(changes):
    record = changed(changes)
    verdicts = []
    for remembered in (False, True):  # the same verdict, whatever the checks remember
        for seen in (checks._SOUND_NAMES, checks._SOUND_PATHS, checks._SOUND_COMMITS):
            seen.clear()
        if remembered:
            check_record(GOOD, trial_id="0a1b2c3d4e5f", experiment="sine", where="here")
        try:
            check_record(record, trial_id="0a1b2c3d4e5f", experiment="sine", where="here")
            verdicts.append("")
        except BadRecord as exc:
            assert str(exc).startswith("here is not a readable trial record: field ")
            verdicts.append(str(exc))
    assert verdicts[0] == verdicts[1]
    if verdicts[0]:
        return
    try:
        _results(record)  # its results' tags decode: a listing checks that too
    except Exception:
        return
    built = trial_from_json(_results(record), None, None)
    texts = [built.id, built.started, built.ended, built.host, built.user, built.function]
    assert all(type(t) is str for t in [*texts, *built.files, *built.detached, *built.captions])
    assert built.status in checks.STATUSES and type(built.duration) in (int, float)
    for param in [*built.params.values(), *built.untracked.values()]:
        assert type(param) is Param and type(param.variant) is str
    assert built.code is None or (type(built.code) is CodeState and type(built.code.dirty) is bool)
    for step in built.steps:
        assert type(step) is StepRecord and step.status in checks.STEP_STATUSES


def test_the_good_record_passes_and_each_required_field_is_said_missing():
    assert check_record(GOOD, trial_id="0a1b2c3d4e5f", experiment="sine", where="w") is GOOD
    for place, field, said in [
        ((), "params", "'params' is missing"),
        (("params", "noise"), "value", "'params.noise.value' is missing"),
        (("code",), "commit", "'code.commit' is missing"),
        (("code",), "branch", "'code.branch' is missing"),
        ((), "started", "'started' must be text, not NoneType"),
    ]:
        with pytest.raises(BadRecord, match=said):
            check_record(changed([(place, field, None)]), trial_id="0a1b2c3d4e5f",
                         experiment="sine", where="w")  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("detached", "results/sine.dill", "'detached' must be a list of paths, not str"),
        ("detached", ["../../outside"], r"'detached\[0\]' the path '../../outside'"),
        ("files", ["ok.log", "/abs"], r"'files\[1\]' the path '/abs' is absolute"),
        ("files", [["a"]], r"'files\[0\]' must be text, not list"),
        ("captions", {"a/../b": "x"}, "'captions' the path 'a/../b'"),
    ],
)
def test_remembered_paths_and_names_never_pass_a_bad_one(field, value, said):
    check_record(GOOD, trial_id="0a1b2c3d4e5f", experiment="sine", where="w")  # remembered
    assert "output.log" in checks._SOUND_PATHS and "noise" in checks._SOUND_NAMES
    with pytest.raises(BadRecord, match=said):
        check_record({**GOOD, field: value}, trial_id="0a1b2c3d4e5f", experiment="sine", where="w")
    bad_name = {**GOOD, "params": {"a/b": GOOD["params"]["noise"]}}
    for _ in range(2):  # a name that failed is not remembered
        with pytest.raises(BadRecord, match="holds a parameter name that is no name"):
            check_record(bad_name, trial_id="0a1b2c3d4e5f", experiment="sine", where="w")
    assert "a/b" not in checks._SOUND_NAMES


def test_what_the_checks_remember_is_bounded():
    for n in range(checks._SOUND_MOST + 10):
        record = {**GOOD, "files": [f"f{n}.log"]}
        check_record(record, trial_id="0a1b2c3d4e5f", experiment="sine", where="w")
    assert len(checks._SOUND_PATHS) <= checks._SOUND_MOST


@pytest.mark.parametrize("value", [-1, -0.5, float("nan"), float("inf"), 10**400, True, "1"])
@pytest.mark.parametrize("where", ["record", "step"])
def test_a_duration_is_a_finite_number_of_seconds(value, where):
    record = copy.deepcopy(GOOD)
    (record if where == "record" else record["steps"][0])["duration"] = value
    field = "duration" if where == "record" else r"steps\[0\]\.duration"
    said = "a number" if type(value) in (bool, str) else "a finite number of seconds"
    with pytest.raises(BadRecord, match=f"field '{field}' must be {said}"):
        check_record(record, trial_id="0a1b2c3d4e5f", experiment="sine", where="w")
    for sound in (0, 2.5, 10**300):
        (record if where == "record" else record["steps"][0])["duration"] = sound
        assert check_record(record, trial_id="0a1b2c3d4e5f", experiment="sine", where="w")
