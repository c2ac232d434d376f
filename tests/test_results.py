"""Results of any size: streamed into the store as loose objects git reads, read back as they
are unpickled, kept off the trial branches behind pointers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import git

import mitosis
from mitosis.exceptions import StoreError
from mitosis.model.records import OnDisk, Pointer, dump_pointer, load_pointer
from mitosis.store.repo import Store

MiB = 1 << 20


def random_file(path: Path, size: int, seed: int = 0) -> Path:
    import numpy as np

    path.write_bytes(np.random.default_rng(seed).bytes(size))
    return path


def loose_file(repo: Path, blob_id: str) -> Path:
    return repo / "objects" / blob_id[:2] / blob_id[2:]


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    path = tmp_path / "store.git"
    git("init", "-q", "--bare", str(path))
    return path


def test_a_big_file_streams_into_one_loose_object_that_git_reads(bare, tmp_path):
    noise = random_file(tmp_path / "noise.bin", 12 * MiB + 123)
    zeros = tmp_path / "zeros.bin"
    zeros.write_bytes(bytes(12 * MiB))
    with Store.open(bare) as st:
        noise_id = st.add_data(OnDisk(str(noise), noise.stat().st_size)).decode()
        zeros_id = st.add_data(OnDisk(str(zeros), zeros.stat().st_size)).decode()
        again = st.add_data(noise.read_bytes()).decode()  # the same bytes, from memory
    assert again == noise_id  # content addressing: stored once
    assert git("hash-object", str(noise), cwd=bare).strip() == noise_id
    assert git("cat-file", "-s", noise_id, cwd=bare).strip() == str(noise.stat().st_size)
    assert git("cat-file", "blob", zeros_id, cwd=bare, text=False) == zeros.read_bytes()
    # incompressible data is stored (zlib level 0), compressible data compressed
    assert loose_file(bare, noise_id).stat().st_size < noise.stat().st_size * 1.001
    assert loose_file(bare, zeros_id).stat().st_size < MiB
    assert not [p for p in (bare / "objects").iterdir() if p.name.startswith("tmp_")]
    git("fsck", "--strict", "--no-dangling", cwd=bare)


def test_big_blobs_read_back_as_streams_loose_and_packed(bare, tmp_path):
    data = random_file(tmp_path / "r.bin", 6 * MiB)
    small = tmp_path / "small.bin"
    small.write_bytes(b"a line of text\n" * 20_000)
    with Store.open(bare) as st:
        big_id = st.add_data(OnDisk(str(data), data.stat().st_size)).decode()
        small_id = st.add_data(small.read_bytes()).decode()
        similar = st.add_data(small.read_bytes() + b"one more line\n").decode()
    # keep them: a ref to a tree of them, so that git packs them (as deltas where it can)
    tree = git(
        "mktree",
        cwd=bare,
        input="".join(
            f"100644 blob {sha}\t{name}\n"
            for name, sha in (("big", big_id), ("s1", small_id), ("s2", similar))
        ),
    ).strip()
    git("update-ref", "refs/keep", tree, cwd=bare)
    for packed in (False, True):
        if packed:
            git("repack", "-a", "-d", "-f", "--window=10", cwd=bare)
            assert not loose_file(bare, big_id).exists()
        with Store.open(bare) as st:
            for sha, path in ((big_id, data), (small_id, small)):
                assert st.blob_size(sha) == path.stat().st_size
                reader = st.open_blob(sha, "test")
                assert reader is not None
                with reader:
                    assert reader.read(1000) == path.read_bytes()[:1000]
                    assert reader.read() == path.read_bytes()[1000:]
            assert st.blob_size("0" * 40) is None and st.open_blob("0" * 40, "test") is None
            with st.open_blob(similar, "test") as reader:  # type: ignore[union-attr]
                assert reader.read().endswith(b"one more line\n")


def test_a_damaged_big_object_is_a_store_error(bare, tmp_path):
    data = random_file(tmp_path / "r.bin", 3 * MiB)
    with Store.open(bare) as st:
        blob_id = st.add_data(OnDisk(str(data), data.stat().st_size)).decode()
    path = loose_file(bare, blob_id)
    raw = bytearray(path.read_bytes())
    raw[MiB] ^= 0xFF  # inside a stored block: zlib's checksum (and the id) tell
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    with Store.open(bare) as st:
        reader = st.open_blob(blob_id, "results/fit.dill of trial 0123456789ab")
        assert reader is not None
        with reader, pytest.raises(StoreError, match=r"fit\.dill of trial 0123456789ab is damaged"):
            reader.read()
    path.write_bytes(bytes(raw[: 2 * MiB]))  # cut short
    with Store.open(bare) as st, pytest.raises(StoreError, match="ends early"):
        st.open_blob(blob_id, "x").read()  # type: ignore[union-attr]
    other = random_file(tmp_path / "o.bin", 3 * MiB, seed=1)
    with Store.open(bare) as st:
        other_id = st.add_data(OnDisk(str(other), other.stat().st_size)).decode()
    path.write_bytes(loose_file(bare, other_id).read_bytes())  # a sound object, another id
    with Store.open(bare) as st, pytest.raises(StoreError, match="does not match its id"):
        st.open_blob(blob_id, "x").read()  # type: ignore[union-attr]


def test_a_file_that_changes_while_it_is_stored_is_refused(bare, tmp_path):
    data = random_file(tmp_path / "r.bin", 2 * MiB)
    with Store.open(bare) as st, pytest.raises(StoreError, match="changed while it was read"):
        st.add_data(OnDisk(str(data), 3 * MiB))
    assert not [p for p in (bare / "objects").iterdir() if p.name.startswith("tmp_")]


def test_streaming_a_big_file_holds_a_few_chunks_of_it(bare, tmp_path):
    data = random_file(tmp_path / "r.bin", 96 * MiB)
    script = textwrap.dedent("""
        import resource, sys
        from mitosis.model.records import OnDisk
        from mitosis.store.repo import Store

        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        with Store.open(sys.argv[1]) as st:
            st.add_blob(b"warm up")
            idle = peak()
            blob = st.add_data(OnDisk(sys.argv[2], int(sys.argv[3]))).decode()
            with st.open_blob(blob, "x") as reader:
                while reader.read(1 << 20):
                    pass
        print(peak() - idle)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script, str(bare), str(data), str(data.stat().st_size)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(out.stdout) < 32 * MiB, out.stdout  # a 96 MiB file


