"""How much a trial costs beyond the fresh interpreter it needs.

Prints the median wall time of a whole trial of a trivial experiment through ``mitosis.run``
against a bare ``python -c`` subprocess calling the same function, measured in the same run, then
what the parts of a trial cost on their own and what ``import mitosis`` costs.

    python benchmarks/trial_overhead.py [--repeat N]

Goal (issue 2): mitosis's own overhead per trial (run median minus bare median) under 50 ms.
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


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21)
    repeat = parser.parse_args().repeat

    root = Path(tempfile.mkdtemp(prefix="mitosis-bench-"))
    (root / "bench_exp.py").write_text("def trivial(x=1):\n    return float(x)\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@example.org",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@example.org",
    }
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=root, check=True, env=env)
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
        ("bare python -c calling the function", bare_ms),
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
    verdict = "within" if overhead < GOAL_MS else "OVER"
    print(f"overhead {overhead:.1f} ms: {verdict} the goal of {GOAL_MS:.0f} ms per trial")
    return 0 if overhead < GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
