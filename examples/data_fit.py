"""A two-step experiment: make a noisy data set, then fit a line to it.

Each step is a plain function with its own lookup dictionary; the ``"data"`` that the first step
returns is handed to the second step as its first argument. Running this file records one trial
of the chain ``make_data+fit``, then runs it again with ``reuse=True``: the second trial loads the
data set the first one made instead of making it again.

    python examples/data_fit.py
"""

from __future__ import annotations

import random
import time

import mitosis


@mitosis.experiment(lookup={"noise": {"low": 0.1, "high": 1.0}})
def make_data(noise: float, points: int = 100, seed: int = 0, delay: float = 0.5) -> dict:
    """A line y = 2x + 1 sampled with Gaussian noise (``delay`` stands for slow loading)."""
    time.sleep(delay)
    rng = random.Random(seed)
    xs = [i / points for i in range(points)]
    ys = [2 * x + 1 + rng.gauss(0, noise) for x in xs]
    return {"main": float(points), "data": (xs, ys)}


@mitosis.experiment(lookup={"method": {"ols": "least squares", "median": "median slopes"}})
def fit(data: tuple[list[float], list[float]], method: str = "least squares") -> dict:
    """Fit the slope of the line and report its error."""
    xs, ys = data
    n = len(xs)
    if method == "least squares":
        mx, my = sum(xs) / n, sum(ys) / n
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )
    else:
        pairs = [
            (ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(0, n, 7) for j in range(i + 1, n, 7)
        ]
        slope = sorted(pairs)[len(pairs) // 2]
    return {"main": abs(slope - 2.0), "metrics": {"slope": slope}}


if __name__ == "__main__":
    params = {"make_data.noise": "low", "fit.method": "ols"}
    first = mitosis.run([make_data, fit], params)
    again = mitosis.run([make_data, fit], params, reuse=True)
    for trial in (first, again):
        steps = ", ".join(
            f"{s.name}: reused from {s.reused_from}"
            if s.reused_from
            else f"{s.name}: {s.duration:.2f} s"
            for s in trial.steps
        )
        print(f"trial {trial.id}: main={trial.main:.4f} ({steps})")
