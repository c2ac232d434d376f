"""The check of what a pull brings (mitosis/store/incoming.py) at its fast paths: a commit of
the usual shape is matched whole, any other judged by the full check; the names of a tree are
screened at once, and a suspect one looked at name by name. Each hostile object below is
written as a forger would (raw bytes, loose, on a store on this machine) and pulled: it is
refused, as ``git fsck --strict`` refuses it, and never enters the store."""

from __future__ import annotations

import hashlib
import stat
import subprocess
import zlib
from pathlib import Path

import pytest
from conftest import git

import mitosis
from mitosis.store.repo import Store

_IDENT = b"Forger <f@example.org> 1700000000 +0000"


def make(path: Path, count: int = 3) -> None:
    """A store of ``count`` trials, one commit each, as the recorder writes them."""
    with Store.open(path, create=True) as st:
        for i in range(count):
            trial_id = f"{i:012x}"
            folder = f"trials/{trial_id[:2]}/{trial_id}"
            files = {f"{folder}/trial.json": b'{"id": "%s"}' % trial_id.encode()}
            st.commit("sine", files, f"sine: trial {i}\n")


def loose(store: Path, kind: bytes, data: bytes) -> str:
    """Write the object ``data`` of type ``kind`` as a loose object, whatever it holds."""
    raw = kind + b" %d\0" % len(data) + data
    name = hashlib.sha1(raw).hexdigest()
    folder = store / "objects" / name[:2]
    folder.mkdir(exist_ok=True)
    (folder / name[2:]).write_bytes(zlib.compress(raw))
    return name


def tip(store: Path) -> tuple[str, str]:
    """The tip of mitosis/sine and its tree."""
    commit = git("rev-parse", "mitosis/sine", cwd=store).strip()
    return commit, git("rev-parse", f"{commit}^{{tree}}", cwd=store).strip()


def point(store: Path, commit: str) -> None:
    """Move mitosis/sine to ``commit`` (git's own tools would check it first)."""
    (store / "refs" / "heads" / "mitosis" / "sine").write_text(commit + "\n")


def fsck_refuses(store: Path) -> bool:
    run = subprocess.run(["git", "fsck", "--strict"], cwd=store, capture_output=True)
    return run.returncode != 0


def refused(
    source: Path,
    store: Path,
    what: str,
    why: str = "malformed",
    error: type[Exception] = mitosis.SyncRefused,
) -> None:
    """A pull of ``source`` into ``store`` is refused (``error``, saying ``why``), and
    ``what`` never enters it."""
    before = git("for-each-ref", cwd=store)
    with pytest.raises(error, match=why):
        mitosis.pull(str(source), store=store)
    assert git("for-each-ref", cwd=store) == before
    absent = subprocess.run(["git", "cat-file", "-e", what], cwd=store, capture_output=True)
    assert absent.returncode != 0
    git("fsck", "--strict", cwd=store)
    assert not list((store / "mitosis").glob("incoming-*"))


@pytest.mark.parametrize(
    "header",
    [
        b"author Forger<f@example.org> 1700000000 +0000\ncommitter " + _IDENT,  # no space
        b"author Forger <f@example.org> <g@example.org> 1700000000 +0000\ncommitter " + _IDENT,
        b"author Forger <f@exa\0mple.org> 1700000000 +0000\ncommitter " + _IDENT,  # a NUL
        b"author " + _IDENT,  # no committer
        b"author " + _IDENT + b"\nparent PARENT\ncommitter " + _IDENT,  # out of order
    ],
    ids=["no-space-before-email", "two-emails", "nul", "no-committer", "parent-late"],
)
def test_a_malformed_commit_is_refused_whatever_its_shape(tmp_path, header):
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source)
    make(store, 1)
    parent, tree = tip(source)
    header = header.replace(b"PARENT", parent.encode())
    text = b"tree %s\nparent %s\n%s\n\nforged\n" % (tree.encode(), parent.encode(), header)
    forged = loose(source, b"commit", text)
    point(source, forged)
    assert fsck_refuses(source)  # the independent judge agrees it is malformed
    refused(source, store, forged)


