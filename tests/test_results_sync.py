"""Results kept off the branches, shared: pushed beside the records, left behind by clones and
plain pulls, brought on demand through a real git daemon, carried by bundles when asked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import git
from test_sync import daemon  # noqa: F401 - fixtures

import mitosis
from mitosis.cli import main
from mitosis.exceptions import StoreError

MiB = 1 << 20


def blob_of(trial: mitosis.Trial, cwd: Path | str) -> str:
    path = f"mitosis/{trial.experiment}:{trial.path}/results/big.dill.pointer"
    return str(json.loads(git("cat-file", "blob", path, cwd=cwd))["blob"])


def has(cwd: Path | str, blob: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", blob], cwd=cwd).returncode == 0


def results_refs(cwd: Path | str) -> set[str]:
    listed = git("for-each-ref", "--format=%(refname)", "refs/mitosis-results/", cwd=cwd)
    return {ref.rpartition("/")[2] for ref in listed.split()}


@pytest.fixture
def recorded(investigation, tmp_path):
    """A store (the investigation) with two trials of big results and one small one."""
    first = mitosis.run(investigation.big, {"mib": 3})
    second = mitosis.run(investigation.big, {"mib": 4, "seed": 1})
    small = mitosis.run(investigation.big, {"mib": 0.25, "seed": 2})
    return first, second, small


def test_push_sends_results_and_a_clone_brings_them_on_demand(recorded, tmp_path, hub, daemon):  # noqa: F811
    first, second, _ = recorded
    git("remote", "add", "lab", daemon)
    report = mitosis.push("lab")
    assert report.experiments == {"big": "new"} and report.results == sorted([first.id, second.id])
    assert results_refs(hub) == {first.id, second.id}
    git("fsck", "--strict", "--no-dangling", cwd=hub)
    assert mitosis.push("lab").results == []  # a results ref is sent once
    clone = tmp_path / "clone"
    git("clone", "-q", daemon, str(clone))
    blobs = [blob_of(t, clone / ".." / "investigation") for t in (first, second)]
    assert not has(clone, blobs[0]) and not has(clone, blobs[1])
    here = mitosis.load(first.id, store=clone)
    assert not here.stat("results/big.dill").here
    assert here.results()["main"] == first.main  # fetched from origin, the git daemon
    assert has(clone, blobs[0]) and not has(clone, blobs[1])  # that trial's results only
    assert results_refs(clone) == {first.id}
    assert here.stat("results/big.dill").here
    git("fsck", "--strict", "--no-dangling", cwd=clone)


def test_pull_results_of_one_trial_brings_that_trial_s_only(recorded, tmp_path, hub, runner):
    first, second, small = recorded
    mitosis.push(str(hub))
    other = tmp_path / "other"
    git("init", "-q", str(other))
    git("remote", "add", "origin", str(hub), cwd=other)
    blobs = [blob_of(t, Path.cwd()) for t in (first, second)]
    result = runner.invoke(main, ["pull", "--store", str(other)])
    assert result.exit_code == 0, result.output
    assert "results" not in result.output and results_refs(other) == set()
    result = runner.invoke(main, ["pull", "--results", first.id[:8], "--store", str(other)])
    assert result.exit_code == 0, result.output
    assert "brought the results of 1 trial(s)" in result.output
    assert has(other, blobs[0]) and not has(other, blobs[1])
    assert results_refs(other) == {first.id}
    result = runner.invoke(main, ["pull", "origin", "big", "--results", "--store", str(other)])
    assert result.exit_code == 0, result.output
    assert "brought the results of 1 trial(s)" in result.output  # the other one
    assert has(other, blobs[1]) and results_refs(other) == {first.id, second.id}
    assert mitosis.pull(store=other, results=True).results == []
    assert mitosis.load(small.id, store=other).results()["main"] == small.main
    git("fsck", "--strict", "--no-dangling", cwd=other)
    with pytest.raises(mitosis.UnknownTrial):
        mitosis.pull(store=other, results=["ffffffff"])


def test_push_no_results_sends_records_only(recorded, tmp_path, hub, runner):
    first, second, _ = recorded
    git("remote", "add", "origin", str(hub))
    result = runner.invoke(main, ["push", "--no-results"])
    assert result.exit_code == 0, result.output and "results" not in result.output
    assert results_refs(hub) == set()
    assert git("rev-parse", "mitosis/big", cwd=hub) == git("rev-parse", "mitosis/big")
    clone = tmp_path / "clone"
    git("clone", "-q", f"file://{hub}", str(clone))
    with pytest.raises(
        StoreError, match=rf"origin: no results of this trial\).*--results {first.id}"
    ):
        mitosis.load(first.id, store=clone).results()
    result = runner.invoke(main, ["push"])
    assert result.exit_code == 0, result.output
    assert "sent the results of 2 trial(s)" in result.output
    assert results_refs(hub) == {first.id, second.id}
    assert mitosis.load(second.id, store=clone).results()["main"] == second.main


def test_a_remote_that_cannot_be_reached_is_named_in_the_error(recorded, tmp_path, hub):
    first, _, _ = recorded
    mitosis.push(str(hub), results=False)
    clone = tmp_path / "clone"
    git("clone", "-q", f"file://{hub}", str(clone))
    git("remote", "add", "gone", str(tmp_path / "no-such-store"), cwd=clone)
    with pytest.raises(StoreError) as error:
        mitosis.load(first.id, store=clone).results()
    message = str(error.value)
    assert "asked origin: no results of this trial; gone: fetching results from" in message
    assert f"mitosis pull REMOTE --results {first.id}" in message


def test_bundles_carry_results_when_asked(investigation, recorded, tmp_path, runner):
    first, second, small = recorded
    records = tmp_path / "records.bundle"
    full = tmp_path / "full.bundle"
    assert mitosis.bundle(records) == 1
    result = runner.invoke(main, ["bundle", str(full), "--results"])
    assert result.exit_code == 0, result.output
    assert full.stat().st_size > records.stat().st_size + 7 * MiB
    assert records.stat().st_size < MiB
    for path in (records, full):
        git("bundle", "verify", str(path))
    blobs = [blob_of(t, Path.cwd()) for t in (first, second)]
    away = tmp_path / "away"
    git("init", "-q", str(away))
    mitosis.pull(str(records), store=away)
    assert not has(away, blobs[0]) and results_refs(away) == set()
    mitosis.pull(str(full), store=away)
    assert has(away, blobs[0]) and has(away, blobs[1])
    assert results_refs(away) == {first.id, second.id}
    assert mitosis.load(second.id, store=away).results()["main"] == second.main
    git("fsck", "--strict", "--no-dangling", cwd=away)
    later = mitosis.run(investigation.big, {"mib": 2, "seed": 5})
    since = tmp_path / "since.bundle"
    mitosis.bundle(since, since=full, results=True)
    assert since.stat().st_size < 3 * MiB  # the new trial's result, not the earlier ones
    mitosis.pull(str(since), store=away)
    assert results_refs(away) == {first.id, second.id, later.id}
    assert small.id in {t.id for t in mitosis.trials("big", store=away)}


def test_results_are_copied_streamed_from_a_store_on_a_path(recorded, tmp_path):
    first, second, _ = recorded
    # dulwich reads this store's loose objects only up to 1 MiB; mitosis streams them itself
    git("config", "core.bigFileThreshold", "1048576")
    clone = tmp_path / "clone"
    git("clone", "-q", "--no-local", str(Path.cwd()), str(clone))
    assert mitosis.load(second.id, store=clone).results()["main"] == second.main
    report = mitosis.pull(store=clone, results=True)
    assert report.results == [first.id]
    assert results_refs(clone) == {first.id, second.id}
    git("fsck", "--strict", "--no-dangling", cwd=clone)


# -- receiving, streamed ---------------------------------------------------------------------


def test_a_fetch_through_git_daemon_streams_in(investigation, tmp_path, hub, daemon):  # noqa: F811
    import sys
    import textwrap

    trial = mitosis.run(investigation.big, {"mib": 48})
    mitosis.push(daemon)
    clone = tmp_path / "clone"
    git("clone", "-q", daemon, str(clone))
    script = textwrap.dedent("""
        import resource, sys, mitosis
        from mitosis.store.repo import Store
        with Store.open(sys.argv[1]) as st:
            st.experiments()
        idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        mitosis.pull(store=sys.argv[1], results=[sys.argv[2]])
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - idle) * 1024)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script, str(clone), trial.id],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(out.stdout) < 24 * MiB, out.stdout  # a result of 48 MiB
    assert mitosis.load(trial.id, store=clone).stat("results/big.dill").here
    git("fsck", "--strict", "--no-dangling", cwd=clone)


