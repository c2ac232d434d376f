"""The ``mitosis`` command line: the only place that prints tables or sets exit codes.

Experiments come from the investigation's ``pyproject.toml`` (``[tool.mitosis]``); everything
else goes through the Python API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .._version import __version__
from ..exceptions import MitosisError
from .legacy import import_06_command
from .records import diff, experiments, log, show, variants_command
from .rerun import export, rerun
from .run import run
from .site import browse_command, plot_command
from .support import (
    config_of,
    fail,
)
from .sync import bundle_command, gc_command, pull, push

__all__ = ["main"]

# -- the group ---------------------------------------------------------------------------------


class _Main(click.Group):
    """A group where a registered experiment's name, given instead of a command, runs it."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            config = config_of(ctx)
            if name in config.experiments:
                return "run", self.commands["run"], args
            known = ", ".join(sorted(config.experiments)) or "none registered"
            fail(
                f"{name!r} is neither a command nor a registered experiment (experiments: "
                f"{known}). See `mitosis --help` for the commands."
            )
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MitosisError as exc:
            fail(str(exc))


# -- completion ----------------------------------------------------------------------------


# -- run -----------------------------------------------------------------------------------


# -- show, diff, variants, experiments -------------------------------------------------------


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mitosis")
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The pyproject.toml to read (default: the nearest one with [tool.mitosis]).",
)
def main(config: Path | None) -> None:
    """Run experiments as recorded, reproducible trials, kept in git.

    An experiment's name where a command is expected runs it: `mitosis sine -p noise=low`.
    """


for _command in (
    run,
    log,
    plot_command,
    browse_command,
    show,
    diff,
    rerun,
    export,
    variants_command,
    experiments,
    push,
    pull,
    bundle_command,
    gc_command,
    import_06_command,
):
    main.add_command(_command)
