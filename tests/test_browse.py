"""mitosis.browse and `mitosis browse`: the static site, read back with the standard library's
HTML parser (structure and escaping), rebuilt incrementally, served over HTTP."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
from conftest import ASSETS, console_script, git

import mitosis
from mitosis.cli import main

HOSTILE = "<script>alert(1)</script>"
PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """A parsed page: its start tags (with attributes), its text, and the text of each element
    with an id."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.by_id: dict[str, list[str]] = {}
        self._open: list[tuple[str, str | None]] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.tags.append((tag, found))
        if tag not in ("img", "input", "meta", "link", "br"):
            self._open.append((tag, found.get("id")))
            if found.get("id"):
                self.by_id[found["id"]] = []

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for _, ident in self._open:
            if ident:
                self.by_id[ident].append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for t, attrs in self.tags if t == tag]

    def section(self, ident: str) -> str:
        return "".join(self.by_id[ident])


def parse(path: Path) -> Page:
    return Page(path.read_text())


def script_json(path: Path, prefix: str) -> Any:
    """The JSON in a data script ``prefix(JSON.parse("JSON"));`` or ``prefix
    JSON.parse("JSON");`` (a JSON string literal is a script's string literal too)."""
    source = path.read_text()
    assert source.startswith(prefix) and source.rstrip().endswith(";")
    body = source[len(prefix) :].rstrip().rstrip(";")
    body = body[1:-1] if body.startswith("(") else body
    assert body.startswith("JSON.parse(") and body.endswith(")")
    return json.loads(json.loads(body[len("JSON.parse(") : -1]))


def new_store(root: Path) -> ModuleType:
    """A git repository at ``root`` with the test experiments, importable."""
    name = f"browsed_{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ASSETS / "experiments.py", root / f"{name}.py")
    git("init", "-q", "-b", "main", cwd=root)
    git("add", ".", cwd=root)
    git("commit", "-q", "-m", "experiments", cwd=root)
    sys.path.insert(0, str(root))
    return __import__(name)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, mitosis.Site]]:
    """A store with sine (4 trials), draws (figures), hostile strings, a hostile experiment
    name, a failed trial; and its site in the default place."""
    root = tmp_path_factory.mktemp("browse") / "lab"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root.parent))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        for var in ("GIT_AUTHOR", "GIT_COMMITTER"):
            mp.setenv(f"{var}_NAME", "Test Author")
            mp.setenv(f"{var}_EMAIL", "author@example.org")
        for var in ("MITOSIS_STORE", "GIT_DIR"):
            mp.delenv(var, raising=False)
        m = new_store(root)
        for amplitude in (1, 2):
            for noise in ("low", "high"):
                params = {"amplitude": amplitude, "noise": noise}
                mitosis.run(m.sine, params, lookup=m.lookup, untracked=["gpu"], store=root)
        mitosis.run(m.draws, {"n": 2}, store=root)
        mitosis.run(
            m.hostile, {"noise": HOSTILE, "note": HOSTILE}, lookup=m.hostile_lookup, store=root
        )
        mitosis.run(
            [("<script>alert(1)", m.hostile, m.hostile_lookup)], {"noise": "low"}, store=root
        )
        with pytest.raises(mitosis.TrialFailed):
            mitosis.run(m.fails, store=root)
        built = mitosis.browse(store=root)
        yield root, built
        sys.path.remove(str(root))


def only(found: list[mitosis.Trial]) -> mitosis.Trial:
    (trial,) = found
    return trial


def test_default_folder_and_counts(site):
    root, built = site
    assert built.path == root / ".git" / "mitosis" / "site"
    assert built.index.is_file()
    assert built.experiments == 5 and built.trials == 8 and len(built.new_trials) == 8
    assert "output.log" not in git("status", "--porcelain", cwd=root)  # nothing in the work tree


def test_index_lists_the_experiments_with_trial_counts(site):
    _, built = site
    page = parse(built.index)
    links = {a["href"] for a in page.all("a")}
    for name in ("sine", "draws", "hostile", "fails"):
        assert f"experiments/{name}/index.html" in links
        assert (built.path / f"experiments/{name}/index.html").is_file()
    text = " ".join(" ".join(page.text).split())
    assert "sine 4 4 0" in text and "fails 1 0 1" in text
    assert "compare.html" in links


