"""Packing a store of big results: whole, streamed, never delta-compressed; and what a packer
that died left behind, removed by the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import git

import mitosis
from mitosis.store import clean

MiB = 1 << 20


def pack_entries(repo: Path | str = ".") -> dict[str, list[str]]:
    """Object id to its ``git verify-pack -v`` fields, over every pack."""
    found = {}
    for index in Path(repo, ".git", "objects", "pack").glob("*.idx"):
        for line in git("verify-pack", "-v", str(index)).splitlines():
            fields = line.split()
            if len(fields) >= 5 and len(fields[0]) == 40:
                found[fields[0]] = fields
    return found


def loose_count(repo: Path | str = ".") -> int:
    counted = dict(line.split(": ") for line in git("count-objects", "-v", cwd=repo).splitlines())
    return int(counted["count"])


def test_gc_packs_big_results_whole_streamed_and_they_read_back(investigation):
    trials = [mitosis.run(investigation.big, {"mib": 16, "seed": i}) for i in range(3)]
    trials.append(mitosis.run(investigation.big, {"mib": 0.75, "seed": 9}))  # on the branch
    script = textwrap.dedent("""
        import resource, mitosis
        from mitosis.store.repo import Store
        with Store.open() as st:
            st.tip("big")
        idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        packed = mitosis.gc()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(packed.objects, (peak - idle) * 1024)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(out[0]) > 0 and int(out[1]) < 24 * MiB, out  # 48 MiB of results packed
    assert loose_count() == 0
    entries = pack_entries()
    for trial in trials[:3]:
        blob = git("cat-file", "blob", f"mitosis/big:{trial.path}/results/big.dill.pointer")
        blob = blob.split('"blob": "')[1][:40]
        assert len(entries[blob]) == 5  # a whole object: no delta base
        assert int(entries[blob][2]) > 16 * MiB
    for trial in trials:
        assert mitosis.load(trial.id).results()["main"] == trial.main
    git("fsck", "--strict", "--no-dangling")
    assert mitosis.gc().objects == 0  # nothing left to pack


def test_a_push_of_packed_big_results_and_gc_of_the_receiver(investigation, tmp_path):
    trial = mitosis.run(investigation.big, {"mib": 8})
    mitosis.gc()
    hub = tmp_path / "hub.git"
    git("init", "-q", "--bare", str(hub))
    assert mitosis.push(str(hub)).results == [trial.id]
    git("fsck", "--strict", "--no-dangling", cwd=hub)
    clone = tmp_path / "clone"
    git("clone", "-q", f"file://{hub}", str(clone))
    assert mitosis.load(trial.id, store=clone).results()["main"] == trial.main
    mitosis.gc(store=clone)
    assert mitosis.load(trial.id, store=clone).results()["main"] == trial.main
    git("fsck", "--strict", "--no-dangling", cwd=clone)


KILLED_PACKER = textwrap.dedent("""
    import os, signal, sys
    import mitosis
    from mitosis.store import repo as _store

    def die(point):
        if point == sys.argv[1]:
            os.kill(os.getpid(), signal.SIGKILL)

    _store.fault = die
    mitosis.gc()
""")


@pytest.mark.parametrize("point", ["stream", "packing", "pack"])
def test_the_next_gc_removes_what_a_killed_packer_left(investigation, point):
    trial = mitosis.run(investigation.big, {"mib": 4})
    mitosis.run(investigation.bare_number)
    proc = subprocess.run([sys.executable, "-c", KILLED_PACKER, point], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    packs = Path(".git/objects/pack")
    left = [p for p in packs.iterdir() if p.name.startswith("tmp_mitosis_")]
    orphans = [p for p in packs.glob("pack-*.pack") if not p.with_suffix(".idx").exists()]
    assert left or orphans
    assert Path(".git/mitosis/gc.lock").read_text().split()[0] != str(os.getpid())
    git("fsck", "--strict", "--no-dangling")  # nothing a reader sees is damaged
    assert mitosis.load(trial.id).results()["main"] == trial.main
    for orphan in orphans:  # a pack without its index: removed once an hour old
        old = time.time() - 2 * clean.FOREIGN_STALE
        os.utime(orphan, (old, old))
    packed = mitosis.gc()  # the dead packer's claim does not stop it
    assert packed.removed == len(left) + len(orphans) and packed.objects > 0
    assert not [p for p in packs.iterdir() if p.name.startswith("tmp")]
    assert all(p.with_suffix(".idx").exists() for p in packs.glob("*.pack"))
    assert loose_count() == 0
    assert mitosis.load(trial.id).results()["main"] == trial.main
    git("fsck", "--strict", "--no-dangling")


def test_what_live_writers_hold_is_left_alone(investigation):
    import fcntl

    mitosis.run(investigation.bare_number)
    spool = Path(".git/mitosis/spool")
    dead, live = spool / "trial-dead", spool / "trial-live"
    for folder in (dead, live):
        folder.mkdir(parents=True)
        (folder / "results.pkl").write_bytes(b"x")
    packs = Path(".git/objects/pack")
    packs.mkdir(exist_ok=True)
    lock = packs / "pack-0123.idx.lock"
    foreign = packs / "tmp_pack_AbCdEf"
    recent = packs / "tmp_pack_XyZ"
    for path in (lock, foreign, recent):
        path.write_bytes(b"")
    old = time.time() - 2 * clean.FOREIGN_STALE
    for path in (lock, foreign):
        os.utime(path, (old, old))
    held = os.open(live, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        removed = mitosis.gc().removed
    finally:
        os.close(held)
    assert removed == 3
    assert not dead.exists() and not lock.exists() and not foreign.exists()
    assert live.exists() and recent.exists()


def test_a_claim_names_its_packer(investigation):
    import json

    from mitosis.store import background

    mitosis.run(investigation.bare_number)
    claim = Path(".git/mitosis/gc.lock")
    claim.parent.mkdir(exist_ok=True)
    claim.write_text(json.dumps(background._owner(os.getpid())))  # a live packer here: wait
    with pytest.raises(mitosis.SyncError, match="another packer is at work"):
        mitosis.gc()
    # on another host sharing the disk: its processes cannot be looked at, so it holds
    claim.write_text(json.dumps({**background._owner(os.getpid()), "host": "another-host"}))
    with pytest.raises(mitosis.SyncError, match="another packer is at work"):
        mitosis.gc()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], text=True, capture_output=True
    ).stdout.strip()
    claim.write_text(json.dumps(background._owner(int(dead))))  # its process is gone
    assert mitosis.gc().objects > 0
    assert not claim.exists()
