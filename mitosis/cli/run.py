"""``mitosis run``: one trial, or a sweep of them, of experiments registered in pyproject.toml."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.shell_completion import CompletionItem

from .. import literal
from ..exceptions import MitosisError, TrialFailed
from ..run.experiment import with_untracked
from ..run.trial import ahead, run_experiment
from .args import grid, unprefixed
from .support import (
    cell,
    complete_experiment,
    config_of,
    echo,
    fail,
    store_path,
    summary,
    table,
)


def _complete_param(
    ctx: click.Context, _: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    # While an option still lacks its value, click leaves the positional arguments in ctx.args.
    names = ctx.params.get("experiment") or tuple(ctx.args)
    try:
        chain = config_of(ctx).chain(list(names))
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


@click.command()
@click.argument("experiment", nargs=-1, shell_complete=complete_experiment)
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
    "--eval-param",
    "evals",
    multiple=True,
    metavar="[+]NAME=LITERAL[,...]",
    shell_complete=_complete_param,
    help="A value written as a Python literal; + marks the parameter untracked.",
)
@click.option("--allow-code", is_flag=True, help="Evaluate -e values as Python code.")
@click.option("-d", "--debug", is_flag=True, help="Run, but record nothing and lock nothing.")
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
@click.option(
    "-F",
    "--trials-folder",
    type=click.Path(path_type=Path),
    help="As --store (the option of mitosis 0.6).",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="As mitosis --config, given after the experiment (as mitosis 0.6 takes it).",
)
@click.option(
    "-m",
    "--module",
    metavar="MODULE",
    help="A mitosis 0.6 experiment module (with run, lookup_dict and name), instead of EXPERIMENT.",
)
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
    trials_folder: Path | None,
    config: Path | None,
    module: str | None,
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
      mitosis -m my_package.my_exp -e seed=2                          # a mitosis 0.6 module
    """
    debug = debug or bool(ctx.find_root().params.get("debug"))
    # One trial (no comma lists): its interpreter starts now, while this one reads the
    # experiment and opens the store (ended with the command if no trial takes it).
    single = not (debug or reuse or skip_done or any("," in a for a in (*params, *evals)))
    gate = ctx.with_resource(ahead(single))
    settings = config_of(ctx)
    module = module or ctx.find_root().params.get("module")
    if gate is not None:  # it imports the experiment's modules as this process does
        settings.importable()
        named = [module.partition(":")[0]] if module else settings.modules(experiment)
        gate.preload(list(sys.path), named, settings.figure_dpi)
    if module is not None:
        if experiment:
            fail(f"-m {module} runs that module; give it or experiment names, not both")
        chain = settings.module_chain(module)
        params, evals = unprefixed(params, module), unprefixed(evals, module)
    elif not experiment:
        fail("name the EXPERIMENT to run (see `mitosis experiments`), or -m MODULE")
    else:
        assignments = [word for word in experiment if "=" in word]
        if assignments:
            word = assignments[0]
            fail(
                f"{word!r} is a parameter, not an experiment: give it as -p {word} (a variant "
                f"name) or -e {word} (a Python literal)"
            )
        chain = settings.chain(experiment)
    if store is not None and trials_folder is not None:
        fail("give --store or -F/--trials-folder, not both")
    combos, untracked = grid(chain, params, evals, allow_code)
    chain = with_untracked(chain, untracked)
    path = store_path(ctx, store or trials_folder)
    if len(combos) == 1 and not skip_done:
        try:
            trial = run_experiment(
                chain,
                combos[0],
                store=path,
                debug=debug,
                reuse=reuse,
                figure_dpi=settings.figure_dpi,
                results_threshold=settings.results_threshold,
                gate=gate,
            )
        except TrialFailed as failed:
            fail(_failure(failed))
        echo(summary(trial, debug=debug))
        return
    from ..run.sweep import run_sweep  # on first need: `mitosis log` starts quicker without it

    try:
        items = run_sweep(
            chain,
            combos,
            store=path,
            debug=debug,
            reuse=reuse,
            jobs=jobs,
            fail_fast=fail_fast,
            skip_done=skip_done,
            progress=True,
            figure_dpi=settings.figure_dpi,
            results_threshold=settings.results_threshold,
            keep_records=False,  # the table needs ids, statuses and mains only
        )
    except KeyboardInterrupt:
        sys.exit(130)
    rows = []
    for item in items:
        shown = " ".join(f"{k}={_given(v)}" for k, v in item.params.items())
        if item.id is None:
            rows.append(["-", "not run", "", f"{shown}: {cell(item.error or '', 80)}"])
        else:
            status = f"{item.status} (done before)" if item.skipped else item.status or ""
            main = cell(item.main) if item.status == "ok" else ""
            rows.append([item.id, status, main, shown])
    echo(table(["id", "status", "main", "parameters"], rows))
    if debug:
        echo("debug trials: nothing was recorded", err=True)
    bad = sum(item.status != "ok" for item in items)
    if bad:
        echo(f"{bad} of {len(items)} trials did not succeed (see `mitosis log`)", err=True)
        ctx.exit(min(bad, 125))


def _given(value: object) -> str:
    """A value of the grid as the table shows it: a literal string under its repr."""
    return cell(repr(value.value)) if isinstance(value, literal) else cell(value)


def _failure(failed: TrialFailed) -> str:
    where = f"trial {failed.trial_id}" if failed.trial_id else "the debug trial"
    last = failed.error.strip().splitlines()[-1] if failed.error.strip() else failed.status
    hint = f"; see it with `mitosis show {failed.trial_id}`" if failed.trial_id else ""
    return f"{where} {failed.status}: {last}{hint}"
