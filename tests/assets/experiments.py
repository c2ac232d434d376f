"""Experiments used by the test suite (copied into each test's own investigation repository)."""

import os
import signal
import time

lookup = {
    "noise": {"low": 0.01, "high": 0.5},
    "shape": {"pair": (1, 2), "set": {3, 1, 2}},
}


def sine(amplitude: float, noise: float, gpu: int = 0) -> dict:
    print(f"sine running amplitude={amplitude} noise={noise}", flush=True)
    return {"main": amplitude * noise, "metrics": {"err": noise / 2, "n": 3}, "data": [amplitude]}


def echo(value=None, other=None):
    """Returns its parameters, to check what reached the trial process."""
    return {"main": 1.0, "data": {"value": value, "other": other}}


def bare_number(x: float = 2.0):
    return x * 3


def wrong_shape():
    return "not a result"


def no_main():
    return {"metrics": {"a": 1}}


def fails(x: int = 1):
    print("about to fail", flush=True)
    raise ValueError(f"bad x {x}")


def kills_itself():
    print("going down", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def interrupts_itself():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)


def sleeps(seconds: float = 30.0):
    print("sleeping", flush=True)
    time.sleep(seconds)
    return 0.0


def draws(n: int = 2):
    import matplotlib.pyplot as plt

    for i in range(n):
        plt.figure()
        plt.plot([0, 1], [i, i + 1])
        plt.title(f"figure {i}")
    return {"main": float(n)}


def noisy(lines: int = 3):
    import sys

    for i in range(lines):
        print(f"out {i}", flush=True)
        print(f"err {i}", file=sys.stderr, flush=True)
    return 0.0


def shows_env():
    return {"main": 0.0, "data": dict(os.environ)}


# -- steps ---------------------------------------------------------------------------------

data_lookup = {"noise": {"low": 0.01, "high": 0.5}}


def make_data(noise: float, points: int = 4):
    print(f"making data noise={noise}", flush=True)
    return {"main": float(points), "metrics": {"points": points}, "data": [noise] * points}


def fit(data, alpha: float = 1.0):
    return {
        "main": sum(data) * alpha,
        "metrics": {"n": len(data)},
        "data": [x * alpha for x in data],
    }


def scale(data, factor: int = 2):
    return {"main": max(data) * factor}


def no_data(noise: float = 0.1):
    return {"main": noise}


def fit_fails(data, alpha: float = 1.0):
    raise RuntimeError(f"cannot fit {len(data)} points")


class Featurizer:
    """A value whose pickle holds a set (its order changes with the hash seed)."""

    def __init__(self, words):
        self.stop = set(words)


def slow_echo(value=None, seconds: float = 3.0):
    print("started", flush=True)
    time.sleep(seconds)
    return {"main": 1.0}


def real_time_signal():
    os.kill(os.getpid(), signal.SIGRTMIN)
    time.sleep(5)


def not_a_number():
    return {"main": float("nan"), "metrics": {"inf": float("inf")}}


class Unpicklable:
    def __reduce__(self):
        raise TypeError("cannot pickle this")


def unpicklable_result():
    return {"main": 2.5, "data": Unpicklable()}


# -- sweeps --------------------------------------------------------------------------------


def sometimes(x: int = 0):
    """Fails for x = 3 (mod 7)."""
    if x % 7 == 3:
        raise ValueError(f"x={x} is unlucky")
    return {"main": x * 2.0, "metrics": {"pid": os.getpid()}}


def kills_its_runner(x: int = 0):
    """Kills the process that started the trial's process (a process pool's worker)."""
    if x == 1:
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(5)
    return float(x)


def marks_start(value: int = 0, seconds: float = 0.0, folder: str = ""):
    """Leaves a file named ``value`` in ``folder`` when it starts, then sleeps."""
    if folder:
        with open(os.path.join(folder, str(value)), "w"):
            pass
    time.sleep(seconds)
    return float(value)


