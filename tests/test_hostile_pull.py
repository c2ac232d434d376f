"""A pull that merges, fast-forwards or starts a branch from a history bringing variant locks or
rename notes mitosis never writes, or tree names that are not UTF-8: refused, or merged, clearly,
never a traceback (store/merge.py, store/incoming.py's lock_problems)."""

from __future__ import annotations

import json

import pytest
from conftest import git, server
from test_hostile import cli, plant, record

import mitosis


@pytest.mark.parametrize(
    "planted",
    [
        {
            "variants/noise/zz.json": json.dumps({"variant": "zz", "fingerprint": 5}).encode(),
            "variants/noise/zz.renamed/0123456789abcdef.json": b"{}",
        },
        {
            "variants/noise/zz.json": json.dumps({"variant": "zz", "fingerprint": "x"}).encode(),
            "variants/noise/zz.renamed": b"a file where a folder of notes belongs",
        },
    ],
    ids=["fingerprint-number", "notes-a-file"],
)
@pytest.mark.parametrize("how", ["merge", "fast-forward", "first pull"])
def test_a_pull_with_a_forged_lock_is_refused_clearly(investigation, tmp_path, hub, planted, how):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    record(investigation, a)
    mitosis.push(store=a)
    if how != "first pull":
        mitosis.pull(store=b)
    if how == "merge":
        record(investigation, b)  # b's own trial: the pull merges
    plant(hub, planted)
    before = git("rev-parse", "--verify", "-q", "mitosis/sine", cwd=b, check=False)
    proc = cli("pull", "--store", str(b))
    assert "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert proc.returncode == 1 and "refused the history of sine" in proc.stderr, proc.stderr
    assert "brings variants/noise/zz" in proc.stderr
    assert git("rev-parse", "--verify", "-q", "mitosis/sine", cwd=b, check=False) == before
    if how == "merge":  # what waits in refs/remotes/ is refused by the listing of conflicts too
        with pytest.raises(mitosis.SyncRefused, match="brings variants/noise/zz"):
            mitosis.conflicts(store=b)


def test_a_merged_pull_with_a_name_that_is_not_utf8_never_crashes(investigation, tmp_path, hub):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    record(investigation, a)
    mitosis.push(store=a)
    mitosis.pull(store=b)
    record(investigation, b)  # b's own trial: the pull merges
    plant(hub, {b"trials/\xff\xfe/abcdabcdabcd/trial.json": b"{}"})
    proc = cli("pull", "--store", str(b))
    assert "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert proc.returncode == 0 and "merged" in proc.stdout, proc.stdout + proc.stderr
    assert len(mitosis.trials("sine", store=b)) == 2  # the folder of no trial id is skipped
