"""What the command line needs besides its commands: the configuration and the store it names,
completion of experiment names, parsing ``-p``/``-e`` values into a grid of trials, and
presenting trials as tables."""

from __future__ import annotations

import ast
import builtins
import itertools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from ._config import Config, load_config
from ._model import StepRecord, Trial
from ._params import Chain
from ._serialize import dumps_json
from ._store import Store
from .exceptions import MitosisError

_CELL = 28


def _config(ctx: click.Context) -> Config:
    root = ctx.find_root()
    if not isinstance(root.obj, Config):
        root.obj = load_config(root.params.get("config"))
    return root.obj


def _store(ctx: click.Context, option: Path | None) -> Path | None:
    """``--store``, else ``$MITOSIS_STORE``, else ``[tool.mitosis] store``, else the default."""
    if option is not None:
        return option
    if os.environ.get("MITOSIS_STORE"):
        return None
    return _config(ctx).store


def _complete_experiment(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[str]:
    try:
        names = set(_config(ctx).experiments)
    except MitosisError:
        names = set()
    try:
        with Store.open(_store(ctx, ctx.params.get("store"))) as st:
            names.update(st.experiments())
    except (MitosisError, OSError):
        pass
    return sorted(n for n in names if n.startswith(incomplete))


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


# -- run arguments ---------------------------------------------------------------------


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes: ``1,(2,3),'a,b'`` -> 3 pieces."""
    pieces, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            if char == quote and text[i - 1] != "\\":
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return [p.strip() for p in pieces]


def _parse_assignments(
    options: Sequence[str], flag: str, chain: Chain
) -> list[tuple[str, int, str, str, bool]]:
    """``[+][step.]name=value`` options as ``(full name, step index, name, value text,
    untracked)``; the full name is ``name``, or ``step.name`` in a chain."""
    steps = [s.name for s in chain.steps]
    parsed = []
    for option in options:
        name, eq, value = option.partition("=")
        untracked = name.startswith("+")
        name = name.lstrip("+").strip()
        if not eq or not name:
            _fail(f"{flag} {option!r}: write it as {flag} [+]name=value")
        step, dot, arg = name.rpartition(".")
        if not dot and not chain.single:
            _fail(
                f"{flag} {option!r}: in the chain {' -> '.join(steps)}, address the parameter "
                f"as step.name (e.g. {flag} {steps[-1]}.{name}={value})"
            )
        if dot and step not in (steps if not chain.single else [steps[0], chain.name]):
            _fail(
                f"{flag} {option!r} addresses step {step!r}, which is not in the experiment "
                f"{chain.name!r} (steps: {', '.join(steps)}); write {flag} {steps[-1]}.{arg}=..."
            )
        index = steps.index(step) if dot and not chain.single else 0
        full = arg if chain.single or not dot else f"{step}.{arg}"
        parsed.append((full, index, arg if dot else name, value, untracked))
    return parsed


def _evaluate(name: str, text: str, allow_code: bool) -> Any:
    try:
        if allow_code:
            return eval(text, {"__builtins__": builtins})  # the user opted in to code
        return ast.literal_eval(text)
    except Exception as exc:
        hint = "" if allow_code else " (a number, a 'quoted string', a list, a dict...)"
        opt_in = "" if allow_code else ", or pass --allow-code to evaluate Python code"
        _fail(f"-e {name}={text}: {type(exc).__name__}: {exc}. Give a Python literal{hint}{opt_in}")


def _grid(
    chain: Chain, params: Sequence[str], evals: Sequence[str], allow_code: bool
) -> tuple[list[dict[str, Any]], set[str]]:
    """Every combination of the given values, and the names marked untracked."""
    choices: dict[str, list[Any]] = {}
    untracked: set[str] = set()
    for full, index, name, text, plus in _parse_assignments(params, "-p", chain):
        lookup = chain.steps[index].spec.lookup
        if name not in lookup:
            tables = ", ".join(sorted(lookup)) or "none"
            _fail(
                f"-p {full}={text}: {name!r} has no lookup table in "
                f"{chain.steps[index].name!r} (tables: {tables}); give its value with "
                f"-e {full}={text}"
            )
        choices[full] = _split_top_level(text)
        if plus:
            untracked.add(full)
    for full, _, _, text, plus in _parse_assignments(evals, "-e", chain):
        choices[full] = [_evaluate(full, piece, allow_code) for piece in _split_top_level(text)]
        if plus:
            untracked.add(full)
    names = list(choices)
    combos = [
        dict(zip(names, values, strict=True)) for values in itertools.product(*choices.values())
    ]
    return combos, untracked


def _summary(trial: Trial) -> str:
    metrics = " ".join(f"{k}={_cell(v)}" for k, v in trial.metrics.items())
    main = f"main={_cell(trial.main)}" if trial.status == "ok" else ""
    line = " ".join(part for part in (f"trial {trial.id}", trial.status, main, metrics) if part)
    if len(trial.steps) < 2:
        return line
    return "\n".join([line, *(f"  {_step_line(step)}" for step in trial.steps)])


def _step_line(step: StepRecord) -> str:
    """One step of a trial: name, status, main, duration, and where a reused result came from."""
    main = f" main={_cell(step.main)}" if step.status == "ok" else ""
    how = f"reused from {step.reused_from}" if step.reused_from else f"{step.duration:.3g} s"
    return f"step {step.name} {step.status}{main} ({how})"


# -- tables --------------------------------------------------------------------------------


def _cell(value: Any, width: int = _CELL) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, int):
        return str(value)
    text = " ".join((value if isinstance(value, str) else dumps_json(value)).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _exact(value: Any) -> str:
    """A value in full, for machine-readable output."""
    return "" if value is None else value if isinstance(value, str) else dumps_json(value)


def _table(headers: list[str], rows: Iterable[list[str]]) -> str:
    """Left-aligned columns two spaces apart."""
    table = [headers, *rows]
    widths = [max(map(len, column)) for column in zip(*table, strict=True)]
    pattern = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(pattern.format(*row).rstrip() for row in table)


def _commit(trial: Trial) -> str:
    if trial.code is None or trial.code.commit is None:
        return "-"
    return trial.code.commit[:10] + ("*" if trial.code.dirty else "")


def _record(trial: Trial) -> dict[str, Any]:
    """The documented JSON object of a trial in ``log --json``."""
    return {
        "id": trial.id,
        "experiment": trial.experiment,
        "status": trial.status,
        "started": trial.started,
        "duration": trial.duration,
        "params": trial.variants,
        "untracked": {k: p.variant for k, p in trial.untracked.items()},
        "main": trial.main,
        "metrics": trial.metrics,
        "commit": trial.code.commit if trial.code else None,
        "dirty": trial.code.dirty if trial.code else None,
    }


# -- log -----------------------------------------------------------------------------------


def _unknown_field(flag: str, name: str, known: set[str]) -> NoReturn:
    _fail(f"{flag}: no parameter or metric {name!r}; the trials have: {', '.join(sorted(known))}")
