"""Sharing trials between "servers": real bare repositories, a real git daemon on 127.0.0.1,
bundles, plain git on the same branches, and pulls racing with trials."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import console_script, git, run_writers, server, wait_for_packer

import mitosis
from mitosis.cli import main


def record(investigation, store: Path, amplitude: int, noise: str = "low", lookup=None) -> str:
    lookup = lookup or investigation.lookup
    trial = mitosis.run(
        investigation.sine, {"amplitude": amplitude, "noise": noise}, lookup=lookup, store=store
    )
    return trial.id


def ids(store: Path, experiment: str = "sine") -> set[str]:
    return {t.id for t in mitosis.trials(experiment, store=store)}


def test_two_servers_push_pull_and_agree(investigation, tmp_path, hub):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    made_a = {record(investigation, a, i) for i in (1, 2)}
    assert mitosis.push(store=a).experiments == {"sine": "new"}
    made_b = {record(investigation, b, 9)}
    with pytest.raises(mitosis.SyncError, match=r"that this store lacks: pull first"):
        mitosis.push(store=b)
    assert mitosis.pull(store=b).experiments == {"sine": "merged"}
    assert ids(b) == made_a | made_b
    parents = git("log", "-1", "--format=%P", "mitosis/sine", cwd=b).split()
    assert len(parents) == 2
    assert mitosis.push(store=b).experiments == {"sine": "pushed"}
    assert mitosis.pull(store=a).experiments == {"sine": "fast-forward"}
    assert mitosis.pull(store=a).experiments == {"sine": "up to date"}
    tips = {git("rev-parse", "mitosis/sine", cwd=p).strip() for p in (a, b, hub)}
    assert len(tips) == 1 and ids(a) == made_a | made_b
    for path in (a, b, hub):
        git("fsck", "--strict", cwd=path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    """Wait until a server listens on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)


