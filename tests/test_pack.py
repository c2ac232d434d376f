"""Packing: deltas chosen from the history, read back by the git CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import git

import mitosis
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


# -- what stopped packers leave --------------------------------------------------------------


def mitosis_command(*args: str) -> list[str]:
    """The installed `mitosis` console script and ``args``, as a user runs it."""
    script = shutil.which("mitosis", path=str(Path(sys.executable).parent)) or "mitosis"
    return [script, *args]


def killed_at(point: str, *args: str) -> int:
    """Run `mitosis ARGS` until it stops at ``point`` (``MITOSIS_FAULT_STOP``), then SIGKILL
    it; its process id."""
    env = {**os.environ, "MITOSIS_FAULT_STOP": point}
    proc = subprocess.Popen(mitosis_command(*args), env=env, stdout=subprocess.DEVNULL)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"mitosis {' '.join(args)} ended before {point}"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    return proc.pid


def garbage(path: Path) -> int:
    counts = dict(line.split(": ") for line in git("count-objects", "-v", cwd=path).splitlines())
    return int(counts["garbage"])


def pack_folder(path: Path) -> list[str]:
    return sorted(p.name for p in (path / "objects" / "pack").iterdir())


def assert_clean(store: Path, written: dict[str, bytes]) -> None:
    """Everything packed, nothing left over, and git reads every file."""
    names = pack_folder(store)
    assert [n for n in names if not n.startswith("pack-")] == []
    stems = [n.rsplit(".", 1) for n in names]
    assert {s for s, ext in stems if ext == "pack"} == {s for s, ext in stems if ext == "idx"}
    assert loose_count(store) == 0 and garbage(store) == 0
    assert not (store / "mitosis" / "gc.lock").exists()
    git("fsck", "--strict", cwd=store)
    read_back(store, written)


@pytest.mark.parametrize("point", ["pack-written", "pack", "index"])
def test_the_gc_after_a_killed_gc_clears_what_it_left_and_packs(tmp_path, point):
    store = tmp_path / "store.git"
    written = make_store(store, range(60))
    pid = killed_at(point, "gc", "--store", str(store))
    claim = json.loads((store / "mitosis" / "gc.lock").read_text())
    assert claim["pid"] == pid  # the claim of a process that is gone
    left = [n for n in pack_folder(store) if n.startswith("tmp_mitosis_")]
    assert left == ([] if point == "index" else left) and (point == "index" or len(left) >= 1)
    if point == "pack":  # in place without its index: readers do not see it
        assert [n for n in pack_folder(store) if n.endswith(".pack") and "tmp" not in n]
    assert loose_count(store) == 60 * 10  # nothing loose was deleted
    done = subprocess.run(mitosis_command("gc", "--store", str(store)), capture_output=True)
    said = done.stderr.decode()
    assert done.returncode == 0, said
    assert f"removed the packer's stale claim {store / 'mitosis' / 'gc.lock'}" in said
    assert f"left by process {pid} on " in said and "which is no longer running" in said
    assert ("that writers which stopped" in said) is (point != "index")
    assert "packed 600 objects" in done.stdout.decode()
    assert_clean(store, written)


def test_a_claim_held_by_a_live_process_refuses_until_it_ends(tmp_path):
    store = tmp_path / "store.git"
    written = make_store(store, range(5))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_CLAIM, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "claimed\n"
    refused = subprocess.run(mitosis_command("gc", "--store", str(store)), capture_output=True)
    assert refused.returncode == 1
    said = refused.stderr.decode()
    assert "another packer is at work" in said and f"(process {holder.pid} on " in said
    assert loose_count(store) > 0
    holder.communicate("", timeout=30)  # it ends without giving the claim back
    done = subprocess.run(mitosis_command("gc", "--store", str(store)), capture_output=True)
    assert done.returncode == 0 and "which is no longer running" in done.stderr.decode()
    assert_clean(store, written)


HOLD_THE_CLAIM = """
import sys
from mitosis.store import background
assert background.claim(sys.argv[1])
print("claimed", flush=True)
sys.stdin.read()
"""


def test_claims_of_other_hosts_and_earlier_versions_go_stale_with_age(tmp_path, caplog):
    store = tmp_path / "store.git"
    written = make_store(store, range(3))
    claim = store / "mitosis" / "gc.lock"
    claim.parent.mkdir()
    for text in (json.dumps({"pid": 1, "host": "elsewhere", "claimed": 0}), ""):
        claim.write_text(text)  # another host's packer, whose process cannot be looked at
        with pytest.raises(mitosis.SyncError, match="another packer is at work"):
            mitosis.gc(store=store)
        hour_ago = time.time() - 3601
        os.utime(claim, (hour_ago, hour_ago))
        with caplog.at_level("WARNING", logger="mitosis"):
            assert mitosis.gc(store=store).objects >= 0
        assert "removed the packer's stale claim" in caplog.text
        assert ("'elsewhere'" in caplog.text) is bool(text)
        caplog.clear()
    assert_clean(store, written)


def test_lock_files_and_temporary_packs_left_behind(tmp_path, caplog):
    store, twin = tmp_path / "store.git", tmp_path / "twin.git"
    written = make_store(store, range(20))
    shutil.copytree(store, twin)
    pack(twin)  # the same objects make the same pack: its name is known in advance
    (name,) = [n[: -len(".pack")] for n in pack_folder(twin) if n.endswith(".pack")]
    folder = store / "objects" / "pack"
    folder.mkdir(exist_ok=True)
    lock = folder / f"{name}.idx.lock"  # what an earlier packer, killed, left for this very pack
    lock.write_bytes(b"")
    fetching = folder / "tmp_pack_Fetching"  # a fetch at work
    fetching.write_bytes(b"PACK")
    left = [
        folder / "tmp_pack_Old",
        store / "objects" / "tmp_pack_Thin",
        folder / "tmpab_cd123.pack",
    ]
    for path in left:
        path.write_bytes(b"PACK")
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    with caplog.at_level("WARNING", logger="mitosis"):
        assert mitosis.gc(store=store).objects == 20 * 10  # the lock blocks nothing
    assert lock.exists() and fetching.exists()  # fresh: maybe a live writer's
    assert not any(path.exists() for path in left)
    assert "removed 3 file(s)" in caplog.text and "pack/tmp_pack_Old" in caplog.text
    caplog.clear()
    os.utime(lock, (time.time() - 60, time.time() - 60))  # older than a writer holds one
    fetching.unlink()
    with caplog.at_level("WARNING", logger="mitosis"):
        assert mitosis.gc(store=store).objects == 0
    assert not lock.exists() and f"pack/{name}.idx.lock" in caplog.text
    assert_clean(store, written)


def test_a_lock_met_while_packing_is_a_store_error(tmp_path):
    from dulwich.file import GitFile

    from mitosis.store.gc import packing

    store = tmp_path / "store.git"
    make_store(store, range(2))
    target = tmp_path / "index"
    Path(f"{target}.lock").write_bytes(b"")
    locked = pytest.raises(mitosis.StoreError, match=r"index\.lock is locked by another writer")
    with Store.open(store) as st, locked, packing(st) as mine:
        assert mine
        GitFile(str(target), "wb")
    assert not (store / "mitosis" / "gc.lock").exists()  # the claim is given back


def test_a_store_whose_claim_cannot_be_written(tmp_path):
    store = tmp_path / "store.git"
    make_store(store, range(2))
    (store / "mitosis").write_text("not a folder")
    with pytest.raises(mitosis.StoreError, match=r"cannot claim .* for packing"):
        mitosis.gc(store=store)


def test_a_pack_removed_before_its_index_is_in_place_keeps_the_loose_objects(tmp_path, monkeypatch):
    from mitosis.store import repo

    store = tmp_path / "store.git"
    written = make_store(store, range(10))

    def another_packer_removes_it(point: str) -> None:
        if point == "pack":
            (placed,) = (store / "objects" / "pack").glob("pack-*.pack")
            placed.unlink()

    monkeypatch.setattr(repo, "fault", another_packer_removes_it)
    with pytest.raises(mitosis.StoreError, match="was removed before its index was in place"):
        pack(store)
    assert pack_folder(store) == [] and loose_count(store) == 10 * 10
    monkeypatch.setattr(repo, "fault", None)
    assert pack(store) == 10 * 10
    assert_clean(store, written)


START_A_PACKER = "import sys; from mitosis.store import background; background.start(sys.argv[1])"


def test_the_background_packer_holds_the_claim_itself(tmp_path):
    from mitosis.store import background

    store = tmp_path / "store.git"
    written = make_store(store, range(5))
    env = {**os.environ, "MITOSIS_FAULT_STOP": "pack-written"}  # the packer stops there
    subprocess.run([sys.executable, "-c", START_A_PACKER, str(store)], env=env, check=True)
    claim = json.loads((store / "mitosis" / "gc.lock").read_text())
    packer = claim["pid"]  # its starter has ended: the claim is the packer's own

    def state() -> str | None:
        found = background._process(packer)
        return found[0] if found else None

    deadline = time.monotonic() + 60
    while state() != "T" and time.monotonic() < deadline:  # until it stops at the point
        time.sleep(0.02)
    assert state() == "T"
    with pytest.raises(mitosis.SyncError, match=f"process {packer} on "):
        mitosis.gc(store=store)
    os.kill(packer, signal.SIGKILL)  # gone, or a zombie its new parent has not reaped yet
    while state() not in (None, "Z", "X") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mitosis.gc(store=store).objects == 5 * 10
    assert_clean(store, written)


def test_the_packer_leaves_the_temporary_files_of_live_writers_alone(tmp_path):
    """A pull or a recording streams into a temporary file of the pack folder while a packer
    may be at work: the packer removes only what no live process holds."""
    from mitosis.store.blobs import held_temporary

    store = tmp_path / "store.git"
    written = make_store(store, range(5))
    folder = store / "objects" / "pack"
    fd, incoming = held_temporary(folder, "incoming_")  # as a pull's fetch holds its pack
    young = folder / "tmp_mitosis_new_abc123"  # a writer's file before it holds it
    young.write_bytes(b"")
    try:
        os.write(fd, b"PACK")
        assert mitosis.gc(store=store).objects == 50
        assert os.path.exists(incoming) and young.exists()
    finally:
        os.close(fd)
    old = time.time() - 3600
    os.utime(young, (old, old))
    assert mitosis.gc(store=store).removed == 2  # now nobody holds them
    assert not os.path.exists(incoming) and not young.exists()
    assert_clean(store, written)


@pytest.mark.parametrize("point", ["pack-written", "pack"])
def test_a_live_packer_s_files_are_left_to_it(tmp_path, point):
    """A pack on its way into place (and its index) are held by their writer: a cleaner that
    runs meanwhile (another store's packer, a push writing into this store) leaves them."""
    from mitosis.store.clean import clean

    store = tmp_path / "store.git"
    written = make_store(store, range(10))
    env = {**os.environ, "MITOSIS_FAULT_STOP": point}
    proc = subprocess.Popen(mitosis_command("gc", "--store", str(store)), env=env)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"mitosis gc ended before {point}"
    before = pack_folder(store)
    assert [n for n in before if n.startswith("tmp_mitosis_")]  # on its way
    assert clean(str(store)) == []
    assert pack_folder(store) == before
    os.kill(proc.pid, signal.SIGCONT)
    assert proc.wait(timeout=60) == 0
    assert_clean(store, written)


@pytest.mark.parametrize("count", [0, 1, 300])
def test_the_pack_index_is_git_s_own_format(tmp_path, count):
    """The index written in whole tables reads back as dulwich's writer makes it, far
    offsets (a pack over 2 GiB) included."""
    import hashlib
    import io

    from dulwich.pack import write_pack_index_v2

    written = {
        hashlib.sha1(b"%d" % i).digest(): ((12 + 97 * i) << (i % 3 * 16), i * 7919 % 2**32)
        for i in range(count)
    }
    checksum = hashlib.sha1(b"the pack").digest()
    theirs = io.BytesIO()
    entries = sorted((sha, offset, crc) for sha, (offset, crc) in written.items())
    write_pack_index_v2(theirs, entries, checksum)
    assert _pack.index_v2(written, checksum) == theirs.getvalue()
    assert count < 3 or max(offset for offset, _ in written.values()) >= 2**31