def test_experiment_page_table_data_and_plots(site):
    root, built = site
    folder = built.path / "experiments" / "sine"
    page = parse(folder / "index.html")
    assert [s["src"] for s in page.all("script")] == ["trials.js", "../../assets/mitosis.js"]
    assert page.all("table")[0]["id"] == "trial-table"
    assert "4 trials: 4 ok" in page.section("counts")
    images = page.all("img")
    assert [i["alt"] for i in images] == ["main against amplitude", "main against noise"]
    for image in images:
        assert (folder / image["src"]).read_bytes().startswith(PNG)
    data = script_json(folder / "trials.js", "window.mitosisExperiment = ")
    trials = mitosis.trials("sine", store=root)
    assert [r["id"] for r in data["rows"]] == [t.id for t in reversed(trials)]  # newest first
    assert data["params"] == ["amplitude", "noise"] and data["metrics"] == ["err", "n"]
    row = data["rows"][0]
    assert row["params"] == {"amplitude": "2", "noise": "high"} and row["main"] == 1.0
    assert (folder / row["href"]).is_file()


def test_trial_page_sections_figures_and_captions(site):
    root, built = site
    trial = only(mitosis.trials("draws", store=root))
    folder = built.path / "trials" / trial.id[:2] / trial.id
    page = parse(folder / "index.html")
    for section in (
        "summary",
        "params",
        "metrics",
        "figures",
        "output",
        "code",
        "environment",
        "packages",
    ):
        assert section in page.by_id, section
    assert "ok" in page.section("summary") and "draws" in page.section("summary")
    assert "n" in page.section("params") and "literal" in page.section("params")
    images = [i for i in page.all("img")]
    assert [i["alt"] for i in images] == ["figure 0", "figure 1"]
    assert [(folder / i["src"]).read_bytes()[:8] for i in images] == [PNG, PNG]
    assert "figure 0" in page.section("figures")
    assert trial.code is not None and trial.code.commit in page.section("code")
    assert sys.version.split()[0] in page.section("environment")
    assert "installed distributions" in page.section("packages")
    assert "matplotlib==" in page.section("packages")
    links = {a["href"] for a in page.all("a")}
    assert "../../../experiments/draws/index.html" in links


def test_parameters_that_are_not_plotted_say_why(site, investigation):
    _, built = site
    page = parse(built.path / "experiments" / "draws" / "index.html")
    assert "main against n: one value only" in page.section("plots")
    for x in (1, 2):
        with pytest.raises(mitosis.TrialFailed):
            mitosis.run(investigation.fails, {"x": x})
    fresh = mitosis.browse()
    page = parse(fresh.path / "experiments" / "fails" / "index.html")
    assert "main against x: no trial has a number for main" in page.section("plots")
    assert page.all("img") == []


def test_many_variant_names_are_not_plotted(investigation):
    from mitosis.site.build import MAX_CATEGORIES, _plottable

    (trial,) = [mitosis.run(investigation.sine, {"amplitude": 1, "noise": 0.1})]
    named = attrs.evolve(trial.params["noise"], source="variant")
    many = [
        attrs.evolve(
            trial,
            id=f"{n:012x}",
            params={**trial.params, "noise": attrs.evolve(named, variant=f"v{n}")},
        )
        for n in range(MAX_CATEGORIES + 1)
    ]
    notes = dict(_plottable(many))
    assert notes["noise"] == f"{MAX_CATEGORIES + 1} variant names: too many to plot"
    assert notes["amplitude"] == "one value only"


def test_failed_trial_page_shows_the_error_and_output(site):
    root, built = site
    trial = only(mitosis.trials("fails", store=root))
    page = parse(built.path / "trials" / trial.id[:2] / trial.id / "index.html")
    assert "ValueError: bad x 1" in page.section("error")
    assert "about to fail" in page.section("output")
    assert "failed" in page.section("summary")


