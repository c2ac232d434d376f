"""The site in a real browser: headless Chromium loads pages from disk (file://), runs their
script, and the DOM it ends with is checked; screenshots are kept in test-artifacts/.

Skipped only when Chromium is missing and MITOSIS_REQUIRE_BROWSER is unset (CI sets it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import mitosis

# Read at import: the autouse fixture clears MITOSIS_* variables before each test.
REQUIRED = bool(os.environ.get("MITOSIS_REQUIRE_BROWSER"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def chromium(tmp_path):
    if CHROMIUM is None:
        if REQUIRED:
            pytest.fail("MITOSIS_REQUIRE_BROWSER is set but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    profile = tmp_path / "chromium-profile"

    def run(url: str, *flags: str) -> str:
        result = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={profile}",
                "--window-size=1280,1000",
                *flags,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    return run


def screenshot(chromium, url: str, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.unlink(missing_ok=True)
    chromium(url, f"--screenshot={path}")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and path.stat().st_size > 10_000
    return path


def test_pages_render_in_chromium_from_disk(investigation, chromium):
    made = [mitosis.run(investigation.sine, {"amplitude": a, "noise": 0.1}) for a in (1, 2, 3)]
    drawn = mitosis.run(investigation.draws, {"n": 2})
    mitosis.run(investigation.hostile, {"noise": HOSTILE}, lookup=investigation.hostile_lookup)
    site = mitosis.browse()

    index = chromium(site.index.as_uri(), "--dump-dom")
    assert 'href="experiments/sine/index.html"' in index

    table = site.path / "experiments" / "sine" / "index.html"
    dom = chromium(table.as_uri(), "--dump-dom")
    assert dom.count("<tr data-id=") == 3  # rendered by the script from trials.js
    for trial in made:
        assert f'<tr data-id="{trial.id}">' in dom
        assert f'href="../../trials/{trial.id[:2]}/{trial.id}/index.html"' in dom
    assert "showing 3 of 3 matching trials" in dom
    assert dom.index(made[2].id) < dom.index(made[0].id)  # newest first
    screenshot(chromium, table.as_uri(), "experiment.png")

    page = site.path / "trials" / drawn.id[:2] / drawn.id / "index.html"
    dom = chromium(page.as_uri(), "--dump-dom")
    assert '<img src="fig-0.png" alt="figure 0">' in dom and "<figcaption>figure 1" in dom
    assert (page.parent / "fig-1.png").is_file()
    screenshot(chromium, page.as_uri(), "trial.png")

    compare = f"{(site.path / 'compare.html').as_uri()}?a={made[0].id}&b={made[2].id}"
    dom = chromium(compare, "--dump-dom")
    assert '<tr class="differs"><th>amplitude</th><td>1</td><td>3</td></tr>' in dom
    assert '<tr class=""><th>noise</th><td>0.1</td><td>0.1</td></tr>' in dom
    screenshot(chromium, compare, "compare.png")
    base = (site.path / "compare.html").as_uri()
    assert "Trial ids are hexadecimal" in chromium(f"{base}?a=../x&b={made[0].id}", "--dump-dom")
    missing = chromium(f"{base}?a=abcdef012345&b={made[0].id}", "--dump-dom")
    assert "No trial abcdef012345 in this site" in missing
    assert "Choose two trials" in chromium(base, "--dump-dom")

    hostile = site.path / "experiments" / "hostile" / "index.html"
    dom = chromium(hostile.as_uri(), "--dump-dom")
    assert dom.count("<tr data-id=") == 1
    assert HOSTILE not in dom  # never an element
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # shown as text
