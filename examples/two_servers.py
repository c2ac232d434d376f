"""Two lab servers share trials through a git "hub", meet a variant conflict and settle it.

Everything happens in a temporary folder (or the folder given): a bare repository ``hub.git``
stands for the lab's git server, and two clones of it, ``server_a`` and ``server_b``, for two
machines. Each records trials of the same experiment, pushes, pulls, and both end with the same
branch tip as the hub. Then both lock the variant name ``medium`` to different values while
apart; the pull that brings them together stops and reports it, and server B settles it by
renaming its variant.

    python examples/two_servers.py [FOLDER]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import mitosis

LOOKUP_A = {"noise": {"low": 0.1, "high": 1.0, "medium": 0.3}}
LOOKUP_B = {"noise": {"low": 0.1, "high": 1.0, "medium": 0.5}}  # "medium" means another value


def sine(amplitude: float, noise: float) -> dict:
    """A stand-in experiment: the error of an estimate that grows with the noise."""
    return {"main": amplitude * noise, "metrics": {"snr": amplitude / max(noise, 1e-9)}}


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def record(server: Path, amplitude: float, noise: str, lookup: dict) -> mitosis.Trial:
    trial = mitosis.run(sine, {"amplitude": amplitude, "noise": noise}, lookup=lookup, store=server)
    print(f"  {server.name}: trial {trial.id} amplitude={amplitude} noise={noise} ({trial.status})")
    return trial


def tips(*repos: Path) -> set[str]:
    return {git("rev-parse", "refs/heads/mitosis/sine", cwd=repo) for repo in repos}


def main(root: Path) -> None:
    hub, a, b = root / "hub.git", root / "server_a", root / "server_b"
    git("init", "-q", "--bare", str(hub), cwd=root)
    for server in (a, b):
        git("clone", "-q", str(hub), str(server), cwd=root)
    print(f"hub {hub}, clones {a.name} and {b.name}")

    print("1. each server records trials and shares them")
    record(a, 1, "low", LOOKUP_A)
    record(a, 2, "low", LOOKUP_A)
    mitosis.push(store=a)
    mitosis.pull(store=b)
    record(b, 3, "high", LOOKUP_B)
    mitosis.push(store=b)
    report = mitosis.pull(store=a)
    print(f"  {a.name} pulled: {report.experiments}")
    (tip,) = tips(hub, a, b)
    print(f"  identical tips: {tip} ({len(mitosis.trials('sine', store=a))} trials)")

    print("2. apart, both lock the name 'medium' to different values")
    record(a, 4, "medium", LOOKUP_A)
    record(b, 4, "medium", LOOKUP_B)
    mitosis.push(store=a)
    try:
        mitosis.pull(store=b)
    except mitosis.SyncConflict as conflict:
        for c in conflict.conflicts:
            print(f"  conflict: noise={c.variant} is {c.local} on {b.name}, {c.remote} on the hub")

    print("3. server B renames its value, then pulls and pushes")
    mitosis.rename_variant("sine", "noise", "medium", "medium_b", store=b)
    mitosis.pull(store=b)
    mitosis.push(store=b)
    mitosis.pull(store=a)
    for v in mitosis.variants("sine", "noise", store=a):
        print(f"  noise={v.name}: {v.value} ({v.trials} trial(s))")
    try:
        record(b, 5, "medium", LOOKUP_B)  # the old name with the old value is refused
    except mitosis.VariantRenamed as refused:
        print(f"  refused: {refused}")
    (tip,) = tips(hub, a, b)
    print(f"identical tips: {tip} ({len(mitosis.trials('sine', store=a))} trials)")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        folder = Path(sys.argv[1]).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        main(folder)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
