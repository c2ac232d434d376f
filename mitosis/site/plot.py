"""The everyday picture: a result against a parameter's variants, one series per value of
another parameter, drawn from the trials' JSON records (nothing is unpickled).

matplotlib is imported only when a plot is drawn; the figure is a plain
:class:`matplotlib.figure.Figure` (no pyplot), so drawing one changes no global state.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import PlotError, UnknownField
from ..model.query import number, select
from ..model.records import Param, Trial
from ..store.trials import trials

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

__all__ = ["FORMATS", "check_format", "draw", "plot", "save"]

#: File types a plot can be saved as, by extension.
FORMATS = (".png", ".svg", ".pdf")
_MISSING = "(none)"


def plot(
    experiment: str,
    x: str,
    y: str = "main",
    *,
    hue: str | None = None,
    where: str | Sequence[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Figure:
    """A result of an experiment's trials against one of its parameters.

    Each trial is a point; a line joins the mean at each value of ``x``. A parameter whose values
    are literal numbers is a numeric axis; otherwise each variant name is a category (ordered by
    value when the values are numbers, else by name). Trials without a number for ``y`` (failed
    ones, for ``main``) are left out.

    Args:
        experiment: the experiment's name.
        x: the parameter (tracked or untracked) along the horizontal axis.
        y: ``"main"`` or a metric's name.
        hue: a parameter: one series (colour) per variant of it.
        where: a filter as for ``mitosis log --where`` (``"noise=low and main<0.1"``).
        store: the store to read (default as for :func:`mitosis.trials`).
        progress: called with what it is doing (``reading trials``, ``drawing 120 trials``).

    Returns:
        The figure (save it with ``figure.savefig(path)``).

    Raises:
        UnknownExperiment: the store has no such experiment.
        UnknownField: ``x``, ``y``, ``hue`` or a ``where`` field names nothing the trials have.
        BadQuery: ``where`` is malformed.
        PlotError: no selected trial has a number for ``y``.

    >>> mitosis.plot("sine", x="amplitude", hue="noise").savefig("sine.png")  # doctest: +SKIP
    """
    say = progress or (lambda _: None)
    say("reading trials")
    found = trials(experiment, store=store)
    say(f"drawing {len(found)} trials")
    return draw(found, experiment, x, y, hue=hue, where=where)


def _param(trial: Trial, name: str) -> Param | None:
    return trial.params.get(name) or trial.untracked.get(name)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_fields(found: Sequence[Trial], x: str, y: str, hue: str | None) -> None:
    params = sorted({n for t in found for n in [*t.params, *t.untracked]})
    metrics = sorted({n for t in found for n in t.metrics})
    for what, name in (("x", x), ("hue", hue)):
        if name is not None and name not in params:
            raise UnknownField(
                f"{what}: no parameter {name!r} in the trials; their parameters: "
                f"{', '.join(params) or '(none)'}"
            )
    if y != "main" and y not in metrics:
        raise UnknownField(
            f"y: no metric {y!r} in the trials; give main or one of their metrics: "
            f"{', '.join(metrics) or '(none)'}"
        )


def _order(values: dict[str, Any]) -> list[str]:
    """Variant names ordered by value when every value is a number, else by name."""
    if all(_is_number(v) for v in values.values()):
        return sorted(values, key=lambda name: (values[name], name))
    return sorted(values)


def draw(
    found: Sequence[Trial],
    title: str,
    x: str,
    y: str = "main",
    *,
    hue: str | None = None,
    where: str | Sequence[str] | None = None,
) -> Figure:
    """:func:`plot` of trials already read; ``title`` names them."""
    from matplotlib.figure import Figure

    _check_fields(found, x, y, hue)
    rows: list[tuple[Param, str, float]] = []
    hue_values: dict[str, Any] = {}
    for trial in select(found, where):
        value = number(trial.main if y == "main" else trial.metrics.get(y))
        param = _param(trial, x)
        if value is None or not math.isfinite(value) or param is None:
            continue
        series = _param(trial, hue) if hue else None
        if series is not None:
            hue_values[series.variant] = series.value
        rows.append((param, series.variant if series else _MISSING, value))
    if not rows:
        filtered = " matching the filter" if where else ""
        raise PlotError(f"no trial of {title}{filtered} has a number for {y} and a value of {x}")
    numeric = all(p.source != "variant" and _is_number(p.value) for p, _, _ in rows)
    names = _order({p.variant: p.value for p, _, _ in rows})
    position = {name: float(i) for i, name in enumerate(names)}
    hues = _order(hue_values) if hue else []
    hues += [_MISSING] if any(h == _MISSING for _, h, _ in rows) else []

    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    axes = figure.add_subplot()
    width = 0.5 / len(hues) if len(hues) > 1 and not numeric else 0.0
    lines: list[Line2D] = []
    for k, name in enumerate(hues):
        shift = (k - (len(hues) - 1) / 2) * width
        points: dict[float, list[float]] = {}
        for param, h, value in rows:
            if h == name:
                at = float(param.value) if numeric else position[param.variant] + shift
                points.setdefault(at, []).append(value)
        colour = f"C{k % 10}"
        xs = [at for at, values in points.items() for _ in values]
        ys = [v for values in points.values() for v in values]
        axes.scatter(xs, ys, s=14, alpha=0.4, color=colour, linewidths=0)
        means = sorted((at, sum(values) / len(values)) for at, values in points.items())
        (line,) = axes.plot(
            [at for at, _ in means], [m for _, m in means], marker="o", color=colour
        )
        lines.append(line)
    # Names come from records: shown as written, never read as mathtext (`$\frac$` would
    # stop the drawing, `$5 or $10` would lose its dollars), nor a legend entry left out for
    # starting with `_`
    if not numeric:
        rotation = 30 if len(names) > 6 else 0
        axes.set_xticks(range(len(names)), names, rotation=rotation, parse_math=False)
    axes.set_xlabel(x, parse_math=False)
    axes.set_ylabel(y, parse_math=False)
    shown = " and ".join([where] if isinstance(where, str) else list(where or ()))
    axes.set_title(f"{title}: {y} against {x}" + (f" ({shown})" if shown else ""), parse_math=False)
    if hue:
        legend = axes.legend(lines, hues, title=hue)  # given, so that `_x` is not left out
        for text in (legend.get_title(), *legend.get_texts()):
            text.set_parse_math(False)
    return figure


def check_format(path: str | os.PathLike[str]) -> str:
    """The file type of ``path`` (``png``, ``svg`` or ``pdf``).

    Raises:
        PlotError: the extension is none of them.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise PlotError(
            f"cannot save a plot as {os.fspath(path)!r}: give a file name ending in "
            f"{', '.join(FORMATS)}"
        )
    return suffix[1:]


def save(figure: Figure, path: str | os.PathLike[str], dpi: float = 100) -> Path:
    """Save ``figure`` as PNG, SVG or PDF, by the extension of ``path``.

    Raises:
        PlotError: the extension is none of those, or the file cannot be written.
    """
    kind = check_format(path)
    try:
        figure.savefig(path, format=kind, dpi=dpi)
    except OSError as exc:
        raise PlotError(f"cannot write the plot to {os.fspath(path)!r}: {exc}") from None
    return Path(path)
