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
from mitosis.model.redact import (
    redact_env,
    redact_value,
    secret_name,
    storable,
    strip_credentials,
)
from mitosis.store.repo import Store


def all_objects(cwd: Path | str | None = None) -> bytes:
    """Every object of the repository, as the git CLI prints them."""
    return git("cat-file", "--batch-all-objects", "--batch", cwd=cwd, text=False)


JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
#: Secrets planted in a trial's environment, by the variable that holds them: by name, then by
#: value (under names that look harmless). Each secret holds "s3cr3t" (in any case), which must
#: appear nowhere in the store (the host of a URL may).
PLANTED = {
    "API_TOKEN": "s3cr3t-token-4f9a1c",
    "MY_PASSWORD": "s3cr3t-password-4f9a1c",
    "PGPASSWORD": "s3cr3t-pgpassword-4f9a1c",
    "MYSQL_PWD": "s3cr3t-mysql-4f9a1c",
    "AWS_SECRET_ACCESS_KEY": "s3cr3t-aws-4f9a1c",
    "STRIPE_API_KEY": "s3cr3t-stripe-4f9a1c",
    "NPM_AUTH": "s3cr3t-npm-auth-4f9a1c",
    "LAB_CREDENTIALS_JSON": "s3cr3t-credentials-4f9a1c",
    "BROWSER_COOKIE": "s3cr3t-cookie-4f9a1c",
    "DEPLOY_PRIVATE": "s3cr3t-private-4f9a1c",
    "GITHUB_PAT": "s3cr3t-github-pat-4f9a1c",
    "APP_JWT": "s3cr3t-jwt-4f9a1c",
    "FLASK_SESSION": "s3cr3t-session-4f9a1c",
    "RELEASE_SIGNING": "s3cr3t-signing-4f9a1c",
    "SLACK_WEBHOOK": "https://hooks.slack.com/services/T000/B000/s3cr3tSlackA",
    "AZURE_STORAGE_CONNECTION_STRING": (
        "DefaultEndpointsProtocol=https;AccountName=lab;AccountKey=s3cr3tAzureA==;"
        "EndpointSuffix=core.windows.net"
    ),
    "LAB_SAUCE": "s3cr3t-custom-4f9a1c",  # MITOSIS_REDACT names it
    "DATABASE_URL": "postgres://bob:s3cr3t-db-4f9a1c@db.example.org/lab",
    "NOTIFY": "https://hooks.slack.com/services/T111/B111/s3cr3tSlackB",
    "CHAT": "https://discord.com/api/webhooks/1234/s3cr3tDiscord",
    "TEAMS": "https://lab.webhook.office.com/webhookb2/s3cr3tTeams",
    "BOT": "https://api.telegram.org/bot123456:s3cr3tTelegram/sendMessage",
    "STORAGE": "AccountName=lab;AccountKey=s3cr3tAzureB==;EndpointSuffix=core.windows.net",
    "BUS": "Endpoint=sb://lab.servicebus.windows.net/;SharedAccessKey=s3cr3tBus=",
    "BLOB_SAS": "https://lab.blob.core.windows.net/c?sv=2022-11-02&sig=s3cr3tSig%3D",
    "BEARER": JWT,
    "DEPLOY_MATERIAL": (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEs3cr3tPem\n"
        "-----END OPENSSH PRIVATE KEY-----\n"
    ),
    "GH": "ghp_s3cr3tGithubClassic0123456789abcdefgh",
    "GH_FINE": "github_pat_11ABCDEFG0s3cr3tFineGrained_0123456789abcdefghijklmnop",
    "SLACK_BOT": "xoxb-1234567890-s3cr3tSlackBot",
    "AWS_ID": "AKIAS3CR3TEXAMPLE123",
    "LLM": "sk-proj-S3cr3tOpenAi0123456789abcdef",
}
#: Ordinary variables, recorded as they are.
BENIGN = {
    "PYTHONPATH": "/lab/src",
    "LANG": "en_US.UTF-8",
    "PROJECT_URL": "https://example.org/lab?page=2&sort=name",
    "PATTERN": "trial-*",
    "COMPAT_MODE": "on",
}


def test_secrets_never_reach_the_store(investigation, monkeypatch, tmp_path):
    for name, value in {**PLANTED, **BENIGN}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MITOSIS_REDACT", "*SAUCE*, *NOTHING_ELSE*")
    git("remote", "add", "origin", "https://alice:s3cr3t-remote@example.org/lab.git")
    git("remote", "add", "hook", "https://lab.example.org/x.git?access_token=s3cr3t-query")
    site = tmp_path / "site"  # a package installed from a URL holding a token
    info = site / "tokened_pkg-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tokened-pkg\nVersion: 1.0\n\n")
    direct = {"url": "https://ghp_s3cr3tInUrl0123456789abcdefghij@github.com/lab/pkg.git"}
    direct["vcs_info"] = {"vcs": "git", "commit_id": "abc123"}
    (info / "direct_url.json").write_text(json.dumps(direct))
    monkeypatch.syspath_prepend(str(site))
    trial = mitosis.run(
        investigation.sine, {"amplitude": 1, "noise": "low"}, lookup=investigation.lookup
    )
    stored = all_objects()
    assert b"s3cr3t" not in stored.lower()
    assert JWT.split(".")[2].encode() not in stored  # the JWT's signature
    variables = json.loads(trial.read("environment.json"))["variables"]
    for name, value in BENIGN.items():
        assert variables[name] == value
    assert variables["PATH"] == os.environ["PATH"] and variables["HOME"] == os.environ["HOME"]
    assert variables["API_TOKEN"] == variables["LAB_SAUCE"] == "<redacted>"
    assert variables["DATABASE_URL"] == "postgres://db.example.org/lab"
    assert variables["NOTIFY"] == "https://hooks.slack.com/<redacted>"
    assert variables["STORAGE"] == (
        "AccountName=lab;AccountKey=<redacted>;EndpointSuffix=core.windows.net"
    )
    assert trial.code is not None and trial.code.remotes == {
        "hook": "https://lab.example.org/x.git?access_token=<redacted>",
        "origin": "https://example.org/lab.git",
    }
    assert (
        "tokened-pkg @ git+https://github.com/lab/pkg.git@abc123"
        in trial.read("requirements.txt").decode()
    )


