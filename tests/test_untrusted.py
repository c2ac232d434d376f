"""A pulled trial is untrusted input: hostile histories, records and names, built with real git
objects (the git CLI and dulwich, as a hostile collaborator would) and pulled with mitosis's own
commands. Nothing may move a ref, reach the file system outside its folder, or stop a listing."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import git, server
from test_sync import daemon  # noqa: F401 - a fixture

import mitosis
from mitosis.store.repo import Store

MITOSIS = shutil.which("mitosis")


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The installed `mitosis` command, as a user runs it."""
    assert MITOSIS is not None, "the mitosis console script is installed by pip install -e ."
    return subprocess.run([MITOSIS, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def record(investigation, store: Path, amplitude: int) -> str:
    trial = mitosis.run(
        investigation.sine,
        {"amplitude": amplitude, "noise": "low"},
        lookup=investigation.lookup,
        store=store,
    )
    return trial.id


def forge(hub: Path, tmp_path: Path, change, message: str = "forged") -> str:
    """A collaborator's commit on the hub's mitosis/sine, made in a clone with the git CLI:
    ``change(work_tree)`` edits the files. Returns the new commit id."""
    work = tmp_path / "forger"
    if not work.exists():
        git("clone", "-q", str(hub), str(work))
    git("fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*", cwd=work)
    git("checkout", "-q", "-B", "mitosis/sine", "origin/mitosis/sine", cwd=work)
    change(work)
    git("add", "-A", ".", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    git("push", "-q", "origin", "mitosis/sine", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def test_a_pull_that_would_delete_trials_or_relock_a_variant_is_refused(
    investigation, tmp_path, hub
):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    made = {record(investigation, a, i) for i in range(1, 4)}
    mitosis.push(store=a)
    mitosis.pull(store=b)
    before = git("rev-parse", "mitosis/sine", cwd=b)

    def delete_and_relock(work: Path) -> None:
        for folder in sorted((work / "trials").glob("*/*"))[:2]:
            shutil.rmtree(folder)
        lock = work / "variants" / "noise" / "low.json"
        data = json.loads(lock.read_text())
        data.update(value=0.5, fingerprint="sha256:" + "0" * 64)
        lock.write_text(json.dumps(data))

    forge(hub, tmp_path, delete_and_relock)
    proc = cli("pull", "--store", str(b))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "refused the history of sine" in proc.stderr
    assert "deletes trial" in proc.stderr and "changes the lock noise=low" in proc.stderr
    assert re.search(r"^sine +refused$", proc.stdout, re.M)
    assert git("rev-parse", "mitosis/sine", cwd=b) == before  # nothing moved
    assert {t.id for t in mitosis.trials("sine", store=b)} == made
    record(investigation, b, 9)  # the store's own lock still holds: running is not refused
    git("fsck", "--strict", cwd=b)


def test_a_rename_from_the_remote_is_no_removal(investigation, tmp_path, hub):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    record(investigation, a, 1)
    mitosis.push(store=a)
    mitosis.pull(store=b)
    mitosis.rename_variant("sine", "noise", "low", "low_a", store=a)
    mitosis.push(store=a)
    assert mitosis.pull(store=b).experiments == {"sine": "fast-forward"}
    assert [v.name for v in mitosis.variants("sine", store=b)] == ["low_a"]


def _malformed_tree(hub: Path, names: list[bytes], mode: int = stat.S_IFREG | 0o644) -> str:
    """A commit on the hub's mitosis/sine, child of its tip, whose tree holds ``names`` (each
    a blob of ``mode``), made with dulwich as a forger would (git's own tools refuse such
    names)."""
    from dulwich.objects import Blob, Commit, Tree
    from dulwich.repo import Repo

    with Repo(str(hub)) as repo:
        tip = repo.refs[b"refs/heads/mitosis/sine"]
        base = repo[repo[tip].tree]
        blob = Blob.from_string(b"planted\n")
        repo.object_store.add_object(blob)
        tree = Tree()
        for entry in base.iteritems():
            tree.add(entry.path, entry.mode, entry.sha)
        for name in names:
            tree.add(name, mode, blob.id)
        repo.object_store.add_object(tree)
        commit = Commit()
        commit.tree, commit.parents = tree.id, [tip]
        commit.author = commit.committer = b"Forger <f@example.org>"
        commit.author_time = commit.commit_time = 1_700_000_000
        commit.author_timezone = commit.commit_timezone = 0
        commit.message = b"forged\n"
        repo.object_store.add_object(commit)
        repo.refs[b"refs/heads/mitosis/sine"] = commit.id
        return commit.id.decode()


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        (b"..", stat.S_IFREG | 0o644),
        (b".git", stat.S_IFREG | 0o644),
        (b".", stat.S_IFREG | 0o644),
        # what NTFS and HFS+ read as .git: git fsck --strict refuses them as .git itself
        (b"GIT~1", stat.S_IFREG | 0o644),
        (b".git. ", stat.S_IFREG | 0o644),
        (".g\u200cit".encode(), stat.S_IFREG | 0o644),
        (b".gitmodules", stat.S_IFLNK),  # a symbolic link there is refused too
    ],
    ids=["dotdot", "dotgit", "dot", "ntfs-short", "ntfs-trailing", "hfs-ignored", "modules-link"],
)
def test_malformed_trees_never_enter_the_store(investigation, tmp_path, hub, name, mode):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    record(investigation, a, 1)
    mitosis.push(store=a)
    mitosis.pull(store=b)
    before = git("for-each-ref", cwd=b)
    forged = _malformed_tree(hub, [name], mode)
    refused_by_git = subprocess.run(["git", "fsck", "--strict"], cwd=hub, capture_output=True)
    assert refused_by_git.returncode != 0  # the independent judge agrees it is malformed
    proc = cli("pull", "--store", str(b))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "brings malformed objects" in proc.stderr
    assert git("for-each-ref", cwd=b) == before  # not even the remote-tracking ref moved
    assert git("cat-file", "-e", forged, cwd=b, check=False) == ""
    missing = subprocess.run(["git", "cat-file", "-e", forged], cwd=b, capture_output=True)
    assert missing.returncode != 0  # the forged commit never entered the store
    git("fsck", "--strict", cwd=b)
    assert len(mitosis.trials("sine", store=b)) == 1


def test_a_malformed_bundle_is_refused_whole(investigation, tmp_path, hub):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    record(investigation, a, 1)
    mitosis.push(store=a)
    _malformed_tree(hub, [b".."])
    bundle = tmp_path / "evil.bundle"
    git("bundle", "create", str(bundle), "--all", cwd=hub)
    with pytest.raises(mitosis.SyncRefused, match="malformed"):
        mitosis.pull(str(bundle), store=b)
    assert git("for-each-ref", cwd=b) == ""
    git("fsck", "--strict", cwd=b)


def test_branches_that_name_no_experiment_are_left_out(investigation, tmp_path, hub):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    record(investigation, a, 1)
    mitosis.push(store=a)
    tip = git("rev-parse", "mitosis/sine", cwd=hub).strip()
    git("update-ref", "refs/heads/mitosis/a/b", tip, cwd=hub)
    (hub / "refs/heads/mitosis/with space").write_text(tip + "\n")  # git refuses to make it
    proc = cli("pull", "--store", str(b))
    assert proc.returncode == 0, proc.stderr
    assert "left out the branch" in proc.stderr and "mitosis/a/b" in proc.stderr
    assert git("for-each-ref", "--format=%(refname)", "refs/heads", cwd=b).split() == [
        "refs/heads/mitosis/sine"
    ]
    # and such a branch made in the store by hand is skipped by every reading command
    git("update-ref", "refs/heads/mitosis/a/b", tip, cwd=b)
    for command in (["log"], ["experiments"], ["variants", "sine"]):
        proc = cli(*command, "--store", str(b))
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert mitosis.trials(store=b)[0].experiment == "sine"
    assert mitosis.pull(store=b).experiments == {"sine": "up to date"}


BAD_FIELDS = [
    {"status": None},
    {"status": "great"},
    {"started": None},
    {"duration": "x"},
    {"duration": float("nan")},
    {"files": None},
    {"files": ["../../outside"]},
    {"files": ["/etc/passwd"]},
    {"error": 12345},
    {"code": {"repository": "r", "commit": 2, "branch": None, "remotes": {}, "dirty": False}},
    {"params": {"noise": {"variant": "low", "source": "magic", "type": "float"}}},
    {"steps": "one"},
    {"id": "0123456789ab"},  # not its folder's name
    {"experiment": "other"},  # not its branch
]


def _bad_trials(investigation, store: Path) -> tuple[str, list[str]]:
    """One good trial of sine, then a branch commit adding one bad record per BAD_FIELDS."""
    good = record(investigation, store, 1)
    (trial,) = mitosis.trials("sine", store=store)
    raw = json.loads(trial.read("trial.json"))
    files, bad = {}, []
    for n, change in enumerate(BAD_FIELDS):
        trial_id = f"{n:02x}{'e' * 10}"
        forged = {**raw, "id": trial_id, **change}
        text = json.dumps(forged, allow_nan=True).encode()
        files[f"trials/{trial_id[:2]}/{trial_id}/trial.json"] = text
        bad.append(trial_id)
    with Store.open(store) as st:
        st.commit("sine", files, "sine: bad records\n")
    return good, bad


def test_bad_records_are_skipped_with_a_line_each(investigation, tmp_path):
    store = tmp_path / "store"
    git("init", "-q", str(store))
    good, bad = _bad_trials(investigation, store)
    assert [t.id for t in mitosis.trials("sine", store=store)] == [good]
    proc = cli("log", "sine", "--store", str(store))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert good in proc.stdout and not any(b in proc.stdout for b in bad)
    warnings = [line for line in proc.stderr.splitlines() if "skipped a trial" in line]
    assert len(warnings) == len(BAD_FIELDS)  # one line each, naming the trial and the field
    assert all("on mitosis/sine is not a readable trial record: field" in w for w in warnings)
    for trial_id in bad:
        proc = cli("show", trial_id, "--store", str(store))
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert f"trial {trial_id} on mitosis/sine is not a readable trial record" in proc.stderr
    for command in (["browse", "--out", str(tmp_path / "site")], ["experiments"]):
        proc = cli(*command, "--store", str(store))
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "outside").exists()


def test_a_record_claiming_another_trial_s_id_is_not_listed(investigation, tmp_path):
    store = tmp_path / "store"
    git("init", "-q", str(store))
    real = record(investigation, store, 1)
    (trial,) = mitosis.trials("sine", store=store)
    raw = json.loads(trial.read("trial.json"))
    with Store.open(store) as st:  # a copy of the record in another folder, on another branch
        st.commit("other", {"trials/ff/ffffffffffff/trial.json": json.dumps(raw).encode()}, "x\n")
    assert [t.id for t in mitosis.trials(store=store)] == [real]
    assert mitosis.load(real[:6], store=store).experiment == "sine"


def _forged_trial(investigation, store: Path, changes: dict, files: dict | None = None) -> str:
    """A real trial of sine, and beside it on its branch a copy of its record with ``changes``
    (and extra files in its folder); the copy's id."""
    mitosis.run(
        investigation.sine,
        {"amplitude": 2, "noise": "low"},
        lookup=investigation.lookup,
        store=store,
    )
    (trial,) = mitosis.trials("sine", store=store)
    raw = json.loads(trial.read("trial.json"))
    forged_id = "f0f0f0f0f0f0"
    folder = f"trials/f0/{forged_id}"
    content = {f"{folder}/trial.json": json.dumps({**raw, "id": forged_id, **changes}).encode()}
    content.update({f"{folder}/{name}": data for name, data in (files or {}).items()})
    with Store.open(store) as st:
        st.commit("sine", content, "sine: forged\n")
    return forged_id


@pytest.mark.parametrize(
    "changes",
    [
        {"files": ["../../outside"]},
        {"files": ["/tmp/outside"]},
        {
            "params": {
                "../../outside": {
                    "variant": "1",
                    "value": 1,
                    "source": "literal",
                    "type": "int",
                    "fingerprint": "sha256:1",
                }
            }
        },
        {"id": 'f0f0"""\nimport os; os.mkdir("outside")\n"""'},
    ],
    ids=["dotdot-file", "absolute-file", "param-name", "id-with-code"],
)
def test_export_and_rerun_refuse_records_that_point_outside(investigation, tmp_path, changes):
    forged = _forged_trial(investigation, Path.cwd(), changes)
    out = tmp_path / "export"
    for command in (["export", forged, str(out)], ["rerun", forged]):
        proc = cli(*command, "--store", str(Path.cwd()), cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "is not a readable trial record" in proc.stderr
    assert not out.exists()
    assert not any(p.name == "outside" for p in tmp_path.rglob("outside"))
    assert not Path("/tmp/outside").exists()


def test_a_recorded_diff_that_leaves_its_tree_is_never_applied(investigation, tmp_path):
    evil = (
        b"diff --git a/../../outside.txt b/../../outside.txt\n"
        b"new file mode 100644\n--- /dev/null\n+++ b/../../outside.txt\n@@ -0,0 +1 @@\n+pwned\n"
    )
    forged = _forged_trial(
        investigation,
        Path.cwd(),
        {"code": None},
        {"code.diff": evil},
    )
    # a record that says its code was dirty, with that diff
    (trial,) = [t for t in mitosis.trials("sine") if t.id != forged]
    raw = json.loads(mitosis.load(forged).read("trial.json"))
    raw.update(code={**json.loads(trial.read("trial.json"))["code"], "dirty": True})
    raw["files"] = sorted({*raw["files"], "code.diff"})
    with Store.open(Path.cwd()) as st:
        st.commit("sine", {f"trials/f0/{forged}/trial.json": json.dumps(raw).encode()}, "x\n")
    out = tmp_path / "export"
    proc = cli("export", forged, str(out), "--store", str(Path.cwd()), cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "uncommitted diff" in proc.stderr and "'..'" in proc.stderr
    assert not out.exists()
    assert not list(tmp_path.parent.rglob("outside.txt"))


class _Trap:
    """Unpickling this makes the folder ``path``: proof that a result was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        import os

        return (os.mkdir, (self.path,))


def test_reuse_unpickles_only_trials_of_accepted_provenance(investigation, tmp_path, hub, caplog):
    import pickle

    chain = [("make_data", investigation.make_data, investigation.data_lookup), investigation.fit]
    params = {"make_data.noise": "low", "fit.alpha": 2.0}
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    original = mitosis.run(chain, params, store=a)
    # a forger's copy of it on another experiment's branch, with a booby-trapped result
    marker = tmp_path / "unpickled"
    raw = json.loads(original.read("trial.json"))
    forged_id = "fa11fa11fa11"
    folder = f"trials/fa/{forged_id}"
    with Store.open(a) as st:
        st.commit(
            "other",
            {
                f"{folder}/trial.json": json.dumps(
                    {**raw, "id": forged_id, "experiment": "other"}
                ).encode(),
                f"{folder}/results/make_data.dill": pickle.dumps(_Trap(str(marker))),
            },
            "other: forged\n",
        )
    mitosis.push(store=a)
    mitosis.pull(store=b)
    # b has both, pulled from origin, which nothing trusts yet
    declined = mitosis.run(chain, {**params, "fit.alpha": 3.0}, store=b, reuse=True)
    assert declined.steps[0].reused_from is None and not marker.exists()
    said = caplog.text
    assert "not reusing for make_data+fit the matching trials" in said
    assert f"{original.id} of make_data+fit (from origin)" in said
    assert f"{forged_id} of other (from origin)" in said
    assert "trusted_remotes of [tool.mitosis] (now: none)" in said
    # the user trusts origin (in the pyproject.toml above the checkout, so the tree stays clean)
    (tmp_path / "pyproject.toml").write_text('[tool.mitosis]\ntrusted_remotes = ["origin"]\n')
    c = server(tmp_path, "c", hub)  # a store whose only trials are origin's
    mitosis.pull(store=c)
    reused = mitosis.run(chain, {**params, "fit.alpha": 4.0}, store=c, reuse=True)
    assert reused.steps[0].reused_from == original.id
    assert not marker.exists()  # the forged trial of the other experiment is never a candidate
    # a trial recorded in this store is always accepted
    own = mitosis.run(chain, {**params, "fit.alpha": 5.0}, store=b, reuse=True)
    assert own.steps[0].reused_from is not None and not marker.exists()


def test_trusted_remotes_must_be_a_list_of_names(tmp_path):
    from mitosis.run.config import load_config

    bad = tmp_path / "pyproject.toml"
    bad.write_text('[tool.mitosis]\ntrusted_remotes = "origin"\n')
    with pytest.raises(mitosis.ConfigError, match=r"trusted_remotes .* must be a list"):
        load_config(bad)


# -- fuzz: any record, any folder name, through every reading path ---------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ODD_TEXT = st.lists(
    st.sampled_from(["a", "0", "/", ".", "..", "\x1b[31m", "\n", "\u202e", "é", "'", '"']),
    max_size=8,
).map("".join)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _ODD_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_ODD_TEXT, inner, max_size=3),
    max_leaves=8,
)
_FIELDS = [
    "id",
    "experiment",
    "status",
    "main",
    "metrics",
    "params",
    "untracked",
    "started",
    "ended",
    "duration",
    "host",
    "user",
    "function",
    "code",
    "error",
    "files",
    "captions",
    "steps",
    "rerun_of",
    "mitosis",
    "format",
]


_GOOD: dict[Path, str] = {}


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    changes=st.dictionaries(st.sampled_from(_FIELDS), _JSON, min_size=1, max_size=4),
    folder=st.one_of(st.just(None), _ODD_TEXT.filter(lambda s: s and "/" not in s)),
)
def test_any_record_or_folder_name_never_breaks_reading(investigation, tmp_path, changes, folder):
    store = Path.cwd()  # one store for all examples (the fixture lives as long as the test)
    if store not in _GOOD:
        _GOOD[store] = mitosis.run(
            investigation.sine, {"amplitude": 2, "noise": "low"}, lookup=investigation.lookup
        ).id
    raw = json.loads(mitosis.load(_GOOD[store]).read("trial.json"))
    name = folder if folder not in (None, ".", "..") else f"{len(changes):02x}{'d' * 10}"
    shard = name[:2] if len(name) >= 2 and "." not in name[:2] else "zz"
    record = json.dumps({**raw, **changes}, allow_nan=True).encode()
    with Store.open(store) as st_:
        st_.commit("sine", {f"trials/{shard}/{name}/trial.json": record}, "sine: fuzz\n")
    listed = mitosis.trials()  # never raises, whatever the record holds
    assert _GOOD[store] in {t.id for t in listed}
    for trial in listed:
        assert trial.status in ("ok", "failed", "killed", "interrupted")
    with contextlib.suppress(mitosis.MitosisError):  # a bad record, or a name that is no id
        mitosis.load(name)
    site = mitosis.browse(tmp_path / "site")
    assert site.index.exists()
    outside = {p.name for p in tmp_path.iterdir()} - {"site", "investigation", "home"}
    assert not outside


def test_the_fuzzed_store_reads_from_the_command_line(investigation, tmp_path):
    # the same kinds of records, read by the installed command as a user would
    good, _ = _bad_trials(investigation, Path.cwd())
    for command in (["log"], ["log", "--json"], ["show", good], ["experiments"]):
        proc = cli(*command, cwd=Path.cwd())
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_a_copied_trial_folder_is_not_listed_under_another_name(investigation, tmp_path):
    store = tmp_path / "store"
    git("init", "-q", str(store))
    real = record(investigation, store, 1)
    assert [t.id for t in mitosis.trials(store=store)] == [real]  # listed: its record is cached
    from dulwich.objects import Tree

    with Store.open(store) as st:  # the whole folder (the same tree), in another place
        folder = st.lookup(st.tree_of(st.tip("sine")), f"trials/{real[:2]}/{real}")
        assert folder is not None
        root, trials, shard = Tree(), Tree(), Tree()
        shard.add(b"ffffffffffff", stat.S_IFDIR, folder.id)
        trials.add(b"ff", stat.S_IFDIR, st.add(shard))
        root.add(b"trials", stat.S_IFDIR, st.add(trials))
        commit = st.new_commit(st.add(root), [], "other: copied\n")
        st.repo.refs[b"refs/heads/mitosis/other"] = commit.id
    assert [(t.id, t.experiment) for t in mitosis.trials(store=store)] == [(real, "sine")]


def _forged_results(hub: Path, trial_id: str, name: bytes) -> str:
    """The hub's results ref of ``trial_id`` moved to a commit whose tree also holds ``name``
    (a blob), made with dulwich as a forger would; the forged commit's id."""
    from dulwich.objects import Blob, Commit, Tree
    from dulwich.repo import Repo

    ref = f"refs/mitosis-results/{trial_id}".encode()
    with Repo(str(hub)) as repo:
        kept = repo[repo[repo.refs[ref]].tree]
        blob = Blob.from_string(b"planted\n")
        repo.object_store.add_object(blob)
        tree = Tree()
        for entry in kept.iteritems():
            tree.add(entry.path, entry.mode, entry.sha)
        tree.add(name, stat.S_IFREG | 0o644, blob.id)
        repo.object_store.add_object(tree)
        commit = Commit()
        commit.tree, commit.parents = tree.id, []
        commit.author = commit.committer = b"Forger <f@example.org>"
        commit.author_time = commit.commit_time = 1_700_000_000
        commit.author_timezone = commit.commit_timezone = 0
        commit.message = b"forged results\n"
        repo.object_store.add_object(commit)
        repo.refs[ref] = commit.id
        return commit.id.decode()


@pytest.mark.parametrize("transport", ["path", "daemon", "bundle", "on demand"])
def test_malformed_results_never_enter_the_store(investigation, tmp_path, hub, transport, request):
    """Results come from a remote as its branches do: their commits and trees are checked
    first, and what is malformed never enters the store (whichever way it comes)."""
    trial = mitosis.run(investigation.big, {"mib": 2})
    mitosis.push(str(hub))
    forged = _forged_results(hub, trial.id, b"..")
    away = tmp_path / "away"
    git("init", "-q", str(away))
    remote = str(hub)
    if transport == "daemon":
        remote = request.getfixturevalue("daemon")
    elif transport == "bundle":
        remote = str(tmp_path / "evil.bundle")
        git("bundle", "create", remote, "--all", cwd=hub)
    git("remote", "add", "origin", remote, cwd=away)
    if transport == "on demand":
        mitosis.pull(store=away)
        with pytest.raises(mitosis.StoreError, match=r"asked origin: refused .* malformed"):
            mitosis.load(trial.id, store=away).results()
    else:
        with pytest.raises(mitosis.SyncRefused, match=r"malformed objects \(results of trial"):
            mitosis.pull(remote, store=away, results=True)
    missing = subprocess.run(["git", "cat-file", "-e", forged], cwd=away, capture_output=True)
    assert missing.returncode != 0  # the forged commit never entered the store
    assert "refs/mitosis-results/" not in git("for-each-ref", cwd=away)
    git("fsck", "--strict", cwd=away)


@pytest.mark.parametrize("transport", ["path", "daemon"])
def test_results_refs_that_name_no_trial_are_left_out(
    investigation, tmp_path, hub, transport, request
):
    """A remote's refs under refs/mitosis-results/ are untrusted names: only a trial's hex id
    is fetched, as a bundle's are; nothing else becomes a ref of the store."""
    trial = mitosis.run(investigation.big, {"mib": 2})
    mitosis.push(str(hub))
    kept = git("rev-parse", f"refs/mitosis-results/{trial.id}", cwd=hub).strip()
    for name in ("not-a-trial", "ABCDEF12", "ab/cd/ef12"):
        git("update-ref", f"refs/mitosis-results/{name}", kept, cwd=hub)
    away = tmp_path / "away"
    git("init", "-q", str(away))
    remote = request.getfixturevalue("daemon") if transport == "daemon" else str(hub)
    report = mitosis.pull(remote, store=away, results=True)
    assert report.results == [trial.id]
    refs = git("for-each-ref", "--format=%(refname)", "refs/mitosis-results/", cwd=away).split()
    assert refs == [f"refs/mitosis-results/{trial.id}"]
    assert mitosis.load(trial.id, store=away).results()["main"] == trial.main
    git("fsck", "--strict", cwd=away)
