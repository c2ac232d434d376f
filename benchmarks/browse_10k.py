"""How fast `mitosis browse` builds the site of a store of many trials.

Builds a store of N trials (default 10,000) in one commit: each trial has a realistic
trial.json, an output.log of its own, the environment.json and requirements.txt that trials of
one machine share, and one trial in 20 has a figure. Then, each in a fresh process, times:

- baseline: `mitosis log` of the same store (the plain listing: every trial.json, index warm);
- `mitosis browse` into an empty folder (cold: every trial's page, data and figures, each
  experiment's table and plots);
- `mitosis browse` again after 10 new trials were recorded (incremental);
- `mitosis browse` again with nothing new.

    python benchmarks/browse_10k.py [--trials N]

Goal (issue 6): a store of 10,000 trials builds in under a minute.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import synthetic

GOAL_S = 60.0


def figure_png() -> bytes:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 3))
    axes = figure.add_subplot()
    axes.plot([0, 1, 2], [0, 1, 4])
    axes.set_title("loss")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def environment() -> bytes:
    variables = {f"VAR_{i}": f"value {i}" for i in range(40)}
    record = {
        "python": "3.11.7",
        "implementation": "CPython",
        "executable": "/usr/bin/python3",
        "platform": "Linux-6.1-x86_64",
        "machine": "x86_64",
        "host": "bench",
        "user": "bench",
        "cwd": "/lab",
        "variables": variables,
    }
    return json.dumps(record, indent=2).encode()


def requirements() -> bytes:
    return "".join(f"package-{i}=={i}.0.{i % 7}\n" for i in range(120)).encode()


def trial_files(i: int, png: bytes, shared: dict[str, bytes]) -> dict[str, bytes]:
    trial_id = secrets.token_hex(6)
    figure = i % 20 == 0
    record = synthetic.record(
        trial_id,
        i,
        status="ok" if i % 50 else "failed",
        main=0.5 + (i % 7) * 0.1 if i % 50 else None,
        metrics={"err": 0.25 + (i % 3) * 0.01, "n": i % 11},
        params={
            "amplitude": {
                "variant": str(i % 7),
                "value": i % 7,
                "source": "literal",
                "type": "int",
                "fingerprint": "sha256:x",
                "dill": None,
            },
            "noise": {
                "variant": ("low", "high")[i % 2],
                "value": (0.01, 0.5)[i % 2],
                "source": "variant",
                "type": "float",
                "fingerprint": "sha256:y",
                "dill": None,
            },
        },
        error=None if i % 50 else "Traceback ...\nValueError: bench",
        files=[*synthetic.RECORD["files"], *(["figures/sine-0.png"] if figure else [])],
        captions={"figures/sine-0.png": "loss"} if figure else {},
    )
    base = f"trials/{trial_id[:2]}/{trial_id}"
    files = {
        f"{base}/trial.json": json.dumps(record, indent=2).encode(),
        f"{base}/output.log": "".join(f"step {n} of trial {i}\n" for n in range(20)).encode(),
        f"{base}/environment.json": shared["environment"],
        f"{base}/requirements.txt": shared["requirements"],
    }
    if figure:
        files[f"{base}/figures/sine-0.png"] = png
    return files


def build(path: Path, count: int) -> None:
    from mitosis.store.repo import Store

    png = figure_png()
    shared = {"environment": environment(), "requirements": requirements()}
    files: dict[str, bytes] = {}
    for i in range(count):
        files.update(trial_files(i, png, shared))
    with Store.open(path, create=True) as store:
        store.commit("sine", files, "bench: many trials\n")


def add(path: Path, start: int, count: int) -> None:
    """Record ``count`` more trials, one commit each, as trials arrive."""
    from mitosis.store.repo import Store

    png = figure_png()
    shared = {"environment": environment(), "requirements": requirements()}
    with Store.open(path) as store:
        for i in range(start, start + count):
            store.commit("sine", trial_files(i, png, shared), "bench: one more trial\n")


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mitosis-browse-bench-"))
    path, site = work / "store.git", work / "site"
    start = time.perf_counter()
    build(path, args.trials)
    print(f"built a store of {args.trials} trials in {time.perf_counter() - start:.1f} s")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # users have .pyc
    env["MITOSIS_STORE"] = str(path)
    mitosis = [sys.executable, "-m", "mitosis"]
    timed([*mitosis, "log", "sine"], env)  # fills the listing index, for both sides alike
    rows = [("baseline: mitosis log sine (fresh process)", timed([*mitosis, "log", "sine"], env))]
    cold = timed([*mitosis, "browse", "--out", str(site)], env)  # the same command, cold
    rows.append(("mitosis browse, cold (empty folder)", cold))
    add(path, args.trials, 10)
    browse = [*mitosis, "browse", "--out", str(site)]
    rows.append(("mitosis browse after 10 new trials", timed(browse, env)))
    rows.append(("mitosis browse, nothing new", timed(browse, env)))
    files = [p for p in site.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  seconds  x baseline")
    for name, value in rows:
        print(f"{name:<{width}}  {value:7.2f}  {value / rows[0][1]:10.1f}")
    print(f"site: {len(files)} files, {size / 1024 / 1024:.1f} MiB")
    verdict = "within" if cold < GOAL_S else "OVER"
    print(f"cold build of {args.trials} trials: {cold:.1f} s, {verdict} the goal of {GOAL_S:.0f} s")
    return 0 if cold < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
