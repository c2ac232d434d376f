"""The command line's reruns: ``mitosis rerun`` and ``mitosis export``."""

from __future__ import annotations

from pathlib import Path

import click

from .. import load
from .support import Status, cell, echo, fail, shown, store_path, table

__all__ = ["export", "rerun"]

_CODE = click.option(
    "--code",
    type=click.Path(path_type=Path, file_okay=False),
    help="The git repository holding the trial's code commit.",
)


@click.command()
@click.argument("trial_id", metavar="TRIAL")
@click.option("--here", is_flag=True, help="Run the current checkout's code, not the recorded.")
@click.option("--strict", is_flag=True, help="Refuse to run when the environment differs.")
@click.option("--rtol", type=float, default=0.0, show_default=True, help="Relative tolerance.")
@click.option("--atol", type=float, default=0.0, show_default=True, help="Absolute tolerance.")
@_CODE
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to use.")
@click.pass_context
def rerun(
    ctx: click.Context,
    trial_id: str,
    here: bool,
    strict: bool,
    rtol: float,
    atol: float,
    code: Path | None,
    store: Path | None,
) -> None:
    """Run TRIAL again from its record: its code (commit + uncommitted diff, rebuilt in a
    temporary folder) and its parameter values; compare the results.

    Exits 1 when a result differs from the record (beyond --rtol/--atol).
    """
    from .. import rerun as rerun_trial  # on first need: each command loads its own modules
    from ..run.rerun import environment_differences

    path = store_path(ctx, store)
    original = load(trial_id, store=path)
    differences = environment_differences(original)
    if differences:
        echo(f"the environment differs from trial {original.id}'s record:", err=True)
        rows = [[d.section, d.key, d.a or "(none)", d.b or "(none)"] for d in differences]
        echo(table(["", "", "recorded", "now"], rows), err=True)
    where = "the current checkout" if here else "its recorded code, rebuilt"
    echo(f"rerunning trial {original.id} ({original.experiment}) with {where}", err=True)
    with Status("rerun") as status:
        result = rerun_trial(
            original.id,
            here=here,
            strict=strict,
            rel_tol=rtol,
            abs_tol=atol,
            store=path,
            code=code,
            progress=status,
        )
    for line in result.code:
        echo(shown(f"code: {line}"), err=True)
    rows = [
        [a.name, cell(a.original, 30), cell(a.rerun, 30), "yes" if a.agrees else "NO"]
        for a in result.results
    ]
    echo(table(["", original.id, result.trial.id, "agrees"], rows))
    if result.trial.error:
        echo(shown(result.trial.error.rstrip(), lines=True), err=True)
    if not result.agrees:
        fail(f"trial {result.trial.id} (a rerun of {original.id}) does not reproduce its results")
    echo(f"trial {result.trial.id} reproduces trial {original.id}")


@click.command()
@click.argument("trial_id", metavar="TRIAL")
@click.argument("folder", type=click.Path(path_type=Path))
@_CODE
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to read.")
@click.pass_context
def export(
    ctx: click.Context, trial_id: str, folder: Path, code: Path | None, store: Path | None
) -> None:
    """Write FOLDER, which reproduces TRIAL without mitosis: code, requirements.txt,
    parameter values, run.py and the record."""
    from .. import export as export_trial  # on first need

    out = export_trial(trial_id, folder, store=store_path(ctx, store), code=code)
    echo(f"wrote {out}; reproduce with: cd {out} && python run.py")
