"""Defects found by the hostile review in code another engineer owns (mitosis/store/merge.py):
each test is marked ``xfail(strict=True)`` with its reason until the owner fixes it, so that
the fix turns it into a failure to remove the mark."""

from __future__ import annotations

import json

import pytest
from conftest import git, server
from test_hostile import cli, plant, record

import mitosis


@pytest.mark.xfail(
    strict=True,
    reason="store/merge.py _drop_renamed reads a pulled lock's fingerprint as text "
    "(AttributeError on a number) and a rename's note folder as a tree (a file there): the "
    "pull stops with a traceback instead of refusing what it brought",
)
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
def test_a_merged_pull_with_a_forged_lock_is_refused_clearly(investigation, tmp_path, hub, planted):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    record(investigation, a)
    mitosis.push(store=a)
    mitosis.pull(store=b)
    record(investigation, b)  # b's own trial: the pull merges
    plant(hub, planted)
    before = git("rev-parse", "mitosis/sine", cwd=b)
    proc = cli("pull", "--store", str(b))
    assert "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert proc.returncode == 1 and "refused" in proc.stderr
    assert git("rev-parse", "mitosis/sine", cwd=b) == before


@pytest.mark.xfail(
    strict=True,
    reason="store/merge.py _union decodes tree names strictly (name.decode()): a pull that "
    "merges a tree holding a name that is not UTF-8 (git allows it) stops with a "
    "UnicodeDecodeError instead of merging it or refusing it",
)
def test_a_merged_pull_with_a_name_that_is_not_utf8_never_crashes(investigation, tmp_path, hub):
    a, b = server(tmp_path, "a", hub), server(tmp_path, "b", hub)
    record(investigation, a)
    mitosis.push(store=a)
    mitosis.pull(store=b)
    record(investigation, b)  # b's own trial: the pull merges
    plant(hub, {b"trials/\xff\xfe/abcdabcdabcd/trial.json": b"{}"})
    proc = cli("pull", "--store", str(b))
    assert "Traceback" not in proc.stderr, proc.stderr[-1500:]