def test_a_signed_commit_is_judged_in_full_and_taken(tmp_path):
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source)
    parent, tree = tip(source)
    signature = b"gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEz\n -----END PGP SIGNATURE-----"
    text = b"tree %s\nparent %s\nauthor %s\ncommitter %s\n%s\n\nsigned\n" % (
        tree.encode(),
        parent.encode(),
        _IDENT,
        _IDENT,
        signature,
    )
    signed = loose(source, b"commit", text)
    point(source, signed)
    git("fsck", "--strict", cwd=source)
    assert mitosis.pull(str(source), store=store).experiments == {"sine": "new"}
    assert git("rev-parse", "mitosis/sine", cwd=store).strip() == signed
    git("fsck", "--strict", cwd=store)


def _entry(mode: int, name: bytes, sha: str) -> bytes:
    return b"%o %s\0%s" % (mode, name, bytes.fromhex(sha))


@pytest.mark.parametrize(
    ("name", "mode", "git_refuses"),
    [
        (b".GIT", stat.S_IFREG | 0o644, True),
        (b"", stat.S_IFREG | 0o644, True),
        (b"zz/zz", stat.S_IFREG | 0o644, True),  # a name holding a path separator
        (b"zz\\zz", stat.S_IFREG | 0o644, False),  # refused by mitosis alone: Windows' one
        (b"zz", stat.S_IFREG | 0o664, False),  # git fsck --strict only warns
        (b"zz", 0o100600, False),
    ],
    ids=["dotgit-case", "empty", "slash", "backslash", "mode-664", "mode-600"],
)
def test_a_tree_with_a_name_or_mode_git_refuses_is_refused(tmp_path, name, mode, git_refuses):
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source)
    make(store, 1)
    parent, root = tip(source)
    blob = loose(source, b"blob", b"planted\n")
    entries = [line.split("\t") for line in git("ls-tree", root, cwd=source).splitlines()]
    raw = [(n.encode(), int(m.split()[0], 8), m.split()[2]) for m, n in entries]
    raw.append((name, mode, blob))
    raw.sort(key=lambda e: e[0] + b"/" if e[1] == stat.S_IFDIR else e[0])
    tree = loose(source, b"tree", b"".join(_entry(m, n, s) for n, m, s in raw))
    point(source, _commit(source, tree, parent))
    assert fsck_refuses(source) == git_refuses
    refused(source, store, tree)


@pytest.mark.parametrize("twice", [False, True], ids=["unsorted", "name-twice"])
def test_a_tree_out_of_order_is_refused(tmp_path, twice):
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source)
    make(store, 1)
    parent, root = tip(source)
    blob = loose(source, b"blob", b"planted\n")
    folder = git("rev-parse", f"{root}:trials", cwd=source).strip()
    # "trials" as a file and as a folder (names twice), or "a" after "trials" (unsorted)
    first = _entry(stat.S_IFREG | 0o644, b"trials" if twice else b"zz", blob)
    then = _entry(stat.S_IFDIR, b"trials", folder) if twice else _entry(0o100644, b"a", blob)
    tree = loose(source, b"tree", first + then)
    point(source, _commit(source, tree, parent))
    assert fsck_refuses(source)
    refused(source, store, tree)


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
def test_a_tree_that_is_not_what_its_id_says_is_refused_as_the_walk_reads_it(tmp_path, packed):
    """A store on this machine whose tip's tree holds another (well-formed) tree's content:
    the copy takes the ids its index claims, and the walk's reader hashes the tree as it
    reads it."""
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source)
    make(store, 1)
    parent, _ = tip(source)
    _, root = tip(source)
    older = git("rev-parse", f"{parent}~1^{{tree}}", cwd=source).strip()
    content = git("cat-file", "tree", older, cwd=source, text=False)
    path = source / "objects" / root[:2] / root[2:]
    path.chmod(0o644)
    path.write_bytes(zlib.compress(b"tree %d\0" % len(content) + content))
    if packed:
        git("repack", "-a", "-d", "-q", cwd=source)  # git packs it as it is, unchecked
        assert not path.exists()
    refused(source, store, root, "is not what its id says")


