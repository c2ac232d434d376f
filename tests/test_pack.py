"""Packing: deltas chosen from the history, read back by the git CLI."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import git

from mitosis.store import pack as _pack
from mitosis.store.pack import pack_loose
from mitosis.store.repo import Store


def trial_files(i: int) -> dict[str, bytes]:
    """The files of one trial, like the recorder writes them."""
    trial_id = f"{i % 8:02x}{i:010x}"
    folder = f"trials/{trial_id[:2]}/{trial_id}"
    record = {"id": trial_id, "status": "ok", "main": i / 7, "params": {"noise": "low"}}
    environment = {"python": "3.11", "variables": {f"VAR_{k}": f"value {k}" for k in range(60)}}
    environment["trial"] = i
    return {
        f"{folder}/trial.json": json.dumps(record, indent=2).encode(),
        f"{folder}/environment.json": json.dumps(environment, indent=2).encode(),
        f"{folder}/output.log": f"trial {i} ran\n".encode(),
        f"{folder}/results/sine.dill": i.to_bytes(8, "little") * 4,
    }


def make_store(path: Path, trials: range, experiment: str = "sine") -> dict[str, bytes]:
    """A store with one commit per trial; every file written, by path."""
    written: dict[str, bytes] = {}
    with Store.open(path, create=True) as store:
        for i in trials:
            files = trial_files(i)
            store.commit(experiment, files, f"{experiment}: trial {i}\n")
            written.update(files)
    return written


def pack(path: Path, **kwargs: int) -> int:
    with Store.open(path) as store:
        return pack_loose(store, **kwargs)


def chains(path: Path) -> dict[str, int]:
    """Every packed object's delta chain length (0: a whole object), from git verify-pack."""
    found: dict[str, int] = {}
    for index in sorted((path / "objects" / "pack").glob("*.idx")):
        for line in git("verify-pack", "-v", str(index)).splitlines():
            fields = line.split()
            if len(fields) >= 5 and len(fields[0]) == 40 and fields[1] != "chain":
                found[fields[0]] = int(fields[5]) if len(fields) > 5 else 0
    return found


def loose_count(path: Path) -> int:
    counts = dict(line.split(": ") for line in git("count-objects", "-v", cwd=path).splitlines())
    return int(counts["count"])


def read_back(path: Path, written: dict[str, bytes], experiment: str = "sine") -> None:
    """git reads every file as it was written."""
    listing = git("ls-tree", "-r", f"refs/heads/mitosis/{experiment}", cwd=path)
    ids = {line.split("\t")[1]: line.split()[2] for line in listing.splitlines()}
    assert set(written) <= set(ids)
    for name, data in written.items():
        assert git("cat-file", "blob", ids[name], cwd=path, text=False) == data


def test_packing_deltas_each_path_against_its_parent(tmp_path):
    store = tmp_path / "store.git"
    written = make_store(store, range(120))
    assert pack(store) == 120 * 10
    assert loose_count(store) == 0
    git("fsck", "--strict", "--no-dangling", cwd=store)
    read_back(store, written)
    depth = chains(store)
    assert len(depth) == 1200
    # the trees along the changed path and the records are deltas, but for the heads of runs
    kinds: dict[str, list[int]] = {"trials": [], "shard": [], "trial.json": []}
    for back in range(100):
        folder = next(iter(trial_files(119 - back))).rsplit("/", 1)[0]
        paths = ("trials", folder.rsplit("/", 1)[0], f"{folder}/trial.json")
        for kind, path in zip(kinds, paths, strict=True):
            found = git("rev-parse", f"refs/heads/mitosis/sine~{back}:{path}", cwd=store)
            kinds[kind].append(depth[found.strip()])
    for kind, depths in kinds.items():
        assert sum(1 for d in depths if d > 0) >= 90, (kind, depths)
    assert sum(1 for d in depth.values() if d > 0) > 400
    assert max(depth.values()) <= _pack.MAX_DEPTH


def test_delta_chains_stay_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(_pack, "_RUN", 4)
    monkeypatch.setattr(_pack, "_HEADS", 3)
    store = tmp_path / "store.git"
    written = make_store(store, range(60))
    pack(store)
    git("fsck", "--strict", "--no-dangling", cwd=store)
    read_back(store, written)
    deepest = (4 - 1) + (3 - 1)
    assert max(chains(store).values()) == deepest


def test_small_batches_make_self_contained_packs(tmp_path):
    store = tmp_path / "store.git"
    written = make_store(store, range(50))
    pack(store, batch=120)
    assert len(list((store / "objects" / "pack").glob("*.pack"))) == 5
    for index in (store / "objects" / "pack").glob("*.idx"):
        git("verify-pack", str(index))  # a thin pack (a base in another pack) fails here
    git("fsck", "--strict", "--no-dangling", cwd=store)
    read_back(store, written)