def pack_of(repo: Path, objects: list[str], *options: str) -> bytes:
    return subprocess.run(
        ["git", "pack-objects", "--stdout", *options],
        cwd=repo,
        input="".join(f"{sha}\n" for sha in objects).encode(),
        capture_output=True,
        check=True,
    ).stdout


def test_unpacking_resolves_deltas_in_the_pack_and_against_the_store(tmp_path):
    import io

    from mitosis.store.receive import unpack
    from mitosis.store.repo import Store

    source = tmp_path / "source.git"
    git("init", "-q", "--bare", str(source))
    text = "".join(f"line {i} of a text that git deltas well\n" for i in range(3000))
    ids = [
        git("hash-object", "-w", "--stdin", cwd=source, input=text + f"version {n}\n").strip()
        for n in range(3)
    ]
    noise = random_bytes(tmp_path / "noise", 2 * MiB)
    big = git("hash-object", "-w", str(noise), cwd=source).strip()
    for options in ((), ("--delta-base-offset",)):  # deltas by id, by offset
        target = tmp_path / f"target{len(options)}.git"
        git("init", "-q", "--bare", str(target))
        data = pack_of(source, [*ids, big], "--window=10", *options)
        with Store.open(target) as st:
            assert unpack(st, io.BytesIO(data)) == 4
        for sha in [*ids, big]:
            assert git("cat-file", "-p", sha, cwd=target, text=False) == git(
                "cat-file", "-p", sha, cwd=source, text=False
            )
        assert (target / "objects" / big[:2] / big[2:]).exists()  # streamed into its own
    # a thin pack: deltas against an object the receiving store has
    thin = tmp_path / "thin.git"
    git("init", "-q", "--bare", str(thin))
    with Store.open(thin) as st:
        unpack(st, io.BytesIO(pack_of(source, ids[:1])))
        base = git("cat-file", "blob", ids[0], cwd=source, text=False)
    tree = git("mktree", cwd=source, input=f"100644 blob {ids[1]}\ta\n").strip()
    old = git("mktree", cwd=source, input=f"100644 blob {ids[0]}\ta\n").strip()
    before = git("commit-tree", old, "-m", "a", cwd=source).strip()
    after = git("commit-tree", tree, "-p", before, "-m", "b", cwd=source).strip()
    data = subprocess.run(
        ["git", "pack-objects", "--stdout", "--thin", "--revs"],
        cwd=source,
        input=f"{after}\n^{before}\n".encode(),
        capture_output=True,
        check=True,
    ).stdout
    assert len(data) < 1000  # the blob is a delta against one the pack does not hold
    with Store.open(thin) as st:
        unpack(st, io.BytesIO(data))
    assert git("cat-file", "blob", ids[1], cwd=thin, text=False) == (
        base[: -len("version 0\n")] + b"version 1\n"
    )
    # what cannot be unpacked is said
    with Store.open(tmp_path / "target0.git") as st:
        with pytest.raises(StoreError, match="not a git pack"):
            unpack(st, io.BytesIO(b"NOPE" + bytes(8)))
        whole = pack_of(source, [big])
        with pytest.raises(StoreError, match="ends early"):
            unpack(st, io.BytesIO(whole[: len(whole) // 2]))
        damaged = bytearray(whole)
        damaged[40:48] = b"\xff" * 8
        with pytest.raises(StoreError, match=r"damaged|holds"):
            unpack(st, io.BytesIO(bytes(damaged)))
    empty = tmp_path / "empty.git"
    git("init", "-q", "--bare", str(empty))
    with Store.open(empty) as st, pytest.raises(StoreError, match="which is nowhere"):
        unpack(st, io.BytesIO(data))


def random_bytes(path: Path, size: int) -> Path:
    import os

    path.write_bytes(os.urandom(size))
    return path


def test_a_bundle_of_big_results_is_read_streamed(investigation, tmp_path):
    import sys
    import textwrap

    trial = mitosis.run(investigation.big, {"mib": 48})
    carried = tmp_path / "results.bundle"
    mitosis.bundle(carried, results=True)
    away = tmp_path / "away"
    git("init", "-q", str(away))
    script = textwrap.dedent("""
        import resource, sys, mitosis
        from mitosis.store.repo import Store
        with Store.open(sys.argv[1]) as st:
            st.experiments()
        idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        mitosis.pull(sys.argv[2], store=sys.argv[1])
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - idle) * 1024)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script, str(away), str(carried)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(out.stdout) < 24 * MiB, out.stdout  # a result of 48 MiB
    assert mitosis.load(trial.id, store=away).stat("results/big.dill").here
    git("fsck", "--strict", "--no-dangling", cwd=away)


def test_bundle_headers_are_read_without_the_pack(investigation, tmp_path):
    trial = mitosis.run(investigation.big, {"mib": 2})
    v3 = tmp_path / "v3.bundle"
    git("bundle", "create", "-q", "--version=3", str(v3), "mitosis/big")
    assert v3.read_bytes().startswith(b"# v3 git bundle\n@object-format=sha1\n")
    away = tmp_path / "away"
    git("init", "-q", str(away))
    assert mitosis.pull(str(v3), store=away).experiments == {"big": "new"}
    assert [t.id for t in mitosis.trials("big", store=away)] == [trial.id]
    cut = tmp_path / "cut.bundle"
    cut.write_bytes(v3.read_bytes().split(b"\n\n")[0] + b"\n")
    with pytest.raises(mitosis.SyncError, match="ends before its pack"):
        mitosis.pull(str(cut), store=away)