@pytest.fixture
def daemon(tmp_path: Path, hub: Path) -> Iterator[str]:
    """`git daemon` serving the hub on 127.0.0.1, pushes allowed; yields the hub's git:// URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            "--enable=receive-pack",
            "--reuseaddr",
            "--listen=127.0.0.1",
            f"--port={port}",
            f"--base-path={tmp_path}",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    yield f"git://127.0.0.1:{port}/{hub.name}"
    proc.terminate()
    proc.wait(timeout=10)


def test_push_and_pull_through_git_daemon(investigation, tmp_path, hub, daemon):
    a, b = tmp_path / "a", tmp_path / "b"
    for path in (a, b):
        git("init", "-q", str(path))
        git("remote", "add", "lab", daemon, cwd=path)
    first = record(investigation, a, 1)
    assert mitosis.push("lab", store=a).experiments == {"sine": "new"}
    second = record(investigation, b, 2)
    report = mitosis.pull("lab", store=b)
    assert report.experiments == {"sine": "merged"} and report.remote == "lab"
    mitosis.push(daemon, store=b)  # a URL works as well as a remote's name
    assert mitosis.pull(daemon, store=a).experiments == {"sine": "fast-forward"}
    assert ids(a) == ids(b) == {first, second}
    assert git("rev-parse", "mitosis/sine", cwd=hub) == git("rev-parse", "mitosis/sine", cwd=a)


def test_variant_conflict_stops_the_pull_and_reports_both_sides(investigation, tmp_path, hub):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    trial_a = record(investigation, a, 1, lookup={"noise": {"low": 0.01}})
    record(investigation, a, 2, noise="high", lookup=investigation.lookup)
    mitosis.push(store=a)
    trial_b = record(investigation, b, 3, lookup={"noise": {"low": 0.02}})
    before = git("rev-parse", "mitosis/sine", cwd=b)
    with pytest.raises(mitosis.SyncConflict) as err:
        mitosis.pull(store=b)
    (conflict,) = err.value.conflicts
    assert (conflict.param, conflict.variant) == ("noise", "low")
    assert conflict.local == "0.02 (float)" and conflict.remote == "0.01 (float)"
    assert conflict.local_trials == [trial_b] and conflict.remote_trials == [trial_a]
    assert "noise=low is 0.02 (float) here" in str(err.value)
    assert git("rev-parse", "mitosis/sine", cwd=b) == before  # nothing changed
    tracking = git("rev-parse", "refs/remotes/origin/mitosis/sine", cwd=b)
    assert tracking == git("rev-parse", "mitosis/sine", cwd=a)
    assert mitosis.conflicts(store=b) == [conflict]
    runner = CliRunner()
    result = runner.invoke(main, ["variants", "--conflicts", "--store", str(b)])
    assert result.exit_code == 1 and "sine: noise=low is 0.02 (float) here" in result.output
    assert "mitosis variants EXPERIMENT PARAM --rename OLD NEW" in result.output  # the fix
    result = runner.invoke(main, ["pull", "--store", str(b)])
    assert result.exit_code == 1 and "1 variant conflict(s)" in result.output
    assert "--rename OLD NEW`), then pull again" in result.output
    assert "conflict" in result.output.splitlines()[1]


def test_same_value_locked_on_both_sides_merges(investigation, tmp_path, hub, monkeypatch):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000000 +0000")
    record(investigation, a, 1)
    mitosis.push(store=a)
    # another time: the two lock commits differ, the lock files do not
    monkeypatch.setenv("GIT_COMMITTER_DATE", "1700000001 +0000")
    record(investigation, b, 2)
    locks = [git("log", "--format=%H %s", "mitosis/sine", cwd=s).splitlines()[-1] for s in (a, b)]
    assert locks[0] != locks[1] and locks[0].endswith("lock noise=low")
    assert mitosis.pull(store=b).experiments == {"sine": "merged"}
    assert mitosis.conflicts(store=b) == []
    assert len(ids(b)) == 2


def test_bundles_for_air_gapped_machines(investigation, tmp_path, hub):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    first = record(investigation, a, 1)
    full = tmp_path / "all.bundle"
    assert mitosis.bundle(full, store=a) == 1
    assert (
        "is okay"
        in git("bundle", "verify", str(full), cwd=b, check=False)
        + git("bundle", "verify", str(full), cwd=b, check=False)
        or subprocess.run(["git", "bundle", "verify", str(full)], cwd=b).returncode == 0
    )
    assert mitosis.pull(str(full), store=b).experiments == {"sine": "new"}
    assert ids(b) == {first}
    second = record(investigation, a, 2)
    newer = tmp_path / "newer.bundle"
    mitosis.bundle(newer, ["sine"], since=full, store=a)
    assert newer.stat().st_size < full.stat().st_size
    verify = subprocess.run(["git", "bundle", "verify", str(newer)], cwd=b, capture_output=True)
    assert verify.returncode == 0, verify.stderr
    lacking = tmp_path / "lacking"
    git("init", "-q", str(lacking))
    with pytest.raises(mitosis.SyncError, match="builds on 1 commits this store lacks"):
        mitosis.pull(str(newer), store=lacking)
    assert mitosis.pull(str(newer), store=b).experiments == {"sine": "fast-forward"}
    assert ids(b) == {first, second}


def test_plain_git_push_clone_fetch_and_merge(investigation, tmp_path, hub):
    a = server(tmp_path, "a", hub)
    first = record(investigation, a, 1)
    git("push", "-q", "origin", "refs/heads/mitosis/*:refs/heads/mitosis/*", cwd=a)
    clone = tmp_path / "clone"
    git("clone", "-q", str(hub), str(clone))
    assert ids(clone) == {first}  # read from the remote-tracking branch of the clone
    out = subprocess.run(
        [console_script(), "log", "sine"], cwd=clone, capture_output=True, text=True
    )
    assert out.returncode == 0 and first in out.stdout
    mine = record(investigation, clone, 5)  # builds on origin/mitosis/sine
    assert git("rev-parse", "mitosis/sine~1", cwd=clone) == git("rev-parse", "mitosis/sine", cwd=a)
    second = record(investigation, a, 2)
    git("push", "-q", "origin", "refs/heads/mitosis/*:refs/heads/mitosis/*", cwd=a)
    git("fetch", "-q", "origin", cwd=clone)
    git("checkout", "-q", "mitosis/sine", cwd=clone)
    git("merge", "-q", "--no-edit", "origin/mitosis/sine", cwd=clone)
    assert ids(clone) == {first, second, mine}
    git("fsck", "--strict", cwd=clone)


def test_sync_errors(investigation, tmp_path, hub):
    a = server(tmp_path, "a", hub)
    record(investigation, a, 1)
    with pytest.raises(mitosis.SyncError, match=r"no remote named 'nope'.*remotes: origin"):
        mitosis.push("nope", store=a)
    with pytest.raises(mitosis.SyncError, match="the store has no experiment 'sien' to push"):
        mitosis.push("origin", ["sien"], store=a)
    with pytest.raises(mitosis.SyncError) as err:
        mitosis.pull("https://bob:hunter2@127.0.0.1:1/lab.git", store=a)
    assert "hunter2" not in str(err.value) and "127.0.0.1:1/lab.git" in str(err.value)
    mitosis.push(store=a)
    with pytest.raises(mitosis.SyncError, match="has no experiment 'sien'"):
        mitosis.pull("origin", ["sien"], store=a)
    with pytest.raises(mitosis.SyncError, match="no trial branches to bundle"):
        mitosis.bundle(tmp_path / "x.bundle", ["sien"], store=a)
    with pytest.raises(mitosis.SyncError, match="is not a git bundle"):
        mitosis.bundle(tmp_path / "x.bundle", since=Path(investigation.__file__), store=a)


def test_cli_push_pull_bundle(investigation, tmp_path, hub):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    record(investigation, a, 1)
    runner = CliRunner()
    result = runner.invoke(main, ["push", "--store", str(a)])
    assert result.exit_code == 0 and "sine        new" in result.output
    result = runner.invoke(main, ["pull", "origin", "sine", "--store", str(b)])
    assert result.exit_code == 0 and "sine        new" in result.output
    bundle = tmp_path / "t.bundle"
    out = subprocess.run(
        [console_script(), "bundle", str(bundle), "--store", str(a)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "wrote 1 trial branch(es)" in out.stdout
    out = subprocess.run(
        [console_script(), "pull", str(bundle), "--store", str(b)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "up to date" in out.stdout
    result = runner.invoke(main, ["push", "nope", "--store", str(a)])
    assert result.exit_code == 1 and "has no experiment 'nope' to push" in result.output


WRITER = textwrap.dedent("""
    import sys
    import mitosis
    sys.path.insert(0, sys.argv[1])
    experiments = __import__(sys.argv[2])
    for i in range(int(sys.argv[3])):
        mitosis.run(experiments.sine, {"amplitude": i, "noise": "low"},
                    lookup=experiments.lookup, store=sys.argv[4])
        print("recorded", i, file=sys.stderr, flush=True)