def test_packing_again_after_more_trials(tmp_path):
    store = tmp_path / "store.git"
    written = make_store(store, range(30))
    pack(store)
    with Store.open(store) as st:  # packed objects written again (dulwich writes them loose)
        tip = st.repo.refs[Store.ref("sine")]
        folder = next(iter(trial_files(0))).rsplit("/", 1)[0]  # unchanged by the next trials
        again = [st.lookup(st.tree_of(tip), folder).id]
        again += [sha for _, sha in st.children(st.tree_of(tip), folder)]
        for sha in again:
            st.repo.object_store.add_object(st.get(sha))
    written.update(make_store(store, range(30, 70)))
    assert pack(store) == 40 * 10 + len(again)
    assert loose_count(store) == 0
    git("fsck", "--strict", "--no-dangling", cwd=store)
    read_back(store, written)
    assert sum(1 for d in chains(store).values() if d > 0) > 200


def test_merges_branches_and_objects_no_branch_reaches(tmp_path):
    from dulwich.objects import Blob, Commit, Tag

    store = tmp_path / "store.git"
    written = make_store(store, range(20))
    written_b = make_store(store, range(20, 35), experiment="other")
    with Store.open(store) as st:
        repo = st.repo
        ours, theirs = repo.refs[Store.ref("sine")], repo.refs[Store.ref("other")]
        merged = st.build_tree(
            st.tree_of(ours),
            {name: st.add_blob(data) for name, data in written_b.items()},
        )
        merge = Commit()
        merge.tree, merge.parents = merged, [ours, theirs]
        merge.author = merge.committer = b"T <t@example.org>"
        merge.author_time = merge.commit_time = int(time.time())
        merge.author_timezone = merge.commit_timezone = 0
        merge.message = b"merge\n"
        st.add(merge)
        repo.refs[Store.ref("sine")] = merge.id
        stray = st.add(Blob.from_string(b"no branch reaches me\n" * 40))
        tag = Tag()
        tag.name, tag.object = b"v1", (Commit, theirs)
        tag.tagger, tag.tag_time, tag.tag_timezone = b"T <t@example.org>", 0, 0
        tag.message = b"a tag\n"
        st.add(tag)
        repo.refs[b"refs/tags/v1"] = tag.id
    for sha in (stray, tag.id):  # written a while ago (a recent one may be a commit on its way)
        file = store / "objects" / sha[:2].decode() / sha[2:].decode()
        os.utime(file, (time.time() - 60, time.time() - 60))
    before = int(
        dict(line.split(": ") for line in git("count-objects", "-v", cwd=store).splitlines())[
            "count"
        ]
    )
    assert pack(store) == before
    assert loose_count(store) == 0
    git("fsck", "--strict", cwd=store)
    read_back(store, {**written, **written_b})
    assert git("cat-file", "-p", stray.decode(), cwd=store) == "no branch reaches me\n" * 40
    assert git("cat-file", "-t", "v1", cwd=store).strip() == "tag"
    assert max(chains(store).values()) <= _pack.MAX_DEPTH


@pytest.mark.parametrize("batch", [7, 20_000])
def test_a_code_repository_with_trials_beside_the_code(tmp_path, batch):
    repo = tmp_path / "code"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    for i in range(12):
        (repo / "model.py").write_text("".join(f"x{k} = {k * i}\n" for k in range(80)))
        git("add", ".", cwd=repo)
        git("commit", "-q", "-m", f"step {i}", cwd=repo)
    written = make_store(repo, range(15))
    pack(repo, batch=batch)
    assert loose_count(repo) == 0
    git("fsck", "--strict", "--no-dangling", cwd=repo)
    read_back(repo, written)
    assert git("show", "main~5:model.py", cwd=repo).startswith("x0 = 0\nx1 = 6\n")


def test_recent_objects_no_branch_reaches_stay_loose(tmp_path):
    from dulwich.objects import Blob

    store = tmp_path / "store.git"
    make_store(store, range(5))
    with Store.open(store) as st:
        old = st.add(Blob.from_string(b"an old stray object\n"))
        new = st.add(Blob.from_string(b"the object of a commit being written\n"))
    earlier = time.time() - 60  # the other was just written: a commit on its way, say
    os.utime(store / "objects" / old[:2].decode() / old[2:].decode(), (earlier, earlier))
    loose = store / "objects" / new[:2].decode() / new[2:].decode()
    assert pack(store) == 5 * 10 + 1
    assert loose.exists() and loose_count(store) == 1
    assert git("cat-file", "-p", old.decode(), cwd=store) == "an old stray object\n"