def test_pointers_are_checked_before_use():
    good = Pointer("ab" * 20, 12, "refs/mitosis-results/0123456789ab")
    assert load_pointer(dump_pointer(good), "p", "0123456789ab") == good
    assert json.loads(dump_pointer(good)) == {
        "blob": "ab" * 20,
        "encoding": "blob",
        "ref": "refs/mitosis-results/0123456789ab",
        "size": 12,
    }
    with pytest.raises(StoreError, match="not a readable pointer"):
        load_pointer(b"{", "p", "0123456789ab")
    with pytest.raises(StoreError, match="not a readable pointer"):
        load_pointer(b'{"blob": "x"}', "p", "0123456789ab")
    bad = [
        good._replace(blob="../../etc/passwd"),
        good._replace(size=-1),
        good._replace(size=True),
        good._replace(ref="refs/heads/main"),
    ]
    for pointer in bad:
        with pytest.raises(StoreError, match="not a valid pointer"):
            load_pointer(dump_pointer(pointer), "p", "0123456789ab")
    with pytest.raises(StoreError, match="cannot read; upgrade mitosis"):
        load_pointer(dump_pointer(good._replace(encoding="chunks")), "p", "0123456789ab")


def test_temporary_object_files_do_not_trouble_git(bare, tmp_path):
    # What a writer killed mid-way leaves: a temporary file in objects/, never a partial object.
    (bare / "objects" / "tmp_mitosis_obj_x1y2z3").write_bytes(b"x\x01partial")
    git("fsck", "--strict", cwd=bare)
    assert os.path.exists(bare / "objects" / "tmp_mitosis_obj_x1y2z3")


# -- recording -------------------------------------------------------------------------------


def objects_of(ref: str, cwd: Path | str | None = None) -> set[str]:
    """The ids of every object reachable from ``ref``, as git lists them."""
    return {line.split()[0] for line in git("rev-list", "--objects", ref, cwd=cwd).splitlines()}


