"""What the command line needs besides its commands: the configuration and the store it names,
completion of experiment names, presenting trials as tables, and printing what came from a
record safely (:func:`shown`, :func:`echo`)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import click

from ..exceptions import MitosisError
from ..model.records import StepRecord, Trial
from ..model.text import UNSAFE, escape
from ..model.values import dumps_json
from ..run.config import Config, load_config
from ..store.repo import Store

_CELL = 28


def config_of(ctx: click.Context) -> Config:
    """The configuration of ``--config`` (given before or after the command), else of the
    nearest ``pyproject.toml`` with ``[tool.mitosis]``."""
    root = ctx.find_root()
    if not isinstance(root.obj, Config):
        root.obj = load_config(ctx.params.get("config") or root.params.get("config"))
    return root.obj


def store_path(ctx: click.Context, option: Path | None) -> Path | None:
    """``--store`` (of the command, else of ``mitosis`` itself), else ``$MITOSIS_STORE``, else
    ``[tool.mitosis] store``, else the default."""
    root = ctx.find_root().params
    option = option or root.get("store") or root.get("trials_folder")
    if option is not None:
        return option
    if os.environ.get("MITOSIS_STORE"):
        return None
    return config_of(ctx).store


def complete_experiment(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[str]:
    try:
        names = set(config_of(ctx).experiments)
    except MitosisError:
        names = set()
    try:
        with Store.open(store_path(ctx, ctx.params.get("store"))) as st:
            names.update(st.experiments())
    except (MitosisError, OSError):
        pass
    return sorted(n for n in names if n.startswith(incomplete))


def fail(message: str) -> NoReturn:
    """Stop with ``Error: message`` (through :func:`shown`: messages quote records) and exit 1."""
    raise click.ClickException(shown(message, lines=True))


# -- printing what came from a record -----------------------------------------------------


def shown(text: str, *, lines: bool = False) -> str:
    r"""A string that came from a record (an error, a host, a parameter, a metric's name, a
    path, an experiment's or a variant's name) as the terminal may show it: control characters
    (C0, DEL, C1), bidirectional controls and lone surrogates written as escapes (``\x1b``,
    ``\u202e``, ``\n``), so that a record can neither move the cursor, rewrite a line, set the
    window's title nor reorder what is read. With ``lines``, newlines and tabs are kept: a block
    meant as lines, such as a traceback.

    >>> shown("boom\x1b[2J\n")
    'boom\\x1b[2J\\n'
    """
    return escape(text, keep="\n\t" if lines else "")


def echo(text: str = "", *, err: bool = False, nl: bool = True, json: bool = False) -> None:
    """Print ``text``; every command prints through this. Fields are made safe where they are
    formatted (:func:`shown`, :func:`cell`, :func:`table`); this is the last guard, which keeps
    newlines and tabs and escapes any other control character left. JSON text (``json``) gets
    ``\\uXXXX`` escapes instead, so that it stays valid JSON."""
    if json:
        text = UNSAFE.sub(lambda m: m[0] if m[0] == "\n" else f"\\u{ord(m[0]):04x}", text)
    else:
        text = shown(text, lines=True)
    click.echo(text, err=err, nl=nl)


class Status:
    """What a long command is doing, on a terminal: one line on stderr, ``what: text``,
    redrawn in place and cleared at the end; nothing when stderr is not a terminal (a log, a
    pipe). Call it with each message; use it as a context manager, so the line is cleared."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.tty = sys.stderr.isatty()
        self.drawn = False

    def __call__(self, text: str) -> None:
        if not text.strip():  # nothing to show now (other output follows): clear the line
            self.__exit__()
            self.drawn = False
            return
        if self.tty:
            width = shutil.get_terminal_size().columns
            line = shown(f"{self.what}: {text.strip()}")[: max(width - 1, 20)]
            sys.stderr.write(f"\r\x1b[K{line}")
            sys.stderr.flush()
            self.drawn = True

    def __enter__(self) -> Status:
        return self

    def __exit__(self, *_: object) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


# -- run arguments ---------------------------------------------------------------------


def summary(trial: Trial, *, debug: bool = False) -> str:
    """One line for a trial run (and one per step of a chain); a debug trial's says that it
    was not recorded."""
    metrics = " ".join(f"{shown(k)}={cell(v)}" for k, v in trial.metrics.items())
    main = f"main={cell(trial.main)}" if trial.status == "ok" else ""
    what = "debug trial (not recorded)" if debug else f"trial {shown(trial.id)}"
    line = " ".join(part for part in (what, shown(trial.status), main, metrics) if part)
    if len(trial.steps) < 2:
        return line
    return "\n".join([line, *(f"  {step_line(step)}" for step in trial.steps)])


def step_line(step: StepRecord) -> str:
    """One step of a trial: name, status, main, duration, and where a reused result came from."""
    main = f" main={cell(step.main)}" if step.status == "ok" else ""
    how = f"reused from {step.reused_from}" if step.reused_from else f"{step.duration:.3g} s"
    return shown(f"step {step.name} {step.status}{main} ({how})")


# -- tables --------------------------------------------------------------------------------


def cell(value: Any, width: int = _CELL) -> str:
    kind = type(value)
    if kind is float:
        return format(value, ".4g")
    if kind is str and len(value) <= width and " " not in value and value.isprintable():
        return str(value)  # a short name: printable (no control character) and one word
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, int):
        shown_int = str(value)
        if len(shown_int) <= width:
            return shown_int
        from decimal import Decimal  # JSON holds integers of any size: wider ones in short

        return format(Decimal(value), ".4g")
    text = shown(" ".join((value if isinstance(value, str) else dumps_json(value)).split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def exact(value: Any) -> str:
    """A value in full, for machine-readable output."""
    return "" if value is None else value if isinstance(value, str) else dumps_json(value)


def table(headers: list[str], rows: Iterable[list[str]]) -> str:
    """Left-aligned columns two spaces apart, each cell one line (through :func:`shown`)."""
    table = [headers, *rows]
    if UNSAFE.search("".join(c for row in table for c in row)):  # one look for the whole table
        table = [[shown(c) for c in row] for row in table]
    widths = [max(map(len, column)) for column in zip(*table, strict=True)]
    pattern = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(pattern.format(*row).rstrip() for row in table)
