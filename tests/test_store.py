"""The store under pressure: secrets never stored, concurrent writers never lose a trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import git, run_writers, wait_for_packer

import mitosis
from mitosis.model.redact import redact_env, strip_credentials
from mitosis.store.repo import Store


def all_objects(cwd: Path | str | None = None) -> bytes:
    """Every object of the repository, as the git CLI prints them."""
    return git("cat-file", "--batch-all-objects", "--batch", cwd=cwd, text=False)


def test_secrets_never_reach_the_store(investigation, monkeypatch):
    secret = "s3cr3t-value-4f9a1c"
    monkeypatch.setenv("API_TOKEN", secret)
    monkeypatch.setenv("MY_PASSWORD", secret + "-pw")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret + "-aws")
    monkeypatch.setenv("DATABASE_URL", f"postgres://bob:{secret}-db@db.example.org/lab")
    monkeypatch.setenv("LAB_SAUCE", secret + "-custom")
    monkeypatch.setenv("MITOSIS_REDACT", "*SAUCE*")
    git("remote", "add", "origin", f"https://alice:{secret}-remote@example.org/lab.git")
    trial = mitosis.run(
        investigation.sine, {"amplitude": 1, "noise": "low"}, lookup=investigation.lookup
    )
    assert secret.encode() not in all_objects()
    env = trial.read("environment.json").decode()
    assert '"API_TOKEN": "<redacted>"' in env and '"LAB_SAUCE": "<redacted>"' in env
    assert '"DATABASE_URL": "postgres://db.example.org/lab"' in env


def test_redaction_rules():
    env = {"GITHUB_TOKEN": "x", "SSH_AUTH_SOCK": "y", "PATH": "/bin", "pwd": "/home"}
    assert redact_env(env) == {
        "GITHUB_TOKEN": "<redacted>",
        "PATH": "/bin",
        "SSH_AUTH_SOCK": "<redacted>",
        "pwd": "/home",
    }
    assert strip_credentials("see https://u:p@h.org/x and ssh://git@h.org/y") == (
        "see https://h.org/x and ssh://h.org/y"
    )


def test_branches_are_real_git(investigation, tmp_path):
    for amplitude in (1, 2, 3):
        mitosis.run(
            investigation.sine,
            {"amplitude": amplitude, "noise": "high"},
            lookup=investigation.lookup,
        )
    clone = tmp_path / "clone"
    git("clone", "-q", "--mirror", str(Path.cwd()), str(clone))
    subjects = git("log", "--format=%s", "mitosis/sine", cwd=clone).splitlines()
    assert subjects == [
        *(
            f"sine: amplitude={a} gpu=0 noise=high -> main={m} (ok)"
            for a, m in ((3, "1.5"), (2, "1"), (1, "0.5"))
        ),
        "sine: lock noise=high",
    ]
    assert git("reflog", "show", "mitosis/sine").count("mitosis: sine:") == 4
    git("fsck", "--strict", cwd=clone)


WRITER = textwrap.dedent("""
    import sys
    import mitosis
    sys.path.insert(0, sys.argv[1])
    experiments = __import__(sys.argv[2])
    for i in range(int(sys.argv[3])):
        mitosis.run(experiments.sine, {"amplitude": i, "noise": "low"}, lookup=experiments.lookup)
""")


def test_concurrent_writers_lose_no_trial(investigation):
    run_writers(WRITER, str(Path.cwd()), investigation.__name__, "25", count=4)
    subjects = git("log", "--format=%s", "mitosis/sine").splitlines()
    assert len(subjects) == 101 and subjects[-1] == "sine: lock noise=low"  # one lock only
    wait_for_packer(Path.cwd())
    trials = mitosis.trials("sine")
    assert len(trials) == 100 and len({t.id for t in trials}) == 100
    files = git("ls-tree", "-r", "--name-only", "mitosis/sine").split()
    assert sum(f.endswith("/trial.json") for f in files) == 100
    git("fsck", "--strict")


def test_store_writes_objects_and_trees_without_an_index(tmp_path):
    path = tmp_path / "store"
    with Store.open(path, create=True) as store:  # created, bare
        first = store.commit("exp", {"a/b/c.txt": b"one", "a/d.txt": b"two"}, "first\n")
        store.commit("exp", {"a/b/e.txt": b"three"}, "second\n")
        assert store.read_file("exp", "a/b/c.txt") == b"one"
        assert store.read_file("exp", "a/b/e.txt") == b"three"
        assert store.read_file("exp", "a/nope") is None
        assert store.experiments() == ["exp"]
    assert git("rev-parse", "--is-bare-repository", cwd=path).strip() == "true"
    assert git("ls-tree", "-r", "--name-only", "mitosis/exp", cwd=path).split() == [
        "a/b/c.txt",
        "a/b/e.txt",
        "a/d.txt",
    ]
    assert git("rev-parse", "mitosis/exp~1", cwd=path).strip() == first.decode()
    git("fsck", "--strict", cwd=path)


LIST = "import mitosis; print(' '.join(t.id for t in mitosis.trials('bare_number')))"


def list_in_fresh_process() -> list[str]:
    out = subprocess.run([sys.executable, "-c", LIST], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_listing_cache_follows_new_trials_and_survives_corruption(investigation):
    first = mitosis.run(investigation.bare_number, {"x": 1.0})
    assert list_in_fresh_process() == [first.id]
    cache = Path(".git/mitosis/cache/bare_number.json")
    assert first.id in cache.read_text()
    second = mitosis.run(investigation.bare_number, {"x": 2.0})
    assert list_in_fresh_process() == [first.id, second.id]  # the cache only adds
    cache.write_text("{not json")
    assert list_in_fresh_process() == [first.id, second.id]
    assert second.id in cache.read_text()  # rebuilt
    git("update-ref", "refs/heads/mitosis/bare_number", "mitosis/bare_number~1")
    assert list_in_fresh_process() == [first.id]  # a moved branch is read as it is
    assert second.id not in cache.read_text()  # and the cache keeps only what it met


def test_secrets_with_slashes_and_at_signs_in_passwords(investigation, monkeypatch):
    secret = "pa/ss@w0rd-9c1e"
    monkeypatch.setenv("DATABASE_URL", f"postgres://bob:{secret}@db.example.org/lab")
    monkeypatch.setenv("CACHE_URL", f"redis://:{secret}@cache")
    monkeypatch.setenv("MYSQL_PWD", secret)
    monkeypatch.setenv("SSHPASS", secret)
    mitosis.run(investigation.bare_number)
    objects = all_objects()
    assert secret.encode() not in objects and b"w0rd-9c1e" not in objects


KILLED_AT = textwrap.dedent("""
    import os, signal, sys
    import mitosis
    from mitosis.store import repo as _store
    sys.path.insert(0, sys.argv[1])
    experiments = __import__(sys.argv[2])

    def die(point):
        if point == sys.argv[3]:
            os.kill(os.getpid(), signal.SIGKILL)

    _store.fault = die
    mitosis.run(experiments.bare_number, {"x": 7.0})
