"""The blobs a pull copied from a store on this machine, hashed in a process of their own
(mitosis/store/blobcheck.py) while the history walk checks the commits and trees. A pull uses
it from :data:`mitosis.store.incoming.ASIDE` copied objects on; these tests set that to 0, so
that each forged blob below is met by that process alone: it is refused, and never enters the
store. When the process cannot start or fails, the pull checks everything itself."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import pytest
from conftest import git
from hypothesis import given
from hypothesis import strategies as st

import mitosis
from mitosis.store import blobcheck, incoming
from mitosis.store.pack import pack_loose, place_pack
from mitosis.store.repo import Store


@pytest.fixture
def aside(monkeypatch: pytest.MonkeyPatch) -> None:
    """The blobs of every pull from a path checked in a process of their own, which the pull
    waits for (a walk of a few trials ends before the process starts)."""
    monkeypatch.setattr(incoming, "ASIDE", 0)
    monkeypatch.setattr(incoming.Aside, "wait", True)


def make(path: Path, count: int) -> None:
    """A store of ``count`` trials, one commit each; their files alike, so that packing them
    makes deltas of files."""
    with Store.open(path, create=True) as store:
        for i in range(count):
            trial_id = f"{i:012x}"
            folder = f"trials/{trial_id[:2]}/{trial_id}"
            record = b'{"id": "%s", "status": "ok", "main": %d, "notes": "%s"}' % (
                trial_id.encode(),
                i,
                b"n" * 400,
            )
            files = {f"{folder}/trial.json": record, f"{folder}/output.log": b"ran %d\n" % i}
            store.commit("sine", files, f"sine: trial {i}\n")


def blob_ids(store: Path) -> set[bytes]:
    """The (binary) ids of the blobs of ``store``, as git lists them."""
    listing = git(
        "cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype)", cwd=store
    )
    return {bytes.fromhex(line.split()[0]) for line in listing.splitlines() if "blob" in line}


def the_pack(store: Path) -> str:
    [index] = (store / "objects" / "pack").glob("pack-*.idx")
    return str(index.with_suffix(""))


def check(*packs: str) -> tuple[subprocess.CompletedProcess[bytes], list[bytes]]:
    """blobcheck run as a pull runs it, by its path, isolated; and the ids it vouched for."""
    with tempfile.TemporaryDirectory() as folder:
        checked = os.path.join(folder, "checked")
        command = [sys.executable, "-I", blobcheck.__file__, str(1 << 20), checked, *packs]
        done = subprocess.run(command, capture_output=True, check=False)
        found = Path(checked).read_bytes() if os.path.exists(checked) else b""
    return done, [found[at : at + 20] for at in range(0, len(found), 20)]


def write_raw_pack(store: Path, entries: list[tuple[bytes, bytes]]) -> None:
    """A pack of ``entries`` (binary id, the entry's bytes as they go in the pack, header and
    all), indexed by those ids, whatever the entries hold: a forger's pack."""

    def write(file: object) -> tuple[dict[bytes, tuple[int, int]], bytes]:
        body = b"PACK" + (2).to_bytes(4, "big") + len(entries).to_bytes(4, "big")
        found = {}
        for object_id, entry in entries:
            found[object_id] = (len(body), zlib.crc32(entry))
            body += entry
        checksum = hashlib.sha1(body).digest()
        file.write(body + checksum)  # type: ignore[attr-defined]
        return found, checksum

    with Store.open(store) as st_:
        place_pack(st_.repo.object_store, write)


def header(kind: int, size: int, base: int | None = None) -> bytes:
    """A pack entry's header: its type, (inflated) size, and a delta's distance to its base."""
    from dulwich.object_format import DEFAULT_OBJECT_FORMAT
    from dulwich.pack import pack_object_header

    return bytes(pack_object_header(kind, base, size, DEFAULT_OBJECT_FORMAT))


