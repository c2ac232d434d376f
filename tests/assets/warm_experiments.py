"""Experiments of the warm-start tests (copied into each test's own investigation repository)."""

import os
import random
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

NUMPY_RANDOM = np.random  # numpy.random imported with the module, left unseeded
VERSION = 1
STATE = {"calls": 0}


def meddles(x: int = 0) -> dict:
    """Reports what it found, then leaves a mark on every global it can reach."""
    found = {
        "calls": STATE["calls"],
        "version": VERSION,
        "figures": plt.get_fignums(),
        "random": random.random(),
        "numpy": float(np.random.random()),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "argv": sys.argv[1:],
    }
    STATE["calls"] += 1
    random.seed(7)
    np.random.seed(7)
    plt.figure()
    plt.plot([0, 1], [x, x])
    plt.title(f"figure {x}")
    return {"main": float(x), "data": found}


def writes(x: int = 0) -> dict:
    """Prints on both streams, draws, and returns metrics, data and extra keys."""
    print(f"out {x}", flush=True)
    print(f"err {x}", file=sys.stderr, flush=True)
    plt.figure()
    plt.plot([0, 1], [0, x])
    plt.title("drawn")
    return {"main": x * 2.0, "metrics": {"half": x / 2}, "data": [x] * 3, "note": "kept"}


def bumps_version(x: int = 0, path: str = "") -> dict:
    """The trial of x == 1 rewrites this module's file with VERSION = 22."""
    if x == 1:
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("VERSION = 1\n", "VERSION = 22\n"))
    return {"main": float(VERSION), "data": os.getppid()}


def waits(x: int = 0, folder: str = "", seconds: float = 60.0) -> float:
    """Leaves ``<folder>/<x>`` holding its pid and its parent's pid, then sleeps."""
    with open(os.path.join(folder, f"{x}.tmp"), "w") as f:
        f.write(f"{os.getpid()} {os.getppid()}")
    os.replace(os.path.join(folder, f"{x}.tmp"), os.path.join(folder, str(x)))
    time.sleep(seconds)
    return float(x)


def streams(folder: str = "") -> float:
    """Prints, then waits until the caller, having seen the line, answers with a file."""
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(folder, "seen")):
        if time.monotonic() > deadline:
            raise TimeoutError("the line never reached the caller while the trial ran")
        time.sleep(0.01)
    return 1.0


def parent_command(x: int = 0) -> dict:
    """The command line of the process that started this one (Linux)."""
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
        return {"main": float(x), "data": f.read().split(b"\0")}


_NOTES: list = []  # files the trials leave open, as a module's global


def leaves_open(x: int = 0, folder: str = "") -> float:
    """Writes a line to a file it never closes (kept alive by a module global)."""
    note = open(os.path.join(folder, f"note-{x}.txt"), "w")  # noqa: SIM115  # left open
    note.write(f"trial {x}\n")
    _NOTES.append(note)
    return float(x)
