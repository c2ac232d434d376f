"""Sweep throughput, warm-started and started afresh, against a fresh process per call; and the
coordinator's memory.

Prints, measured in the same run (each throughput the median of ``--repeat`` rounds, the rounds
interleaved so that the load of the machine weighs on all alike):

- the floor: N bare ``python -c`` processes importing the experiment's module and calling its
  function, ``jobs`` at once (what "a fresh process per trial" costs here, nothing recorded);
- ``mitosis.sweep`` of the same N trials with ``jobs`` workers, recorded in a fresh store, with
  the trial processes forked from a warm process (the default) and started afresh (the
  experiment declared with ``start="spawn"``, which is how every sweep ran before);
- both for a trivial experiment and for one that imports numpy and matplotlib at module level;
- the coordinator's peak memory (ru_maxrss of a process running only the sweep) for N and for
  ``--scale`` times N trivial trials, through ``mitosis.sweep`` (which returns every trial's
  record) and as ``mitosis run`` sweeps (keeping each trial's id, status and main only): flat
  means it does not grow with the number of trials;
- the store's size per trial after the sweep.

    python benchmarks/sweep.py [--trials 300] [--heavy-trials 60] [--jobs 2] [--repeat 3]
                               [--scale 5]

Goals (issue 17): a warm sweep of 300 trivial trials at >= 1.0x the floor; a warm sweep of the
numpy + matplotlib experiment at >= 3x its own floor. (Issue 7: coordinator memory flat.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

GOAL_TRIVIAL = 1.0
GOAL_HEAVY = 3.0
MODULES = {
    "bench_exp": "def trivial(x=1):\n    return float(x)\n",
    "bench_heavy": (
        "import numpy as np\n"
        "import matplotlib\n"
        "import matplotlib.pyplot as plt\n\n"
        "def heavy(x=1):\n"
        "    return float(np.arange(10.0).sum() * x)\n"
    ),
}
SWEEP = """
import json, resource, sys, time
import mitosis, {module}
from mitosis.run.experiment import chain_of
from mitosis.run.sweep import run_sweep
fn = {module}.{function}
if {spawn}:  # as sweeps ran before issue 17: every trial process started afresh
    fn = mitosis.experiment(start="spawn")(fn)  # this process's own copy of the function
grid = {{"x": list(range({n}))}}
start = time.perf_counter()
if {keep}:
    trials = mitosis.sweep(fn, grid, jobs={jobs}, store={store!r}, progress=False)
    statuses = [t.status for t in trials]
else:
    combos = [{{"x": x}} for x in grid["x"]]
    items = run_sweep(chain_of(fn), combos, store={store!r}, jobs={jobs}, keep_records=False)
    statuses = [item.status for item in items]
