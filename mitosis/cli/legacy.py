"""``mitosis import-0.6``: the history of the earlier mitosis, recorded in the store."""

from __future__ import annotations

from pathlib import Path

import click

from .support import echo, shown, store_path


@click.command("import-0.6")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to write.")
@click.pass_context
def import_06_command(ctx: click.Context, folder: Path, store: Path | None) -> None:
    """Record the trials of mitosis 0.6's trials FOLDER (its databases, results, logs and
    notebooks) as trials, with their original times, code commits and parameters; their
    variants are locked. Importing again adds nothing; what cannot be read is listed."""
    from .. import import_06  # on first need: `mitosis` starts every command, this one rarely

    report = import_06(folder, store=store_path(ctx, store))
    for what, names in (("locked", report.locked), ("imported", report.imported)):
        for name in names:
            echo(shown(f"{what} {name}"))
    echo(
        f"{len(report.imported)} trials imported, {len(report.present)} already there, "
        f"{len(report.skipped)} things skipped"
    )
    for reason in report.skipped:
        echo(shown(f"skipped: {reason}"))
