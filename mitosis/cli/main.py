"""The ``mitosis`` command line: the only place that prints tables or sets exit codes.

Experiments come from the investigation's ``pyproject.toml`` (``[tool.mitosis]``); everything
else goes through the Python API.
"""

from __future__ import annotations

import atexit
import gc
from pathlib import Path
from typing import Any

import click

from .._version import __version__
from ..exceptions import MitosisError
from ..run.config import Config, load_config
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

# This process is mitosis's own and ends with the command: the objects alive at its exit are
# frozen, so that Python's final garbage collections skip them (about 50 ms of a `mitosis run`
# on a slow machine, a sixth of it). Objects freed by their references still are; only a cycle
# alive at exit keeps its __del__ unrun, which Python never promised at exit anyway.
atexit.register(gc.freeze)

# -- the group ---------------------------------------------------------------------------------


_VALUED = ("--config", "--store", "-F", "--trials-folder", "-m", "--module")
_FLAGS = ("-d", "--debug")


def _leading_options(args: list[str]) -> int:
    """How many of ``args`` are options of ``mitosis`` itself (with their values)."""
    i = 0
    while i < len(args):
        if args[i] in _VALUED:
            i += 2
        elif args[i] in _FLAGS or args[i].partition("=")[0] in _VALUED:
            i += 1
        else:
            break
    return min(i, len(args))


def _config_option(args: list[str]) -> Path | None:
    """The value of ``--config`` given after an experiment's name (as mitosis 0.6 takes it)."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--config" and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--config="):
            return Path(arg.partition("=")[2])
    return None


class _Main(click.Group):
    """A group where a registered experiment's name, given instead of a command, runs it (as
    does ``-m MODULE``, a mitosis 0.6 experiment module)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        module = any(a in ("-m", "--module") or a.startswith("--module=") for a in args[:end])
        i = _leading_options(args)
        rest = args[i:]
        if module and (not rest or (rest[0].startswith("-") and rest[0] not in _HELP)):
            args = [*args[:i], "run", *rest]  # `mitosis -m MODULE -e ...`: no command named
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            given = _config_option(args[1:])
            if given is not None and not isinstance(ctx.obj, Config):
                ctx.obj = load_config(given)
            config = config_of(ctx)
            if name in config.experiments:
                return "run", self.commands["run"], args
            if "=" in name:
                fail(
                    f"{name!r} is a parameter, not a command or an experiment: give it as "
                    f"-p {name} (a variant name) or -e {name} (a Python literal), after the "
                    "experiment's name"
                )
            known = ", ".join(sorted(config.experiments)) or "none registered"
            fail(
                f"{name!r} is neither a command nor a registered experiment (experiments: "
                f"{known}). See `mitosis --help` for the commands."
            )
        found = super().resolve_command(ctx, args)
        for option, flag in (("debug", "-d/--debug"), ("module", "-m/--module")):
            if ctx.params.get(option) and found[0] != "run":
                fail(f"{flag} goes with running an experiment, not with `mitosis {found[0]}`")
        return found

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MitosisError as exc:
            fail(str(exc))


_HELP = ("-h", "--help", "--version")


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
@click.option(
    "--store",
    type=click.Path(path_type=Path),
    help="The git repository of trials, for any command (as `git -C`); a command's own "
    "--store wins.",
)
@click.option(
    "-F", "--trials-folder", type=click.Path(path_type=Path), help="As --store (mitosis 0.6)."
)
@click.option("-d", "--debug", is_flag=True, help="As mitosis run --debug (mitosis 0.6).")
@click.option("-m", "--module", metavar="MODULE", help="As mitosis run -m MODULE (mitosis 0.6).")
def main(
    config: Path | None,
    store: Path | None,
    trials_folder: Path | None,
    debug: bool,
    module: str | None,
) -> None:
    """Run experiments as recorded, reproducible trials, kept in git.

    An experiment's name where a command is expected runs it: `mitosis sine -p noise=low`.
    The options of mitosis 0.6 work as they did: `mitosis -m my_package.my_exp -d -e seed=2`.
    """
    if store is not None and trials_folder is not None:
        fail("give --store or -F/--trials-folder, not both")


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