def returns_figures(titled: bool = True):
    """Returns figures: one made without pyplot, one from pyplot also left open."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    bare = Figure()
    ax = bare.add_subplot()
    ax.plot([0, 1], [1, 0])
    if titled:
        bare.suptitle("loss <by> epoch")
    shown = plt.figure()
    plt.plot([0, 1], [0, 1])
    return {"main": 1.0, "figures": {"loss": bare, "open": shown}, "data": [1]}


def bad_figures():
    return {"main": 1.0, "figures": 3}


HOSTILE = "<script>alert(1)</script>"
hostile_lookup = {"noise": {HOSTILE: 0.3, "low": 0.01}}


def hostile(noise: float = 0.1, note: str = "x"):
    """Hostile strings everywhere the browser shows them: a log line, a metric name, a figure's
    title (and, from the caller, a variant name and a literal)."""
    import matplotlib.pyplot as plt

    print(HOSTILE, flush=True)
    plt.figure()
    plt.plot([0, 1], [0, noise])
    plt.title(HOSTILE)
    return {"main": noise, "metrics": {HOSTILE: 1.0, "&amp;": 2}}


class MkdirOnLoad:
    """Unpickling this makes a folder: shows whether something unpickled it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def leaves_a_trap(path: str = ""):
    return {"main": 1.0, "data": MkdirOnLoad(path)}


class BrokenFigure:
    """Looks like a figure, but cannot be saved."""

    def savefig(self, *args, **kwargs):
        raise RuntimeError("this figure cannot be drawn")


def returns_a_broken_figure():
    return {"main": 1.0, "figures": [BrokenFigure()]}


def fails_with_a_broken_figure():
    import matplotlib.pyplot as plt

    figure = plt.figure()
    figure.savefig = BrokenFigure().savefig
    raise ValueError("the step's own error")


def loaded_modules():
    """Which modules the trial process has loaded when the experiment runs."""
    import sys

    return {"main": len(sys.modules), "data": sorted(sys.modules)}


#: What a terminal would act on: set the window's title, clear the screen, colour, reverse the
#: text's direction, a C1 CSI, DEL, and a carriage return that overwrites the line.
TRAP = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\u202eevil\u2066\x9b31m\x7f\rover"


class Trap:
    """A literal whose repr (its recorded name) holds the trap and a line break."""

    def __repr__(self):
        return f"Trap({TRAP}\nMitosis-Status: ok)"

    def __eq__(self, other):
        return isinstance(other, Trap)

    __hash__ = object.__hash__


def terminal_trap(fail: bool = False, note=None):
    """The trap in a metric's name, in output, and (``fail``) in an error of several lines."""
    print(TRAP, flush=True)
    if fail:
        raise ValueError(f"boom {TRAP}\nsecond line\twith a tab")
    return {"main": 1.0, "metrics": {f"m{TRAP}": 2.0}}


# -- big results ---------------------------------------------------------------------------


def big(mib: float = 6.0, seed: int = 0):
    """An incompressible array of about ``mib`` MiB (float64 noise)."""
    import numpy as np

    values = np.random.default_rng(seed).random(int(mib * (1 << 20)) // 8)
    return {"main": float(values[0]), "data": values}


def big_data(mib: float = 6.0, seed: int = 0):
    """A first step with a big result."""
    import numpy as np

    values = np.random.default_rng(seed).random(int(mib * (1 << 20)) // 8)
    return {"main": float(values.sum()), "data": values}


def total(values, scale: float = 1.0):
    """A second step with a small result."""
    return {"main": float(values.sum()) * scale}


class KillsWhilePickled:
    """Pickling this kills the trial process (half of its result written)."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGKILL)


def killed_while_pickling(mib: float = 3.0):
    return {"main": 1.0, "data": [os.urandom(int(mib * (1 << 20))), KillsWhilePickled()]}