""")


def test_writers_and_a_pull_at_once_lose_nothing(investigation, tmp_path, hub):
    a, other = server(tmp_path, "a", hub), server(tmp_path, "other", hub)
    pulled = {record(investigation, other, 100 + i) for i in range(3)}
    mitosis.push(store=other)
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(Path.cwd()), investigation.__name__, "25", str(a)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(8)
    ]
    for writer in writers:  # each writer has recorded its first trial: they are at work
        assert writer.stderr is not None
        assert writer.stderr.readline() == b"recorded 0\n"
    mitosis.pull(store=a)  # while the writers commit
    for writer in writers:
        _, err = writer.communicate(timeout=900)
        assert writer.returncode == 0, err.decode()
    assert len(ids(a)) == 203  # the pull went in between, not after: all 8 x 25 still recorded
    found = ids(a)
    assert len(found) == 203 and pulled <= found
    trial_files = git("ls-tree", "-r", "--name-only", "mitosis/sine", cwd=a).split()
    assert sum(f.endswith("/trial.json") for f in trial_files) == 203
    wait_for_packer(a)
    git("fsck", "--strict", cwd=a)


def test_a_rename_settles_a_conflict_and_rewrites_nothing(investigation, tmp_path, hub):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    trial_a = record(investigation, a, 1, lookup={"noise": {"low": 0.01}})
    mitosis.push(store=a)
    trial_b = record(investigation, b, 3, lookup={"noise": {"low": 0.02}})
    recorded = git("rev-parse", "mitosis/sine", cwd=b).strip()
    with pytest.raises(mitosis.SyncConflict):
        mitosis.pull(store=b)
    runner = CliRunner()
    result = runner.invoke(
        main, ["variants", "sine", "noise", "--rename", "low", "low_b", "--store", str(b)]
    )
    assert result.exit_code == 0, result.output
    assert "noise=low is now noise=low_b" in result.output
    assert git("merge-base", "--is-ancestor", recorded, "mitosis/sine", cwd=b, check=False) == ""
    assert mitosis.pull(store=b).experiments == {"sine": "merged"}
    folder = f"mitosis/sine:trials/{trial_b[:2]}/{trial_b}/trial.json"
    assert json.loads(git("show", folder, cwd=b))["params"]["noise"]["variant"] == "low"  # kept
    assert mitosis.load(trial_b, store=b).params["noise"].variant == "low_b"  # listed by its name
    counts = {(v.name, v.value, v.trials) for v in mitosis.variants("sine", store=b)}
    assert counts == {("low", 0.01, 1), ("low_b", 0.02, 1)}
    # a name in a listing means one value: the trial that meant 0.02 by "low" is under "low_b"
    assert [t.id for t in mitosis.trials("sine", where="noise=low", store=b)] == [trial_a]
    found = mitosis.trials("sine", where="noise=low_b", store=b)
    assert [(t.id, t.variants["noise"], t.params["noise"].value) for t in found] == [
        (trial_b, "low_b", 0.02)
    ]
    assert [r.variants["noise"] for r in found.rows] == ["low_b"]
    log = CliRunner().invoke(main, ["log", "sine", "--where", "noise=low_b", "--store", str(b)])
    assert log.exit_code == 0 and trial_b in log.output and " low_b " in log.output, log.output
    with pytest.raises(mitosis.VariantRenamed, match="renamed to 'low_b'"):
        record(investigation, b, 4, lookup={"noise": {"low": 0.02}})
    record(investigation, b, 4, lookup={"noise": {"low": 0.01}})  # the name's meaning now
    record(investigation, b, 5, noise="low_b", lookup={"noise": {"low_b": 0.02}})
    mitosis.push(store=b)
    assert mitosis.pull(store=a).experiments == {"sine": "fast-forward"}
    assert {trial_a, trial_b} <= ids(a)


def test_a_name_renamed_twice_lists_its_trials_under_the_last(investigation, tmp_path, hub):
    a = server(tmp_path, "a", hub)
    first = record(investigation, a, 1)
    mitosis.rename_variant("sine", "noise", "low", "quiet", store=a)
    second = record(investigation, a, 2, noise="quiet", lookup={"noise": {"quiet": 0.01}})
    mitosis.rename_variant("sine", "noise", "quiet", "calm", store=a)
    record(investigation, a, 3, lookup={"noise": {"low": 0.5}})  # "low" free again: a new value
    listed = {t.id: t.variants["noise"] for t in mitosis.trials("sine", store=a)}
    assert listed[first] == listed[second] == "calm"
    counts = {(v.name, v.value, v.trials) for v in mitosis.variants("sine", store=a)}
    assert counts == {("calm", 0.01, 2), ("low", 0.5, 1)}
    assert [t.id for t in mitosis.trials("sine", where="noise=calm", store=a)] == [first, second]


def _forge(store: Path, path: str, content: bytes) -> None:
    """Commit onto mitosis/sine, with git's plumbing, its tree with ``path`` holding
    ``content``: what a forger's branch would bring."""
    env = {**os.environ, "GIT_INDEX_FILE": str(store / ".git" / "forge.index")}

    def plumb(*args: str, data: bytes | None = None) -> str:
        done = subprocess.run(
            ["git", *args], cwd=store, env=env, input=data, capture_output=True, check=True
        )
        return done.stdout.decode().strip()

    plumb("read-tree", "mitosis/sine")
    blob = plumb("hash-object", "-w", "--stdin", data=content)
    plumb("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    commit = plumb("commit-tree", plumb("write-tree"), "-p", "mitosis/sine", "-m", "forged")
    plumb("update-ref", "refs/heads/mitosis/sine", commit)


@pytest.mark.parametrize(
    "change",
    [
        {"renamed_to": "\x1b[2Jgone"},  # a terminal escape, for `mitosis log` to print
        {"renamed_to": ""},
        {"renamed_to": 7},
        {"param": "amplitude"},
        {"variant": "high"},
        {"fingerprint": "sha256:" + "0" * 64},  # not the one its file is named by
        None,  # not JSON
    ],
)
def test_a_rename_note_mitosis_never_writes_renames_nothing(
    investigation, tmp_path, hub, caplog, change
):
    a = server(tmp_path, "a", hub)
    trial = record(investigation, a, 1)
    mitosis.rename_variant("sine", "noise", "low", "quiet", store=a)
    notes = git("ls-tree", "-r", "--name-only", "mitosis/sine", "variants/noise/low.renamed", cwd=a)
    (note,) = notes.split()
    written = json.loads(git("show", f"mitosis/sine:{note}", cwd=a))
    _forge(a, note, b"{not json" if change is None else json.dumps({**written, **change}).encode())
    assert mitosis.load(trial, store=a).variants["noise"] == "low"  # as recorded
    assert [t.variants["noise"] for t in mitosis.trials("sine", store=a)] == ["low"]
    assert [(v.name, v.trials) for v in mitosis.variants("sine", store=a)] == [("quiet", 0)]
    assert f"{note} of mitosis/sine is not a rename note" in caplog.text


def test_rename_errors(investigation, tmp_path, hub):
    a = server(tmp_path, "a", hub)
    record(investigation, a, 1, lookup={"noise": {"low": 0.01, "high": 0.5}})
    record(investigation, a, 2, noise="high", lookup={"noise": {"low": 0.01, "high": 0.5}})
    with pytest.raises(mitosis.UnknownVariant, match="known variants: high, low"):
        mitosis.rename_variant("sine", "noise", "medium", "m2", store=a)
    with pytest.raises(mitosis.VariantConflict, match="noise=high"):
        mitosis.rename_variant("sine", "noise", "low", "high", store=a)
    result = CliRunner().invoke(main, ["variants", "sine", "--rename", "a", "b", "--store", str(a)])
    assert result.exit_code == 1 and "--rename needs the EXPERIMENT and the PARAM" in result.output


def test_gc_packs_loose_objects_and_keeps_every_trial(investigation, tmp_path, hub):
    a = server(tmp_path, "a", hub)
    made = {record(investigation, a, i) for i in range(1, 7)}
    loose_before = git("count-objects", "-v", cwd=a)
    assert "\ncount: 0\n" not in "\n" + loose_before
    result = CliRunner().invoke(main, ["gc", "--store", str(a)])
    assert result.exit_code == 0, result.output
    assert "packed" in result.output and "MiB ->" in result.output
    counts = dict(line.split(": ") for line in git("count-objects", "-v", cwd=a).splitlines())
    assert counts["count"] == "0" and counts["packs"] == "1"
    git("fsck", "--strict", cwd=a)
    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import mitosis; print([t.id for t in mitosis.trials(store={str(a)!r})])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(trial_id in listed.stdout for trial_id in made)
    assert mitosis.load(sorted(made)[0], store=a).results()["main"] > 0
    record(investigation, a, 99)  # writing after packing works
    assert mitosis.gc(store=a).objects > 0


AUTO_PACK = textwrap.dedent("""
    import sys
    import mitosis
    from mitosis.store import repo as _store
    _store.AUTO_PACK_OBJECTS = 100
    sys.path.insert(0, sys.argv[1])
    experiments = __import__(sys.argv[2])
    for i in range(12):
        mitosis.run(experiments.bare_number, {"x": float(i)}, store=sys.argv[3])
""")


def test_loose_objects_are_packed_in_the_background(investigation, tmp_path, hub):
    a = server(tmp_path, "a", hub)
    proc = subprocess.run(
        [sys.executable, "-c", AUTO_PACK, str(Path.cwd()), investigation.__name__, str(a)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        counts = dict(line.split(": ") for line in git("count-objects", "-v", cwd=a).splitlines())
        if int(counts["packs"]) >= 1 and not (a / ".git" / "mitosis" / "gc.lock").exists():
            break
        time.sleep(0.2)
    assert int(counts["packs"]) >= 1
    git("fsck", "--strict", cwd=a)
    assert len(mitosis.trials("bare_number", store=a)) == 12


def test_packing_while_writers_commit_loses_nothing(investigation, tmp_path, hub):
    a = server(tmp_path, "a", hub)
    run_writers(AUTO_PACK, str(Path.cwd()), investigation.__name__, str(a), count=4)
    wait_for_packer(a)
    git("fsck", "--strict", cwd=a)
    listed = subprocess.run(
        [sys.executable, "-c", f"import mitosis; print(len(mitosis.trials(store={str(a)!r})))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.strip() == "48"


def test_file_url_remote(investigation, tmp_path, hub):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    first = record(investigation, a, 1)
    url = hub.resolve().as_uri()  # file:///...
    assert mitosis.push(url, store=a).experiments == {"sine": "new"}
    assert mitosis.pull(url, store=b).experiments == {"sine": "new"}
    assert ids(b) == {first}


class _HttpBackend:
    """A WSGI app that hands each request to `git http-backend` (git's own smart HTTP server),
    as a web server's CGI would."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        env = {
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "tester",  # lets git http-backend accept pushes
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": environ.get("HTTP_CONTENT_ENCODING", ""),
            "GATEWAY_INTERFACE": "CGI/1.1",
        }
        proc = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=True
        )
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        headers = [tuple(line.split(": ", 1)) for line in head.decode().split("\r\n") if line]
        status = "200 OK"
        for name, value in headers:
            if name.lower() == "status":
                status = value
        start_response(status, [h for h in headers if h[0].lower() != "status"])
        return [payload]


@pytest.fixture
def http_url(tmp_path: Path, hub: Path) -> Iterator[str]:
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server_ = make_server("127.0.0.1", 0, _HttpBackend(tmp_path), handler_class=Quiet)
    thread = threading.Thread(target=server_.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server_.server_port}/{hub.name}"
    server_.shutdown()
    server_.server_close()


def push_then_pull(investigation, tmp_path: Path, hub: Path, url: str) -> tuple[Path, Path, str]:
    """Server a pushes a trial to ``url``, server b pulls it from there; both checked."""
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    first = record(investigation, a, 1)
    assert mitosis.push(url, store=a).experiments == {"sine": "new"}
    assert git("rev-parse", "mitosis/sine", cwd=hub) == git("rev-parse", "mitosis/sine", cwd=a)
    assert mitosis.pull(url, store=b).experiments == {"sine": "new"}
    assert ids(b) == {first}
    return a, b, first


def test_push_and_pull_over_http(investigation, tmp_path, hub, http_url):
    push_then_pull(investigation, tmp_path, hub, http_url)  # asserts each side


def test_incremental_bundles_after_packing_and_from_git(investigation, tmp_path, hub):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    for i in range(1, 4):
        record(investigation, a, i)
    first = tmp_path / "first.bundle"
    mitosis.bundle(first, store=a)
    mitosis.pull(str(first), store=b)
    old_tip = git("rev-parse", "mitosis/sine", cwd=a).strip()
    for i in range(4, 7):
        record(investigation, a, i)
    mitosis.gc(store=a)  # the next bundle then holds deltas against what b already has
    newer = tmp_path / "newer.bundle"
    mitosis.bundle(newer, since=first, store=a)
    assert mitosis.pull(str(newer), store=b).experiments == {"sine": "fast-forward"}
    assert ids(b) == ids(a)
    record(investigation, a, 7)
    by_git = tmp_path / "git.bundle"
    tip = git("rev-parse", "mitosis/sine", cwd=a).strip()
    git("bundle", "create", "-q", str(by_git), "mitosis/sine", f"^{old_tip}", cwd=a)
    assert mitosis.pull(str(by_git), store=b).experiments == {"sine": "fast-forward"}
    assert git("rev-parse", "mitosis/sine", cwd=b).strip() == tip
    broken = tmp_path / "broken.bundle"
    broken.write_bytes(newer.read_bytes()[:-40])
    with pytest.raises(mitosis.SyncError, match="cannot read the bundle"):
        mitosis.pull(str(broken), store=b)
    with pytest.raises(mitosis.SyncError, match="cannot write the bundle"):
        mitosis.bundle(tmp_path / "missing" / "x.bundle", store=a)


def test_pull_into_a_clone_keeps_what_origin_had(investigation, tmp_path, hub):
    a, other = server(tmp_path, "a", hub), server(tmp_path, "other", hub)
    made = {record(investigation, a, i) for i in (1, 2, 3)}
    mitosis.push(store=a)
    clone = tmp_path / "clone"
    git("clone", "-q", str(hub), str(clone))  # only refs/remotes/origin/mitosis/sine
    mine = {record(investigation, other, 9)}
    git("remote", "add", "other", str(other), cwd=clone)
    assert mitosis.pull("other", store=clone).experiments == {"sine": "merged"}
    assert ids(clone) == made | mine


def test_a_pull_does_not_undo_a_rename(investigation, tmp_path, hub):
    b, c = server(tmp_path, "b", hub), server(tmp_path, "c", hub)
    lookup = {"noise": {"low": 0.02}}
    record(investigation, b, 1, lookup=lookup)
    mitosis.push(store=b)
    mitosis.pull(store=c)  # c has the lock low -> 0.02 from before the rename
    mitosis.rename_variant("sine", "noise", "low", "lo", store=b)
    record(investigation, c, 2, lookup=lookup)
    record(investigation, b, 3, noise="lo", lookup={"noise": {"lo": 0.02}})
    git("remote", "add", "c", str(c), cwd=b)
    assert mitosis.pull("c", store=b).experiments == {"sine": "merged"}
    with pytest.raises(mitosis.VariantRenamed, match="renamed to 'lo'"):
        record(investigation, b, 4, lookup=lookup)
    counts = {(v.name, v.trials) for v in mitosis.variants("sine", store=b)}
    assert counts == {("lo", 3)}


def test_gc_refuses_while_another_packer_works(investigation, tmp_path, hub):
    a = server(tmp_path, "a", hub)
    record(investigation, a, 1)
    lock = a / ".git" / "mitosis" / "gc.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    with pytest.raises(mitosis.SyncError, match="another packer is at work"):
        mitosis.gc(store=a)
    lock.unlink()
    assert mitosis.gc(store=a).objects > 0


def test_push_reports_the_remote_by_name(investigation, tmp_path, hub):
    a = server(tmp_path, "a", hub)
    record(investigation, a, 1)
    assert mitosis.push("origin", ["sine"], store=a).remote == "origin"


def test_cli_pull_prints_no_progress_when_not_on_a_terminal(investigation, tmp_path, hub, daemon):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    record(investigation, a, 1)
    mitosis.push(daemon, store=a)
    out = subprocess.run(
        [console_script(), "pull", daemon, "--store", str(b)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # not git's own "Enumerating objects", "Counting objects", ...
    assert "sine" in out.stdout and "new" in out.stdout


@pytest.fixture
def ssh_url(tmp_path: Path, hub: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An sshd on 127.0.0.1 with keys of its own, serving ``hub``; the client's
    ``GIT_SSH_COMMAND`` knows the key (as a user's ~/.ssh/config would)."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists() or shutil.which("ssh") is None or os.geteuid() != 0:
        if os.environ.get("MITOSIS_REQUIRE_SSH"):
            pytest.fail("sshd, ssh and root are needed for the ssh:// test (MITOSIS_REQUIRE_SSH)")
        pytest.skip("no sshd here, or not root")
    keys = tmp_path / "ssh"
    keys.mkdir()
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True
        )
    (keys / "authorized_keys").write_text((keys / "client.pub").read_text())
    port = free_port()
    config = keys / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPidFile {keys / 'pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nPermitRootLogin yes\n"
        f"SetEnv PATH={os.environ['PATH']}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    daemon = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    wait_for_port(port)
    monkeypatch.setenv(
        "GIT_SSH_COMMAND",
        f"ssh -i {keys / 'client'} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
    )
    yield f"ssh://root@127.0.0.1:{port}{hub}"
    daemon.terminate()
    daemon.communicate(timeout=10)


def test_push_and_pull_over_ssh(investigation, tmp_path, hub, ssh_url, monkeypatch):
    a, b, first = push_then_pull(investigation, tmp_path, hub, ssh_url)
    # scp-style, with the ssh command from the store's git config instead of the environment
    second = record(investigation, b, 2)
    port = ssh_url.rsplit(":", 1)[1].split("/", 1)[0]
    command = os.environ["GIT_SSH_COMMAND"] + f" -p {port}"
    monkeypatch.delenv("GIT_SSH_COMMAND")
    git("config", "core.sshCommand", command, cwd=b)
    assert mitosis.push(f"root@127.0.0.1:{hub}", store=b).experiments == {"sine": "pushed"}
    git("config", "core.sshCommand", command, cwd=a)
    assert mitosis.pull(f"root@127.0.0.1:{hub}", store=a).experiments == {"sine": "fast-forward"}
    assert ids(a) == {first, second}


def _loose(store: Path) -> int:
    counts = dict(line.split(": ") for line in git("count-objects", "-v", cwd=store).splitlines())
    return int(counts["count"])


def test_a_push_sends_loose_objects_with_deltas_and_leaves_the_store_as_it_is(
    investigation, tmp_path, hub
):
    a = server(tmp_path, "a", hub)
    made = {record(investigation, a, i) for i in (1, 2, 3, 4)}
    loose = _loose(a)
    assert loose > 0
    assert mitosis.push(store=a).experiments == {"sine": "new"}
    assert _loose(a) == loose  # the store is packed by its own packer, not by a push
    git("fsck", "--strict", cwd=hub)
    assert git("rev-parse", "mitosis/sine", cwd=hub) == git("rev-parse", "mitosis/sine", cwd=a)
    # the trees of one trial's commit are deltas against the same trees of the one before
    packs = list((hub / "objects" / "pack").glob("*.idx"))
    shown = "".join(git("verify-pack", "-v", str(idx), cwd=hub) for idx in packs)
    assert " tree " in shown and "chain length = 1:" in shown
    assert ids(a) == made
