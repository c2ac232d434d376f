"""What reusing an identical first step saves.

A two-step trial whose first step sleeps 2 s, run twice with ``reuse=True`` in the same store:
the second run loads the first step's stored result instead of sleeping again.

    python benchmarks/reuse.py [--sleep SECONDS]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULE = """
import time

def slow_data(seconds: float = 2.0):
    time.sleep(seconds)
    return {"main": seconds, "data": list(range(1000))}

def fit(data, scale: int = 1):
    return {"main": float(sum(data) * scale)}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleep", type=float, default=2.0)
    seconds = parser.parse_args().sleep
    root = Path(tempfile.mkdtemp(prefix="mitosis-reuse-bench-"))
    (root / "reuse_exp.py").write_text(MODULE)
    env = {
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@example.org",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@example.org",
    }
    os.environ.update(env)
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=root, check=True)
    os.chdir(root)
    sys.path.insert(0, str(root))

    import reuse_exp

    import mitosis

    steps = [reuse_exp.slow_data, reuse_exp.fit]
    params = {"slow_data.seconds": seconds}
    times = []
    for scale in (1, 2):
        start = time.perf_counter()
        trial = mitosis.run(steps, {**params, "fit.scale": scale}, reuse=True)
        times.append(time.perf_counter() - start)
        print(
            f"run {scale}: {times[-1]:6.3f} s  steps: "
            + ", ".join(f"{s.name} {'reused' if s.reused_from else 'ran'}" for s in trial.steps)
        )
    saved = times[0] - times[1]
    print(f"{'first run (computes both steps)':<34} {times[0]:6.3f} s")
    print(f"{'second run (reuses the first step)':<34} {times[1]:6.3f} s")
    print(
        f"{'saving':<34} {saved:6.3f} s ({saved / times[0]:.0%}); ratio {times[1] / times[0]:.2f}"
    )
    return 0 if saved > 0.9 * seconds else 1


if __name__ == "__main__":
    sys.exit(main())
