"""Defects found by the hostile review in code the lead engineer owns (mitosis/model/records.py,
values.py): each test is marked ``xfail(strict=True)`` with its reason until the owner fixes
it, so that the fix turns it into a failure to remove the mark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_hostile import BAD_TAGS, cli, forged_copy, plant, record

import mitosis


@pytest.mark.xfail(
    strict=True,
    reason="Trial.value (model/records.py) decodes a recorded value with model/values.py's "
    "decode, which raises TypeError or ValueError on a tag that mitosis never writes (a set "
    "of lists, a tuple of a number): the caller gets no MitosisError naming the parameter",
)
@pytest.mark.parametrize("value", BAD_TAGS, ids=["set", "tuple", "float", "dict"])
def test_trial_value_of_a_forged_parameter_is_a_clear_error(investigation, value):
    trial = record(investigation)
    params = json.loads(trial.read("trial.json"))["params"]
    params["amplitude"] = {**params["amplitude"], "value": value}
    plant(Path.cwd(), forged_copy(trial, "cdcdcdcdcdcd", params=params))
    forged = mitosis.load("cdcdcdcdcdcd")
    with pytest.raises(mitosis.MitosisError, match="amplitude"):
        forged.value("amplitude")


@pytest.mark.xfail(
    strict=True,
    reason="Trial.figures (model/records.py) orders figures by int() of what str.isdigit() "
    "accepts, and int('²') raises ValueError: a forged figure name stops mitosis browse",
)
def test_a_figure_numbered_with_a_superscript_does_not_stop_the_browser(investigation, tmp_path):
    trial = record(investigation)
    folder = "trials/cd/cdcdcdcdcdcd"
    files = forged_copy(trial, "cdcdcdcdcdcd", files=[*trial.files, "figures/sine-².png"])
    files[f"{folder}/figures/sine-².png"] = b"\x89PNG"
    plant(Path.cwd(), files)
    proc = cli("browse", "--out", str(tmp_path / "site"))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-800:]