def test_every_blob_of_a_packed_store_is_vouched_for(tmp_path):
    store = tmp_path / "store.git"
    make(store, 12)
    with Store.open(store) as st_:
        pack_loose(st_)
    done, vouched = check(the_pack(store))
    assert done.returncode == 0, done.stderr
    assert len(vouched) == len(set(vouched)) and set(vouched) == blob_ids(store)


@given(st.binary(max_size=3000), st.binary(max_size=3000), st.integers(0, 2**32))
def test_a_delta_is_applied_as_dulwich_applies_it(base, target, seed):
    from dulwich.pack import apply_delta, create_delta

    if base and seed % 2:  # a target much like its base: copies mostly
        cut = seed % len(base)
        target = base[:cut] + target[:50] + base[cut:]
    delta = b"".join(create_delta(base, target))
    assert blobcheck.patched(base, delta) == b"".join(apply_delta(base, delta)) == target


@pytest.mark.parametrize(
    "delta",
    [
        b"\x05\x03abc",  # made for a base of another size
        b"\x04\x03\x90\x09",  # copies beyond its base (9 bytes from offset 0 of 4)
        b"\x04\x03\x00",  # an instruction of no git's
        b"\x04\x05\x03ab",  # ends within an insertion
        b"\x04\x05\x02ab",  # makes 2 bytes, says 5
    ],
)
def test_a_delta_that_is_no_delta_of_its_base_is_refused(delta):
    with pytest.raises((ValueError, IndexError)):
        blobcheck.patched(b"base", delta)


def test_a_pull_refuses_a_forged_blob_met_by_the_check_aside(tmp_path, aside):
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source, 3)
    forged = bytes.fromhex(
        git("rev-parse", "mitosis/sine:trials/00/000000000001/output.log", cwd=source).strip()
    )
    content = b"forged!\n"  # under the id of another content
    write_raw_pack(source, [(forged, header(3, len(content)) + zlib.compress(content))])
    os.remove(source / "objects" / forged.hex()[:2] / forged.hex()[2:])  # the pack's is read
    with pytest.raises(mitosis.SyncRefused, match=f"{forged.hex()} is not what its id says"):
        mitosis.pull(str(source), store=store)
    assert git("for-each-ref", cwd=store) == ""
    assert subprocess.run(["git", "cat-file", "-e", forged.hex()], cwd=store).returncode != 0


def forged_delta(source: Path) -> bytes:
    """A pack of ``source`` whose blob (a trial's record) is a delta, against the record of
    the trial before, that makes other bytes than its id says; its id."""
    from dulwich.pack import OFS_DELTA, create_delta

    def blob(i: int) -> tuple[bytes, bytes]:
        path = f"mitosis/sine:trials/00/{i:012x}/trial.json"
        name = git("rev-parse", path, cwd=source).strip()
        content = git("cat-file", "blob", name, cwd=source).encode()
        os.remove(source / "objects" / name[:2] / name[2:])  # the pack's is read
        return bytes.fromhex(name), content

    (base_id, base), (target_id, target) = blob(0), blob(1)
    whole = header(3, len(base)) + zlib.compress(base)
    delta = b"".join(create_delta(base, target.replace(b'"ok"', b'"no"')))
    entry = header(OFS_DELTA, len(delta), len(whole)) + zlib.compress(delta)
    write_raw_pack(source, [(base_id, whole), (target_id, entry)])
    return target_id


def test_a_pull_refuses_a_forged_delta_met_by_the_check_aside(tmp_path, aside):
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source, 3)
    forged = forged_delta(source)
    with pytest.raises(mitosis.SyncRefused, match=f"{forged.hex()} is not what its id says"):
        mitosis.pull(str(source), store=store)
    assert git("for-each-ref", cwd=store) == ""


