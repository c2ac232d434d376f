"""What a push or a pull sends (mitosis/store/send.py): packs sent whole, receivers that have
some of it already, transfers cut off halfway, and forged objects from a store on this machine;
git itself reads what arrives."""

from __future__ import annotations

import os
import signal
import subprocess
import zlib
from pathlib import Path

import pytest
from conftest import git

import mitosis
from mitosis.store.pack import pack_loose
from mitosis.store.reader import Reader
from mitosis.store.repo import Store
from mitosis.store.send import missing


def make(path: Path, trials: range) -> None:
    """Commit trials ``trials`` to the store at ``path``, one commit each, as the recorder
    writes them (a trial's folder under ``trials/<xx>/``)."""
    with Store.open(path, create=True) as st:
        for i in trials:
            trial_id = f"{i % 5:02x}{i:010x}"
            folder = f"trials/{trial_id[:2]}/{trial_id}"
            files = {
                f"{folder}/trial.json": b'{"id": "%s", "status": "ok", "main": %d}'
                % (
                    trial_id.encode(),
                    i,
                ),
                f"{folder}/output.log": b"trial %d ran\n" % i,
                f"{folder}/results/sine.dill": os.urandom(32),
            }
            st.commit("sine", files, f"sine: trial {i}\n")


def packed(path: Path) -> None:
    with Store.open(path) as st:
        pack_loose(st)


def packs(path: Path) -> list[Path]:
    return sorted((path / "objects" / "pack").glob("pack-*.pack"))


def commits(path: Path) -> int:
    return int(git("rev-list", "--count", "mitosis/sine", cwd=path))


def bare(path: Path) -> Path:
    git("init", "-q", "--bare", str(path))
    return path


def test_a_push_to_an_empty_store_sends_the_packs_whole(tmp_path):
    store, hub = tmp_path / "store.git", bare(tmp_path / "hub.git")
    make(store, range(12))
    packed(store)
    [source] = packs(store)
    assert mitosis.push(str(hub), store=store).experiments == {"sine": "new"}
    [sent] = packs(hub)
    assert source.read_bytes()[12:-20] in sent.read_bytes()  # its entries, as they were
    git("fsck", "--strict", cwd=hub)
    assert commits(hub) == 12
    assert git("rev-parse", "mitosis/sine", cwd=hub) == git("rev-parse", "mitosis/sine", cwd=store)
    git("log", "--stat", "mitosis/sine", cwd=hub)  # git reads every commit and tree


def test_a_receiver_that_has_some_gets_only_the_rest(tmp_path):
    store, hub, other = tmp_path / "store.git", bare(tmp_path / "hub.git"), tmp_path / "b.git"
    make(store, range(6))
    mitosis.push(str(hub), store=store)
    mitosis.pull(str(hub), store=other)
    make(store, range(6, 10))
    packed(store)  # one pack of all ten trials: the hub has six of them
    first = {p.name for p in packs(hub)}
    assert mitosis.push(str(hub), store=store).experiments == {"sine": "pushed"}
    [new] = [p for p in packs(hub) if p.name not in first]
    with Store.open(hub) as st, Reader(st.repo.object_store) as reader:
        sent = next(p for p in reader.packs if p.file.name == str(new))
        objects = len(sent.ids)
    assert objects == 4 * 9  # four trials: a commit, five trees and three files each
    git("fsck", "--strict", cwd=hub)
    assert commits(hub) == 10
    assert mitosis.pull(str(hub), store=other).experiments == {"sine": "fast-forward"}
    git("fsck", "--strict", cwd=other)
    assert {t.id for t in mitosis.trials("sine", store=other)} == {
        t.id for t in mitosis.trials("sine", store=store)
    }


def packed_as_ref_delta(store: Path, base: str, target: str) -> None:
    """Pack ``base`` alone, then ``target`` alone as a ref delta against it: a pack whose
    delta's base is in another pack (as a fetch's completed thin pack can leave)."""
    from dulwich.objects import hex_to_sha
    from dulwich.pack import UnpackedObject, create_delta

    from mitosis.store.pack import write_pack

    with Store.open(store) as st:
        objects = st.repo.object_store
        source, wanted = objects[base.encode()], objects[target.encode()]
        write_pack(
            objects,
            1,
            iter(
                [
                    UnpackedObject(
                        3, sha=source.sha().digest(), decomp_chunks=[source.as_raw_string()]
                    )
                ]
            ),
        )
        delta = b"".join(create_delta(source.as_raw_string(), wanted.as_raw_string()))
        entry = UnpackedObject(
            3,
            sha=hex_to_sha(target.encode()),
            delta_base=hex_to_sha(base.encode()),
            decomp_chunks=[delta],
        )
        write_pack(objects, 1, iter([entry]))


