"""Fit the amplitude of a noisy sine wave: the example trial of the README.

The experiment is a plain function; its factors are parameters, its results a dict. Running this
file records one trial in the default store (the git repository around the current directory,
else ./trials) and prints how to look at it with git.

    python examples/sine.py [amplitude] [noise variant]
"""

from __future__ import annotations

import math
import random
import sys

import mitosis

lookup = {"noise": {"none": 0.0, "low": 0.1, "high": 1.0}}


def fit_sine(amplitude: float, noise: float, points: int = 200, seed: int = 0) -> dict:
    """Sample ``amplitude * sin(x)`` with Gaussian noise and estimate the amplitude."""
    rng = random.Random(seed)
    xs = [2 * math.pi * i / points for i in range(points)]
    ys = [amplitude * math.sin(x) + rng.gauss(0, noise) for x in xs]
    estimate = sum(y * math.sin(x) for x, y in zip(xs, ys, strict=True)) / sum(
        math.sin(x) ** 2 for x in xs
    )
    error = abs(estimate - amplitude)
    print(f"estimated amplitude {estimate:.4f} (true {amplitude})")

    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(5, 3))
    ax.plot(xs, ys, ".", markersize=3, label="samples")
    ax.plot(xs, [estimate * math.sin(x) for x in xs], label="fit")
    ax.set_title(f"amplitude {amplitude}, noise {noise}")
    ax.legend()
    return {"main": error, "metrics": {"estimate": estimate, "points": points}, "data": ys}


if __name__ == "__main__":
    amplitude = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
    noise = sys.argv[2] if len(sys.argv) > 2 else "low"
    trial = mitosis.run(fit_sine, {"amplitude": amplitude, "noise": noise}, lookup=lookup)
    print(f"trial {trial.id}: {trial.status}, main={trial.main:.4g}, metrics={trial.metrics}")
    print(f"recorded in {trial.location} on branch mitosis/{trial.experiment}; see it with")
    print(f"  git -C {trial.location} log mitosis/{trial.experiment}")
