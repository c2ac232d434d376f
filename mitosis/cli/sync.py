"""The command line's sharing and housekeeping: ``push``, ``pull``, ``bundle`` and ``gc``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..exceptions import SyncConflict, SyncRefused
from ..model.text import escape
from ..store.repo import Store, default_store_path
from .support import echo, store_path, table

if TYPE_CHECKING:
    from .. import SyncReport

__all__ = ["bundle_command", "gc_command", "pull", "push"]


def _sync_arguments(
    ctx: click.Context, args: tuple[str, ...], store: Path | None
) -> tuple[str, list[str]]:
    """``[REMOTE] [EXPERIMENT...]``: the first word is the remote when it names a configured
    remote, a URL or a path; else the remote is ``origin``."""
    from ..store.sync import is_location, remote_names  # on first need

    if not args:
        return "origin", []
    first, rest = args[0], list(args[1:])
    path = store_path(ctx, store) or default_store_path()
    remotes: list[str] = []
    if path.exists():
        with Store.open(path) as st:
            remotes = remote_names(st)
    if first in remotes or is_location(first):
        return first, rest
    return "origin", [first, *rest]


def _progress(message: bytes) -> None:
    """Progress messages on stderr: redrawn in place on a terminal, one per line elsewhere, and
    never run together (some messages end without a line end)."""
    text = escape(message.decode("utf-8", "replace"), keep="\r\n")  # a remote's text: no escapes
    if not sys.stderr.isatty():
        text = text.replace("\r", "\n")
    if not text.endswith(("\r", "\n")):
        text += "\n"
    sys.stderr.write(text)
    sys.stderr.flush()


def _report(report: SyncReport) -> None:
    rows = [[name, what] for name, what in sorted(report.experiments.items())]
    echo(table(["experiment", report.remote], rows) if rows else "nothing to do")


@click.command()
@click.argument("args", nargs=-1, metavar="[REMOTE] [EXPERIMENT]...")
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to push from.")
@click.pass_context
def push(ctx: click.Context, args: tuple[str, ...], store: Path | None) -> None:
    """Send trial branches to REMOTE (a configured remote, default origin, or a URL or path)."""
    from .. import push as sync_push  # on first need: each command loads its own modules

    remote, names = _sync_arguments(ctx, args, store)
    _report(sync_push(remote, names, store=store_path(ctx, store), progress=_progress))


@click.command()
@click.argument("args", nargs=-1, metavar="[REMOTE|BUNDLE] [EXPERIMENT]...")
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to pull into.")
@click.pass_context
def pull(ctx: click.Context, args: tuple[str, ...], store: Path | None) -> None:
    """Fetch trial branches from REMOTE (or a bundle file) and merge them in."""
    from .. import pull as sync_pull  # on first need

    remote, names = _sync_arguments(ctx, args, store)
    try:
        report = sync_pull(remote, names, store=store_path(ctx, store), progress=_progress)
    except (SyncConflict, SyncRefused) as stopped:
        if stopped.report is not None:
            _report(stopped.report)
        raise
    _report(report)


@click.command(name="bundle")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("experiments", nargs=-1)
@click.option(
    "--since",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="An earlier bundle: write only what it did not carry.",
)
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to bundle.")
@click.pass_context
def bundle_command(
    ctx: click.Context,
    file: Path,
    experiments: tuple[str, ...],
    since: Path | None,
    store: Path | None,
) -> None:
    """Write trial branches to a git bundle FILE, for a machine without a network path;
    `mitosis pull FILE` there reads it."""
    from .. import bundle as sync_bundle  # on first need

    count = sync_bundle(file, experiments, since=since, store=store_path(ctx, store))
    echo(f"wrote {count} trial branch(es) to {file}")


@click.command(name="gc")
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to pack.")
@click.pass_context
def gc_command(ctx: click.Context, store: Path | None) -> None:
    """Pack the store's loose objects (with deltas), so that thousands of trials stay small."""
    from .. import gc as sync_gc  # on first need

    packed = sync_gc(store=store_path(ctx, store), progress=lambda text: echo(text, err=True))
    mib = 1024 * 1024
    echo(
        f"packed {packed.objects} objects: {packed.before / mib:.1f} MiB -> "
        f"{packed.after / mib:.1f} MiB"
    )
