"""A static site of the store's experiments and trials: plain HTML, one style sheet, one script.

Layout (under the site's folder; see docs/architecture.md):

```
index.html                         the experiments, with trial counts
compare.html                       two trials side by side (?a=ID&b=ID), rendered by the script
assets/mitosis.css, mitosis.js
experiments/<slug>/index.html      the trial table and the plots of main against each parameter
                  /trials.js       the table's rows, as a script (works from file://)
                  /plot-<n>.png
trials/<id[:2]>/<id>/index.html    everything recorded for one trial (never rewritten)
                    /data.js       what compare.html shows of it
                    /fig-<n>.png   its figures
manifest.json                      what was written: trial id -> tree id, experiment -> tip
```

Built incrementally: a trial's folder is written once (keyed by its id and the id of its
tree in the store, which never changes); an experiment's page when its branch's tip moved. Only
JSON and text are read from the store: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs

from .._version import __version__
from ..exceptions import MitosisError, PlotError, SiteError
from ..model.layout import CODE_DIFF, ENVIRONMENT, OUTPUT, REQUIREMENTS
from ..model.portable import plain
from ..model.records import Trial
from ..store.repo import Store
from ..store.trials import load_json, read_trials
from . import pages as _pages
from .assets import SCRIPT, STYLE
from .plot import draw

if TYPE_CHECKING:
    from dulwich.objects import ObjectID

__all__ = ["Site", "browse", "build", "default_site"]

_VERSION = 1
_ID = re.compile(r"^[0-9a-f]{4,64}$")
#: A parameter with more variant names than this is not plotted as categories.
MAX_CATEGORIES = 40


@attrs.frozen
class Site:
    """A built site.

    Attributes:
        path: the site's folder; open ``path / "index.html"``.
        experiments: how many experiments it shows.
        trials: how many trials it shows.
        new_trials: ids of the trials whose pages this build wrote.
        written: paths (relative to ``path``) this build wrote.
    """

    path: Path
    experiments: int
    trials: int
    new_trials: list[str]
    written: list[str]

    @property
    def index(self) -> Path:
        return self.path / "index.html"


def default_site(store: Store) -> Path:
    """``<git dir>/mitosis/site``: beside the listing cache, never pushed, and outside the work
    tree (where it would show in every trial's record of untracked files)."""
    return Path(store.repo.controldir()) / "mitosis" / "site"


def browse(
    out: str | os.PathLike[str] | None = None,
    *,
    store: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Site:
    """Write (or bring up to date) a static site of the store's experiments and trials.

    Open ``site.index`` in a browser: it works from disk, without a server. Only trials new since
    the last build get pages written; experiment pages are rewritten when their branch moved.
    Reads JSON and text only (nothing is unpickled), so it is safe on trials pulled from others.

    Args:
        out: the site's folder (default ``<git dir>/mitosis/site`` of the store).
        store: the store to read (default as for :func:`mitosis.trials`).
        progress: called with what it is doing (``sine: reading trials``, ``sine: trial
            pages 200 of 10000``), as :func:`mitosis.gc` is.

    Raises:
        StoreError: the store cannot be read.
        SiteError: the site's folder cannot be written.
    """
    with Store.open(store) as st:
        return build(st, Path(out) if out is not None else default_site(st), progress=progress)


def tips(store: Store) -> dict[str, str]:
    """Each experiment's tip commit: what a rebuild depends on."""
    return {name: (store.tip(name) or b"").decode() for name in store.experiments()}


class _Writer:
    """Writes files under the site's folder atomically (temporary file, then rename), so that
    a server never sends half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.written: list[str] = []
        self.folders: set[str] = set()
        self.suffix = f".{os.getpid()}.tmp"

    def write(
        self, relative: str, data: bytes | str | IO[bytes], *, if_changed: bool = False
    ) -> None:
        """Write ``data`` (bytes, text, or a file copied as it is read) at ``relative``."""
        path = os.path.join(self.root, relative)
        raw = data.encode() if isinstance(data, str) else data
        if if_changed and isinstance(raw, bytes):
            try:
                with open(path, "rb") as f:
                    if f.read() == raw:
                        return
            except OSError:
                pass
        folder = os.path.dirname(path)
        if folder not in self.folders:
            os.makedirs(folder, exist_ok=True)
            self.folders.add(folder)
        tmp = os.path.join(folder, "." + os.path.basename(path) + self.suffix)
        with open(tmp, "wb") as f:
            if isinstance(raw, bytes):
                f.write(raw)
            else:
                shutil.copyfileobj(raw, f, 1 << 20)
        os.replace(tmp, path)
        self.written.append(relative)


def slug(experiment: str) -> str:
    """A folder name for an experiment: its name where that is safe in a URL, else a cleaned
    name and a hash (so that two names never share a folder)."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", experiment):
        return experiment
    cleaned = re.sub(r"[^A-Za-z0-9_.+-]", "_", experiment)[:40].strip(".")
    return f"{cleaned}-{hashlib.sha256(experiment.encode()).hexdigest()[:10]}"


def trial_folder(trial_id: str) -> str:
    return f"trials/{trial_id[:2]}/{trial_id}"


def safe_json(value: Any) -> str:
    """JSON safe inside a script: ``<``, ``>`` and ``&`` are escaped (so neither ``</script>``
    nor ``<!--`` can appear), and everything not ASCII (U+2028 too) as ``\\u`` escapes."""
    text = json.dumps(plain(value, repr), ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def parsed(text: str) -> str:
    """A script expression of the JSON ``text`` (made by :func:`safe_json`): parsed by
    ``JSON.parse``, since in an object literal a recorded key ``"__proto__"`` would set the
    object's prototype rather than be a field (and hide it)."""
    return f"JSON.parse({json.dumps(text)})"


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
        if data.get("version") == _VERSION and data.get("assets") == _assets_hash():
            return {"trials": dict(data["trials"]), "experiments": dict(data["experiments"])}
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        pass  # none yet, unreadable, or written by another mitosis: build everything again
    return {"trials": {}, "experiments": {}}


def _assets_hash() -> str:
    """Pages depend on the assets and the page code: a new mitosis rebuilds them all."""
    digest = hashlib.sha256(f"{__version__}\0{STYLE}\0{SCRIPT}".encode())
    digest.update(Path(_pages.__file__).read_bytes())
    return digest.hexdigest()[:16]


def build(store: Store, out: Path, progress: Callable[[str], None] | None = None) -> Site:
    """Bring the site at ``out`` up to date with the store (saying what it does to
    ``progress``).

    Raises:
        SiteError: the site's folder cannot be written.
    """
    try:
        return _build(store, out, progress or (lambda _: None))
    except MitosisError:
        raise
    except OSError as exc:
        raise SiteError(
            f"cannot write the site in {out}: {exc.strerror or exc} ({exc.filename}); "
            "give another folder with --out"
        ) from None


def _build(store: Store, out: Path, say: Callable[[str], None]) -> Site:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    old = _read_manifest(manifest_path)
    writer = _Writer(out)
    writer.write("assets/mitosis.css", STYLE, if_changed=True)
    writer.write("assets/mitosis.js", SCRIPT, if_changed=True)
    writer.write("compare.html", _pages.compare_page(), if_changed=True)
    blobs = _Blobs(store)
    new: dict[str, Any] = {"trials": {}, "experiments": {}}
    summaries = []
    new_trials: list[str] = []
    for name in store.experiments():
        tip = (store.tip(name) or b"").decode()
        folder = slug(name)
        say(f"{name}: reading trials")
        found = [t for t in read_trials(store, name) if _ID.match(t.id)]
        trees = dict(store.trial_dirs(name))
        pending = []
        for trial in found:
            tree = trees.get(trial.id)
            if tree is None:
                continue
            new["trials"][trial.id] = tree.decode()
            page = out / trial_folder(trial.id) / "index.html"
            if old["trials"].get(trial.id) != tree.decode() or not page.exists():
                pending.append((trial, tree))
        for done, (trial, tree) in enumerate(pending):
            if done % 50 == 0:
                say(f"{name}: trial pages {done} of {len(pending)}")
            _write_trial(writer, blobs, trial, tree, folder)
            new_trials.append(trial.id)
        new["experiments"][name] = {"tip": tip, "slug": folder}
        page = out / "experiments" / folder / "index.html"
        if old["experiments"].get(name, {}).get("tip") != tip or not page.exists():
            _write_experiment(writer, name, folder, found)
        summaries.append(_pages.ExperimentSummary.of(name, folder, found))
    say("writing the index")
    _remove_gone(out, old, new)
    writer.write("index.html", _pages.index_page(summaries), if_changed=True)
    writer.write(
        "manifest.json",
        json.dumps({"version": _VERSION, "assets": _assets_hash(), **new}, indent=1),
        if_changed=True,
    )
    return Site(
        path=out,
        experiments=len(summaries),
        trials=len(new["trials"]),
        new_trials=new_trials,
        written=writer.written,
    )


def _remove_gone(out: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Remove the pages of trials and experiments no longer in the store."""
    for trial_id in set(old["trials"]) - set(new["trials"]):
        if _ID.match(trial_id):
            shutil.rmtree(out / trial_folder(trial_id), ignore_errors=True)
    kept = {e["slug"] for e in new["experiments"].values()}
    for name, entry in old["experiments"].items():
        gone = entry.get("slug") if isinstance(entry, dict) else None
        if name not in new["experiments"] and gone and gone not in kept and gone == slug(name):
            shutil.rmtree(out / "experiments" / gone, ignore_errors=True)


class _Blobs:
    """Reads a trial folder's files, and renders the ones trials share (the environment and
    the package list) once per blob."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.rendered: dict[tuple[str, bytes], Any] = {}

    def files(self, tree: ObjectID) -> dict[str, ObjectID]:
        return dict(self.store.children(tree, ""))

    def read(self, blob: ObjectID | None) -> bytes | None:
        return None if blob is None else self.store.read_file("", "", blob)

    def clipped(self, blob: ObjectID | None) -> _pages.Clipped | None:
        """A log or diff as a page shows it, read as it goes: one of any size (a pull may
        bring gigabytes) is never held whole."""
        size = None if blob is None else self.store.blob_size(blob.decode())
        if blob is None or size is None:
            return None
        if size <= _pages.MAX_TEXT:
            return _pages.Clipped(self.read(blob) or b"", size)
        half = _pages.MAX_TEXT // 2
        file = self.store.open_blob(blob.decode(), "a trial's output or diff")
        if file is None:  # pragma: no cover - its size was just read
            return None
        with file:
            head, tail = file.read(half), b""
            while chunk := file.read(1 << 20):
                tail = (tail + chunk)[-half:]
        return _pages.Clipped(head + tail, size)

    def once(self, kind: str, blob: ObjectID | None, render: Any) -> Any:
        if blob is None:
            return render(None)
        key = (kind, blob)
        if key not in self.rendered:
            if len(self.rendered) > 4096:
                self.rendered.clear()
            self.rendered[key] = render(self.read(blob))
        return self.rendered[key]


def _environment(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        found = load_json(raw, ENVIRONMENT)
    except MitosisError:  # unreadable: the page says none was recorded
        return {}
    return found if isinstance(found, dict) else {}


def _requirements(raw: bytes | None) -> list[str]:
    text = (raw or b"").decode("utf-8", "replace")
    return [line for line in text.splitlines() if line.strip()]


def _write_trial(writer: _Writer, blobs: _Blobs, trial: Trial, tree: ObjectID, folder: str) -> None:
    """A trial's page, its data for compare.html and its figures."""
    files = blobs.files(tree)
    environment = blobs.once("env", files.get(ENVIRONMENT), _environment)
    environment_html = blobs.once(
        "env-html",
        files.get(ENVIRONMENT),
        lambda raw: _pages.environment_html(_environment(raw)),
    )
    requirements = blobs.once(
        "req", files.get(REQUIREMENTS), lambda raw: safe_json(_requirements(raw))
    )
    packages = blobs.once("req-html", files.get(REQUIREMENTS), _pages.packages_html)
    base = trial_folder(trial.id)
    figures = []
    for n, path in enumerate(trial.figures):
        entry = blobs.store.entry(tree, path)  # copied as it is read: a figure of any size
        regular = entry is not None and stat.S_ISREG(entry[0])
        data = blobs.store.open_blob(entry[1].decode(), path) if entry and regular else None
        if data is None:
            continue
        with data:
            writer.write(f"{base}/fig-{n}.png", data)
        figures.append((f"fig-{n}.png", path, trial.captions.get(path, "")))
    page = _pages.trial_page(
        trial,
        experiment_href=f"../../../experiments/{folder}/index.html",
        figures=figures,
        environment=environment_html,
        packages=packages,
        log=blobs.clipped(files.get(OUTPUT)),
        diff=blobs.clipped(files.get(CODE_DIFF)),
    )
    writer.write(f"{base}/index.html", page)
    record = _trial_data(trial, environment)
    record["figures"] = [
        {"src": f"{base}/{name}", "path": path, "caption": caption}
        for name, path, caption in figures
    ]
    text = safe_json(record)[:-1] + ',"requirements":' + requirements + "}"
    writer.write(f"{base}/data.js", f"mitosisTrial({parsed(text)});\n")


def _trial_data(trial: Trial, environment: dict[str, Any]) -> dict[str, Any]:
    """What compare.html shows of a trial (paths relative to the site's root)."""

    def params(found: dict[str, Any]) -> dict[str, Any]:
        return {
            n: {"variant": p.variant, "value": p.value, "source": p.source}
            for n, p in found.items()
        }

    return {
        "id": trial.id,
        "href": f"{trial_folder(trial.id)}/index.html",
        "experiment": trial.experiment,
        "status": trial.status,
        "main": trial.main,
        "started": trial.started,
        "duration": trial.duration,
        "host": trial.host,
        "function": trial.function,
        "commit": trial.code.commit if trial.code else None,
        "dirty": trial.code.dirty if trial.code else None,
        "python": environment.get("python"),
        "platform": environment.get("platform"),
        "params": params(trial.params),
        "untracked": params(trial.untracked),
        "metrics": trial.metrics,
    }


def _write_experiment(writer: _Writer, name: str, folder: str, found: list[Trial]) -> None:
    """An experiment's page, its table's data and its plots."""
    base = f"experiments/{folder}"
    plots: list[tuple[str | None, str, str]] = []
    for param, note in _plottable(found):
        if note:
            plots.append((None, param, note))
            continue
        n = len([p for p in plots if p[0]])
        image = _plot_png(found, name, param)
        if image is None:
            plots.append((None, param, "no trial has a number for main"))
            continue
        writer.write(f"{base}/plot-{n}.png", image)
        plots.append((f"plot-{n}.png", param, ""))
    newest = sorted(found, key=lambda t: (t.started, t.id), reverse=True)
    params = list(dict.fromkeys(n for t in newest for n in t.params))
    metrics = list(dict.fromkeys(n for t in newest for n in t.metrics))
    rows = [
        {
            "id": t.id,
            "href": f"../../{trial_folder(t.id)}/index.html",
            "started": t.started[:19].replace("T", " "),
            "status": t.status,
            "main": t.main,
            "duration": round(t.duration, 3),
            "params": {n: p.variant for n, p in t.params.items()},
            "metrics": t.metrics,
            "commit": (t.code.commit or "")[:10] + ("*" if t.code.dirty else "") if t.code else "",
        }
        for t in newest
    ]
    data = {
        "experiment": name,
        "root": "../../",
        "params": params,
        "metrics": metrics,
        "rows": rows,
    }
    script = f"window.mitosisExperiment = {parsed(safe_json(data))};\n"
    writer.write(f"{base}/trials.js", script)
    writer.write(f"{base}/index.html", _pages.experiment_page(name, found, plots))


def _plottable(found: Iterable[Trial]) -> list[tuple[str, str]]:
    """Each tracked parameter, with why it is not plotted (or ``""``)."""
    values: dict[str, set[str]] = {}
    numeric: dict[str, bool] = {}
    for t in found:
        for n, p in t.params.items():
            values.setdefault(n, set()).add(p.variant)
            number = isinstance(p.value, (int, float)) and not isinstance(p.value, bool)
            numeric[n] = numeric.get(n, True) and p.source != "variant" and number
    notes = []
    for name, variants in values.items():
        if len(variants) == 1:
            notes.append((name, "one value only"))
        elif len(variants) > MAX_CATEGORIES and not numeric[name]:
            notes.append((name, f"{len(variants)} variant names: too many to plot"))
        else:
            notes.append((name, ""))
    return notes


def _plot_png(found: list[Trial], name: str, param: str) -> bytes | None:
    import io

    try:
        figure = draw(found, name, param)
    except PlotError:
        return None
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72)
    return buffer.getvalue()
