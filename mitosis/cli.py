"""The ``mitosis`` command line: the only place that prints tables or sets exit codes.

Experiments come from the investigation's ``pyproject.toml`` (``[tool.mitosis]``); everything
else goes through the Python API.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from . import __version__
from ._cli_rerun import export, rerun
from ._cli_site import browse_command, plot_command
from ._cli_support import (
    _cell,
    _commit,
    _complete_experiment,
    _config,
    _exact,
    _fail,
    _grid,
    _record,
    _step_line,
    _store,
    _summary,
    _table,
    _unknown_field,
)
from ._cli_sync import bundle_command, gc_command, pull, push
from ._config import Config
from ._model import Trial, converter
from ._params import with_untracked
from ._query import conditions as _conditions
from ._query import field as _field
from ._query import fields as _fields
from ._query import matches as _matches
from ._recorder import load, load_json, rename_variant, trials, variants
from ._runner import run_experiment
from ._serialize import dumps_json
from ._store import Store, default_store_path
from .exceptions import MitosisError, TrialFailed

__all__ = ["main"]

# -- the group ---------------------------------------------------------------------------------


class _Main(click.Group):
    """A group where a registered experiment's name, given instead of a command, runs it."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            config = _config(ctx)
            if name in config.experiments:
                return "run", self.commands["run"], args
            known = ", ".join(sorted(config.experiments)) or "none registered"
            _fail(
                f"{name!r} is neither a command nor a registered experiment (experiments: "
                f"{known}). See `mitosis --help` for the commands."
            )
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MitosisError as exc:
            _fail(str(exc))


# -- completion ----------------------------------------------------------------------------


def _complete_param(
    ctx: click.Context, _: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    # While an option still lacks its value, click leaves the positional arguments in ctx.args.
    names = ctx.params.get("experiment") or tuple(ctx.args)
    try:
        chain = _config(ctx).chain(list(names))
    except MitosisError:
        return []
    import inspect

    mark = "+" if incomplete.startswith("+") else ""
    typed, eq, partial = incomplete.lstrip("+").partition("=")
    found = []
    for step in chain.steps:
        prefix = "" if chain.single else f"{step.name}."
        lookup = step.spec.lookup
        if eq and typed.startswith(prefix) and typed[len(prefix) :] in lookup:
            last = partial.split(",")[-1]
            found += [f"{typed}={v}" for v in lookup[typed[len(prefix) :]] if v.startswith(last)]
        elif not eq:
            params = dict.fromkeys([*lookup, *inspect.signature(step.fn).parameters])
            found += [f"{prefix}{p}=" for p in params if f"{prefix}{p}".startswith(typed)]
    return [CompletionItem(mark + item) for item in found]


# -- run -----------------------------------------------------------------------------------


@click.command()
@click.argument("experiment", nargs=-1, required=True, shell_complete=_complete_experiment)
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="[+]NAME=VARIANT[,...]",
    shell_complete=_complete_param,
    help="A named variant from the lookup dictionary; + marks the parameter untracked.",
)
@click.option(
    "-e",
    "--eval",
    "evals",
    multiple=True,
    metavar="[+]NAME=LITERAL[,...]",
    shell_complete=_complete_param,
    help="A value written as a Python literal; + marks the parameter untracked.",
)
@click.option("--allow-code", is_flag=True, help="Evaluate -e values as Python code.")
@click.option("--debug", is_flag=True, help="Run, but record nothing and lock nothing.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    help="Trials to run at once (default: the number of cores).",
)
@click.option("--fail-fast", is_flag=True, help="Start no more trials after one fails.")
@click.option(
    "--skip-done",
    is_flag=True,
    help="Skip combinations with an ok trial at the same parameter values and code.",
)
@click.option(
    "--reuse", is_flag=True, help="Load identical first steps from earlier trials, not rerun them."
)
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to record in.")
@click.pass_context
def run(
    ctx: click.Context,
    experiment: tuple[str, ...],
    params: tuple[str, ...],
    evals: tuple[str, ...],
    allow_code: bool,
    debug: bool,
    jobs: int | None,
    fail_fast: bool,
    skip_done: bool,
    reuse: bool,
    store: Path | None,
) -> None:
    """Run EXPERIMENT (registered in pyproject.toml) once, or once per combination.

    Several experiments run as the steps of one trial, each step's "data" going to the next;
    their parameters are then addressed as step.param. With several combinations, failed
    trials do not stop the others (unless --fail-fast); the exit status is the number of trials
    that did not succeed (at most 125).

    \b
      mitosis run sine -p noise=low -e amplitude=4
      mitosis run sine -p noise=low,high -e amplitude=1,4 --jobs 2   # 4 trials
      mitosis sine -p sine.noise=low -e sine.amplitude=4              # the earlier syntax
      mitosis run make_data fit -p make_data.noise=low -e fit.alpha=0.1 --reuse
    """
    config = _config(ctx)
    chain = config.chain(experiment)
    combos, untracked = _grid(chain, params, evals, allow_code)
    chain = with_untracked(chain, untracked)
    store_path = _store(ctx, store)
    if len(combos) == 1 and not skip_done:
        try:
            trial = run_experiment(
                chain,
                combos[0],
                store=store_path,
                debug=debug,
                reuse=reuse,
                figure_dpi=config.figure_dpi,
            )
        except TrialFailed as failed:
            _fail(_failure(failed))
        click.echo(_summary(trial))
        return
    from ._sweep import run_sweep  # on first need: `mitosis log` starts quicker without it

    try:
        items = run_sweep(
            chain,
            combos,
            store=store_path,
            debug=debug,
            reuse=reuse,
            jobs=jobs,
            fail_fast=fail_fast,
            skip_done=skip_done,
            progress=True,
            figure_dpi=config.figure_dpi,
            keep_records=False,  # the table needs ids, statuses and mains only
        )
    except KeyboardInterrupt:
        sys.exit(130)
    rows = []
    for item in items:
        shown = " ".join(f"{k}={_cell(v)}" for k, v in item.params.items())
        if item.id is None:
            rows.append(["-", "not run", "", f"{shown}: {_cell(item.error or '', 80)}"])
        else:
            status = f"{item.status} (done before)" if item.skipped else item.status or ""
            main = _cell(item.main) if item.status == "ok" else ""
            rows.append([item.id, status, main, shown])
    click.echo(_table(["id", "status", "main", "parameters"], rows))
    bad = sum(item.status != "ok" for item in items)
    if bad:
        click.echo(f"{bad} of {len(items)} trials did not succeed (see `mitosis log`)", err=True)
        ctx.exit(min(bad, 125))