def test_redaction_rules():
    env = {"GITHUB_TOKEN": "x", "SSH_AUTH_SOCK": "y", "PATH": "/bin", "pwd": "/home"}
    assert redact_env(env) == {
        "GITHUB_TOKEN": "<redacted>",
        "PATH": "/bin",
        "SSH_AUTH_SOCK": "<redacted>",
        "pwd": "/home",
    }
    assert redact_env({"LAB_SAUCE": "x", "lab_sauce_2": "y"}, " *sauce* ,") == {
        "LAB_SAUCE": "<redacted>",
        "lab_sauce_2": "<redacted>",
    }
    assert strip_credentials("see https://u:p@h.org/x and ssh://git@h.org/y") == (
        "see https://h.org/x and ssh://h.org/y"
    )


def test_bytes_that_are_not_utf8_are_recorded_escaped(investigation, monkeypatch):
    monkeypatch.setitem(os.environb, b"LATIN1_VALUE", b"caf\xe9")  # as the system gave it
    monkeypatch.setitem(os.environb, b"NAME_\xff", b"x")
    trial = mitosis.run(investigation.bare_number)
    variables = json.loads(trial.read("environment.json"))["variables"]
    assert variables["LATIN1_VALUE"] == "caf\\xe9" and variables["NAME_\\xff"] == "x"
    assert storable("\ud800 alone") == "\\ud800 alone"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("GITHUB_PAT", True),
        ("PAT", True),
        ("AZURE_DEVOPS_PAT_2", True),
        ("githubPat", True),
        ("PATH", False),
        ("PYTHONPATH", False),
        ("MANPATH", False),
        ("COMPAT", False),
        ("PATTERN", False),
        ("XDG_SESSION_ID", True),  # secret-looking names are redacted, secret or not
        ("SLACK_WEBHOOK_URL", True),
        ("SERVICEBUS_CONNECTION_STRING", True),
        ("HOME", False),
        ("LANG", False),
    ],
)
def test_secret_names(name, secret):
    assert secret_name(name) is secret


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("https://hooks.slack.com/services/T0/B0/X", "https://hooks.slack.com/<redacted>"),
        (
            "https://discordapp.com/api/webhooks/1/X",
            "https://discordapp.com/api/webhooks/<redacted>",
        ),
        (
            "https://outlook.office.com/webhook/a@b/IncomingWebhook/X",
            "https://outlook.office.com/webhook/<redacted>",
        ),
        ("https://api.telegram.org/bot1:X/getMe", "https://api.telegram.org/bot<redacted>"),
        (
            "Endpoint=sb://n/;SharedAccessKeyName=Root;SharedAccessKey=X=",
            "Endpoint=sb://n/;SharedAccessKeyName=Root;SharedAccessKey=<redacted>",
        ),
        (
            "BlobEndpoint=https://b/;SharedAccessSignature=sv=1&sig=X;",
            "BlobEndpoint=https://b/;SharedAccessSignature=<redacted>;",
        ),
        ("host=db password=X user=bob", "host=db password=<redacted> user=bob"),
        ("Server=db;Password=X;", "Server=db;Password=<redacted>;"),
        ("token: " + JWT, "token: <redacted>"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nX\n-----END RSA PRIVATE KEY-----\nrest",
            "<redacted>\nrest",
        ),
        ("-----BEGIN PRIVATE KEY-----\nX cut short", "<redacted>"),
        ("ghs_0123456789abcdefghijABCDEFGHIJ0123 is it", "<redacted> is it"),
        ("xoxp-123-456-abc", "<redacted>"),
        ("id=AKIAIOSFODNN7EXAMPLE", "id=<redacted>"),
        ("sk-ant-api03-Abcdefghij0123456789", "<redacted>"),
        ("hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567", "<redacted>"),
        # ordinary values stay
        ("/opt/conda/envs/sk-learn-build-env-2024/bin:/usr/bin", None),
        ("https://example.org/lab?page=2&sort=name", None),
        ("git@github.com:lab/repo.git", None),
        ("rs=0:di=01;34:ln=01;36:*.tar=01;31", None),
        ("-Xmx2g -Dkey.store=/etc/x", None),
        ("eyJhbGciOiJIUzI1NiJ9", None),  # one segment: no JWT
    ],
)
def test_credentials_in_values(value, kept):
    assert redact_value(value) == (value if kept is None else kept)


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