def pointer(trial, name: str, cwd: Path | str | None = None) -> dict:
    path = f"mitosis/{trial.experiment}:{trial.path}/{name}.pointer"
    return json.loads(git("cat-file", "blob", path, cwd=cwd))


def test_a_big_result_is_streamed_and_kept_off_the_branch(investigation):
    import numpy as np

    trial = mitosis.run(investigation.big, {"mib": 6})
    assert trial.detached == ["results/big.dill"] and trial.format == 2
    assert "results/big.dill" in trial.files
    found = pointer(trial, "results/big.dill")
    blob, ref = found["blob"], f"refs/mitosis-results/{trial.id}"
    assert found == {"blob": blob, "encoding": "blob", "ref": ref, "size": found["size"]}
    assert found["size"] > 6 * MiB
    assert blob not in objects_of("mitosis/big")  # a clone of the branches leaves it behind
    assert blob in objects_of(ref)
    assert git("cat-file", "-s", blob).strip() == str(found["size"])
    assert git("log", "-1", "--format=%B", ref).startswith(f"big: results of trial {trial.id}")
    record = json.loads(git("cat-file", "blob", f"mitosis/big:{trial.path}/trial.json"))
    assert record["format"] == 2 and record["detached"] == ["results/big.dill"]
    expected = np.random.default_rng(0).random(6 * MiB // 8)
    assert np.array_equal(trial.results()["data"], expected)
    assert np.array_equal(mitosis.load(trial.id).results()["data"], expected)
    assert trial.stat("results/big.dill") == (found["size"], True, True)
    assert os.listdir(".git/mitosis/spool") == []  # the trial process's folder is gone
    git("fsck", "--strict", "--no-dangling")
    small = mitosis.run(investigation.bare_number, {"x": 1.0})
    assert small.detached == [] and small.format == 1
    record = json.loads(git("cat-file", "blob", f"mitosis/bare_number:{small.path}/trial.json"))
    assert record["format"] == 1 and record["detached"] == []
    assert small.stat("results/bare_number.dill").detached is False


def test_the_results_threshold_decides_what_leaves_the_branch(investigation, runner):
    from mitosis.cli import main

    inline = mitosis.run(investigation.big, {"mib": 3}, results_threshold="1GiB")
    assert inline.detached == [] and inline.format == 1
    blob = git("rev-parse", f"mitosis/big:{inline.path}/results/big.dill").strip()
    assert git("cat-file", "-s", blob).strip() == str(inline.stat("results/big.dill").size)
    tiny = mitosis.run(investigation.bare_number, {"x": 2.0}, results_threshold=10)
    assert tiny.detached == ["results/bare_number.dill"] and tiny.results() == 6.0
    with pytest.raises(mitosis.BadParameter, match=r"results_threshold: 'lots' is not a size"):
        mitosis.run(investigation.bare_number, results_threshold="lots")
    Path("pyproject.toml").write_text(
        "[tool.mitosis]\n"
        'results_threshold = "4KiB"\n'
        "[tool.mitosis.experiments]\n"
        f'bare = {{ run = "{investigation.__name__}:bare_number" }}\n'
    )
    result = runner.invoke(main, ["run", "bare", "-e", "x=3.0"])
    assert result.exit_code == 0, result.output
    assert mitosis.trials("bare")[0].detached == []
    Path("pyproject.toml").write_text(
        "[tool.mitosis]\n"
        'results_threshold = "1"\n'
        "[tool.mitosis.experiments]\n"
        f'bare = {{ run = "{investigation.__name__}:bare_number" }}\n'
    )
    result = runner.invoke(main, ["run", "bare", "-e", "x=3.0,4.0"])  # a sweep
    assert result.exit_code == 0, result.output
    assert [t.detached for t in mitosis.trials("bare")[1:]] == [["results/bare.dill"]] * 2
    Path("pyproject.toml").write_text('[tool.mitosis]\nresults_threshold = "big"\n')
    result = runner.invoke(main, ["run", "bare"])
    assert result.exit_code == 1
    assert "results_threshold in" in result.output and "'big' is not a size" in result.output


def test_a_reused_big_result_is_pointed_at_not_copied(investigation):
    steps = [investigation.big_data, investigation.total]
    first = mitosis.run(steps, {"big_data.mib": 4, "total.scale": 1.0})
    second = mitosis.run(steps, {"big_data.mib": 4, "total.scale": 2.0}, reuse=True)
    assert second.steps[0].reused_from == first.id
    name = "results/big_data.dill"
    assert first.detached == second.detached == [name]
    blob = pointer(first, name, cwd=".")["blob"]
    assert pointer(second, name)["blob"] == blob
    assert blob in objects_of(f"refs/mitosis-results/{second.id}")
    assert second.main == pytest.approx(2 * first.main)
    assert float(second.results("big_data")["data"].sum()) == first.steps[0].main
    git("fsck", "--strict", "--no-dangling")


def test_big_results_come_back_from_any_executor(investigation, tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    with ProcessPoolExecutor(max_workers=2) as pool:  # their results travel as bytes
        trials = mitosis.sweep(investigation.big, {"mib": [2, 3]}, executor=pool)
    with ProcessPoolExecutor(max_workers=2) as pool:  # they record themselves
        trials += mitosis.sweep(
            investigation.big, {"seed": [1, 2]}, executor=pool, commit_in_workers=True
        )
    trials += mitosis.sweep(investigation.big, {"seed": [3]}, jobs=1)  # the local pool
    assert [t.detached for t in trials] == [["results/big.dill"]] * 5
    for trial in mitosis.trials("big"):
        assert isinstance(trial.results()["data"], np.ndarray)
    assert os.listdir(".git/mitosis/spool") == []
    git("fsck", "--strict", "--no-dangling")


def test_a_trial_killed_while_its_result_is_written_leaves_no_result(investigation):
    with pytest.raises(mitosis.TrialFailed, match="killed"):
        mitosis.run(investigation.killed_while_pickling)
    trial = mitosis.trials("killed_while_pickling")[0]
    assert trial.status == "killed" and not any(f.startswith("results/") for f in trial.files)
    assert os.listdir(".git/mitosis/spool") == []


def test_a_debug_trial_keeps_a_big_result_in_memory(investigation):
    trial = mitosis.run(investigation.big, {"mib": 2}, debug=True)
    assert trial.detached == [] and len(trial.results()["data"]) == 2 * MiB // 8
    assert trial.stat("results/big.dill").here


def test_an_export_writes_a_big_result_streamed(investigation, tmp_path):
    trial = mitosis.run(investigation.big, {"mib": 3})
    out = mitosis.export(trial.id, tmp_path / "export")
    blob = pointer(trial, "results/big.dill")["blob"]
    exported = out / "record" / "results" / "big.dill"
    assert exported.read_bytes() == git("cat-file", "blob", blob, text=False)
    assert not (out / "record" / "results" / "big.dill.pointer").exists()


# -- reading without the results ----------------------------------------------------------------


def clone_of(source: Path, target: Path) -> Path:
    """A clone as a lab makes one (through git's transport, not by hard-linking objects)."""
    git("clone", "-q", f"file://{source}", str(target))
    return target


def test_a_clone_brings_records_only_and_reads_them_without_results(
    investigation, tmp_path, runner
):
    from mitosis.cli import main

    trial = mitosis.run(investigation.big, {"mib": 6})
    mitosis.run(investigation.big, {"mib": 0.5, "seed": 1})  # stays on the branch
    found = pointer(trial, "results/big.dill")
    blob = found["blob"]
    clone = clone_of(Path.cwd(), tmp_path / "clone")
    proc = subprocess.run(["git", "cat-file", "-e", blob], cwd=clone, capture_output=True)
    assert proc.returncode != 0  # the result stayed behind
    counted = dict(line.split(": ") for line in git("count-objects", "-v", cwd=clone).splitlines())
    size = (int(counted["size"]) + int(counted["size-pack"])) * 1024
    assert size < MiB, counted  # the result of 0.5 MiB on the branch, not the one of 6
    os.chdir(clone)
    listed = mitosis.trials("big")
    assert listed[0].id == trial.id
    here = listed[0]
    assert here.stat("results/big.dill") == (found["size"], False, True)
    assert here.read("output.log") == trial.read("output.log")
    shown = runner.invoke(main, ["show", trial.id])
    assert shown.exit_code == 0, shown.output
    assert "results    results/big.dill  6.0 MiB  (kept off the branch, not here: " in shown.output
    assert f"mitosis pull --results {trial.id}" in shown.output
    assert f"refs/mitosis-results/{trial.id}:results/big.dill" in shown.output
    record = json.loads(runner.invoke(main, ["show", trial.id, "--json"]).output)
    assert record["results"]["results/big.dill"]["here"] is False
    for command in (["log"], ["diff", trial.id, listed[1].id], ["browse"]):
        result = runner.invoke(main, command)
        assert result.exit_code == 0, (command, result.output)
    git("init", "-q", "--bare", str(tmp_path / "empty.git"))
    git("remote", "set-url", "origin", str(tmp_path / "empty.git"))  # no remote has it
    with pytest.raises(StoreError, match=rf"mitosis pull REMOTE --results {trial.id}"):
        here.results()
    assert listed[1].results()["main"] == listed[1].main  # small results are here


def test_a_big_trial_refused_at_its_commit_leaves_no_results_ref(investigation, monkeypatch):
    from mitosis.store import repo as _store

    def rename_meanwhile(point: str) -> None:  # a colleague settles a conflict meanwhile
        if point == "results":
            monkeypatch.setattr(_store, "fault", None)
            mitosis.rename_variant("big", "seed", "one", "uno")

    monkeypatch.setattr(_store, "fault", rename_meanwhile)
    with pytest.raises(mitosis.VariantRenamed, match="renamed to 'uno'"):
        mitosis.run(investigation.big, {"mib": 2, "seed": "one"}, lookup={"seed": {"one": 1}})
    assert mitosis.trials("big") == []
    assert git("for-each-ref", "refs/mitosis-results/") == ""
    assert os.listdir(".git/mitosis/spool") == []
    git("fsck", "--strict")


def test_what_a_store_cannot_find_or_take_is_said(investigation, tmp_path):
    from mitosis.model.records import InStore
    from mitosis.run.process import Job, perform
    from mitosis.store.results import write_results

    trial = mitosis.run(investigation.big, {"mib": 2})
    other = tmp_path / "other.git"
    git("init", "-q", "--bare", str(other))
    with Store.open() as st:
        blob = st.add_data(b"x" * (2 * MiB))
        with pytest.raises(StoreError, match="keeps other results"):  # a copied trial's ref
            write_results(st, trial, {"results/big.dill": blob})
        missing = InStore(str(other), "ab" * 20, 10)
        with pytest.raises(StoreError, match=f"has no blob {'ab' * 20} to copy"):
            st.add_data(missing)
        commit = git("rev-parse", "HEAD").strip()
        with pytest.raises(StoreError, match=f"names {commit}, which is no blob"):
            st.open_blob(commit, "results/fit.dill of trial 0123456789ab")
    git("repack", "-a", "-d", "-q")
    with Store.open() as st, pytest.raises(StoreError, match="which is no blob"):
        st.open_blob(commit, "results/fit.dill of trial 0123456789ab")  # packed
    job = Job(path=[], payload=b"", steps=1, reused=missing, spool=str(tmp_path / "spool"))
    with pytest.raises(StoreError, match="no longer has the reused result"):
        perform(job)
    assert os.listdir(tmp_path / "spool") == []


def test_a_big_result_is_reused_through_another_executor(investigation):
    from concurrent.futures import ProcessPoolExecutor

    steps = [investigation.big_data, investigation.total]
    first = mitosis.run(steps, {"big_data.mib": 2, "total.scale": 1.0})
    with ProcessPoolExecutor(max_workers=1) as pool:  # the job carries the result's bytes
        (second,) = mitosis.sweep(
            steps, {"big_data.mib": [2], "total.scale": [3.0]}, executor=pool, reuse=True
        )
    assert second.steps[0].reused_from == first.id
    assert second.main == pytest.approx(3 * first.main)
    assert (
        pointer(second, "results/big_data.dill")["blob"]
        == pointer(first, "results/big_data.dill")["blob"]
    )