def test_a_pack_whose_delta_has_its_base_elsewhere_is_never_sent_thin(tmp_path):
    store, hub = tmp_path / "store.git", bare(tmp_path / "hub.git")
    make(store, range(10))
    old = git("rev-parse", "mitosis/sine~1", cwd=store).strip()
    git("push", "-q", str(hub), f"{old}:refs/heads/mitosis/sine", cwd=store)  # has trial 8
    blob = {
        i: git(
            "rev-parse",
            f"mitosis/sine~{9 - i}:trials/{i % 5:02x}/{i % 5:02x}{i:010x}/trial.json",
            cwd=store,
        ).strip()
        for i in (8, 9)
    }
    packed_as_ref_delta(store, blob[8], blob[9])  # trial 9's record: a delta against 8's
    with Store.open(store) as st, Reader(st.repo.object_store) as reader:
        assert [p for p in reader.packs if not p.ref_bases() <= set(p.ids)]
    assert mitosis.push(str(hub), store=store).experiments == {"sine": "pushed"}
    git("fsck", "--strict", cwd=hub)
    for pack in packs(hub):  # each pack stands alone
        git("verify-pack", str(pack.with_suffix(".idx")), cwd=hub)
    assert commits(hub) == 10
    assert git("cat-file", "-p", blob[9], cwd=hub) == git("cat-file", "-p", blob[9], cwd=store)


def test_what_to_send_is_what_git_would_send(tmp_path):
    store = tmp_path / "store.git"
    make(store, range(8))
    old = git("rev-parse", "mitosis/sine~3", cwd=store).strip()
    tip = git("rev-parse", "mitosis/sine", cwd=store).strip()
    listed = git("rev-list", "--objects", tip, f"^{old}", cwd=store).splitlines()
    expected = {line.split()[0] for line in listed}
    with Store.open(store) as st, Reader(st.repo.object_store) as reader:
        found = missing(reader, [tip.encode()], [old.encode()])
    assert {sha.decode() for sha in found} == expected


def mitosis_command(*args: str) -> list[str]:
    import shutil
    import sys

    script = shutil.which("mitosis", path=str(Path(sys.executable).parent)) or "mitosis"
    return [script, *args]


@pytest.mark.parametrize("point", ["pack-written", "pack"])
def test_a_push_cut_off_halfway_leaves_nothing_half_written(tmp_path, point):
    store, hub = tmp_path / "store.git", bare(tmp_path / "hub.git")
    make(store, range(5))
    env = {**os.environ, "MITOSIS_FAULT_STOP": point}
    command = mitosis_command("push", str(hub), "--store", str(store))
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert git("for-each-ref", cwd=hub) == ""  # no ref moved
    assert [p for p in packs(hub) if p.with_suffix(".idx").exists()] == []  # no pack in use
    git("fsck", "--strict", cwd=hub)
    assert mitosis.push(str(hub), store=store).experiments == {"sine": "new"}
    git("fsck", "--strict", cwd=hub)
    assert commits(hub) == 5


def forge_loose_blob(store: Path) -> str:
    """Replace the content of one loose blob of ``store`` (a trial's output.log) by other
    bytes, keeping its name: a store on this machine that lies about an object."""
    tip = git("rev-parse", "mitosis/sine", cwd=store).strip()
    listing = git("ls-tree", "-r", tip, cwd=store).splitlines()
    blob = next(line.split()[2] for line in listing if line.endswith("output.log"))
    path = store / "objects" / blob[:2] / blob[2:]
    os.chmod(path, 0o644)
    path.write_bytes(zlib.compress(b"blob 7\x00forged!"))
    return blob


