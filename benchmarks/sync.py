"""Sharing and housekeeping at scale: push, pull and packing against the git CLI.

Builds a store of N trials (default 10,000; one commit per trial, in the store's real format,
written straight with dulwich so that building takes seconds, not hours), then prints, each
beside the git CLI doing the same in the same run (medians of ``--repeat`` runs, each into a
fresh copy):

- for the store packed (by ``mitosis.gc``, as the background packer leaves it) and loose:
  ``mitosis.push`` to an empty bare repository against ``git push``; ``mitosis.pull`` into an
  empty store (what it brings checked in quarantine) against ``git fetch``;
- a lab's day: 100 new trials (loose, as written) pushed onto a remote that has the other N,
  against ``git push``; and pulled into a store that has the other N, against ``git fetch``;
- with ``--gc``, the store's size per trial: loose, after ``mitosis.gc``, and after ``git gc``
  of a copy, with the peak memory (resident set) of each packer, run in a process of its own;
- with ``--phases``, where a first pull of the packed store spends its time (medians of
  ``--repeat`` pulls, ``time.perf_counter`` around each phase).

    python benchmarks/sync.py [--trials N] [--repeat R] [--gc] [--phases]

Goals: sync within 2x of git (issue 18); with ``--gc``, after packing, within 1.5x of git gc's
size, without the git CLI (issue 5).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import synthetic

GOAL = 2.0
SIZE_GOAL = 1.5
BRANCH = "refs/heads/mitosis/sine"
PARAMS = {
    "noise": {
        "variant": "low",
        "value": 0.01,
        "source": "variant",
        "type": "float",
        "fingerprint": "sha256:" + "ab" * 32,
        "dill": None,
    }
}


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(path: Path, count: int, start: int = 0) -> None:
    """Add ``count`` trials to the store at ``path`` (made if need be), one commit each, as
    ``mitosis.run`` records them (``trials/<xx>/<id>/`` with a trial's files), but written
    straight with dulwich: each commit rewrites the trees along its trial's path."""
    from dulwich.objects import Blob, Tree

    from mitosis.store.repo import Store

    env = {f"VARIABLE_{i}": "x" * (i % 40) for i in range(60)}
    requirements = "".join(f"package-{i}=={i % 7}.{i % 13}.{i % 5}\n" for i in range(150))
    with Store.open(path, create=True) as st:
        objects = st.repo.object_store
        tip = st.local_tip("sine")
        root, shelf, shards = Tree(), Tree(), {}
        if tip is not None:
            root = objects[objects[tip].tree]
            shelf = objects[root[b"trials"][1]]
            shards = {entry.path: objects[entry.sha] for entry in shelf.iteritems()}

        def blob(data: bytes) -> bytes:
            item = Blob.from_string(data)
            objects.add_object(item)
            return item.id

        for i in range(start, start + count):
            trial_id = secrets.token_hex(6)
            record = synthetic.record(trial_id, i, main=i / 1000, params=PARAMS)
            results = Tree()
            results.add(b"sine.dill", 0o100644, blob(os.urandom(48)))
            objects.add_object(results)
            folder = Tree()
            for name, data in (
                ("trial.json", json.dumps(record, indent=2)),
                ("environment.json", json.dumps({"python": f"3.11.7 {i}", "env": env})),
                ("requirements.txt", requirements),
                ("output.log", f"trial {i} ran\n"),
            ):
                folder.add(name.encode(), 0o100644, blob(data.encode()))
            folder.add(b"results", stat.S_IFDIR, results.id)
            objects.add_object(folder)
            shard = shards.setdefault(trial_id[:2].encode(), Tree())
            shard.add(trial_id.encode(), stat.S_IFDIR, folder.id)
            objects.add_object(shard)
            shelf.add(trial_id[:2].encode(), stat.S_IFDIR, shard.id)
            objects.add_object(shelf)
            root.add(b"trials", stat.S_IFDIR, shelf.id)
            objects.add_object(root)
            parents = [tip] if tip is not None else []
            tip = st.new_commit(root.id, parents, f"sine: trial {i}\n", (1767225600 + i, 0)).id
        assert tip is not None
        st.repo.refs[st.ref("sine")] = tip


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
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run(
        [sys.executable, "-c", _USAGE, *command],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    peak, seconds = out.stdout.split()[-2:]
    return int(peak) * 1024, float(seconds)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Runs:
    """Fresh copies of stores for each run, in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made = 0

    def fresh(self, like: Path | None = None) -> Path:
        """An empty bare repository, or a copy of ``like``."""
        self.made += 1
        path = self.root / f"run-{self.made}.git"
        if like is None:
            git("init", "-q", "--bare", str(path), cwd=self.root)
        else:
            shutil.copytree(like, path)
        return path


def median(
    runs: Runs, repeat: int, make: Callable[[], Path], act: Callable[[Path], object]
) -> float:
    """The median time of ``act`` on ``repeat`` fresh targets from ``make``."""
    times = []
    for _ in range(repeat):
        target = make()
        times.append(timed(lambda target=target: act(target)))  # type: ignore[misc]
        shutil.rmtree(target, ignore_errors=True)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--new", type=int, default=100, help="trials of a day's push")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gc", action="store_true", help="also measure packing and sizes")
    parser.add_argument("--phases", action="store_true", help="also time a packed pull's phases")
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
    from mitosis.store import repo as _store

    _store.AUTO_PACK_OBJECTS = 10**12  # no background packer: the stores stay as built
    runs = Runs(root)
    loose, packed = root / "loose.git", root / "packed.git"
    start = time.perf_counter()
    build(loose, count)
    print(f"built {count} trials in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    shutil.copytree(loose, packed)
    mitosis.gc(store=packed)
    day = runs.fresh(packed)  # the store after a day's trials, written loose
    build(day, args.new, start=count)
    ref = f"{BRANCH}:{BRANCH}"

    def git_push(source: Path) -> Callable[[Path], object]:
        return lambda target: git("push", "-q", str(target), ref, cwd=source)

    def git_fetch(source: Path) -> Callable[[Path], object]:
        return lambda target: git("fetch", "-q", str(source), f"+{ref}", cwd=target)

    def push(source: Path) -> Callable[[Path], object]:
        return lambda target: mitosis.push(str(target), store=source)

    def pull(source: Path) -> Callable[[Path], object]:
        return lambda target: mitosis.pull(str(source), store=target)

    empty = runs.fresh
    rows: list[tuple[str, float, float]] = []
    for kind, store in (("packed", packed), ("loose", loose)):
        rows.append(
            (
                f"push {count}, {kind}",
                median(runs, args.repeat, empty, push(store)),
                median(runs, args.repeat, empty, git_push(store)),
            )
        )
        rows.append(
            (
                f"pull {count}, {kind}",
                median(runs, args.repeat, empty, pull(store)),
                median(runs, args.repeat, empty, git_fetch(store)),
            )
        )
    onto = lambda: runs.fresh(packed)  # noqa: E731 - a remote, or a store, with the N trials
    rows.append(
        (
            f"push {args.new} onto {count}",
            median(runs, args.repeat, onto, push(day)),
            median(runs, args.repeat, onto, git_push(day)),
        )
    )
    rows.append(
        (
            f"pull {args.new} onto {count}",
            median(runs, args.repeat, onto, pull(day)),
            median(runs, args.repeat, onto, git_fetch(day)),
        )
    )
    load = os.getloadavg()[0]
    print(
        f"{'measure':<28} {'mitosis s':>10} {'git s':>8} {'ratio':>6}   "
        f"({count} trials, median of {args.repeat}, load {load:.1f})"
    )
    met = True
    for name, ours, theirs in rows:
        ratio = ours / theirs
        met = met and ratio <= GOAL
        verdict = "within" if ratio <= GOAL else "OVER"
        print(f"{name:<28} {ours:10.2f} {theirs:8.2f} {ratio:6.2f}   {verdict} {GOAL}x")
    if args.phases:
        phases(runs, args.repeat, packed)
    if args.gc:
        met = sizes(root, loose, count) and met
    shutil.rmtree(root, ignore_errors=True)
    return 0 if met else 1


def phases(runs: Runs, repeat: int, source: Path) -> None:
    """Print where a first pull of the store ``source`` spends its time: its phases timed by
    wrapping the functions that do them (medians of ``repeat`` pulls into empty stores)."""
    import functools

    import mitosis
    from mitosis.store import incoming, sync

    spent: dict[str, list[float]] = {}
    wrapped = [
        (sync, "_copy_local", "copy (the packs' bytes, the index made, fsynced)"),
        (sync, "Reader", "opening the quarantine's pack"),
        (sync, "history_problem", "walk: commits and trees read, hashed, checked"),
        (incoming.Aside, "take", "files hashed aside: the rest taken (waited for)"),
        (sync, "damaged", "files left, hashed in the pull's process"),
        (sync, "integrate", "the branch moved"),
        (sync, "added", "provenance: the trials brought"),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in wrapped]

    def timing(function: Callable[..., object], label: str) -> Callable[..., object]:
        @functools.wraps(function)
        def timed_call(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent.setdefault(label, []).append(time.perf_counter() - start)

        return timed_call

    for owner, name, label in wrapped:
        setattr(owner, name, timing(getattr(owner, name), label))
    totals = []
    try:
        for number in range(repeat):
            target = runs.fresh()
            totals.append(timed(lambda target=target: mitosis.pull(str(source), store=target)))  # type: ignore[misc]
            shutil.rmtree(target, ignore_errors=True)
            for times in spent.values():  # one entry per pull: several calls summed
                times[number:] = [sum(times[number:])]
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
    total = statistics.median(totals)
    print(f"a first pull of the packed store: {total:.2f} s (median of {repeat}), of which")
    parts = {label: statistics.median(spent[label]) for _, _, label in wrapped if label in spent}
    for label, seconds in parts.items():
        print(f"  {seconds:6.3f} s  {label}")
    rest = total - sum(parts.values())
    print(f"  {rest:6.3f} s  the rest: the quarantine made, the stores opened, the refs moved")
    print(f"  (load {os.getloadavg()[0]:.1f})")


def sizes(root: Path, loose: Path, count: int) -> bool:
    """Pack copies of the loose store with ``mitosis.gc`` and ``git gc``; print sizes."""
    unpacked, copy = root / "unpacked.git", root / "copy.git"
    shutil.copytree(loose, unpacked)
    shutil.copytree(loose, copy)
    used: dict[str, tuple[int, float]] = {}
    gc = f"import mitosis; mitosis.gc(store={str(unpacked)!r})"
    gc_time = timed(lambda: used.update(gc=usage(sys.executable, "-c", gc)))
    git_gc = ("git", "-C", str(copy), "gc", "-q")
    git_gc_time = timed(lambda: used.update(git=usage(*git_gc)))
    packed, git_packed = size(unpacked), size(copy)
    print(f"{'store':<24} {'seconds':>8} {'bytes':>12} {'bytes/trial':>12}")
    for name, seconds, nbytes in (
        ("loose", 0.0, size(loose)),
        ("after mitosis.gc", gc_time, packed),
        ("after git gc", git_gc_time, git_packed),
    ):
        print(f"{name:<24} {seconds:8.2f} {nbytes:12d} {nbytes / count:12.0f}")
    for name, key in (("mitosis.gc", "gc"), ("git gc", "git")):
        peak, seconds = used[key]
        print(f"{name}: peak memory {peak / 2**20:.0f} MiB, processor time {seconds:.1f} s")
    ratio = packed / git_packed
    verdict = "within" if ratio <= SIZE_GOAL else "OVER"
    print(f"mitosis.gc / git gc size: {ratio:.2f} ({verdict} the goal of {SIZE_GOAL}x)")
    return ratio <= SIZE_GOAL


if __name__ == "__main__":
    sys.exit(main())