def test_compare_page_and_trial_data(site):
    root, built = site
    page = parse(built.path / "compare.html")
    assert [s["src"] for s in page.all("script")] == ["assets/mitosis.js"]
    assert {i["name"] for i in page.all("input")} == {"a", "b"}
    assert "comparison" in page.by_id
    trial = mitosis.trials("sine", store=root)[0]
    data = script_json(built.path / "trials" / trial.id[:2] / trial.id / "data.js", "mitosisTrial")
    assert data["id"] == trial.id and data["main"] == trial.main
    assert data["params"]["noise"] == {"variant": "low", "value": 0.01, "source": "variant"}
    assert data["untracked"]["gpu"]["variant"] == "0"
    assert any(line.startswith("matplotlib==") for line in data["requirements"])
    assert (built.path / data["href"]).is_file()


def test_hostile_strings_are_text_never_markup(site):
    root, built = site
    files = [p for p in built.path.rglob("*") if p.suffix in (".html", ".js")]
    assert len(files) > 20
    for path in files:
        source = path.read_text()
        assert HOSTILE not in source and "<script>alert" not in source, path
        if path.suffix == ".html":
            page = Page(source)
            srcs = [s.get("src", "") for s in page.all("script")]
            assert all(s.endswith(("trials.js", "mitosis.js")) for s in srcs), path
        elif path.name != "mitosis.js":
            assert "</" not in source, path  # data scripts cannot close a script element
    trial = only(mitosis.trials("hostile", store=root))
    folder = built.path / "trials" / trial.id[:2] / trial.id
    page = parse(folder / "index.html")
    assert HOSTILE in page.section("params")  # as text: the variant name and the literal
    assert f"'{HOSTILE}'" in page.section("params")
    assert HOSTILE in page.section("metrics") and "&amp;" in page.section("metrics")
    assert HOSTILE in page.section("output")
    assert HOSTILE in page.section("figures") and page.all("img")[0]["alt"] == HOSTILE
    data = script_json(folder / "data.js", "mitosisTrial")
    assert data["params"]["noise"]["variant"] == HOSTILE and HOSTILE in data["metrics"]
    rows = script_json(built.path / "experiments/hostile/trials.js", "window.mitosisExperiment = ")
    assert HOSTILE in rows["metrics"]
    # an experiment named with markup: its folder is a cleaned name, its name shown as text
    index = parse(built.index)
    assert "<script>alert(1)" in " ".join(index.text)
    (odd,) = [a["href"] for a in index.all("a") if a["href"].startswith("experiments/_script")]
    assert "<script>alert(1)" in " ".join(parse(built.path / odd).text)


def test_nothing_is_unpickled(investigation, tmp_path):
    trap = tmp_path / "unpickled"
    trial = mitosis.run(investigation.leaves_a_trap, {"path": str(trap)})
    assert "results/leaves_a_trap.dill" in trial.files and not trap.exists()
    built = mitosis.browse()
    assert trial.id in built.new_trials and not trap.exists()
    trial.results()  # the trap works: unpickling makes the folder
    assert trap.is_dir()


def test_incremental_build_writes_only_what_is_new(investigation):
    first = [mitosis.run(investigation.sine, {"amplitude": a, "noise": 0.1}) for a in (1, 2)]
    built = mitosis.browse()
    assert sorted(built.new_trials) == sorted(t.id for t in first)
    pages = {t.id: built.path / "trials" / t.id[:2] / t.id / "index.html" for t in first}
    stamps = {p: p.stat().st_mtime_ns for p in built.path.rglob("*") if p.is_file()}
    again = mitosis.browse()
    assert again.written == [] and again.new_trials == []
    new = mitosis.run(investigation.sine, {"amplitude": 3, "noise": 0.1})
    third = mitosis.browse()
    assert third.new_trials == [new.id] and third.trials == 3
    folder = f"trials/{new.id[:2]}/{new.id}/"
    assert {w for w in third.written if w.startswith("trials/")} == {
        folder + "index.html",
        folder + "data.js",
    }
    assert set(third.written) - {folder + "index.html", folder + "data.js"} <= {
        "experiments/sine/index.html",
        "experiments/sine/trials.js",
        "experiments/sine/plot-0.png",
        "experiments/sine/plot-1.png",
        "index.html",
        "manifest.json",
    }
    for page in pages.values():
        assert page.stat().st_mtime_ns == stamps[page]
    rows = script_json(third.path / "experiments/sine/trials.js", "window.mitosisExperiment = ")
    assert rows["rows"][0]["id"] == new.id
    manifest = json.loads((third.path / "manifest.json").read_text())
    assert set(manifest["trials"]) == {*pages, new.id}
    # a deleted page is written again; so is everything after the manifest is lost
    pages[first[0].id].unlink()
    assert mitosis.browse().new_trials == [first[0].id]
    (third.path / "manifest.json").unlink()
    assert len(mitosis.browse().new_trials) == 3


