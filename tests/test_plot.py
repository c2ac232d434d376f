"""mitosis.plot and `mitosis plot`: a result against a parameter, from real trials."""

from __future__ import annotations

import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ASSETS, git

import mitosis
from mitosis.cli import main


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store with six trials of sine (amplitude 1, 2, 3 times noise low, high)."""
    root = tmp_path_factory.mktemp("plots")
    name = f"plotted_{uuid.uuid4().hex[:8]}"
    shutil.copy(ASSETS / "experiments.py", root / f"{name}.py")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        mp.syspath_prepend(str(root))
        for var in ("MITOSIS_STORE", "GIT_DIR"):
            mp.delenv(var, raising=False)
        git("init", "-q", "-b", "main", cwd=root)
        module = __import__(name)
        for amplitude in (1, 2, 3):
            for noise in ("low", "high"):
                mitosis.run(
                    module.sine,
                    {"amplitude": amplitude, "noise": noise},
                    lookup=module.lookup,
                    store=root,
                )
        yield root


def test_main_against_a_numeric_parameter_one_series_per_hue(store):
    figure = mitosis.plot("sine", x="amplitude", hue="noise", store=store)
    (axes,) = figure.axes
    assert axes.get_xlabel() == "amplitude" and axes.get_ylabel() == "main"
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["low", "high"]
    low, high = axes.lines  # one mean line per hue value
    assert list(low.get_xdata()) == [1.0, 2.0, 3.0]
    assert list(high.get_ydata()) == pytest.approx([0.5, 1.0, 1.5])
    assert len(axes.collections) == 2  # the trials' points, one scatter per series
    assert sum(len(c.get_offsets()) for c in axes.collections) == 6


def test_variant_names_are_categories_ordered_by_value(store):
    figure = mitosis.plot("sine", "noise", "err", store=store)
    (axes,) = figure.axes
    assert [t.get_text() for t in axes.get_xticklabels()] == ["low", "high"]
    assert axes.get_ylabel() == "err" and axes.get_legend() is None
    (line,) = axes.lines
    assert list(line.get_ydata()) == pytest.approx([0.005, 0.25])


def test_where_filters_the_trials(store):
    figure = mitosis.plot("sine", x="amplitude", where="noise=high and amplitude>1", store=store)
    (line,) = figure.axes[0].lines
    assert list(line.get_xdata()) == [2.0, 3.0]
    assert "noise=high and amplitude>1" in figure.axes[0].get_title()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"x": "amplitud"}, mitosis.UnknownField, "x: no parameter 'amplitud'"),
        ({"x": "amplitude", "y": "eror"}, mitosis.UnknownField, "y: no metric 'eror'"),
        ({"x": "amplitude", "hue": "nois"}, mitosis.UnknownField, "hue: no parameter 'nois'"),
        ({"x": "amplitude", "where": "nosie=low"}, mitosis.UnknownField, "'nosie'"),
        ({"x": "amplitude", "where": "noise~low"}, mitosis.BadQuery, "write NAME OP VALUE"),
        ({"x": "amplitude", "where": "main>100"}, mitosis.PlotError, "matching the filter"),
    ],
)
def test_errors(store, kwargs, error, message):
    with pytest.raises(error, match=message):
        mitosis.plot("sine", store=store, **kwargs)


def test_unknown_experiment(store):
    with pytest.raises(mitosis.UnknownExperiment, match="no experiment 'cosine'"):
        mitosis.plot("cosine", x="amplitude", store=store)


def plot_cli(runner, store: Path, out: Path, *args: str):
    return runner.invoke(main, ["plot", "sine", *args, "-o", str(out), "--store", str(store)])


def test_cli_writes_png_svg_and_pdf(store, runner, tmp_path):
    for kind, magic in (("png", b"\x89PNG\r\n\x1a\n"), ("pdf", b"%PDF-"), ("svg", b"")):
        out = tmp_path / f"sine.{kind}"
        result = plot_cli(runner, store, out, "--x", "amplitude", "--hue", "noise")
        assert result.exit_code == 0, result.output
        assert f"wrote {out}" in result.output
        assert out.read_bytes().startswith(magic)
    svg = ET.parse(tmp_path / "sine.svg").getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}path")) > 10
    raw = (tmp_path / "sine.svg").read_text()
    assert "<!-- amplitude -->" in raw and "<!-- main -->" in raw  # axis labels, drawn as paths


@pytest.mark.parametrize(
    ("args", "out", "message"),
    [
        (["--x", "amplitude"], "sine.jpg", "give a file name ending in .png, .svg, .pdf"),
        (["--x", "amplitud"], "sine.png", "x: no parameter 'amplitud'"),
        (["--x", "amplitude", "--y", "eror"], "sine.png", "y: no metric 'eror'"),
        (["--x", "amplitude", "--where", "main<low"], "sine.png", "< compares numbers"),
        (["--x", "amplitude"], "missing/sine.png", "cannot write the plot to"),
    ],
)
def test_cli_errors(store, runner, tmp_path, args, out, message):
    result = plot_cli(runner, store, tmp_path / out, *args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output
    assert "Traceback" not in result.output


def test_cli_unknown_experiment(store, runner, tmp_path):
    result = runner.invoke(
        main, ["plot", "cosine", "--x", "a", "-o", str(tmp_path / "a.png"), "--store", str(store)]
    )
    assert result.exit_code == 1 and "no experiment 'cosine'" in result.output
