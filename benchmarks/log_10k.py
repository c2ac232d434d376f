"""How fast trials are listed from a store of many trials: the listing index (issue 18).

Builds a store of N trials (default 10,000; one commit holding them all, each with a realistic
trial.json; packed, as the background packer leaves it), then prints the median time of each
measure beside its baselines, measured in the same run:

- baselines: ``python -c pass`` (a fresh interpreter, ``sys.executable``), and a plain loop that
  reads every trial.json blob from the branch's tree with dulwich and parses it with json (the
  least any listing that reads the branch must do), measured in turn with the cold listing;
- ``mitosis.trials()`` cold (in process, no index file, nothing in memory: the index is built),
  warm in the same process, and in a fresh process with the index on disk (the call alone, and
  the whole process);
- the installed ``mitosis log`` command in a fresh process, with the index on disk and without;
- ``mitosis.variants()``, which counts each variant's trials from the index (it built every
  ``Trial`` before).

    python benchmarks/log_10k.py [--trials N] [--repeat R] [--chains]

(``--chains``: each record as a two-step chain with figures records it, steps and captions.)

Goals (issue 18): 10,000 trials listed warm in under 0.1 s in process; ``mitosis log`` over
10,000 trials in a fresh process under 0.5 s; cold no slower than the plain dulwich loop (which
only reads, while the cold listing also checks every record, keeps what rows need, and writes
the index file).
Subprocesses run without PYTHONDONTWRITEBYTECODE (users have .pyc files).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import synthetic

WARM_GOAL_S = 0.1
LOG_GOAL_S = 0.5
TRIALS = (
    "import time, mitosis; start = time.perf_counter(); mitosis.trials('sine'); "
    "print(time.perf_counter() - start)"
)


def median_s(fn: Callable[[], object], repeat: int, before: Callable[[], object] = int) -> float:
    """The median time of ``fn`` over ``repeat`` runs, ``before`` called (untimed) before each."""
    times = []
    for _ in range(repeat):
        before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


#: What ``--chains`` adds to each record: what a two-step chain with figures records (steps,
#: their metrics, captions, more files), so that the checks have what a real record holds.
CHAIN = {
    "function": "lab.steps:make_data, lab.steps:fit",
    "metrics": {"fit.err": 0.1, "fit.nnz": 3, "make_data.n": 100},
    "files": [
        "environment.json",
        "output.log",
        "requirements.txt",
        "results/make_data.dill",
        "results/fit.dill",
        "figures/fit-0.png",
        "figures/fit-1.png",
    ],
    "captions": {"figures/fit-0.png": "the fit", "figures/fit-1.png": "residuals"},
    "steps": [
        {
            "name": step,
            "function": f"lab.steps:{step}",
            "status": "ok",
            "main": 0.1,
            "metrics": {"err": 0.1, "nnz": 3},
            "duration": 0.02,
            "reused_from": None,
            "code": "sha256:" + "ef" * 32,
        }
        for step in ("make_data", "fit")
    ],
}


def build(path: Path, count: int, chains: bool = False) -> None:
    from mitosis.store.repo import Store

    files = {}
    for i in range(count):
        trial_id = secrets.token_hex(6)
        record = synthetic.record(trial_id, i)
        record["params"] = {
            "amplitude": {
                "variant": str(i % 7),
                "value": i % 7,
                "source": "literal",
                "type": "int",
                "fingerprint": "sha256:x",
                "dill": None,
            },
            "noise": {
                "variant": "low",
                "value": 0.01,
                "source": "variant",
                "type": "float",
                "fingerprint": "sha256:y",
                "dill": None,
            },
        }
        if chains:
            record.update(CHAIN)
        files[f"trials/{trial_id[:2]}/{trial_id}/trial.json"] = json.dumps(record).encode()
    with Store.open(path, create=True) as store:
        store.commit("sine", files, "bench: many trials\n")
    # so many loose objects start a background packer: measure the packed store it leaves,
    # as a store that grew over months is, rather than objects moving under the measures
    lock = path / "mitosis" / "gc.lock"
    deadline = time.monotonic() + 600
    while lock.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def baseline(path: Path) -> int:
    from dulwich.repo import Repo

    with Repo(str(path)) as repo:
        store = repo.object_store
        tree = store[store[repo.refs[b"refs/heads/mitosis/sine"]].tree]
        count = 0
        for shard in store[tree[b"trials"][1]].iteritems():
            for trial in store[shard.sha].iteritems():
                blob = store[store[trial.sha][b"trial.json"][1]]
                json.loads(blob.as_raw_string())
                count += 1
    return count


def forget_index(path: Path) -> None:
    """No index, on disk or in this process's memory: the next listing is cold."""
    from mitosis.store import index

    index._MEMORY.clear()
    shutil.rmtree(path / "mitosis" / "index", ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--chains", action="store_true", help="records of two-step chains with figures"
    )
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="mitosis-log-bench-")) / "store.git"
    start = time.perf_counter()
    build(path, args.trials, args.chains)
    kind = "two-step chains' records" if args.chains else "one-step records"
    print(f"built a store of {args.trials} trials ({kind}) in {time.perf_counter() - start:.1f} s")
    python = sys.executable
    command = shutil.which("mitosis", path=str(Path(python).parent))
    assert command is not None, "install mitosis (pip install -e .) to time its command"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["MITOSIS_STORE"] = str(path)

    def fresh(*argv: str) -> Callable[[], object]:
        return lambda: subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)

    def inner(repeat: int) -> float:
        times = []
        for _ in range(repeat):
            out = subprocess.run(
                [python, "-c", TRIALS], check=True, env=env, capture_output=True, text=True
            )
            times.append(float(out.stdout.strip()))
        return statistics.median(times)

    import mitosis

    def listing() -> None:
        assert len(mitosis.trials("sine", store=path)) == args.trials

    def touched() -> None:
        assert sum(1 for t in mitosis.trials("sine", store=path) if t.main) == args.trials

    repeat = args.repeat
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    pass_s = median_s(fresh(python, "-c", "pass"), repeat)
    loops, colds = [], []
    for _ in range(repeat):  # in turn, so that a change of the machine's load touches both
        loops.append(median_s(lambda: baseline(path), 1))
        colds.append(median_s(listing, 1, before=lambda: forget_index(path)))
    loop_s, cold_s = statistics.median(loops), statistics.median(colds)
    log_cold_s = median_s(fresh(command, "log", "sine"), repeat, lambda: forget_index(path))
    listing()  # the index on disk and in memory
    warm_s = median_s(listing, repeat)
    touched_s = median_s(touched, repeat)
    variants_s = median_s(lambda: mitosis.variants("sine", store=path), repeat)
    import_s = median_s(fresh(python, "-c", "import mitosis"), repeat)
    inner_s = inner(repeat)
    process_s = median_s(fresh(python, "-c", "import mitosis; mitosis.trials('sine')"), repeat)
    log_s = median_s(fresh(command, "log", "sine"), repeat)
    by_pass, by_loop = (pass_s, "python -c pass"), (loop_s, "the dulwich loop")
    rows: list[tuple[str, float, tuple[float, str] | None]] = [
        ("baseline: python -c pass (fresh process)", pass_s, None),
        ("baseline: dulwich loop + json.loads, in process", loop_s, None),
        ("mitosis.trials(), cold (no index: builds it)", cold_s, by_loop),
        ("mitosis.trials(), warm, in process", warm_s, by_loop),
        ("  ... and reading .main of every trial (builds them)", touched_s, by_loop),
        ("mitosis.variants(), index in memory", variants_s, by_loop),
        ("python -c 'import mitosis' (fresh process)", import_s, by_pass),
        ("mitosis.trials() call, fresh process, index on disk", inner_s, by_loop),
        ("import mitosis + mitosis.trials(), fresh process", process_s, by_pass),
        ("mitosis log (installed command), index on disk", log_s, by_pass),
        ("mitosis log (installed command), no index", log_cold_s, by_loop),
    ]
    width = max(len(name) for name, _, _ in rows)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (at the start: {load})")
    print(f"{'measure (median of ' + str(repeat) + ')':<{width}}  seconds  ratio")
    for name, value, base in rows:
        ratio = "" if base is None else f"{value / base[0]:7.2f} x {base[1]}"
        print(f"{name:<{width}}  {value:8.4f}  {ratio}")
    met = True
    for what, value, goal in (
        ("listing warm in process", warm_s, WARM_GOAL_S),
        ("mitosis log in a fresh process", log_s, LOG_GOAL_S),
        ("listing cold (goal: the dulwich loop of this run)", cold_s, loop_s),
    ):
        verdict = "within" if value < goal else "OVER"
        met = met and value < goal
        print(f"{what}, {args.trials} trials: {value:.4f} s, {verdict} the goal of {goal:.3f} s")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
