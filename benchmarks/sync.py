"""Sharing and housekeeping at scale: push, pull and packing against the git CLI.

Builds a store of N trials (one commit each, with realistic files), then prints, measured in
the same run:

- ``mitosis.push`` to an empty bare repository against ``git push`` of the same branch (a push
  packs a store's many loose objects first, so git pushes the packed store after it);
- ``mitosis.pull`` into an empty store against ``git fetch`` of the same branch;
- the store's size per trial: loose, after ``mitosis.gc``, and after ``git gc`` of a copy, with
  the peak memory (resident set) of each packer, run in a process of its own.

    python benchmarks/sync.py [--trials N] [--background]

With ``--background`` the store is built as a lab would build it, its writers starting the
background packer every few hundred trials; "store, as built" is then what that leaves.

Goal (issue 5): after packing, within 1.5x of git gc's size, without the git CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 1.5


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(path: Path, count: int, background: bool = False) -> None:
    from mitosis.store import repo as _store
    from mitosis.store.repo import Store

    if not background:
        _store.AUTO_PACK_OBJECTS = 10**12  # measure the loose store, then packing it

    env = json.dumps({"python": "3.11.7", "variables": dict(sorted(os.environ.items()))}, indent=2)
    requirements = "".join(f"package-{i}=={i % 7}.{i % 13}.{i % 5}\n" for i in range(150))
    with Store.open(path, create=True) as store:
        for i in range(count):
            trial_id = secrets.token_hex(6)
            folder = f"trials/{trial_id[:2]}/{trial_id}"
            record = {
                "id": trial_id,
                "experiment": "sine",
                "status": "ok",
                "main": i / 1000,
                "metrics": {"err": i / 7},
                "started": f"2026-01-01T00:00:{i:06d}+00:00",
                "params": {
                    "noise": {
                        "variant": "low",
                        "value": 0.01,
                        "source": "variant",
                        "type": "float",
                        "fingerprint": "sha256:" + "ab" * 32,
                    }
                },
            }
            files = {
                f"{folder}/trial.json": json.dumps(record, indent=2).encode(),
                f"{folder}/environment.json": env.replace("3.11.7", f"3.11.7 {i}").encode(),
                f"{folder}/requirements.txt": requirements.encode(),
                f"{folder}/output.log": f"trial {i} ran\n".encode(),
                f"{folder}/results/sine.dill": os.urandom(48),
            }
            store.commit("sine", files, f"sine: trial {i}\n")


# Runs a command, then prints its children's peak resident set in KiB (Linux: ru_maxrss) and
# the processor time they took (user and system).
_USAGE = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(u.ru_maxrss, u.ru_utime + u.ru_stime)"
)


def usage(*command: str) -> tuple[int, float]:
    """Bytes of the peak resident set of ``command``, run in a process of its own, and the
    processor seconds it took (the machine's other work does not count, unlike wall time)."""
    out = subprocess.run(
        [sys.executable, "-c", _USAGE, *command], check=True, capture_output=True, text=True
    )
    peak, seconds = out.stdout.split()[-2:]
    return int(peak) * 1024, float(seconds)


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--background", action="store_true", help="let the writers pack")
    args = parser.parse_args()
    count = args.trials
    root = Path(tempfile.mkdtemp(prefix="mitosis-sync-bench-"))
    os.environ.update(
        {
            "GIT_AUTHOR_NAME": "b",
            "GIT_AUTHOR_EMAIL": "b@example.org",
            "GIT_COMMITTER_NAME": "b",
            "GIT_COMMITTER_EMAIL": "b@example.org",
        }
    )
    import mitosis

    source = root / "source.git"
    print(f"building {count} trials ...", file=sys.stderr)
    build(source, count, args.background)
    while (source / "mitosis" / "gc.lock").exists():  # a background packer at work
        time.sleep(0.5)
    # Packing is measured on copies of the store as built: a push packs many loose objects first.
    loose = size(source)
    unpacked, copy = root / "unpacked.git", root / "copy.git"
    shutil.copytree(source, unpacked)
    shutil.copytree(source, copy)
    hubs = {name: root / f"{name}.git" for name in ("hub-mitosis", "hub-git")}
    for hub in hubs.values():
        git("init", "-q", "--bare", str(hub), cwd=root)
    ref = "refs/heads/mitosis/sine:refs/heads/mitosis/sine"
    rows = [
        (
            "push: mitosis",
            timed(lambda: mitosis.push(str(hubs["hub-mitosis"]), store=source)),
            size(hubs["hub-mitosis"]),
        ),
        (
            "push: git CLI",
            timed(lambda: git("push", "-q", str(hubs["hub-git"]), ref, cwd=source)),
            size(hubs["hub-git"]),
        ),
    ]
    into = {name: root / name for name in ("pull-mitosis", "pull-git")}
    for path in into.values():
        git("init", "-q", "--bare", str(path), cwd=root)
    rows += [
        (
            "pull: mitosis",
            timed(lambda: mitosis.pull(str(source), store=into["pull-mitosis"])),
            size(into["pull-mitosis"]),
        ),
        (
            "fetch: git CLI",
            timed(lambda: git("fetch", "-q", str(source), ref, cwd=into["pull-git"])),
            size(into["pull-git"]),
        ),
    ]
    used: dict[str, tuple[int, float]] = {}
    gc = f"import mitosis; mitosis.gc(store={str(unpacked)!r})"
    gc_time = timed(lambda: used.update(gc=usage(sys.executable, "-c", gc)))
    git_gc = ("git", "-C", str(copy), "gc", "-q")
    git_gc_time = timed(lambda: used.update(git=usage(*git_gc)))
    packed, git_packed = size(unpacked), size(copy)
    rows += [
        ("store, as built" if args.background else "store, loose", 0.0, loose),
        ("store after mitosis.gc", gc_time, packed),
        ("store after git gc", git_gc_time, git_packed),
    ]
    print(f"{'measure':<24} {'seconds':>8} {'bytes':>12} {'bytes/trial':>12}   ({count} trials)")
    for name, seconds, nbytes in rows:
        print(f"{name:<24} {seconds:8.2f} {nbytes:12d} {nbytes / count:12.0f}")
    for name, key in (("mitosis.gc", "gc"), ("git gc", "git")):
        peak, seconds = used[key]
        print(f"{name}: peak memory {peak / 2**20:.0f} MiB, processor time {seconds:.1f} s")
    ratio = packed / git_packed
    verdict = "within" if ratio <= GOAL else "OVER"
    print(f"mitosis.gc / git gc size: {ratio:.2f} ({verdict} the goal of {GOAL}x)")
    shutil.rmtree(root, ignore_errors=True)
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