@pytest.mark.parametrize(
    "entry",
    [
        lambda data: header(3, len(data) + 1) + zlib.compress(data),  # another size than it says
        lambda data: header(3, len(data)) + zlib.compress(data) + b"\0",  # bytes after it
        lambda data: header(3, len(data)) + zlib.compress(data)[:-3],  # cut short
    ],
    ids=["size", "trailing", "truncated"],
)
def test_a_pull_refuses_a_damaged_blob_entry_met_by_the_check_aside(tmp_path, aside, entry):
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source, 3)
    name = git("rev-parse", "mitosis/sine:trials/00/000000000002/output.log", cwd=source).strip()
    content = git("cat-file", "blob", name, cwd=source).encode()
    write_raw_pack(source, [(bytes.fromhex(name), entry(content))])
    os.remove(source / "objects" / name[:2] / name[2:])
    done, _ = check(the_pack(source))
    assert done.returncode == blobcheck.WRONG and name.encode() in done.stderr
    with pytest.raises(mitosis.SyncRefused, match=name):
        mitosis.pull(str(source), store=store)
    assert git("for-each-ref", cwd=store) == ""


@pytest.mark.parametrize("how", ["cannot-start", "fails", "lags"])
def test_without_the_check_aside_the_pull_checks_every_blob_itself(
    tmp_path, aside, monkeypatch, how
):
    if how == "cannot-start":
        monkeypatch.setattr(incoming.sys, "executable", str(tmp_path / "no-python"))
    else:
        script = tmp_path / "script.py"
        # fails at once; or lags behind the walk, which then ends it and checks the rest
        pause = 60 if how == "lags" else 0
        script.write_text(f"import sys, time; time.sleep({pause}); sys.exit(1)\n")
        monkeypatch.setattr(incoming.blobcheck, "__file__", str(script))
        monkeypatch.setattr(incoming.Aside, "wait", how == "fails")
    good, source, store = tmp_path / "good.git", tmp_path / "source.git", tmp_path / "store.git"
    make(good, 4)
    started = time.monotonic()
    assert mitosis.pull(str(good), store=tmp_path / "other.git").experiments == {"sine": "new"}
    git("fsck", "--strict", cwd=tmp_path / "other.git")
    make(source, 3)
    forged = forged_delta(source)
    with pytest.raises(mitosis.SyncRefused, match=f"{forged.hex()}"):
        mitosis.pull(str(source), store=store)
    assert time.monotonic() - started < 30  # never waited for the lagging process
    assert git("for-each-ref", cwd=store) == ""


def test_a_frozen_application_starts_no_check_aside(tmp_path, aside, monkeypatch):
    """In a frozen application, sys.executable is the application itself: never run."""
    monkeypatch.setattr(incoming.sys, "frozen", True, raising=False)
    store = Store.open(tmp_path / "store.git", create=True)
    with store, incoming.Aside(store, {b"\1" * 20}) as started:
        assert started.process is None and started.take({b"\1" * 20}) is None


def test_a_first_pull_with_the_check_aside_is_what_git_reads(tmp_path, aside):
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source, 30)
    with Store.open(source) as st_:
        pack_loose(st_)
    assert mitosis.pull(str(source), store=store).experiments == {"sine": "new"}
    git("fsck", "--strict", cwd=store)
    assert blob_ids(store) == blob_ids(source)
    assert not list((store / "mitosis").glob("incoming-*"))


def test_a_random_pack_is_never_vouched_for(tmp_path):
    """Bytes of no pack at all under a real index: the process fails or finds them wrong,
    and vouches for nothing."""
    store = tmp_path / "store.git"
    make(store, 4)
    with Store.open(store) as st_:
        pack_loose(st_)
    pack = Path(the_pack(store) + ".pack")
    os.chmod(pack, 0o644)
    data = bytearray(pack.read_bytes())
    noise = random.Random(7)
    for at in range(12, len(data) - 20):
        data[at] = noise.randrange(256)
    pack.write_bytes(bytes(data))
    done, vouched = check(the_pack(store))
    assert done.returncode != 0 and vouched == []