def test_a_pull_from_a_store_that_lies_about_an_object_is_refused(tmp_path):
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source, range(3))
    make(store, range(100, 101))
    before = git("for-each-ref", cwd=store)
    forged = forge_loose_blob(source)
    with pytest.raises(mitosis.SyncRefused, match=r"is not what its id says"):
        mitosis.pull(str(source), store=store)
    assert git("for-each-ref", cwd=store) == before
    missing_blob = subprocess.run(["git", "cat-file", "-e", forged], cwd=store, check=False)
    assert missing_blob.returncode != 0  # never entered the store
    git("fsck", "--strict", cwd=store)
    assert not list((store / "mitosis").glob("incoming-*"))  # the quarantine is gone


def test_a_pull_from_a_store_with_a_forged_pack_is_refused(tmp_path):
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source, range(4))
    packed(source)
    [pack] = packs(source)
    data = bytearray(pack.read_bytes())
    # the last entry's compressed bytes changed: its content no longer what the index says
    index = pack.with_suffix(".idx")
    os.chmod(pack, 0o644)
    data[-30] ^= 0xFF
    pack.write_bytes(bytes(data))
    assert index.exists()
    with pytest.raises((mitosis.SyncRefused, mitosis.SyncError)):
        mitosis.pull(str(source), store=store)
    assert git("for-each-ref", cwd=store) == ""
    assert packs(store) == []


def test_a_pull_into_a_store_named_by_a_relative_path_reads_its_history(tmp_path, monkeypatch):
    source = tmp_path / "source.git"
    make(source, range(4))
    git("clone", "-q", "--bare", str(source), str(tmp_path / "store.git"))
    make(source, range(4, 6))
    monkeypatch.chdir(tmp_path)  # the quarantine sees the store through a path it resolves
    assert mitosis.pull(str(source), store="store.git").experiments == {"sine": "fast-forward"}
    git("fsck", "--strict", cwd=tmp_path / "store.git")
    assert commits(tmp_path / "store.git") == 6


def test_a_first_pull_copies_the_store_whole_but_never_what_no_tip_reaches(tmp_path):
    source, store, other = tmp_path / "source.git", tmp_path / "store.git", tmp_path / "o.git"
    make(source, range(6))
    packed(source)
    assert mitosis.pull(str(source), store=store).experiments == {"sine": "new"}
    [copied] = packs(store)
    assert packs(source)[0].read_bytes()[12:-20] in copied.read_bytes()  # whole, as it was
    git("fsck", "--strict", cwd=store)
    with Store.open(source) as st:  # an object no tip reaches
        dangling = st.add_blob(b"nobody points here\n").decode()
    assert mitosis.pull(str(source), store=other).experiments == {"sine": "new"}
    absent = subprocess.run(["git", "cat-file", "-e", dangling], cwd=other, check=False)
    assert absent.returncode != 0  # copied again, what the tips reach only
    git("fsck", "--strict", cwd=other)
    assert commits(other) == 6 and not list((other / "mitosis").glob("incoming-*"))


def test_a_merge_pull_writes_down_only_the_trials_it_brought(tmp_path):
    from mitosis.store.provenance import sources

    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source, range(6))
    git("clone", "-q", "--bare", str(source), str(store))
    make(source, range(6, 9))  # three new there, and one new here: the pull merges
    make(store, range(20, 21))
    assert mitosis.pull(str(source), store=store).experiments == {"sine": "merged"}
    with Store.open(store) as st:
        pulled = {t for t, where in sources(st, "sine").items() if where.startswith("pull")}
    assert pulled == {f"{i % 5:02x}{i:010x}" for i in range(6, 9)}
    git("fsck", "--strict", cwd=store)


def test_a_first_pull_from_a_store_that_lost_a_file_is_refused(tmp_path):
    """A store copied whole whose tips reach a file it does not hold: the walk reads no file,
    so what it reached is compared with what was copied."""
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source, range(3))
    tip = git("rev-parse", "mitosis/sine", cwd=source).strip()
    listing = git("ls-tree", "-r", tip, cwd=source).splitlines()
    blob = next(line.split()[2] for line in listing if line.endswith("output.log"))
    (source / "objects" / blob[:2] / blob[2:]).unlink()
    with pytest.raises(mitosis.SyncRefused, match=f"{blob} is missing"):
        mitosis.pull(str(source), store=store)
    assert git("for-each-ref", cwd=store) == ""
    git("fsck", "--strict", cwd=store)
