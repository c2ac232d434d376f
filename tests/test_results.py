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
