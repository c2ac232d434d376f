"""The command line's sharing and housekeeping: ``push``, ``pull``, ``bundle`` and ``gc``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..exceptions import SyncConflict, SyncError, SyncRefused
from ..model.redact import strip_credentials
from ..store.repo import Store, default_store_path
from .support import Status, echo, fail, store_path, table

if TYPE_CHECKING:
    from .. import SyncReport

__all__ = ["bundle_command", "gc_command", "pull", "push"]

_HEX = "0123456789abcdef"


def _sync_arguments(
    ctx: click.Context, args: tuple[str, ...], store: Path | None
) -> tuple[str, list[str], list[str]]:
    """``[REMOTE] [EXPERIMENT...]``: the first word is the remote when it names a configured
    remote, a URL or an existing path; else the remote is ``origin``. Also the configured
    remotes. A word that looks like a path (``../nope.git``) but is none is refused."""
    from ..store.sync import is_location, remote_names  # on first need

    path = _path(ctx, store)
    remotes: list[str] = []
    if path.exists():
        with Store.open(path) as st:
            remotes = remote_names(st)
    if not args:
        return "origin", [], remotes
    first, rest = args[0], list(args[1:])
    if first in remotes or is_location(first):
        return first, rest, remotes
    if "/" in first or os.sep in first or first.startswith(".") or first.endswith(_FILES):
        fail(
            f"{_unknown(first, remotes)}, a URL, a bundle or an existing path; check the path, "
            f"or configure the remote: git -C {path} remote add NAME URL"
        )
    return "origin", [first, *rest], remotes


_FILES = (".git", ".bundle")


def _path(ctx: click.Context, store: Path | None) -> Path:
    return store_path(ctx, store) or default_store_path()


def _unknown(word: str, remotes: list[str]) -> str:
    return f"{word!r} is no configured remote (remotes: {', '.join(remotes) or 'none'})"


def _guessed(
    error: SyncError, args: tuple[str, ...], remote: str, remotes: list[str], path: Path
) -> str | None:
    """When ``args[0]`` was taken as an experiment of ``origin`` and that failed (no origin,
    or no such experiment), the message that it is an unknown remote; else None."""
    if not args or remote != "origin" or args[0] in remotes:
        return None
    word = args[0]
    if "origin" not in remotes:
        return (
            f"{_unknown(word, remotes)}, a URL, a bundle or an existing path (nor an experiment "
            f"of origin: no remote origin is configured); configure one: git -C {path} remote add "
            "origin URL"
        )
    if f"experiment {word!r}" in str(error):
        return (
            f"{_unknown(word, remotes)}, a URL, a bundle or an existing path, nor an experiment "
            f"{'of origin' if 'to push' not in str(error) else 'in this store'}: {error}"
        )
    return None


class _Progress(Status):
    """Progress of a push or pull on a terminal (:class:`Status`): the last of dulwich's and the
    remote's messages (``counting objects: 65``), escaped, for it is a remote's text."""

    def remote(self, message: bytes) -> None:
        pieces = re.split(r"[\r\n]", message.decode("utf-8", "replace"))
        self(next((p for p in reversed(pieces) if p.strip()), ""))


def _report(report: SyncReport, verb: str = "") -> None:
    rows = [[name, what] for name, what in sorted(report.experiments.items())]
    echo(table(["experiment", report.remote], rows) if rows else "nothing to do")
    if verb:
        echo(f"{verb} the results of {len(report.results)} trial(s)")


def _split_trials(
    ctx: click.Context, names: list[str], store: Path | None
) -> tuple[list[str], list[str]]:
    """``[EXPERIMENT|TRIAL]...`` of ``pull --results``: the words that name no experiment of the
    store but look like trial ids (4 or more hex digits) are trials."""
    path = store_path(ctx, store) or default_store_path()
    known: list[str] = []
    if path.exists():
        with Store.open(path) as st:
            known = st.experiments()
    trials = [
        n for n in names if n not in known and len(n) >= 4 and all(c in _HEX for c in n.lower())
    ]
    return [n for n in names if n not in trials], trials


@click.command()
@click.argument("args", nargs=-1, metavar="[REMOTE] [EXPERIMENT]...")
@click.option(
    "--no-results",
    is_flag=True,
    help="Send the records only, not the results kept off the branches.",
)
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to push from.")
@click.pass_context
def push(ctx: click.Context, args: tuple[str, ...], no_results: bool, store: Path | None) -> None:
    """Send trial branches to REMOTE (a configured remote, default origin, or a URL or path),
    with the results kept off the branches that this store has (unless --no-results)."""
    from .. import push as sync_push  # on first need: each command loads its own modules

    remote, names, remotes = _sync_arguments(ctx, args, store)
    try:
        progress = _Progress(f"push {strip_credentials(remote)}")
        with progress:
            report = sync_push(
                remote,
                names,
                results=not no_results,
                store=store_path(ctx, store),
                progress=progress.remote,
            )
    except SyncError as error:
        fail(_guessed(error, args, remote, remotes, _path(ctx, store)) or str(error))
    _report(report, "" if no_results else "sent")


@click.command()
@click.argument("args", nargs=-1, metavar="[REMOTE|BUNDLE] [EXPERIMENT|TRIAL]...")
@click.option(
    "--results",
    is_flag=True,
    help="Also bring the results kept off the branches: of the named trials, else of the "
    "named experiments' trials, else of every trial.",
)
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to pull into.")
@click.pass_context
def pull(ctx: click.Context, args: tuple[str, ...], results: bool, store: Path | None) -> None:
    """Fetch trial branches from REMOTE (or a bundle file) and merge them in.

    Results bigger than the threshold stay behind (show says which are not here) until asked
    for with --results:

    \b
      mitosis pull                           # every experiment's records
      mitosis pull --results 3fa9c1d2        # records, and this trial's results
      mitosis pull lab sine --results        # sine's records and results, from lab
    """
    from .. import pull as sync_pull  # on first need

    remote, names, remotes = _sync_arguments(ctx, args, store)
    wanted: bool | list[str] = results
    if results:
        names, trials = _split_trials(ctx, names, store)
        wanted = trials or True
    try:
        progress = _Progress(f"pull {strip_credentials(remote)}")
        with progress:
            report = sync_pull(
                remote,
                names,
                results=wanted,
                store=store_path(ctx, store),
                progress=progress.remote,
            )
    except (SyncConflict, SyncRefused) as stopped:
        if stopped.report is not None:
            _report(stopped.report)
        raise
    except SyncError as error:
        fail(_guessed(error, args, remote, remotes, _path(ctx, store)) or str(error))
    _report(report, "brought" if results else "")


@click.command(name="bundle")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("experiments", nargs=-1)
@click.option(
    "--since",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="An earlier bundle: write only what it did not carry.",
)
@click.option(
    "--results",
    is_flag=True,
    help="Also carry the results kept off the branches that this store has.",
)
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to bundle.")
@click.pass_context
def bundle_command(
    ctx: click.Context,
    file: Path,
    experiments: tuple[str, ...],
    since: Path | None,
    results: bool,
    store: Path | None,
) -> None:
    """Write trial branches to a git bundle FILE, for a machine without a network path;
    `mitosis pull FILE` there reads it."""
    from .. import bundle as sync_bundle  # on first need

    count = sync_bundle(
        file, experiments, since=since, results=results, store=store_path(ctx, store)
    )
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
    if packed.removed:
        click.echo(f"removed {packed.removed} file(s) left by writers that stopped")
