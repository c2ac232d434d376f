"""A three-step experiment given as (name, function, lookup) tuples: load, smooth, score.

python examples/three_steps.py
"""

from __future__ import annotations

import math

import mitosis


def load(length: int = 50) -> dict:
    signal = [math.sin(i / 5) + (0.3 if i % 2 else -0.3) for i in range(length)]
    return {"main": float(length), "data": signal}


def smooth(signal: list[float], window: int = 3) -> dict:
    half = window // 2
    smoothed = [
        sum(signal[max(0, i - half) : i + half + 1]) / len(signal[max(0, i - half) : i + half + 1])
        for i in range(len(signal))
    ]
    return {"main": float(window), "data": smoothed}


def score(signal: list[float]) -> dict:
    error = max(abs(s - math.sin(i / 5)) for i, s in enumerate(signal))
    return {"main": error, "metrics": {"points": len(signal)}}


steps = [
    ("load", load, {}),
    ("smooth", smooth, {"window": {"narrow": 3, "wide": 9}}),
    ("score", score, {}),
]

if __name__ == "__main__":
    for window in ("narrow", "wide"):
        trial = mitosis.run(steps, {"load.length": 60, "smooth.window": window})
        print(f"trial {trial.id}: window={window} max error={trial.main:.3f}")