def _failure(failed: TrialFailed) -> str:
    where = f"trial {failed.trial_id}" if failed.trial_id else "the debug trial"
    last = failed.error.strip().splitlines()[-1] if failed.error.strip() else failed.status
    hint = f"; see it with `mitosis show {failed.trial_id}`" if failed.trial_id else ""
    return f"{where} {failed.status}: {last}{hint}"


@click.command()
@click.argument("experiment", required=False, shell_complete=_complete_experiment)
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
        _fail("give --json or --csv, not both")
    found = list(reversed(trials(experiment, store=_store(ctx, store))))
    known = _fields(found)
    for condition in _conditions(where):
        found = [t for t in found if _matches(t, condition, known)]
    if sort:
        if sort not in known:
            _unknown_field("--sort", sort, known)

        def key(t: Trial) -> tuple[int, float, str]:
            field = _field(t, sort)
            if field is None:
                return (2, 0.0, "")
            text, number = field
            return (0, number, "") if number is not None else (1, 0.0, text)

        found.sort(key=key)
    found = found[:limit] if limit else found
    params = list(dict.fromkeys(n for t in found for n in t.params))
    metrics = list(dict.fromkeys(n for t in found for n in t.metrics))
    if as_json:
        click.echo(dumps_json([_record(t) for t in found], indent=2), nl=False)
        return
    shown = [f"{m} (metric)" if m in params else m for m in metrics]  # a metric named as a param
    headers = ["id", "experiment", "started", "status", *params, "main", *shown, "commit"]
    fmt = _exact if as_csv else _cell  # CSV holds values in full; a table cuts them to fit

    def row(t: Trial) -> list[str]:
        return [
            t.id,
            t.experiment,
            t.started if as_csv else t.started[:19].replace("T", " "),
            t.status,
            *(fmt(t.params[p].variant) if p in t.params else "" for p in params),
            fmt(t.main),
            *(fmt(t.metrics.get(m)) for m in metrics),
            (t.code.commit or "") if as_csv and t.code else _commit(t),
        ]

    if as_csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(row(t) for t in found)
        click.echo(out.getvalue(), nl=False)
    elif found:
        click.echo(_table(headers, [row(t) for t in found]))
    else:
        click.echo("no trials" + (" match" if where else ""), err=True)


