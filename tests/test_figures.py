"""Figures a trial draws or returns: saved as PNG, captioned, at the configured resolution."""

from __future__ import annotations

import struct

import pytest
from conftest import git

import mitosis
from mitosis.cli import main


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_figures_left_open_are_captioned_by_their_titles(investigation):
    trial = mitosis.run(investigation.draws, {"n": 2})
    assert trial.captions == {"figures/draws-0.png": "figure 0", "figures/draws-1.png": "figure 1"}
    assert mitosis.load(trial.id).captions == trial.captions
    assert '"figures/draws-1.png": "figure 1"' in git(
        "show", f"mitosis/draws:{trial.path}/trial.json"
    )


def test_figures_keep_their_order_past_ten(investigation):
    trial = mitosis.run(investigation.draws, {"n": 11}, figure_dpi=10)
    assert trial.figures == [f"figures/draws-{n}.png" for n in range(11)]
    assert trial.captions["figures/draws-10.png"] == "figure 10"


def test_returned_figures_are_saved_once_and_not_pickled(investigation):
    trial = mitosis.run(investigation.returns_figures)
    assert trial.figures == ["figures/returns_figures-0.png", "figures/returns_figures-1.png"]
    # the suptitle is the caption; an untitled figure is captioned by the name it came under
    assert list(trial.captions.values()) == ["loss <by> epoch", "open"]
    assert trial.results() == {"main": 1.0, "data": [1]}
    png_size(trial.read("figures/returns_figures-0.png"))
    untitled = mitosis.run(investigation.returns_figures, {"titled": False})
    assert list(untitled.captions.values()) == ["loss", "open"]


def test_figures_of_a_wrong_type_fail_the_trial(investigation):
    with pytest.raises(mitosis.TrialFailed, match='"figures" must be a matplotlib figure'):
        mitosis.run(investigation.bad_figures)


def test_figure_dpi(investigation):
    default = mitosis.run(investigation.draws, {"n": 1})
    assert png_size(default.read("figures/draws-0.png")) == (640, 480)
    small = mitosis.run(investigation.draws, {"n": 1}, figure_dpi=50)
    assert png_size(small.read("figures/draws-0.png")) == (320, 240)
    with pytest.raises(mitosis.BadParameter, match="figure_dpi must be a positive number"):
        mitosis.run(investigation.draws, {"n": 1}, figure_dpi=0)


def write_pyproject(root, module: str, dpi: str) -> None:
    (root / "pyproject.toml").write_text(
        f"[tool.mitosis]\nfigure_dpi = {dpi}\n"
        f'[tool.mitosis.experiments]\ndraws = {{ run = "{module}:draws" }}\n'
    )


def test_figure_dpi_from_pyproject(investigation, runner, tmp_path):
    root = tmp_path / "investigation"
    write_pyproject(root, investigation.__name__, "40")
    result = runner.invoke(main, ["run", "draws", "-e", "n=1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (trial,) = mitosis.trials("draws")
    assert png_size(trial.read("figures/draws-0.png")) == (256, 192)


@pytest.mark.parametrize("dpi", ["0", '"high"', "true"])
def test_bad_figure_dpi_in_pyproject(investigation, runner, tmp_path, dpi):
    write_pyproject(tmp_path / "investigation", investigation.__name__, dpi)
    result = runner.invoke(main, ["run", "draws", "-e", "n=1"])
    assert result.exit_code == 1
    assert "figure_dpi in" in result.output and "must be a positive number" in result.output


def test_a_figure_that_cannot_be_saved_fails_the_trial(investigation):
    with pytest.raises(mitosis.TrialFailed, match="this figure cannot be drawn"):
        mitosis.run(investigation.returns_a_broken_figure)


def test_a_failing_step_keeps_its_own_error_over_its_figures(investigation):
    with pytest.raises(mitosis.TrialFailed, match="the step's own error") as failed:
        mitosis.run(investigation.fails_with_a_broken_figure)
    trial = mitosis.load(failed.value.trial_id)
    log = trial.read("output.log").decode()
    assert "mitosis could not save the figures" in log and "cannot be drawn" in log
