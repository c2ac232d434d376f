"""How fast `mitosis log` lists a store of many trials.

Builds a store of N trials (default 10,000; one commit holding them all, each with a realistic
trial.json), then prints the median time of:

- baseline: a plain loop that reads every trial.json blob from the branch's tree with dulwich
  and parses it with json (the least any listing must do);
- ``mitosis.trials()`` in a fresh process (cold) and again in the same process (warm);
- the whole ``mitosis log`` command in a fresh process (cold, and warm after a first run).

    python benchmarks/log_10k.py [--trials N] [--repeat R]

Goals: `mitosis log` over 10,000 trials well under a second (issue 3); listing 10,000 trials
under 0.5 s warm (the cache filled) and under 3 s cold (issue 7).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

GOAL_S = 1.0
WARM_GOAL_S = 0.5
COLD_GOAL_S = 3.0
LOG = "from mitosis.cli import main; main(['log', 'sine'])"
TRIALS = (
    "import time, mitosis; start = time.perf_counter(); mitosis.trials('sine'); "
    "print(time.perf_counter() - start)"
)


def median_s(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(path: Path, count: int) -> None:
    from mitosis.store.repo import Store

    template = {
        "format": 1,
        "experiment": "sine",
        "status": "ok",
        "main": 0.5,
        "metrics": {"err": 0.25, "n": 3},
        "untracked": {},
        "host": "bench",
        "user": "bench",
        "function": "bench:sine",
        "error": None,
        "mitosis": "0.1.0",
        "duration": 0.05,
        "files": ["environment.json", "output.log", "requirements.txt", "results/sine.dill"],
        "code": {
            "repository": "/lab",
            "commit": "ab" * 20,
            "branch": "main",
            "remotes": {},
            "dirty": False,
        },
    }
    files = {}
    for i in range(count):
        trial_id = secrets.token_hex(6)
        record = dict(
            template,
            id=trial_id,
            started=f"2026-01-01T00:00:{i:06d}+00:00",
            ended=f"2026-01-01T00:00:{i:06d}+00:00",
        )
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
        files[f"trials/{trial_id[:2]}/{trial_id}/trial.json"] = json.dumps(record).encode()
    with Store.open(path, create=True) as store:
        store.commit("sine", files, "bench: many trials\n")


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="mitosis-log-bench-")) / "store.git"
    start = time.perf_counter()
    build(path, args.trials)
    print(f"built a store of {args.trials} trials in {time.perf_counter() - start:.1f} s")
    python = sys.executable
    env = {**os.environ, "MITOSIS_STORE": str(path)}

    def fresh(code: str) -> Callable[[], object]:
        return lambda: subprocess.run(
            [python, "-c", code], check=True, env=env, stdout=subprocess.DEVNULL
        )

    def inner(repeat: int) -> float:
        times = []
        for _ in range(repeat):
            out = subprocess.run(
                [python, "-c", TRIALS], check=True, env=env, capture_output=True, text=True
            )
            times.append(float(out.stdout.strip()))
        return statistics.median(times)

    import mitosis

    rows = [
        (
            "baseline: dulwich loop + json.loads, in process",
            median_s(lambda: baseline(path), args.repeat),
        ),
        (
            "mitosis.trials(), in process, first call",
            median_s(lambda: mitosis.trials("sine", store=path), 1),
        ),
        (
            "mitosis.trials(), in process, again",
            median_s(lambda: mitosis.trials("sine", store=path), args.repeat),
        ),
        (
            "python -c 'import mitosis' (fresh process)",
            median_s(fresh("import mitosis"), args.repeat),
        ),
        ("mitosis log (fresh process, first: fills the cache)", median_s(fresh(LOG), 1)),
        ("mitosis log (fresh process)", median_s(fresh(LOG), args.repeat)),
        ("mitosis.trials() alone, fresh process, cache on disk", inner(args.repeat)),
    ]
    cold, warm = rows[1][1], min(rows[2][1], rows[-1][1])
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  median s")
    for name, value in rows:
        print(f"{name:<{width}}  {value:8.3f}")
    log_s = rows[-2][1]
    print(f"{'ratio mitosis log / baseline':<{width}}  {log_s / rows[0][1]:8.2f}")
    met = True
    for what, value, goal in (
        ("mitosis log", log_s, GOAL_S),
        ("listing, warm (best of in process and fresh)", warm, WARM_GOAL_S),
        ("listing, cold", cold, COLD_GOAL_S),
    ):
        verdict = "within" if value < goal else "OVER"
        met = met and value < goal
        print(f"{what} over {args.trials} trials: {value:.3f} s, {verdict} the goal of {goal} s")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
