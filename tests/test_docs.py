"""The documentation's examples run, page by page, as a reader would type them.

Each page under ``docs/`` is read in order, in a fresh temporary folder:

- a ```` ```python ```` block runs in one Python process kept for the whole page (so later blocks
  see what earlier ones defined), in the folder the shell blocks last moved to;
- a ```` ```sh ```` block runs in bash with ``set -e``, and may ``cd`` for the blocks after it;
  ``python`` and ``mitosis`` there are this interpreter and this checkout's mitosis;
- other blocks (``console``, ``toml``, ``text``) are shown, not run.

An HTML comment on the line before a block changes that (it is invisible on GitHub and in the
built pages):

- ``<!-- docs-test: file PATH -->`` writes the block to ``PATH`` (an experiments module, a
  ``pyproject.toml``) instead of running it;
- ``<!-- docs-test: exit N -->`` expects a shell block to stop with exit status ``N``;
- ``<!-- docs-test: skip REASON -->`` does not run the block (it needs a cluster, a network, or
  installs software); the reason is required.

The README's Python blocks run in ``tests/test_examples.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

import mitosis

DOCS = Path(__file__).parent.parent / "docs"
PAGES = sorted(
    p for p in [*DOCS.glob("*.md"), *DOCS.glob("howto/*.md")] if p.name != "architecture.md"
)
RUN = ("python", "sh")
_FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
_MARK = re.compile(r"<!--\s*docs-test:\s*(\w+)\s*(.*?)\s*-->\s*$")
_DONE = "--docs-test-block-done--"

# Runs a page's Python blocks: one JSON line per block ({"cwd", "code"}), one namespace.
_DRIVER = f"""
import json, os, sys, traceback
namespace = {{"__name__": "__main__"}}
for line in sys.stdin:
    block = json.loads(line)
    os.chdir(block["cwd"])
    try:
        exec(compile(block["code"], block["name"], "exec"), namespace)
        status = 0
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush(); sys.stderr.flush()
    print("{_DONE}", status, flush=True)
"""


@attrs.frozen
class Block:
    language: str
    code: str
    line: int
    mark: str = ""
    argument: str = ""


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, with the docs-test mark just above each."""
    text = page.read_text()
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = _MARK.search(before)
        line = text.count("\n", 0, match.start()) + 1
        found.append(
            Block(
                match.group(1),
                match.group(2),
                line,
                mark.group(1) if mark else "",
                mark.group(2) if mark else "",
            )
        )
    return found


def shims(folder: Path) -> Path:
    """``python`` and ``mitosis`` commands that run this interpreter (and so this mitosis)."""
    folder.mkdir()
    # `mitosis` is the installed console script, as users run it (`python -m mitosis` would put
    # the current folder on the import path, and hide what users meet)
    installed = shutil.which("mitosis")
    assert installed is not None, "pip install -e . installs the mitosis command"
    for name, command in (("python", f'"{sys.executable}"'), ("mitosis", f'"{installed}"')):
        shim = folder / name
        shim.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        shim.chmod(0o755)
    return folder


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_runs_as_written(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    found = blocks(page)
    for block in found:
        assert block.mark in ("", "file", "exit", "skip"), f"{page.name}:{block.line}: bad mark"
        assert block.mark != "skip" or block.argument, f"{page.name}:{block.line}: skip why?"
        assert block.mark != "file" or block.argument, f"{page.name}:{block.line}: file where?"
    if not any(b.language in RUN or b.mark == "file" for b in found if b.mark != "skip"):
        return  # a page of prose and formats: its marks are checked, nothing runs
    bin_dir = shims(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = str(Path(__file__).parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    work = tmp_path / "work"
    work.mkdir()
    cwd = work
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=work,
    )
    assert driver.stdin is not None and driver.stdout is not None
    try:
        for block in found:
            where = f"{page.relative_to(DOCS.parent)}:{block.line}"
            if block.mark == "skip":
                continue
            if block.mark == "file":
                target = cwd / block.argument
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.code)
            elif block.language == "python":
                name = f"<{where}>"
                driver.stdin.write(json.dumps({"cwd": str(cwd), "code": block.code, "name": name}))
                driver.stdin.write("\n")
                driver.stdin.flush()
                output = []
                for line in driver.stdout:
                    if line.startswith(_DONE):
                        status = int(line.split()[1])
                        break
                    output.append(line)
                else:
                    status = -1
                assert status == 0, f"{where} failed:\n{''.join(output)}"
            elif block.language == "sh":
                expected = int(block.argument) if block.mark == "exit" else 0
                marker = tmp_path / "cwd"
                script = f"trap 'pwd > \"{marker}\"' EXIT\nset -e\n{block.code}"
                proc = subprocess.run(
                    ["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=600
                )
                assert proc.returncode == expected, (
                    f"{where} exited {proc.returncode}, not {expected}:\n{proc.stdout}{proc.stderr}"
                )
                cwd = Path(marker.read_text().strip())
    finally:
        driver.stdin.close()
        driver.wait(timeout=60)
        driver.stdout.close()


def test_the_api_reference_lists_every_public_name():
    reference = (DOCS / "reference" / "api.md").read_text()
    missing = [
        name
        for name in mitosis.__all__
        if name != "__version__" and not re.search(rf"mitosis\.{name}\b", reference)
    ]
    assert not missing


def test_the_store_format_specifies_every_field_and_trailer_mitosis_writes():
    from mitosis.model.layout import FORMAT
    from mitosis.model.records import CodeState, Environment, Param, StepRecord, Trial

    spec = (DOCS / "store-format.md").read_text()
    assert spec.startswith(f"# Store format, version {FORMAT}\n")
    first_cells = re.findall(r"^\| ([^|]*)\|", spec, re.M)
    in_tables = {name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)}
    for record in (Trial, Param, CodeState, StepRecord):
        fields = {f.name for f in attrs.fields(record)} - {"location", "_source"}
        assert fields <= in_tables, (record.__name__, fields - in_tables)
    environment = {f.name for f in attrs.fields(Environment)}
    assert all(f"`{name}`" in spec for name in environment)
    source = "".join(p.read_text() for p in (DOCS.parent / "mitosis").rglob("*.py"))
    trailers = set(re.findall(r"(Mitosis-[A-Za-z-]+): ", source))
    assert trailers and all(f"`{t}:" in spec or f"\n{t}: " in spec for t in trailers), trailers