def _commit(source: Path, tree: str, parent: str) -> str:
    text = b"tree %s\nparent %s\nauthor %s\ncommitter %s\n\nforged\n" % (
        tree.encode(),
        parent.encode(),
        _IDENT,
        _IDENT,
    )
    return loose(source, b"commit", text)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ([], [(0o100644, b"a")]),  # appended after trials/: out of order
        ([], [(0o100644, b"zz", b"0100644")]),  # a mode written with a leading zero
        # "a" as a folder, in its place after "a-b", with a file "a" two entries before
        ([(0o100644, b"a"), (0o100644, b"a-b")], [(stat.S_IFDIR, b"a")]),
        # "b" as a file, in its place before "b-c", with a folder "b" two entries after
        ([(0o100644, b"b-c"), (stat.S_IFDIR, b"b")], [(0o100644, b"b")]),
    ],
    ids=["out-of-order", "zero-padded-mode", "name-twice-apart", "file-name-twice-apart"],
)
@pytest.mark.parametrize("first", [True, False], ids=["first-pull", "onto-history"])
def test_a_tree_that_is_its_base_and_one_entry_more_is_checked_as_a_whole(
    tmp_path, before, after, first
):
    """The walk takes a tree that is the tree at the same path in its parent with one entry
    more (a trial added to a shard) byte-wise, and looks at the new entry alone: its name and
    mode, its neighbours' order, and the same name in the other kind anywhere in the tree."""
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source)
    if first:  # copied whole, checked by the quarantine's walk alone
        git("init", "-q", "--bare", str(store))
    else:
        make(store, 1)
    parent, root = tip(source)
    blob = loose(source, b"blob", b"planted\n")
    folder = git("rev-parse", f"{root}:trials", cwd=source).strip()

    def tree(entries: list[tuple[int, bytes, bytes]]) -> str:
        raw = b"".join(
            b"%s %s\0%s" % (text, name, bytes.fromhex(sha)) for text, name, sha in entries
        )
        return loose(source, b"tree", raw)

    def entry(mode: int, name: bytes, text: bytes | None = None) -> tuple[bytes, bytes, str]:
        return (text or b"%o" % mode, name, folder if mode == stat.S_IFDIR else blob)

    base = [entry(*e) for e in before] + [entry(stat.S_IFDIR, b"trials")]
    if before:  # the base itself, well formed, is a commit of its own
        parent = _commit(source, tree(base), parent)
    grown = sorted(
        base + [entry(*e) for e in after],
        key=lambda e: e[1] + b"/" if e[0] == b"40000" else e[1],
    )
    if after == [(0o100644, b"a")]:
        grown = [*base, entry(*after[0])]  # placed last, though "a" sorts first
    forged = tree(grown)
    point(source, _commit(source, forged, parent))
    assert fsck_refuses(source)
    if after[0][2:] and not first:  # unreadable to the walk of what to copy, at the source
        refused(source, store, forged, "leading zero", mitosis.SyncError)
    else:
        refused(source, store, forged)


def _grown(source: Path, parent: str, shard: bytes, folder: bytes) -> str:
    """A commit on ``parent`` whose tree adds the trial folder ``trials/<shard>/ff..`` of the
    raw tree ``folder`` (a shard of its own; the trees above it made by git)."""
    folder_id = loose(source, b"tree", folder)
    trial = b"ff" + shard[2:] * 5
    shard_id = git("mktree", cwd=source, input=f"040000 tree {folder_id}\t{trial.decode()}\n")
    root = git("rev-parse", f"{parent}^{{tree}}", cwd=source).strip()
    shelf = git("ls-tree", f"{root}:trials", cwd=source)
    shelf += f"040000 tree {shard_id.strip()}\t{shard.decode()}\n"
    shelf_id = git("mktree", cwd=source, input=shelf).strip()
    tree = git("mktree", cwd=source, input=f"040000 tree {shelf_id}\ttrials\n").strip()
    return _commit(source, tree, parent)