""")


@pytest.mark.parametrize("point", ["blobs", "tree", "commit"])
def test_a_writer_killed_while_recording_harms_nothing(investigation, point):
    before = mitosis.run(investigation.bare_number, {"x": 1.0})
    tip = git("rev-parse", "mitosis/bare_number").strip()
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_AT, str(Path.cwd()), investigation.__name__, point],
        capture_output=True,
    )
    assert proc.returncode == -9
    assert git("rev-parse", "mitosis/bare_number").strip() == tip  # a complete commit
    git("fsck", "--strict")
    assert [t.id for t in mitosis.trials("bare_number")] == [before.id]
    after = mitosis.run(investigation.bare_number, {"x": 2.0})
    assert [t.id for t in mitosis.trials("bare_number")] == [before.id, after.id]


def test_a_stale_ref_lock_is_cleared_with_a_message(investigation):
    mitosis.run(investigation.bare_number)
    lock = Path(".git/refs/heads/mitosis/bare_number.lock")
    lock.write_text("left by a writer that was killed\n")
    old = time.time() - 120
    os.utime(lock, (old, old))
    # In a process of its own, as a user's script runs (pytest would capture the log record).
    script = (
        f"import mitosis, {investigation.__name__} as e; mitosis.run(e.bare_number, {{'x': 3.0}})"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "removed a stale lock file" in proc.stderr
    assert not lock.exists() and len(mitosis.trials("bare_number")) == 2


def test_a_live_lock_is_waited_for(investigation, capfd, monkeypatch):
    from mitosis.store import repo as _store

    mitosis.run(investigation.bare_number)
    lock = Path(".git/refs/heads/mitosis/bare_number.lock")
    lock.write_text("held by a writer right now\n")
    attempts = []

    def release_at_the_second_attempt(point: str) -> None:
        if point == "commit":  # the commit is written; the ref moves next
            attempts.append(point)
            if len(attempts) == 2:
                lock.unlink()  # the other writer is done

    monkeypatch.setattr(_store, "fault", release_at_the_second_attempt)
    capfd.readouterr()
    mitosis.run(investigation.bare_number, {"x": 3.0})
    assert len(attempts) == 2  # the first attempt met the lock, waited, and tried again
    assert "stale" not in capfd.readouterr().err
    assert len(mitosis.trials("bare_number")) == 2


def test_the_fast_reader_of_records_agrees_with_the_converter(investigation):
    from mitosis.model.records import Trial, converter, trial_from_json
    from mitosis.store.trials import _results

    chain = [("make_data", investigation.make_data, investigation.data_lookup), investigation.fit]
    made = [
        mitosis.run(chain, {"make_data.noise": "low", "fit.alpha": 2.0}),
        mitosis.run(
            investigation.sine,
            {"amplitude": 1, "noise": "high", "gpu": 3},
            lookup=investigation.lookup,
            untracked=["gpu"],
        ),
    ]
    for trial in made:
        raw = json.loads(git("show", f"mitosis/{trial.experiment}:{trial.path}/trial.json"))
        raw["a_field_of_a_later_version"] = {"ignored": True}
        expected = converter().structure({**_results(raw), "location": "here"}, Trial)
        assert trial_from_json(_results(raw), "here", None) == expected
        assert trial_from_json(_results(raw), "here", None).code == trial.code
    with pytest.raises(KeyError, match="experiment"):  # not a record: the converter says why
        trial_from_json({"id": "x"}, None, None)


def test_commit_dates_follow_git_s_environment_variables(investigation, monkeypatch):
    monkeypatch.setenv("GIT_AUTHOR_DATE", "2024-03-01T12:00:00+01:00")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "@1700000000 -0230")
    mitosis.run(investigation.bare_number)
    dates = git("log", "-1", "--format=%aI %cI", "mitosis/bare_number").split()
    assert dates == ["2024-03-01T12:00:00+01:00", "2023-11-14T19:43:20-02:30"]
    monkeypatch.setenv("GIT_COMMITTER_DATE", "yesterday-ish")
    with pytest.raises(
        mitosis.StoreError, match="GIT_COMMITTER_DATE='yesterday-ish' is not a date"
    ):
        mitosis.run(investigation.bare_number, {"x": 5.0})
    assert len(mitosis.trials("bare_number")) == 1  # nothing half-written
    git("fsck", "--strict")
