"""The command line's plots and browser: ``mitosis plot`` and ``mitosis browse``."""

from __future__ import annotations

from pathlib import Path

import click

from .support import Status, complete_experiment, echo, fail, store_path

__all__ = ["browse_command", "plot_command"]


@click.command(name="plot")
@click.argument("experiment", shell_complete=complete_experiment)
@click.option("--x", "x", required=True, metavar="PARAM", help="The parameter along the x axis.")
@click.option(
    "--y", "y", default="main", show_default=True, metavar="METRIC", help="main or a metric."
)
@click.option("--hue", metavar="PARAM", help="One series per variant of this parameter.")
@click.option("--where", "where", multiple=True, help="Filter, e.g. 'noise=low and main<0.1'.")
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The file to write: .png, .svg or .pdf.",
)
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to read.")
@click.pass_context
def plot_command(
    ctx: click.Context,
    experiment: str,
    x: str,
    y: str,
    hue: str | None,
    where: tuple[str, ...],
    out: Path,
    store: Path | None,
) -> None:
    """Plot a result (main or a metric) of EXPERIMENT's trials against a parameter.

    \b
      mitosis plot sine --x amplitude --hue noise -o sine.png
      mitosis plot sine --x noise --y err --where 'amplitude>1' -o err.svg
    """
    from .. import plot  # on first need: each command loads its own modules
    from ..site.plot import check_format, save

    check_format(out)
    with Status("plot") as status:
        path = store_path(ctx, store)
        figure = plot(experiment, x, y, hue=hue, where=where, store=path, progress=status)
        status(f"writing {out}")
        save(figure, out)
    echo(f"wrote {out}")


@click.command(name="browse")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="The site's folder (default: mitosis/site in the store's git folder).",
)
@click.option("--serve", is_flag=True, help="Serve it on 127.0.0.1; rebuild as trials come.")
@click.option("--port", type=click.IntRange(0, 65535), help="With --serve (default 8000; 0: any).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="With --serve: seconds between looks at the store's branches.",
)
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to read.")
@click.pass_context
def browse_command(
    ctx: click.Context,
    out: Path | None,
    serve: bool,
    port: int | None,
    interval: float,
    store: Path | None,
) -> None:
    """Write a static site of the experiments and trials (open its index.html), or serve it.

    Only new trials get pages written, so running it again is quick.

    \b
      mitosis browse                      # then open the index.html it names
      mitosis browse --out site/ --serve --port 8000
    """
    from .. import browse  # on first need
    from ..site.serve import serve as serve_site

    if port is not None and not serve:
        fail("--port goes with --serve")
    if serve:
        serve_site(
            out,
            store_path(ctx, store),
            8000 if port is None else port,
            interval=interval,
            say=echo,
        )
        return
    with Status("browse") as status:
        site = browse(out, store=store_path(ctx, store), progress=status)
    echo(
        f"{len(site.new_trials)} new trial page(s); {site.trials} trials of "
        f"{site.experiments} experiment(s): {site.index}"
    )