seconds = time.perf_counter() - start
assert len(statuses) == {n} and set(statuses) == {{"ok"}}, statuses
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": seconds, "peak_mib": peak}}))
"""


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--heavy-trials", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mitosis-sweep-bench-"))
    for module, text in MODULES.items():
        (root / f"{module}.py").write_text(text)
    # users have .pyc files: the subprocesses write and read them as theirs would
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(root), MPLBACKEND="Agg")
    stores = iter(range(1_000_000))

    def floor(module: str, function: str, n: int) -> float:
        def bare(_: int) -> None:
            code = f"import {module}; {module}.{function}(1)"
            subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(bare, range(n)))
        return n / (time.perf_counter() - start)

    def sweep(
        module: str, function: str, n: int, spawn: bool = False, keep: bool = True
    ) -> dict[str, float]:
        store = root / f"store-{next(stores)}"
        code = SWEEP.format(
            module=module, function=function, spawn=spawn, n=n, jobs=args.jobs,
            store=str(store), keep=keep,
        )  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, env=env, cwd=root, capture_output=True
        )
        result: dict[str, float] = json.loads(out.stdout.decode().strip().splitlines()[-1])
        result["rate"] = n / result["seconds"]
        result["store_kib"] = size(store) / n / 1024
        return result

    # warm the .pyc files and the font cache of matplotlib before anything is timed
    floor("bench_heavy", "heavy", args.jobs)
    rates: dict[str, list[float]] = {}
    cases = (("trivial", "bench_exp", "trivial", args.trials),)
    cases += (("heavy", "bench_heavy", "heavy", args.heavy_trials),)
    for _ in range(args.repeat):
        for case, module, function, n in cases:
            rates.setdefault(f"{case} floor", []).append(floor(module, function, n))
            rates.setdefault(f"{case} warm", []).append(sweep(module, function, n)["rate"])
            cold = sweep(module, function, n, spawn=True)["rate"]
            rates.setdefault(f"{case} cold", []).append(cold)
    rate = {name: statistics.median(found) for name, found in rates.items()}

    small = sweep("bench_exp", "trivial", args.trials)
    large_n = args.trials * args.scale
    large = sweep("bench_exp", "trivial", large_n)
    lean_small = sweep("bench_exp", "trivial", args.trials, keep=False)
    lean_large = sweep("bench_exp", "trivial", large_n, keep=False)

    n, h, j = args.trials, args.heavy_trials, args.jobs
    rows = [
        (f"floor: {n} x python -c trivial, {j} at once", rate["trivial floor"], ""),
        (f"sweep of {n} trivial trials, started afresh (before)", rate["trivial cold"], ""),
        (f"sweep of {n} trivial trials, warm (after)", rate["trivial warm"], ""),
        (f"floor: {h} x python -c numpy+matplotlib, {j} at once", rate["heavy floor"], ""),
        (f"sweep of {h} numpy+matplotlib trials, afresh (before)", rate["heavy cold"], ""),
        (f"sweep of {h} numpy+matplotlib trials, warm (after)", rate["heavy warm"], ""),
        (f"mitosis.sweep of {n} trials (warm)", small["rate"], f"{small['peak_mib']:.0f} MiB"),
        (f"mitosis.sweep of {large_n} trials", large["rate"], f"{large['peak_mib']:.0f} MiB"),
        (f"as mitosis run: {n} trials", lean_small["rate"], f"{lean_small['peak_mib']:.0f} MiB"),
        (
            f"as mitosis run: {large_n} trials",
            lean_large["rate"],
            f"{lean_large['peak_mib']:.0f} MiB",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"jobs={j}, median of {args.repeat} interleaved rounds; load {os.getloadavg()[0]:.1f}")
    print(f"{'measure':<{width}}  trials/s  coordinator peak")
    for name, value, peak in rows:
        print(f"{name:<{width}}  {value:8.1f}  {peak}")
    ratios = [
        ("trivial: before / floor", rate["trivial cold"] / rate["trivial floor"], ""),
        ("trivial: after / floor", rate["trivial warm"] / rate["trivial floor"], GOAL_TRIVIAL),
        ("numpy+matplotlib: before / floor", rate["heavy cold"] / rate["heavy floor"], ""),
        ("numpy+matplotlib: after / floor", rate["heavy warm"] / rate["heavy floor"], GOAL_HEAVY),
    ]
    for name, ratio, goal in ratios:
        print(f"{name:<{width}}  {ratio:8.2f}  " + (f"(goal >= {goal})" if goal else ""))
    growth = large["peak_mib"] / small["peak_mib"]
    lean_growth = lean_large["peak_mib"] / lean_small["peak_mib"]
    labels = ("peak memory large / small, sweep()", "peak memory large / small, as run")
    print(f"{labels[0]:<{width}}  {growth:8.2f}  (returns every record)")
    print(f"{labels[1]:<{width}}  {lean_growth:8.2f}  (the store's packs are mapped in)")
    print(f"{'store size per trial (loose objects)':<{width}}  {large['store_kib']:6.1f} KiB")
    met = all(ratio >= goal for _, ratio, goal in ratios if goal)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
