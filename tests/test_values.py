"""Parameter values: canonical encoding, the equality rule, and round trips through real trials."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest
from conftest import git
from hypothesis import given
from hypothesis import strategies as st

import mitosis
from mitosis.model.values import decode, dumps_json, encode


@attrs.define
class Point:
    x: int
    y: float


@dataclasses.dataclass
class Box:
    label: str
    corners: tuple[int, ...]


class Estimator:
    """Like a scikit-learn estimator: attributes, and no meaningful ``==``."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.max_iter = 1000


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
hashables = st.recursive(
    scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=6
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.dictionaries(st.integers(), inner, max_size=3)
        | st.sets(hashables, max_size=4)
    ),
    max_leaves=12,
)


def same(a, b) -> bool:
    """Equal with the same types all the way down (1 == 1.0 == True is not good enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


@given(values)
def test_json_values_round_trip_exactly(value):
    encoded = encode(value)
    assert encoded.exact and encoded.pickled is None
    assert same(decode(json.loads(dumps_json(encoded.json))), value)


@given(st.dictionaries(st.text(max_size=4), scalars, max_size=6))
def test_fingerprint_ignores_dict_order(mapping):
    reordered = dict(reversed(list(mapping.items())))
    assert encode(mapping).fingerprint == encode(reordered).fingerprint


@given(values, values)
def test_different_values_have_different_fingerprints(a, b):
    if not same(a, b) and not (a == b and type(a) is type(b)):
        assert encode(a).fingerprint != encode(b).fingerprint


def test_types_are_part_of_the_value():
    fingerprints = {encode(v).fingerprint for v in (1, 1.0, True, "1", [1], (1,), {1})}
    assert len(fingerprints) == 7


def test_nan_and_infinity_are_strict_json():
    encoded = encode([math.inf, -math.inf])
    assert dumps_json(encoded.json) == '[{"py/float":"inf"},{"py/float":"-inf"}]'
    assert math.isnan(decode(encode(math.nan).json))


def test_attrs_and_dataclass_values_are_readable_json_with_a_pickle_beside():
    encoded = encode(Point(1, 2.5))
    assert encoded.json == {"py/type": f"{__name__}.Point", "x": 1, "y": 2.5}
    assert not encoded.exact and encoded.pickled
    assert encode(Point(1, 2.5)).fingerprint == encoded.fingerprint
    assert encode(Point(1, 2.0)).fingerprint != encoded.fingerprint
    assert encode(Box("a", (1, 2))).json == {
        "py/type": f"{__name__}.Box",
        "label": "a",
        "corners": {"py/tuple": [1, 2]},
    }


def test_values_without_equality_compare_by_content():
    a, b = Estimator(0.1), Estimator(0.1)
    assert a != b  # identity only
    assert encode(a).json is None
    assert encode(a).fingerprint == encode(b).fingerprint
    assert encode(Estimator(0.2)).fingerprint != encode(a).fingerprint


def test_many_kinds_of_values_reach_the_trial_and_come_back(investigation):
    fn = lambda x: x + 1  # noqa: E731
    values = {
        "value": {"int": 3, "nested": [1, {"a": (2, 3)}, {4, 5}], "text": "é", "none": None},
        "other": [Point(1, 2.0), Box("b", (3,)), Estimator(0.3), fn],
    }
    trial = mitosis.run(investigation.echo, values)
    reached = trial.results()["data"]
    assert reached["value"] == values["value"]
    point, box, estimator, function = reached["other"]
    assert (point, box) == (Point(1, 2.0), Box("b", (3,)))
    assert estimator.alpha == 0.3 and function(1) == 2
    loaded = mitosis.load(trial.id)
    assert loaded.value("value") == values["value"]
    assert loaded.params["value"].dill is None
    other = loaded.value("other")
    assert other[:2] == [Point(1, 2.0), Box("b", (3,))] and other[3](4) == 5
    assert loaded.params["other"].dill == "params/other.dill"
    with pytest.raises(KeyError, match="has no parameter 'nope'; it has: other, value"):
        loaded.value("nope")


def test_numpy_arrays_round_trip(investigation):
    np = pytest.importorskip("numpy")
    array = np.arange(12.0).reshape(3, 4)
    trial = mitosis.run(investigation.echo, {"value": array}, lookup={"value": {"grid": array}})
    assert np.array_equal(mitosis.load(trial.id).value("value"), array)
    assert np.array_equal(trial.results()["data"]["value"], array)
    # the same array again, another object: the locked variant accepts it
    mitosis.run(investigation.echo, {"value": "grid"}, lookup={"value": {"grid": array.copy()}})
    with pytest.raises(mitosis.VariantConflict, match="value=grid"):
        mitosis.run(investigation.echo, {"value": "grid"}, lookup={"value": {"grid": array + 1}})


def test_estimator_variant_locks_by_content(investigation):
    lookup = {"value": {"lasso": Estimator(0.1)}}
    first = mitosis.run(investigation.echo, {"value": "lasso"}, lookup=lookup)
    assert git("cat-file", "-t", "mitosis/echo:variants/value/lasso.dill").strip() == "blob"
    mitosis.run(investigation.echo, {"value": "lasso"}, lookup={"value": {"lasso": Estimator(0.1)}})
    with pytest.raises(mitosis.VariantConflict) as err:
        mitosis.run(
            investigation.echo, {"value": "lasso"}, lookup={"value": {"lasso": Estimator(0.2)}}
        )
    assert "a pickled" in str(err.value) and first.id in str(err.value)


def test_tuples_and_sets_lock_by_value(investigation):
    lookup = investigation.lookup
    mitosis.run(
        investigation.echo,
        {"value": "pair", "other": "set"},
        lookup={"value": lookup["shape"], "other": lookup["shape"]},
    )
    assert mitosis.trials("echo")[0].value("other") == {1, 2, 3}
    with pytest.raises(mitosis.VariantConflict, match=r"\[1,2\]"):
        mitosis.run(investigation.echo, {"value": "pair"}, lookup={"value": {"pair": [1, 2]}})


def test_closure_runs_by_value(investigation):
    offset = 10

    def shifted(x: int = 1):
        return {"main": float(x + offset)}

    trial = mitosis.run(shifted, {"x": 5})
    assert trial.main == 15.0
    assert trial.function.endswith("test_closure_runs_by_value.<locals>.shifted")


def test_function_defined_in_main_runs_by_value(investigation):
    script = textwrap.dedent("""
        import math
        import mitosis

        SCALE = 3

        def in_main(x: float = 1.0):
            return {"main": math.floor(x * SCALE), "data": [x]}

        trial = mitosis.run(in_main, {"x": 2.5})
        print("RESULT", trial.main, trial.results()["data"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "RESULT 7 [2.5]" in proc.stdout
    (trial,) = mitosis.trials("in_main")
    assert trial.function == "__main__:in_main"


SAME_VALUE = """
import sys
import mitosis
sys.path.insert(0, sys.argv[1])
experiments = __import__(sys.argv[2])
value = experiments.Featurizer(["a", "the", "of", "and", "to", "in"])
mitosis.run(experiments.echo, {"value": "basic"}, lookup={"value": {"basic": value}})
"""


def test_same_value_in_other_processes_is_the_same_variant(investigation):
    # the set inside pickles in another order under each hash seed: the fingerprint must not
    for seed in ("1", "2", "3"):
        proc = subprocess.run(
            [sys.executable, "-c", SAME_VALUE, str(Path.cwd()), investigation.__name__],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert proc.returncode == 0, proc.stderr
    assert len(mitosis.trials("echo")) == 3


def test_dict_order_does_not_change_a_pickled_fingerprint():
    np = pytest.importorskip("numpy")
    a = {"x": np.arange(3), "y": {2, 1}}
    b = {"y": {1, 2}, "x": np.arange(3)}
    assert encode(a).json is None and encode(a).fingerprint == encode(b).fingerprint


def test_nan_results_are_strict_json(investigation):
    trial = mitosis.run(investigation.not_a_number)
    text = git("show", f"mitosis/not_a_number:{trial.path}/trial.json")

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    record = json.loads(text, parse_constant=refuse)
    assert record["main"] == {"py/float": "nan"}
    loaded = mitosis.load(trial.id)
    assert math.isnan(loaded.main) and loaded.metrics["inf"] == math.inf
