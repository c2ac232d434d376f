"""The listing index: one file per experiment keyed by its branch's tip, which follows the branch
(new trials, pulls, merges, rewritten branches), is rebuilt when missing, damaged, truncated or
another store's, never gives a wrong answer, and is written whole by processes listing at once."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import console_script, git, run_writers, server

import mitosis
from mitosis.model.layout import trial_dir
from mitosis.model.query import Row
from mitosis.store.repo import Store
from mitosis.store.trials import _judge

LIST = (
    "import sys, mitosis; "
    "print(' '.join(t.id for t in mitosis.trials(sys.argv[1], store=sys.argv[2] or None)))"
)


def fresh_ids(experiment: str, store: Path | None = None) -> list[str]:
    """The ids a fresh process lists (oldest first)."""
    out = subprocess.run(
        [sys.executable, "-c", LIST, experiment, str(store or "")],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def index_file(store: Path | str, experiment: str) -> Path:
    with Store.open(store) as st:
        return Path(st.repo.controldir(), "mitosis", "index", f"{experiment}.idx")


def head(path: Path) -> dict:
    """The header of an index file, after checking it is whole: its checksum, and each record
    the blob that git (the CLI) finds at the trial's place on the branch at the index's tip."""
    import hashlib

    data = path.read_bytes()
    magic, header, body = data.split(b"\n", 2)
    assert magic == b"mitosis-index 5"
    found = json.loads(header)
    assert len(body) == found["columns"] + found["records"]
    columns, records = body[: found["columns"]], body[found["columns"] :]
    key = json.dumps([found["store"], found["experiment"], found["tip"]]).encode()
    assert hashlib.sha256(key + b"\n" + columns).hexdigest() == found["sha256"]
    held = json.loads(columns)
    for trial_id, tree, blob, offset, size, *_ in held["entries"]:
        record = records[offset : offset + size]
        assert hashlib.sha1(b"blob %d\x00" % size + record).hexdigest() == blob
        where = f"{found['tip']}:trials/{trial_id[:2]}/{trial_id}"
        assert git("rev-parse", where, cwd=found["store"]).strip() == tree
        assert git("rev-parse", f"{where}/trial.json", cwd=found["store"]).strip() == blob
    shards = git("ls-tree", f"{found['tip']}:trials", cwd=found["store"]).splitlines()
    assert held["shards"] == {line.split()[3]: line.split()[2] for line in shards}
    return found


def tip(store: Path | str, experiment: str) -> str:
    return git("rev-parse", f"mitosis/{experiment}", cwd=store).strip()


def forget() -> None:
    """Drop what this process remembers, so that the next listing reads the file."""
    from mitosis.store import index

    index._MEMORY.clear()


def record(investigation, x: float, store: Path | None = None) -> str:
    return mitosis.run(investigation.bare_number, {"x": x}, store=store).id


def test_the_index_is_written_at_the_tip_and_read_by_a_fresh_process(investigation, caplog):
    made = [record(investigation, x) for x in (1.0, 2.0)]
    assert [t.id for t in mitosis.trials("bare_number")] == made
    path = index_file(".", "bare_number")
    found = head(path)
    assert found["tip"] == tip(".", "bare_number")
    assert found["experiment"] == "bare_number"
    assert found["store"] == str(Path.cwd().resolve())
    before = path.stat().st_mtime_ns
    assert fresh_ids("bare_number") == made
    assert path.stat().st_mtime_ns == before  # read, not rewritten: the tip has not moved
    forget()
    with caplog.at_level(logging.DEBUG, logger="mitosis"):
        assert [t.id for t in mitosis.trials("bare_number")] == made
    assert "trial folders read" not in caplog.text  # served from the file alone


def test_the_listing_cache_of_earlier_versions_is_removed(investigation):
    old = Path(".git/mitosis/cache/bare_number.json")
    old.parent.mkdir(parents=True)
    old.write_text('{"version": 2, "shards": {}, "records": {}}')
    kept = old.with_name("other.json")
    kept.write_text("{}")  # another experiment's: removed when that one is listed
    made = record(investigation, 1.0)
    assert [t.id for t in mitosis.trials("bare_number")] == [made]
    assert not old.exists() and kept.exists()


def test_new_trials_read_only_the_new_folders(investigation, caplog):
    first = record(investigation, 1.0)
    assert fresh_ids("bare_number") == [first]
    second = record(investigation, 2.0)
    forget()
    with caplog.at_level(logging.DEBUG, logger="mitosis"):
        assert [t.id for t in mitosis.trials("bare_number")] == [first, second]
    assert "1 trial folders read, 1 kept" in caplog.text
    assert head(index_file(".", "bare_number"))["tip"] == tip(".", "bare_number")
    third = record(investigation, 3.0)  # this process remembers the index: it follows too
    assert [t.id for t in mitosis.trials("bare_number")] == [first, second, third]
    assert fresh_ids("bare_number") == [first, second, third]


def test_variants_count_their_trials_from_the_index(investigation, caplog):
    lookup = {"noise": {"low": 0.01, "high": 0.5}}
    for amplitude, noise in ((1, "low"), (2, "low"), (3, "high"), (4, "low")):
        mitosis.run(investigation.sine, {"amplitude": amplitude, "noise": noise}, lookup=lookup)
    built = [t.params["noise"].variant for t in mitosis.trials("sine")]  # each Trial, built
    forget()
    with caplog.at_level(logging.DEBUG, logger="mitosis"):
        found = {v.name: v.trials for v in mitosis.variants("sine", "noise")}
    assert found == {name: built.count(name) for name in built} == {"low": 3, "high": 1}
    assert "trial folders read" not in caplog.text  # the index file at the tip: no folder read
    with pytest.raises(mitosis.VariantConflict) as err:  # the first trial that used it
        mitosis.run(
            investigation.sine, {"amplitude": 1, "noise": "low"}, lookup={"noise": {"low": 9}}
        )
    assert err.value.locked_by == mitosis.trials("sine")[0].id


def damage(path: Path, where: str = "columns") -> None:
    """Change one byte of the file: of its columns (which its checksum covers), or of the
    record of a trial (which its blob id covers)."""
    data = bytearray(path.read_bytes())
    found = json.loads(data.split(b"\n", 2)[1])
    at = (
        len(data) - found["records"] + 20
        if where == "record"
        else len(data) - found["records"] - 300
    )
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(damage, id="damaged"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:-3] + b"\n"), id="records-cut"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:-30]), id="truncated"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:10]), id="cut-in-its-header"),
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
        pytest.param(lambda p: p.write_text("{not an index"), id="garbage"),
        pytest.param(
            lambda p: p.write_bytes(p.read_bytes().replace(b"mitosis-index 5", b"mitosis-index 2")),
            id="another-version",
        ),
        pytest.param(
            lambda p: p.write_bytes(p.read_bytes().replace(b'"tip": "', b'"tip": "0', 1)),
            id="header-changed",
        ),
        pytest.param(lambda p: p.unlink(), id="missing"),
    ],
)
def test_a_spoilt_index_is_rebuilt_and_never_gives_a_wrong_answer(investigation, spoil, caplog):
    made = [record(investigation, x) for x in (1.0, 2.0)]
    mitosis.trials("bare_number")
    path = index_file(".", "bare_number")
    spoil(path)
    forget()
    with caplog.at_level(logging.DEBUG, logger="mitosis"):
        assert [t.id for t in mitosis.trials("bare_number")] == made
    assert "2 trial folders read, 0 kept" in caplog.text  # rebuilt from the branch
    assert head(path)["tip"] == tip(".", "bare_number")  # and written whole again
    assert fresh_ids("bare_number") == made


@pytest.mark.parametrize("where", ["columns", "record"])
def test_a_damaged_index_in_a_fresh_process_prints_the_right_log(investigation, where):
    made = [record(investigation, x) for x in (1.0, 2.0)]
    mitosis.trials("bare_number")
    damage(index_file(".", "bare_number"), where)
    out = subprocess.run(
        [console_script(), "log", "bare_number", "--json"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert [t["id"] for t in json.loads(out.stdout)] == made[::-1]
    assert [t["main"] for t in json.loads(out.stdout)] == [6.0, 3.0]
    out = subprocess.run(
        [console_script(), "show", made[0][:8]], capture_output=True, text=True, check=True
    )
    assert made[0] in out.stdout and "3" in out.stdout


def test_a_damaged_record_in_the_index_is_read_from_the_branch(investigation, caplog):
    made = [mitosis.run(investigation.bare_number, {"x": x}) for x in (1.0, 2.0)]
    mitosis.trials("bare_number")
    path = index_file(".", "bare_number")
    data = path.read_bytes()
    # the results changed in the index's copies of the trial.json (not in its columns)
    header = json.loads(data.split(b"\n", 2)[1])
    start = len(data) - header["records"]
    records = (
        data[start:].replace(b'"main": 3.0', b'"main": 4.0').replace(b'"main": 6.0', b'"main": 7.0')
    )
    assert records != data[start:]
    path.write_bytes(data[:start] + records)
    forget()
    with caplog.at_level(logging.DEBUG, logger="mitosis"):
        found = mitosis.trials("bare_number")
    assert "trial folders read" not in caplog.text  # the columns are whole: no rebuild
    assert [t.main for t in found] == [3.0, 6.0] and list(found) == made  # read from git


def test_an_index_of_another_store_or_experiment_is_rebuilt(investigation, tmp_path):
    other = tmp_path / "other.git"
    theirs = record(investigation, 5.0, store=other)
    mitosis.trials("bare_number", store=other)
    mine = record(investigation, 1.0)
    mitosis.trials("bare_number")
    path = index_file(".", "bare_number")
    shutil.copy(index_file(other, "bare_number"), path)  # another store's index
    forget()
    assert [t.id for t in mitosis.trials("bare_number")] == [mine]
    assert head(path)["store"] == str(Path.cwd().resolve())
    assert theirs not in path.read_bytes().decode()
    # an index of another experiment put in this one's place
    sine = mitosis.run(
        investigation.sine, {"amplitude": 1, "noise": "low"}, lookup=investigation.lookup
    )
    mitosis.trials("sine")
    shutil.copy(index_file(".", "sine"), path)
    forget()
    assert [t.id for t in mitosis.trials("bare_number")] == [mine]
    assert fresh_ids("bare_number") == [mine] and fresh_ids("sine") == [sine.id]


def test_a_stale_index_follows_the_branch(investigation, caplog):
    first = record(investigation, 1.0)
    mitosis.trials("bare_number")
    path = index_file(".", "bare_number")
    stale = path.read_bytes()
    later = [record(investigation, x) for x in (2.0, 3.0)]
    mitosis.trials("bare_number")
    path.write_bytes(stale)  # the index of an older tip
    forget()
    with caplog.at_level(logging.DEBUG, logger="mitosis"):
        assert [t.id for t in mitosis.trials("bare_number")] == [first, *later]
    assert "2 trial folders read, 1 kept" in caplog.text
    assert head(path)["tip"] == tip(".", "bare_number")


def test_a_rewritten_branch_is_followed(investigation):
    first, second = record(investigation, 1.0), record(investigation, 2.0)
    assert fresh_ids("bare_number") == [first, second]
    assert [t.id for t in mitosis.trials("bare_number")] == [first, second]
    git("update-ref", "refs/heads/mitosis/bare_number", "mitosis/bare_number~1")
    assert [t.id for t in mitosis.trials("bare_number")] == [first]  # in this process
    assert fresh_ids("bare_number") == [first]
    third = record(investigation, 3.0)  # a new history: not a fast-forward of the index's tip
    assert [t.id for t in mitosis.trials("bare_number")] == [first, third]
    assert second.encode() not in index_file(".", "bare_number").read_bytes()
    assert fresh_ids("bare_number") == [first, third]


def test_the_index_follows_a_fast_forward_pull_and_a_merge(investigation, tmp_path, hub):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    made_a = [record(investigation, x, store=a) for x in (1.0, 2.0)]
    mitosis.push(store=a)
    assert mitosis.pull(store=b).experiments == {"bare_number": "new"}
    assert fresh_ids("bare_number", b) == made_a
    assert {t.id for t in mitosis.trials("bare_number", store=b)} == set(made_a)
    more_a = record(investigation, 3.0, store=a)
    mitosis.push(store=a)
    assert mitosis.pull(store=b).experiments == {"bare_number": "fast-forward"}
    assert {t.id for t in mitosis.trials("bare_number", store=b)} == {*made_a, more_a}
    assert fresh_ids("bare_number", b) == [*made_a, more_a]
    mine = record(investigation, 4.0, store=b)
    theirs = record(investigation, 5.0, store=a)
    mitosis.push(store=a)
    assert mitosis.pull(store=b).experiments == {"bare_number": "merged"}
    expected = {*made_a, more_a, mine, theirs}
    assert {t.id for t in mitosis.trials("bare_number", store=b)} == expected
    assert set(fresh_ids("bare_number", b)) == expected
    assert head(index_file(b, "bare_number"))["tip"] == tip(b, "bare_number")


def plant_bad_trial(store: Path | str, good: str) -> str:
    """A trial whose record fails its checks (its duration is text), committed with git."""
    bad_id = "ab" + good[2:]
    with Store.open(store) as st:
        data = st.read_file("bare_number", f"trials/{good[:2]}/{good}/trial.json")
    assert data is not None
    bad = json.loads(data)
    bad.update(id=bad_id, duration="long")
    with Store.open(store) as st:
        st.commit(
            "bare_number",
            {f"trials/{bad_id[:2]}/{bad_id}/trial.json": json.dumps(bad).encode()},
            "bad\n",
        )
    return bad_id


def test_a_bad_record_is_said_and_skipped_in_every_process(investigation, caplog):
    good = record(investigation, 1.0)
    bad = plant_bad_trial(".", good)
    with caplog.at_level(logging.WARNING, logger="mitosis"):
        assert [t.id for t in mitosis.trials("bare_number")] == [good]
        assert [t.id for t in mitosis.trials("bare_number")] == [good]
    said = [r.getMessage() for r in caplog.records if "skipped a trial" in r.getMessage()]
    assert len(said) == 1 and bad in said[0] and "'duration'" in said[0]  # once a process
    assert b"skipped" not in index_file(".", "bare_number").read_bytes()
    assert b"'duration'" in index_file(".", "bare_number").read_bytes()  # its reason, kept
    for _ in range(2):  # each fresh process, served from the index, says it again
        out = subprocess.run(
            [console_script(), "log", "bare_number"], capture_output=True, text=True, check=True
        )
        assert good in out.stdout and bad not in out.stdout
        assert f"skipped a trial: trial {bad} on mitosis/bare_number" in out.stderr
        assert "'duration'" in out.stderr


STEP = {"name": "s", "function": "f", "status": "ok"}
#: What a listing refuses although it builds no Trial: what building one would refuse.
REFUSED = [
    ({"main": {"py/float": "not a number"}}, "ValueError"),
    ({"metrics": {"m": {"py/set": [[1]]}}}, "TypeError"),
    ({"steps": [{**STEP, "main": {"v": [{"py/type": 1}]}}]}, "loaded from their dill file"),
    ({"format": 99}, "written by a newer mitosis (store format 99)"),
    ({"detached": "results/a.dill"}, "field 'detached' must be a list of paths"),
    ({"params": None}, "field 'params' must map names"),
    ({"code": {"repository": "r", "remotes": {}, "dirty": False}}, "'code.commit' is missing"),
]


def test_what_building_a_trial_refuses_a_listing_refuses(investigation, caplog):
    good = record(investigation, 1.0)
    with Store.open(".") as st:
        data = st.read_file("bare_number", f"trials/{good[:2]}/{good}/trial.json")
    assert data is not None
    files, refused = {}, {}
    for n, (change, said) in enumerate(REFUSED, start=1):  # ids of other shards than good's
        trial_id = f"{(int(good[:2], 16) + n) % 256:02x}" + good[2:]
        files[f"trials/{trial_id[:2]}/{trial_id}/trial.json"] = json.dumps(
            {**json.loads(data), "id": trial_id, **change}
        ).encode()
        refused[trial_id] = said
    with Store.open(".") as st:
        st.commit("bare_number", files, "refused\n")
    with caplog.at_level(logging.WARNING, logger="mitosis"):
        assert [t.id for t in mitosis.trials("bare_number")] == [good]
    lines = [r.getMessage() for r in caplog.records if "skipped a trial" in r.getMessage()]
    for trial_id, said in refused.items():
        (line,) = [line for line in lines if trial_id in line]
        assert said in line
        with pytest.raises(mitosis.StoreError, match=re.escape(said)):
            mitosis.load(trial_id)  # loading one says the same
    assert fresh_ids("bare_number") == [good]


def test_processes_listing_at_once_leave_a_whole_index(investigation):
    made = [record(investigation, x) for x in (1.0, 2.0, 3.0)]
    path = index_file(".", "bare_number")
    script = "import mitosis; assert len(mitosis.trials('bare_number')) == 3"
    for _ in range(3):
        if path.exists():
            path.unlink()
        run_writers(script, count=4)  # each builds the index and renames its file in place
        assert head(path)["tip"] == tip(".", "bare_number")
        assert fresh_ids("bare_number") == made
    assert [p.name for p in path.parent.iterdir()] == ["bare_number.idx"]  # no leftovers


def test_leftovers_of_writers_that_died_are_cleared_and_a_read_only_index_lists(investigation):
    first = record(investigation, 1.0)
    mitosis.trials("bare_number")
    path = index_file(".", "bare_number")
    old, young = path.parent / ".tmp-dead.idx", path.parent / ".tmp-writing.idx"
    old.write_bytes(b"half")
    young.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    second = record(investigation, 2.0)
    assert [t.id for t in mitosis.trials("bare_number")] == [first, second]
    assert not old.exists() and young.exists()  # a writer may be at work on the young one
    shutil.rmtree(path.parent)
    path.parent.write_text("not a folder")  # the index cannot be written: listing still works
    third = record(investigation, 3.0)
    assert [t.id for t in mitosis.trials("bare_number")] == [first, second, third]
    assert fresh_ids("bare_number") == [first, second, third]


def test_trials_builds_each_trial_when_first_used(investigation):
    made = [mitosis.run(investigation.bare_number, {"x": x}) for x in (1.0, 2.0, 3.0)]
    found = mitosis.trials("bare_number")
    assert isinstance(found, mitosis.Trials) and len(found) == 3
    assert found == made and made == found and found == list(found)
    assert found != made[:2] and found != "abc"
    assert found[0] is found[0] and found[-1].main == 9.0
    assert found[1:] == made[1:] and isinstance(found[1:], mitosis.Trials)
    assert [t.id for t in reversed(found)] == [t.id for t in made[::-1]]
    assert made[1] in found and found.index(made[2]) == 2
    rows = found.rows
    assert all(isinstance(r, Row) for r in rows)
    assert [(r.id, r.main, r.variants, r.numbers) for r in rows] == [
        (t.id, t.main, t.variants, {"x": t.params["x"].value}) for t in made
    ]
    assert found + made[:1] == [*made, made[0]] and made[:1] + found == [made[0], *made]
    assert repr(found).startswith("Trials([Trial(")
    with pytest.raises(TypeError):
        hash(found)
    again = mitosis.trials("bare_number")
    assert again[0] is not found[0] and again[0] == found[0]


def test_rows_filter_and_sort_as_trials_do(investigation):
    lookup = investigation.lookup
    for amplitude, noise in [(4, "low"), (1, "high"), (2, "low")]:
        mitosis.run(investigation.sine, {"amplitude": amplitude, "noise": noise}, lookup=lookup)
    from mitosis.model.query import select

    found = mitosis.trials("sine")
    for where, sort in [("noise=low", "main"), ("amplitude>1", "err"), (None, "noise")]:
        by_rows = [r.id for r in select(found.rows, where, sort)]
        by_trials = [t.id for t in select(list(found), where, sort)]
        assert by_rows == by_trials
        assert [t.id for t in mitosis.trials("sine", where=where, sort=sort)] == by_trials


def write_loose(git_dir: Path, kind: str, body: bytes) -> str:
    """Write a loose object as git would (even one git would refuse); its id."""
    import hashlib
    import zlib

    data = b"%s %d\x00" % (kind.encode(), len(body)) + body
    object_id = hashlib.sha1(data).hexdigest()
    path = git_dir / "objects" / object_id[:2] / object_id[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zlib.compress(data))
    return object_id


def test_a_damaged_or_missing_trial_folder_is_said_and_skipped(investigation, caplog):
    good = record(investigation, 1.0)
    # in shards of their own, whatever shard the good trial is in
    damaged_id, missing_id = [s + good[2:] for s in ("cd", "ef", "ab") if s != good[:2]][:2]
    folder = write_loose(Path(".git"), "tree", b"100644 trial.json")  # no NUL, no id: damaged
    absent = "1" * 40  # a trial.json whose blob is not in the store
    shard = git("rev-parse", f"mitosis/bare_number:trials/{good[:2]}").strip()
    entries = [f"040000 tree {shard}\t{good[:2]}"]
    for trial_id, tree in ((damaged_id, folder), (missing_id, None)):
        if tree is None:
            tree = git("mktree", "--missing", input=f"100644 blob {absent}\ttrial.json\n").strip()
        shard = git("mktree", "--missing", input=f"040000 tree {tree}\t{trial_id}\n").strip()
        entries.append(f"040000 tree {shard}\t{trial_id[:2]}")
    trials_tree = git(
        "mktree",
        "--missing",
        input="\n".join(sorted(entries, key=lambda e: e.split("\t")[1])) + "\n",
    ).strip()
    root = git("mktree", input=f"040000 tree {trials_tree}\ttrials\n").strip()
    commit = git("commit-tree", root, "-p", "mitosis/bare_number", "-m", "damaged").strip()
    git("update-ref", "refs/heads/mitosis/bare_number", commit)
    with caplog.at_level(logging.WARNING, logger="mitosis"):
        assert [t.id for t in mitosis.trials("bare_number")] == [good]
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"trial {damaged_id} on mitosis/bare_number has no trial.json" in said
    assert f"trial {missing_id} on mitosis/bare_number has no trial.json" in said
    assert fresh_ids("bare_number") == [good]


@pytest.mark.parametrize("way", ["dulwich", "pack files"])
def test_reads_from_packs_that_a_packer_replaced_fall_back(investigation, way):
    from mitosis.store.index import _Objects

    first = record(investigation, 1.0)
    git("repack", "-a", "-d", "-q")
    second = record(investigation, 2.0)
    with Store.open(".") as store, _Objects(store) as objects:  # knows the first pack only
        assert objects.packs
        objects.left = -1 if way == "pack files" else 10**9  # read the one way or the other
        if way == "pack files":
            assert objects.blob("2" * 40) is None  # the reader starts, with the first pack
            assert objects.reader is not None
        git("repack", "-a", "-d", "-q")  # one new pack with everything; the first is gone
        for trial_id in (first, second):
            tree = git("rev-parse", f"mitosis/bare_number:trials/{trial_id[:2]}/{trial_id}").strip()
            blob = objects.entry(tree, "trial.json")
            assert blob == git("rev-parse", f"{tree}:trial.json").strip()
            assert blob is not None
            assert objects.blob(blob) == git("cat-file", "blob", blob, text=False)
        assert objects.blob("2" * 40) is None and objects.children("2" * 40) == []
        assert objects.blob(tree) is None  # a tree is no blob
        assert (objects.reader is not None) == (way == "pack files")


def test_the_pack_files_reader_starts_only_past_its_break_even(investigation):
    from mitosis.store import index

    files = {f"trials/{n:02x}/{n:02x}{'a' * 10}/trial.json": b"{}" * n for n in range(150)}
    with Store.open(".") as st:
        st.commit("many", files, "many\n")
    git("repack", "-a", "-d", "-q")
    blobs = git("ls-tree", "-r", "mitosis/many").split()[2::4]
    with Store.open(".") as st, index._Objects(st) as objects:
        assert objects.left == index._FEWEST  # 150 trials: a few hundred objects, 64 reads
        for blob in blobs[: index._FEWEST + 1]:
            assert objects.reader is None
            assert objects.blob(blob) is not None  # through dulwich
        assert objects.blob(blobs[-1]) == git("cat-file", "blob", blobs[-1], text=False)
        assert objects.reader is not None  # the 66th read: from the pack files


def test_both_ways_of_reading_build_the_same_index(investigation, monkeypatch):
    from mitosis.store import index

    made = [record(investigation, float(x)) for x in range(6)]
    plant_bad_trial(".", made[0])
    git("repack", "-a", "-d", "-q")  # half packed, half loose
    made += [record(investigation, float(x)) for x in range(6, 12)]
    built = []
    for fewest in (10**9, 0):  # dulwich alone; the pack files' reader from the first reads
        monkeypatch.setattr(index, "_FEWEST", fewest)
        forget()
        index_file(".", "bare_number").unlink(missing_ok=True)
        with Store.open(".") as st:
            found = index.follow(st, "bare_number", _judge("bare_number"))
        built.append((found.entries, bytes(found.records), found.bad, found.shards))
    assert built[0] == built[1]
    assert [e[0] for e in built[0][0]] == made and len(built[0][2]) == 1


def test_a_trial_folder_in_another_s_shard_is_said_and_skipped(investigation, caplog):
    good = record(investigation, 1.0)
    with Store.open(".") as st:
        data = st.read_file("bare_number", f"{trial_dir(good)}/trial.json")
        assert data is not None
        moved = "ee" + good[2:]
        forged = json.dumps({**json.loads(data), "id": moved}).encode()
        st.commit("bare_number", {f"trials/ff/{moved}/trial.json": forged}, "moved\n")
    with caplog.at_level(logging.WARNING, logger="mitosis"):
        assert [t.id for t in mitosis.trials("bare_number")] == [good]
    said = f"trial {moved} on mitosis/bare_number is in the folder trials/ff, not trials/ee"
    assert said in caplog.text


def packed_places() -> tuple[dict[str, tuple[int, int]], set[str]]:
    """Every object of the store in one pack (``git repack``): the offset and size there of
    each, by id, and the ids that are the base of a delta (as ``git verify-pack`` says)."""
    git("repack", "-a", "-d", "-q")
    (index,) = Path(".git/objects/pack").glob("*.idx")
    listed = [line.split() for line in git("verify-pack", "-v", str(index)).splitlines()]
    listed = [f for f in listed if len(f) > 4 and f[1] in ("blob", "tree")]
    return {f[0]: (int(f[4]), int(f[3])) for f in listed}, {f[6] for f in listed if len(f) > 6}


def damage_packed(place: tuple[int, int]) -> None:
    """Flip a byte in the middle of the packed object at ``place`` (offset, size)."""
    (pack,) = Path(".git/objects/pack").glob("*.pack")
    data = bytearray(pack.read_bytes())
    data[place[0] + place[1] // 2 + 1] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))


@pytest.mark.parametrize("way", ["dulwich", "pack files"])
def test_a_damaged_object_in_a_pack_is_said_and_its_trial_skipped(
    investigation, way, monkeypatch, caplog
):
    from mitosis.store import index

    made = [record(investigation, x) for x in (1.0, 2.0, 3.0)]
    places, bases = packed_places()
    blobs = {t: git("rev-parse", f"mitosis/bare_number:{trial_dir(t)}/trial.json") for t in made}
    victim, damaged = next((t, b.strip()) for t, b in blobs.items() if b.strip() not in bases)
    damage_packed(places[damaged])
    monkeypatch.setattr(index, "_FEWEST", 10**9 if way == "dulwich" else 0)
    with caplog.at_level(logging.WARNING, logger="mitosis"):
        assert [t.id for t in mitosis.trials("bare_number")] == [t for t in made if t != victim]
    (said,) = [r.getMessage() for r in caplog.records if "skipped a trial" in r.getMessage()]
    assert f"trial {victim} on mitosis/bare_number cannot be read: the object {damaged}" in said
    assert "is damaged" in said and "see git fsck" in said
    forget()  # and a shard tree that is damaged: its folders are said unreadable
    index_file(".", "bare_number").unlink()
    shard = git("rev-parse", f"mitosis/bare_number:trials/{made[0][:2]}").strip()
    damage_packed(places[shard])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mitosis"):
        listed = [t.id for t in mitosis.trials("bare_number")]
    assert made[0] not in listed
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"the folder trials/{made[0][:2]} of mitosis/bare_number cannot be read" in said
    assert shard in said


def test_trees_are_read_as_git_writes_them_and_damaged_ones_hold_nothing(investigation):
    from mitosis.store.index import tree_entries

    made = record(investigation, 1.0)
    tree = git("rev-parse", f"mitosis/bare_number:trials/{made[:2]}/{made}").strip()
    raw = git("cat-file", "tree", tree, text=False)
    listed = [line.split("\t") for line in git("ls-tree", tree).splitlines()]
    entries = tree_entries(raw)
    assert entries == [(name, info.split()[2]) for info, name in listed]
    odd = b"100644 caf\xe9\x00" + bytes(20)  # a name that is not UTF-8
    assert tree_entries(odd) == [("caf\ufffd", "00" * 20)]
    for _, name in listed:  # only the entries of a name
        assert tree_entries(raw, only=name.encode()) == [e for e in entries if e[0] == name]
    assert tree_entries(raw, only=b"absent") == []
    for damaged in (
        raw[:-1],
        raw[:10],
        b"100644 trial.json",
        b"nospace\x00" + bytes(20),
        b"10x644 a\x00" + bytes(20),
    ):
        assert tree_entries(damaged) == [] == tree_entries(damaged, only=b"trial.json")


@pytest.mark.parametrize(
    "text",
    ["low", "a b", " x", "x  y", "\u202eevil", "caf\u00e9", "nb\u00a0sp", "x" * 40, "\x1b[2J"],
)
def test_a_table_cell_of_text_is_one_safe_line_on_every_path(text):
    from mitosis.cli.support import cell, shown

    one_line = shown(" ".join(text.split()))
    expected = one_line if len(one_line) <= 28 else one_line[:27] + "…"
    assert cell(text) == expected