@pytest.mark.parametrize(
    "forged",
    [
        [(0o100644, b"trial.json"), (0o100644, b"output.log")],  # the same names, unsorted
        [(0o100664, b"output.log"), (0o100644, b"trial.json")],  # one mode git fsck refuses
        [(0o100644, b"output.log"), (0o100644, b"output.log")],  # one name twice
    ],
    ids=["unsorted", "mode", "name-twice"],
)
def test_a_small_tree_is_judged_by_its_names_and_modes_in_order(tmp_path, forged):
    """A small tree is judged once per shape (its names and modes, in order): a trial's
    folder shaped almost as one judged well formed just before is judged in full."""
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source)
    make(store, 1)
    parent, _ = tip(source)
    blob = loose(source, b"blob", b"planted\n")
    good = [(0o100644, b"output.log"), (0o100644, b"trial.json")]
    parent = _grown(source, parent, b"f1", b"".join(_entry(m, n, blob) for m, n in good))
    raw = b"".join(_entry(m, n, blob) for m, n in forged)
    point(source, _grown(source, parent, b"f2", raw))
    folder = hashlib.sha1(b"tree %d\0" % len(raw) + raw).hexdigest()
    refused(source, store, folder)
    point(source, parent)  # the well-formed one alone is taken
    assert mitosis.pull(str(source), store=store).experiments == {"sine": "fast-forward"}


def _replaced(source: Path, tree: str, name: bytes, new: str) -> str:
    """The tree ``tree`` with the entry ``name`` pointing at ``new``: the same length, one
    entry's id changed."""
    listing = git("ls-tree", tree, cwd=source).splitlines()
    raw = b""
    for line in listing:
        info, entry = line.split("\t")
        mode, _, sha = info.split()
        raw += _entry(int(mode, 8), entry.encode(), new if entry.encode() == name else sha)
    return loose(source, b"tree", raw)


@pytest.mark.parametrize(
    ("mode", "name"),
    [(0o100664, b"trial.json"), (0o100644, b"trial\\json")],
    ids=["mode", "name"],
)
def test_a_tree_of_its_bases_length_differing_outside_an_id_is_checked_as_a_whole(
    tmp_path, mode, name
):
    """The walk takes a tree of the same length as the tree at the same path in its parent
    byte-wise when they differ in one entry's id alone; a trial's folder whose file has another
    mode, or another name of the same length, is judged whole (on a first pull, where the walk
    alone judges it) and refused."""
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source)
    git("init", "-q", "--bare", str(store))
    parent, root = tip(source)
    path = "trials/00/000000000002"
    record = git("rev-parse", f"{root}:{path}/trial.json", cwd=source).strip()
    folder = loose(source, b"tree", _entry(mode, name, record))
    shard = _replaced(
        source, git("rev-parse", f"{root}:trials/00", cwd=source).strip(), b"000000000002", folder
    )
    shelf = _replaced(source, git("rev-parse", f"{root}:trials", cwd=source).strip(), b"00", shard)
    point(source, _commit(source, _replaced(source, root, b"trials", shelf), parent))
    refused(source, store, folder)


@pytest.mark.parametrize(
    "parent",
    [b"zz" * 20, b"\xff" * 40, b"ab" * 19, b"ab " * 13 + b"a"],
    ids=["not-hex", "not-ascii", "short", "spaced"],
)
@pytest.mark.parametrize("first", [True, False], ids=["first-pull", "onto-history"])
def test_a_commit_whose_parent_is_no_commit_id_is_refused(tmp_path, parent, first):
    """A commit's text names its parents: one that is no id of 40 hex digits is refused
    (on a first pull it crashed the walk of the copied store, with the parent as its error)."""
    source, store = tmp_path / "source.git", tmp_path / "store.git"
    make(source)
    if first:
        git("init", "-q", "--bare", str(store))
    else:
        make(store, 1)
    _, tree = tip(source)
    text = b"tree %s\nparent %s\nauthor %s\ncommitter %s\n\nforged\n" % (
        tree.encode(),
        parent,
        _IDENT,
        _IDENT,
    )
    forged = loose(source, b"commit", text)
    point(source, forged)
    assert fsck_refuses(source)
    refused(source, store, forged, "malformed")
