"""How much a trial costs beyond the fresh interpreter it needs.

Prints, measured in the same run (whole processes interleaved round by round, medians):

- a single trial as a user starts it, as a whole process: ``python script.py`` whose script
  calls ``mitosis.run`` once, and ``mitosis run trivial -e x=1`` (the installed command), against
  the bare script calling the same function (``python bare.py``), and ``import mitosis``
  against ``python -c pass``; with ``--before PATH`` (a checkout of an earlier mitosis, e.g.
  ``git worktree add /tmp/before <commit>``) the same for that tree, run with ``PYTHONPATH``;
  and the floor of any caller that records a trial: ``python -c`` importing the libraries a
  record is written with (attrs, cattrs, dulwich), alone;
- in this process: a whole trial through ``mitosis.run`` against a bare ``python -c``
  subprocess calling the same function, and what the parts of a trial cost on their own.

    python benchmarks/trial_overhead.py [--repeat N] [--before PATH] [--heavy]

With ``--heavy``, also an experiment whose module imports numpy and matplotlib, started both
ways, against its own bare script (the trial process imports it while the caller gets ready).

Goals: a whole-process single trial, script and command line, at most 3x the bare script
(issue 17); mitosis's own overhead per trial in process (run minus bare) under 50 ms (issue 2).
Subprocesses run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` unset), as users have it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

GOAL_MS = 50.0
GOAL_RATIO = 3.0
SCRIPT = "import mitosis\nfrom bench_exp import trivial\nmitosis.run(trivial, {'x': 1})\n"
BARE = "from bench_exp import trivial\ntrivial(x=1)\n"
DEPENDENCIES = "import attrs, cattrs, dulwich.repo"
PYPROJECT = (
    '[tool.mitosis.experiments]\ntrivial = { run = "bench_exp:trivial" }\n'
    'heavy = { run = "heavy_exp:heavy" }\n'
)
#: An experiment that imports numpy and matplotlib at module level (``--heavy``).
HEAVY = (
    "import numpy\nimport matplotlib.pyplot\n\n\n"
    "def heavy(x=1):\n    return float(numpy.sum([x]))\n"
)


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def whole_processes(
    root: Path, repeat: int, before: Path | None, env: dict[str, str], heavy: bool = False
) -> tuple[list[tuple[str, float]], list[str]]:
    """Median wall times (ms) of whole processes, run interleaved round by round, and the goal
    lines of the single trial (with ``heavy``, the lines of an experiment importing numpy and
    matplotlib too, against its own bare script)."""
    python = sys.executable
    command = os.path.join(os.path.dirname(python), "mitosis")
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    trees = [("now", env)]
    if before is not None:
        trees.append(("before", {**env, "PYTHONPATH": str(before.resolve())}))
    runs: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass": ([python, "-c", "pass"], env),
        "python bare.py (baseline)": ([python, "bare.py"], env),
        # the floor of any recording caller: the libraries a record is written with, alone
        "python -c 'import attrs, cattrs, dulwich.repo'": ([python, "-c", DEPENDENCIES], env),
    }
    for tree, tree_env in trees:
        runs[f"python -c 'import mitosis' ({tree})"] = ([python, "-c", "import mitosis"], tree_env)
        runs[f"python script.py: mitosis.run ({tree})"] = ([python, "script.py"], tree_env)
        runs[f"mitosis run trivial -e x=1 ({tree})"] = (
            [command, "run", "trivial", "-e", "x=1"],
            tree_env,
        )
    if heavy:
        runs["python bare_heavy.py (numpy, matplotlib)"] = ([python, "bare_heavy.py"], env)
        for tree, tree_env in trees:
            runs[f"python script_heavy.py ({tree})"] = ([python, "script_heavy.py"], tree_env)
            runs[f"mitosis run heavy -e x=1 ({tree})"] = (
                [command, "run", "heavy", "-e", "x=1"],
                tree_env,
            )
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeat + 1):  # the first round warms the caches up, uncounted
        for name, (args, run_env) in runs.items():
            start = time.perf_counter()
            subprocess.run(args, cwd=root, env=run_env, check=True, capture_output=True)
            if round_:
                times[name].append((time.perf_counter() - start) * 1000)
    medians = {name: statistics.median(found) for name, found in times.items()}
    bare = medians["python bare.py (baseline)"]
    rows = [(name, value) for name, value in medians.items()]
    verdicts = []
    for tree, _ in trees:
        for kind in (
            f"python script.py: mitosis.run ({tree})",
            f"mitosis run trivial -e x=1 ({tree})",
        ):
            ratio = medians[kind] / bare
            verdicts.append(
                f"{kind}: {ratio:.2f}x the bare script "
                f"({'within' if ratio <= GOAL_RATIO else 'OVER'} the goal of {GOAL_RATIO:.0f}x)"
            )
        if heavy:  # no goal: how much of the experiment's imports the caller's overlap
            for kind in (f"python script_heavy.py ({tree})", f"mitosis run heavy -e x=1 ({tree})"):
                ratio = medians[kind] / medians["python bare_heavy.py (numpy, matplotlib)"]
                verdicts.append(f"{kind}: {ratio:.2f}x its bare script")
    return rows, verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--before", type=Path, help="a checkout of an earlier mitosis")
    parser.add_argument(
        "--heavy", action="store_true", help="also an experiment importing numpy and matplotlib"
    )
    args = parser.parse_args()
    repeat = args.repeat

    root = Path(tempfile.mkdtemp(prefix="mitosis-bench-"))
    (root / "bench_exp.py").write_text("def trivial(x=1):\n    return float(x)\n")
    (root / "script.py").write_text(SCRIPT)
    (root / "bare.py").write_text(BARE)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "heavy_exp.py").write_text(HEAVY)
    (root / "bare_heavy.py").write_text(
        BARE.replace("bench_exp", "heavy_exp").replace("trivial", "heavy")
    )
    (root / "script_heavy.py").write_text(
        SCRIPT.replace("bench_exp", "heavy_exp").replace("trivial", "heavy")
    )
    (root / ".gitignore").write_text("__pycache__/\n")  # as a project has: the code is clean
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@example.org",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@example.org",
    }
    for git_args in (["init", "-q"], ["add", "."], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *git_args], cwd=root, check=True, env=env)
    whole, verdicts = whole_processes(root, repeat, args.before, env, args.heavy)
    os.chdir(root)
    sys.path.insert(0, str(root))
    os.environ.update(env)

    import bench_exp

    import mitosis
    from mitosis.run import environment as _environment
    from mitosis.store.repo import Store

    python = sys.executable

    def bare() -> None:
        subprocess.run([python, "-c", "from bench_exp import trivial; trivial(x=1)"], check=True)

    def trial() -> None:
        mitosis.run(bench_exp.trivial, {"x": 1})

    bare_ms = median_ms(bare, repeat)
    run_ms = median_ms(trial, repeat)
    overhead = run_ms - bare_ms
    rows = [
        *whole,
        ("in process: bare python -c calling the function", bare_ms),
        ("mitosis.run, whole trial", run_ms),
        ("  overhead (run - bare)", overhead),
    ]
    files = {f"t/{i}": os.urandom(2000) for i in range(6)}
    with Store.open(root) as store:
        parts: list[tuple[str, Callable[[], object]]] = [
            ("  requirements list (in parallel)", _environment.requirements),
            ("  code state and diff (in parallel)", lambda: _environment.read_code(root)),
            ("  environment variables, platform", _environment.environment),
            ("  commit of 6 files to the store", lambda: store.commit("bench", files, "b\n")),
            ("python -c pass", lambda: subprocess.run([python, "-c", "pass"], check=True)),
            (
                "python -c 'import mitosis'",
                lambda: subprocess.run([python, "-c", "import mitosis"], check=True),
            ),
        ]
        rows += [(name, median_ms(fn, repeat)) for name, fn in parts]

    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  median ms   (repeat {repeat}, {os.cpu_count()} cores)")
    for name, value in rows:
        print(f"{name:<{width}}  {value:9.1f}")
    print(f"{'ratio run / bare':<{width}}  {run_ms / bare_ms:9.2f}")
    for line in verdicts:
        print(line)
    verdict = "within" if overhead < GOAL_MS else "OVER"
    print(f"overhead {overhead:.1f} ms: {verdict} the goal of {GOAL_MS:.0f} ms per trial")
    met = overhead < GOAL_MS and not any("OVER" in line for line in verdicts if "(now)" in line)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
