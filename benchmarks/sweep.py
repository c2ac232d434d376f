"""Sweep throughput and the coordinator's memory, against a fresh process per call.

Prints, measured in the same run:

- the floor: N bare ``python -c`` processes calling the same trivial function, ``jobs`` at once
  (what "a fresh process per trial" costs here, with nothing recorded);
- ``mitosis.sweep`` of the same N trials with ``jobs`` workers, recorded in a fresh store;
- the coordinator's peak memory (ru_maxrss of a process running only the sweep) for N and for
  ``--scale`` times N trials, through ``mitosis.sweep`` (which returns every trial's record) and
  as ``mitosis run`` sweeps (keeping each trial's id, status and main only): flat means it does
  not grow with the number of trials;
- the store's size per trial after the sweep.

    python benchmarks/sweep.py [--trials 200] [--jobs 2] [--scale 5]

Goal (issue 7): sweep throughput at least 50% of the floor; coordinator memory flat.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

GOAL = 0.5
SWEEP = """
import json, resource, sys, time
import mitosis, bench_exp
from mitosis.run.experiment import chain_of
from mitosis.run.sweep import run_sweep
grid = {{"x": list(range({n}))}}
start = time.perf_counter()
if {keep}:
    trials = mitosis.sweep(bench_exp.trivial, grid, jobs={jobs}, store={store!r})
    statuses = [t.status for t in trials]
else:
    combos = [{{"x": x}} for x in grid["x"]]
    items = run_sweep(chain_of(bench_exp.trivial), combos, store={store!r}, jobs={jobs},
                      keep_records=False)
    statuses = [item.status for item in items]
seconds = time.perf_counter() - start
assert len(statuses) == {n} and set(statuses) == {{"ok"}}
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": seconds, "peak_mib": peak}}))
"""


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--scale", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mitosis-sweep-bench-"))
    (root / "bench_exp.py").write_text("def trivial(x=1):\n    return float(x)\n")
    env = {**os.environ, "PYTHONPATH": str(root)}

    def bare(_: int) -> None:
        code = "import bench_exp; bench_exp.trivial(1)"
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(bare, range(args.trials)))
    floor_s = time.perf_counter() - start

    def sweep(n: int, store: Path, keep: bool = True) -> dict[str, float]:
        code = SWEEP.format(n=n, jobs=args.jobs, store=str(store), keep=keep)
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, env=env, cwd=root, capture_output=True
        )
        result: dict[str, float] = json.loads(out.stdout.decode().strip().splitlines()[-1])
        return result

    small = sweep(args.trials, root / "store-small")
    large_n = args.trials * args.scale
    large = sweep(large_n, root / "store-large")
    lean_small = sweep(args.trials, root / "store-lean-small", keep=False)
    lean_large = sweep(large_n, root / "store-lean-large", keep=False)
    rows = [
        (f"floor: {args.trials} x python -c, {args.jobs} at once", args.trials / floor_s, ""),
        (
            f"mitosis.sweep of {args.trials} trials, jobs={args.jobs}",
            args.trials / small["seconds"],
            f"{small['peak_mib']:.0f} MiB",
        ),
        (
            f"mitosis.sweep of {large_n} trials, jobs={args.jobs}",
            large_n / large["seconds"],
            f"{large['peak_mib']:.0f} MiB",
        ),
        (
            f"as mitosis run: {args.trials} trials",
            args.trials / lean_small["seconds"],
            f"{lean_small['peak_mib']:.0f} MiB",
        ),
        (
            f"as mitosis run: {large_n} trials",
            large_n / lean_large["seconds"],
            f"{lean_large['peak_mib']:.0f} MiB",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  trials/s  coordinator peak")
    for name, rate, peak in rows:
        print(f"{name:<{width}}  {rate:8.1f}  {peak}")
    ratio = rows[1][1] / rows[0][1]
    growth = large["peak_mib"] / small["peak_mib"]
    lean_growth = lean_large["peak_mib"] / lean_small["peak_mib"]
    per_trial = size(root / "store-large") / large_n / 1024
    print(f"{'throughput: mitosis / floor':<{width}}  {ratio:8.2f}  (goal >= {GOAL})")
    labels = ("peak memory large / small, sweep()", "peak memory large / small, as run")
    print(f"{labels[0]:<{width}}  {growth:8.2f}  (returns every record)")
    print(f"{labels[1]:<{width}}  {lean_growth:8.2f}  (the store's packs are mapped in)")
    print(f"{'store size per trial (loose objects)':<{width}}  {per_trial:6.1f} KiB")
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
