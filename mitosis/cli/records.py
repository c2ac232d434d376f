"""Reading records on the command line: log, show, diff, variants and experiments."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import click

from .. import load, rename_variant, trials, variants
from ..exceptions import StoreError
from ..model.layout import is_result, results_ref
from ..model.query import Row, conditions, select
from ..model.records import Trial, converter, human_size
from ..model.values import dumps_json
from ..run.compare import diff_trials, recorded_environment
from ..run.config import Config
from ..store.repo import Store, default_store_path
from .support import (
    cell,
    complete_experiment,
    config_of,
    echo,
    exact,
    fail,
    shown,
    step_line,
    store_path,
    table,
)


@click.command()
@click.argument("experiment", required=False, shell_complete=complete_experiment)
@click.option("--where", "where", multiple=True, help="Filter, e.g. 'noise=low and main<0.1'.")
@click.option("--sort", "sort", help="Sort by a parameter or metric (default: newest first).")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many trials.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list, newest first.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to read.")
@click.pass_context
def log(
    ctx: click.Context,
    experiment: str | None,
    where: tuple[str, ...],
    sort: str | None,
    limit: int | None,
    as_json: bool,
    as_csv: bool,
    store: Path | None,
) -> None:
    """List the trials of EXPERIMENT (or of every experiment), newest first."""
    if as_json and as_csv:
        fail("give --json or --csv, not both")
    # rows, not trials: the listing index holds what a log prints, and no Trial is built
    newest_first = list(reversed(trials(experiment, store=store_path(ctx, store)).rows))
    found = select(newest_first, where, sort, label="--sort")
    found = found[:limit] if limit else found
    params = list(dict.fromkeys(n for t in found for n in t.variants))
    metrics = list(dict.fromkeys(n for t in found for n in t.metrics))
    if as_json:
        echo(dumps_json([_log_record(t) for t in found], indent=2), nl=False, json=True)
        return
    shown = [f"{m} (metric)" if m in params else m for m in metrics]  # a metric named as a param
    headers = ["id", "experiment", "started", "status", *params, "main", *shown, "commit"]
    fmt = exact if as_csv else cell  # CSV holds values in full; a table cuts them to fit

    def row(t: Row) -> list[str]:
        variants, values = t.variants, t.metrics
        return [
            t.id,
            t.experiment,
            t.started if as_csv else t.started[:19].replace("T", " "),
            t.status,
            *[fmt(variants[p]) if p in variants else "" for p in params],
            fmt(t.main),
            *[fmt(values.get(m)) for m in metrics],
            (t.commit or "") if as_csv else _short_commit(t),
        ]

    if as_csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(row(t) for t in found)
        echo(out.getvalue(), nl=False)
    elif found:
        echo(table(headers, [row(t) for t in found]))
    else:
        echo("no trials" + (" match" if where else ""), err=True)
        for hint in _unmatched(newest_first, where):
            echo(hint, err=True)


def _short_commit(row: Row) -> str:
    if row.commit is None:
        return "-"
    return row.commit[:10] + ("*" if row.dirty else "")


def _log_record(row: Row) -> dict[str, Any]:
    """The documented JSON object of a trial in ``log --json``."""
    return {
        "id": row.id,
        "experiment": row.experiment,
        "status": row.status,
        "started": row.started,
        "duration": row.duration,
        "params": row.variants,
        "untracked": row.untracked,
        "main": row.main,
        "metrics": row.metrics,
        "commit": row.commit,
        "dirty": row.dirty,
    }


def _unmatched(found: list[Row], where: tuple[str, ...]) -> list[str]:
    """Why ``--where`` matched nothing, where it can tell: a parameter compared with ``=`` to
    a value that none of its trials has (the names of variants are what it compares)."""
    hints = []
    for name, op, value in conditions(where):
        had = {t.variants[name] for t in found if name in t.variants}
        if op != "=" or not had or value in had:
            continue
        listed = ", ".join(sorted(had)[:10]) + (", ..." if len(had) > 10 else "")
        hints.append(
            f"no trial has {name}={value}; {name} is compared by its variant name (or by value "
            f"for numbers), and its trials have: {listed}"
        )
    return hints


@click.command()
@click.argument("trial_id", metavar="TRIAL")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with everything recorded.")
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to read.")
@click.pass_context
def show(ctx: click.Context, trial_id: str, as_json: bool, store: Path | None) -> None:
    """Everything recorded for one TRIAL (any unique id prefix of 4+ characters)."""
    trial = load(trial_id, store=store_path(ctx, store))
    branch = f"mitosis/{trial.experiment}"
    kept = results_ref(trial.id).decode()
    paths = {
        name: f"{kept}:{name}" if name in trial.detached else f"{branch}:{trial.path}/{name}"
        for name in trial.files
    }
    results = {name: _result_info(trial, name) for name in trial.files if is_result(name)}
    environment = recorded_environment(trial)
    if as_json:
        record = converter().unstructure(trial)
        record.update(
            store=trial.location,
            branch=branch,
            paths=paths,
            results=results,
            environment=environment,
        )
        echo(dumps_json(record, indent=2), nl=False, json=True)
        return
    lines = [
        f"trial      {trial.id}  {trial.experiment}  {trial.status}",
        f"started    {trial.started}  ({trial.duration:.3g} s)  on {trial.host} by {trial.user}",
        f"function   {trial.function}",
    ]
    if trial.code is not None:
        code = trial.code
        dirty = " + uncommitted changes (code.diff)" if code.dirty else ""
        lines.append(
            f"code       {code.commit or '(no commit)'} on {code.branch or '(detached)'} "
            f"in {code.repository}{dirty}"
        )
    if environment:
        lines.append(f"python     {environment.get('python')} on {environment.get('platform')}")
    for title, params in (("params", trial.params), ("untracked", trial.untracked)):
        for n, (name, p) in enumerate(params.items()):
            value = f" = {cell(p.value, 60)}" if p.source == "variant" else ""
            label = title if n == 0 else ""
            lines.append(f"{label:<10} {name} = {p.variant}{value}  ({p.source})")
    if trial.status == "ok":
        lines.append(f"main       {cell(trial.main, 60)}")
    for n, (name, value) in enumerate(trial.metrics.items()):
        lines.append(f"{'metrics' if n == 0 else '':<10} {name} = {cell(value, 60)}")
    if len(trial.steps) > 1:
        lines += [
            f"{'steps' if n == 0 else '':<10} {step_line(step)}"
            for n, step in enumerate(trial.steps)
        ]
    lines = [shown(line) for line in lines]  # each line one line, whatever the record holds
    if trial.error:
        lines.append("error")
        lines += [f"  {shown(line, lines=True)}" for line in trial.error.rstrip().split("\n")]
    lines.append(shown(f"store      {trial.location}"))
    for n, path in enumerate(paths.values()):
        lines.append(shown(f"{'files' if n == 0 else '':<10} {path}"))
    for n, (name, info) in enumerate(results.items()):
        if info["size"] is None:
            where = "named by the record, but not in its folder"
        elif not info["detached"]:
            where = "on the branch"
        elif info["here"]:
            where = "kept off the branch, here"
        else:
            where = f"kept off the branch, not here: mitosis pull --results {trial.id}"
        label = "results" if n == 0 else ""
        size = "?" if info["size"] is None else human_size(info["size"])
        lines.append(shown(f"{label:<10} {name}  {size}  ({where})"))
    echo("\n".join(lines))


def _result_info(trial: Trial, name: str) -> dict[str, Any]:
    """A result's size, whether it is here and kept off the branch; a size of None when the
    record names a file its folder lacks (a damaged or hand-made record: shown, not fatal)."""
    try:
        return trial.stat(name)._asdict()
    except StoreError:
        return {"size": None, "here": False, "detached": False}


@click.command()
@click.argument("first", metavar="TRIAL")
@click.argument("second", metavar="TRIAL")
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to read.")
@click.pass_context
def diff(ctx: click.Context, first: str, second: str, store: Path | None) -> None:
    """What differs between two trials: parameters, results, code, environment, packages."""
    path = store_path(ctx, store)
    a, b = load(first, store=path), load(second, store=path)
    differences = diff_trials(a, b)
    if not differences:
        echo(f"trials {a.id} and {b.id} do not differ")
        return
    rows = [[d.section, d.key, d.a or "(none)", d.b or "(none)"] for d in differences]
    echo(table(["", "", a.id, b.id], rows))


@click.command(name="variants")
@click.argument("experiment", required=False, shell_complete=complete_experiment)
@click.argument("param", required=False)
@click.option(
    "--conflicts",
    "show_conflicts",
    is_flag=True,
    help="List the variant names locked to other values on a remote (what stops a pull).",
)
@click.option(
    "--rename",
    nargs=2,
    metavar="OLD NEW",
    help="Give PARAM's locked variant OLD the name NEW (settles a conflict; rewrites nothing).",
)
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to read.")
@click.pass_context
def variants_command(
    ctx: click.Context,
    experiment: str | None,
    param: str | None,
    show_conflicts: bool,
    rename: tuple[str, str] | None,
    store: Path | None,
) -> None:
    """The locked variants of EXPERIMENT (or of its PARAM), with how many trials used each.

    \b
      mitosis variants sine                          # every locked variant of sine
      mitosis variants --conflicts                   # what stops a pull
      mitosis variants sine noise --rename low low_b # keep this store's value as low_b
    """
    if rename:
        if experiment is None or param is None:
            fail("--rename needs the EXPERIMENT and the PARAM: variants sine noise --rename a b")
        rename_variant(experiment, param, *rename, store=store_path(ctx, store))
        echo(f"{experiment}: {param}={rename[0]} is now {param}={rename[1]}")
        return
    if show_conflicts:
        from .. import conflicts  # on first need: sync stays out of `mitosis log`

        clashes = [
            c
            for c in conflicts(experiment, store=store_path(ctx, store))
            if param is None or c.param == param
        ]
        if not clashes:
            echo("no variant conflicts with the fetched remote branches")
            return
        for clash in clashes:
            echo(shown(str(clash)))
        fail(
            f"{len(clashes)} variant conflict(s); settle one by giving one side's value a new "
            "name: mitosis variants EXPERIMENT PARAM --rename OLD NEW"
        )
    if experiment is None:
        fail("name the EXPERIMENT whose variants to list (or pass --conflicts)")
    found = variants(experiment, param, store=store_path(ctx, store))
    if not found:
        echo(f"no locked variants in {experiment}" + (f" for {param}" if param else ""))
        return
    rows = [
        [
            v.param,
            v.name,
            cell(v.value, 48) if v.value is not None else f"(pickled {v.type})",
            str(v.trials),
        ]
        for v in found
    ]
    echo(table(["param", "variant", "value", "trials"], rows))


def _registered(config: Config, name: str) -> str:
    entry = config.experiments.get(name)
    if entry is None:
        return "(not registered)"
    return entry.run or "steps: " + " -> ".join(entry.steps)


@click.command()
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to read.")
@click.pass_context
def experiments(ctx: click.Context, store: Path | None) -> None:
    """The registered experiments and the experiments in the store, with trial counts."""
    config = config_of(ctx)
    path = store_path(ctx, store) or default_store_path()
    branches: dict[str, int] = {}
    if path.exists():  # no store yet: only the registered experiments
        with Store.open(path) as st:
            branches = {name: sum(1 for _ in st.trial_dirs(name)) for name in st.experiments()}
    rows = [
        [
            name,
            _registered(config, name),
            str(branches.get(name, 0)),
        ]
        for name in sorted(set(config.experiments) | set(branches))
    ]
    if not rows:
        where = config.path or "no pyproject.toml with [tool.mitosis] found"
        echo(f"no experiments registered ({where}) or recorded")
        return
    echo(table(["experiment", "run", "trials"], rows))