# -- show, diff, variants, experiments -------------------------------------------------------


@click.command()
@click.argument("trial_id", metavar="TRIAL")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with everything recorded.")
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to read.")
@click.pass_context
def show(ctx: click.Context, trial_id: str, as_json: bool, store: Path | None) -> None:
    """Everything recorded for one TRIAL (any unique id prefix of 4+ characters)."""
    trial = load(trial_id, store=_store(ctx, store))
    branch = f"mitosis/{trial.experiment}"
    paths = {name: f"{branch}:{trial.path}/{name}" for name in trial.files}
    environment = (
        load_json(trial.read("environment.json"), f"environment.json of {trial.id}")
        if "environment.json" in trial.files
        else {}
    )
    if as_json:
        record = converter().unstructure(trial)
        record.update(store=trial.location, branch=branch, paths=paths, environment=environment)
        click.echo(dumps_json(record, indent=2), nl=False)
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
            value = f" = {_cell(p.value, 60)}" if p.source == "variant" else ""
            label = title if n == 0 else ""
            lines.append(f"{label:<10} {name} = {p.variant}{value}  ({p.source})")
    if trial.status == "ok":
        lines.append(f"main       {_cell(trial.main, 60)}")
    for n, (name, value) in enumerate(trial.metrics.items()):
        lines.append(f"{'metrics' if n == 0 else '':<10} {name} = {_cell(value, 60)}")
    if len(trial.steps) > 1:
        lines += [
            f"{'steps' if n == 0 else '':<10} {_step_line(step)}"
            for n, step in enumerate(trial.steps)
        ]
    if trial.error:
        lines.append("error")
        lines += [f"  {line}" for line in trial.error.rstrip().splitlines()]
    lines.append(f"store      {trial.location}")
    for n, path in enumerate(paths.values()):
        lines.append(f"{'files' if n == 0 else '':<10} {path}")
    click.echo("\n".join(lines))


@click.command()
@click.argument("first", metavar="TRIAL")
@click.argument("second", metavar="TRIAL")
@click.option("--store", type=click.Path(path_type=Path), help="The git repository to read.")
@click.pass_context
def diff(ctx: click.Context, first: str, second: str, store: Path | None) -> None:
    """What differs between two trials: parameters, results, code, environment, packages."""
    from ._compare import diff_trials

    path = _store(ctx, store)
    a, b = load(first, store=path), load(second, store=path)
    differences = diff_trials(a, b)
    if not differences:
        click.echo(f"trials {a.id} and {b.id} do not differ")
        return
    rows = [[d.section, d.key, d.a or "(none)", d.b or "(none)"] for d in differences]
    click.echo(_table(["", "", a.id, b.id], rows))


@click.command(name="variants")
@click.argument("experiment", required=False, shell_complete=_complete_experiment)
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
            _fail("--rename needs the EXPERIMENT and the PARAM: variants sine noise --rename a b")
        rename_variant(experiment, param, *rename, store=_store(ctx, store))
        click.echo(f"{experiment}: {param}={rename[0]} is now {param}={rename[1]}")
        return
    if show_conflicts:
        from ._sync import conflicts

        clashes = [
            c
            for c in conflicts(experiment, store=_store(ctx, store))
            if param is None or c.param == param
        ]
        if not clashes:
            click.echo("no variant conflicts with the fetched remote branches")
            return
        for clash in clashes:
            click.echo(str(clash))
        _fail(
            f"{len(clashes)} variant conflict(s); settle one by giving one side's value a new "
            "name: mitosis variants EXPERIMENT PARAM --rename OLD NEW"
        )
    if experiment is None:
        _fail("name the EXPERIMENT whose variants to list (or pass --conflicts)")
    found = variants(experiment, param, store=_store(ctx, store))
    if not found:
        click.echo(f"no locked variants in {experiment}" + (f" for {param}" if param else ""))
        return
    rows = [
        [
            v.param,
            v.name,
            _cell(v.value, 48) if v.value is not None else f"(pickled {v.type})",
            str(v.trials),
        ]
        for v in found
    ]
    click.echo(_table(["param", "variant", "value", "trials"], rows))


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
    config = _config(ctx)
    path = _store(ctx, store) or default_store_path()
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
        click.echo(f"no experiments registered ({where}) or recorded")
        return
    click.echo(_table(["experiment", "run", "trials"], rows))


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
):
    main.add_command(_command)