def test_cli_browse_and_its_errors(investigation, runner, tmp_path):
    mitosis.run(investigation.sine, {"amplitude": 1, "noise": 0.1})
    out = tmp_path / "site"
    result = runner.invoke(main, ["browse", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"1 new trial page(s); 1 trials of 1 experiment(s): {out / 'index.html'}" in (
        result.output
    )
    result = runner.invoke(main, ["browse", "--port", "8123"])
    assert result.exit_code == 1 and "--port goes with --serve" in result.output
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = runner.invoke(main, ["browse", "--out", str(blocked / "site")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot write the site in") and "--out" in (
        result.output
    )
    with pytest.raises(mitosis.SiteError):
        mitosis.browse(blocked / "site")
    result = runner.invoke(main, ["browse", "--store", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "Error: " in result.output
    assert "Traceback" not in result.output


def start_server(*args: str, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [console_script(), "browse", "--serve", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
    if found is None:
        proc.kill()
        raise AssertionError(f"no address in {line!r}: {proc.communicate()}")
    return proc, found.group(1)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_serve_shows_a_trial_recorded_after_it_started(investigation, tmp_path):
    mitosis.run(investigation.sine, {"amplitude": 1, "noise": 0.1})
    out = tmp_path / "served"
    proc, url = start_server("--port", "0", "--interval", "0.2", "--out", str(out), cwd=Path.cwd())
    try:
        status, index = get(url + "index.html")
        assert status == 200 and 'href="experiments/sine/index.html"' in index
        assert get(url + "experiments/sine/trials.js")[0] == 200
        assert get(url + "no/such/page.html")[0] == 404
        new = mitosis.run(investigation.sine, {"amplitude": 2, "noise": 0.1})
        deadline = time.monotonic() + 60
        while new.id not in get(url + "experiments/sine/trials.js")[1]:
            assert time.monotonic() < deadline, "the new trial never appeared"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        status, page = get(f"{url}trials/{new.id[:2]}/{new.id}/index.html")
        assert status == 200 and new.id in page
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err


def test_serve_on_a_port_in_use(investigation, runner):
    mitosis.run(investigation.sine, {"amplitude": 1, "noise": 0.1})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(main, ["browse", "--serve", "--port", str(port)])
    assert result.exit_code == 1
    assert f"Error: cannot serve on 127.0.0.1:{port}" in result.output


def test_serve_reports_a_failed_rebuild_and_tries_again(investigation, tmp_path):
    mitosis.run(investigation.sine, {"amplitude": 1, "noise": 0.1})
    out = tmp_path / "served"
    proc, url = start_server("--port", "0", "--interval", "0.2", "--out", str(out), cwd=Path.cwd())
    assert proc.stdout is not None
    try:
        trials = out / "trials"
        trials.rename(out / "trials.aside")
        trials.write_text("a file in the way of the trial pages")
        new = mitosis.run(investigation.sine, {"amplitude": 2, "noise": 0.1})
        line = proc.stdout.readline()
        assert line.startswith("could not rebuild the site: cannot write the site in"), line
        assert get(url + "index.html")[0] == 200  # still serving
        trials.unlink()
        (out / "trials.aside").rename(trials)
        line = proc.stdout.readline()  # the failure is said once, however often it recurs
        assert line.startswith("rebuilt: 1 new trial page(s), 2 trials in all"), line
        assert get(f"{url}trials/{new.id[:2]}/{new.id}/index.html")[0] == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
