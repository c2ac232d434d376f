"""The browser's HTML pages. Every recorded string goes through :func:`esc` (``html.escape``
with quotes), so a parameter value, a metric name or a log line cannot become markup."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import attrs

from ..model.query import text
from ..model.records import Param, Trial

__all__ = [
    "Clipped",
    "ExperimentSummary",
    "compare_page",
    "environment_html",
    "esc",
    "experiment_page",
    "index_page",
    "packages_html",
    "trial_page",
]

#: Output logs and diffs longer than this show their start and end only.
MAX_TEXT = 256 * 1024


class Clipped(NamedTuple):
    """A text file as a page shows it: all its bytes, or (when it is longer than
    :data:`MAX_TEXT`) its first and last ``MAX_TEXT // 2``; and its size."""

    data: bytes
    size: int


def esc(value: Any) -> str:
    """Text as HTML (quotes too, so it is safe in attributes)."""
    return html.escape(value if isinstance(value, str) else text(value), quote=True)


def shown(value: Any) -> str:
    """A result as people read it: numbers to 6 significant digits, the rest as JSON."""
    if isinstance(value, float):
        return format(value, ".6g")
    return text(value)


def _page(title: str, root: str, body: str, *, scripts: Sequence[str] = (), kind: str) -> str:
    tags = "".join(f'<script src="{esc(src)}"></script>' for src in scripts)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title>"
        f'<link rel="stylesheet" href="{root}assets/mitosis.css">{tags}</head>\n'
        f'<body class="{kind}">\n{body}\n</body></html>\n'
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>\n" for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"


def _kv(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table: escaped label, already-escaped value."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>\n" for k, v in rows)
    return f'<table class="kv"><tbody>\n{body}</tbody></table>'


def _status(status: str) -> str:
    return f'<span class="status status-{esc(status)}">{esc(status)}</span>'


def _long_text(text: Clipped | None, cls: str) -> str:
    if text is None:
        return '<p class="muted">none recorded</p>'
    raw, size = text
    if not size:
        return '<p class="muted">empty</p>'
    note = ""
    if size > MAX_TEXT:
        half = MAX_TEXT // 2
        left_out = size - 2 * half
        raw = raw[:half] + f"\n… {left_out} bytes left out …\n".encode() + raw[-half:]
        note = f'<p class="muted">{left_out} bytes in the middle are left out here.</p>'
    body = raw.decode("utf-8", "replace")
    return f'{note}<pre class="{cls}">{esc(body)}</pre>'


# -- index -----------------------------------------------------------------------------


@attrs.frozen
class ExperimentSummary:
    """One row of the index."""

    name: str
    folder: str
    trials: int
    ok: int
    latest: str

    @classmethod
    def of(cls, name: str, folder: str, found: Sequence[Trial]) -> ExperimentSummary:
        return cls(
            name=name,
            folder=folder,
            trials=len(found),
            ok=sum(t.status == "ok" for t in found),
            latest=max((t.started for t in found), default="")[:19].replace("T", " "),
        )


def index_page(summaries: Sequence[ExperimentSummary]) -> str:
    rows = [
        [
            f'<a href="experiments/{esc(s.folder)}/index.html">{esc(s.name)}</a>',
            str(s.trials),
            str(s.ok),
            str(s.trials - s.ok),
            esc(s.latest),
        ]
        for s in summaries
    ]
    table = (
        _table(["experiment", "trials", "ok", "not ok", "latest trial (UTC)"], rows, "experiments")
        if rows
        else '<p class="muted">No experiments recorded in this store yet.</p>'
    )
    body = (
        "<h1>Experiments</h1>\n"
        f"{table}\n"
        '<p class="muted">Compare two trials: tick them in an experiment\'s table, or '
        '<a href="compare.html">give their ids</a>.</p>'
    )
    return _page("mitosis: experiments", "", body, kind="index-page")


# -- an experiment ---------------------------------------------------------------------


def experiment_page(
    name: str, found: Sequence[Trial], plots: Sequence[tuple[str | None, str, str]]
) -> str:
    """``plots``: ``(image file or None, parameter, note)`` for each tracked parameter."""
    counts: dict[str, int] = {}
    for t in found:
        counts[t.status] = counts.get(t.status, 0) + 1
    states = ", ".join(f"{n} {esc(s)}" for s, n in sorted(counts.items()))
    figures = []
    for image, param, note in plots:
        caption = f"main against {esc(param)}"
        if image is None:
            figures.append(f'<p class="muted">{caption}: {esc(note)}</p>')
        else:
            figures.append(
                f'<figure><img src="{esc(image)}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
    plotted = "".join(figures) or '<p class="muted">No tracked parameters.</p>'
    body = (
        '<nav class="crumbs"><a href="../../index.html">experiments</a> &rsaquo; '
        f"{esc(name)}</nav>\n"
        f"<h1>{esc(name)}</h1>\n"
        f'<p id="counts">{len(found)} trials{": " + states if states else ""}</p>\n'
        f'<section id="plots" class="plots"><h2>Main against each parameter</h2>{plotted}'
        "</section>\n"
        '<section id="trials"><h2>Trials</h2>\n'
        '<div class="toolbar"><button id="compare" type="button" disabled>compare</button>'
        '<span id="shown" class="muted"></span></div>\n'
        "<noscript><p>The table needs JavaScript; each trial has a page under "
        '<a href="../../trials/">trials/</a>.</p></noscript>\n'
        '<table id="trial-table" class="trials"></table>\n'
        '<button id="more" type="button" hidden>show more</button>\n'
        "</section>"
    )
    return _page(
        f"mitosis: {name}",
        "../../",
        body,
        scripts=["trials.js", "../../assets/mitosis.js"],
        kind="experiment-page",
    )


# -- a trial ---------------------------------------------------------------------------


def _params_table(params: dict[str, Param]) -> str:
    rows = [
        [
            f"<code>{esc(name)}</code>",
            esc(p.variant),
            f"<code>{esc(p.value)}</code>"
            if p.value is not None
            else '<span class="muted">pickled only</span>',
            esc(p.source),
            esc(p.type),
        ]
        for name, p in params.items()
    ]
    return _table(["parameter", "variant", "value", "source", "type"], rows, "params")


def environment_html(environment: dict[str, Any] | None) -> str:
    """The interpreter, platform and variables (rendered once per distinct environment)."""
    environment = environment or {}
    rows = [
        (key, esc(environment[key]))
        for key in (
            "python",
            "implementation",
            "platform",
            "machine",
            "host",
            "user",
            "cwd",
            "executable",
        )
        if key in environment
    ]
    shown = _kv(rows) if rows else '<p class="muted">none recorded</p>'
    variables = environment.get("variables")
    if isinstance(variables, dict):
        shown += (
            f"<details><summary>{len(variables)} environment variables</summary>"
            + _table(
                ["variable", "value"],
                [[esc(k), esc(v)] for k, v in sorted(variables.items())],
                "variables",
            )
            + "</details>"
        )
    return shown


def packages_html(raw: bytes | None) -> str:
    """The installed distributions (rendered once per distinct list)."""
    lines = [line for line in (raw or b"").decode("utf-8", "replace").splitlines() if line]
    if raw is None:
        return '<p class="muted">none recorded</p>'
    return (
        f"<details><summary>{len(lines)} installed distributions</summary>"
        f'<pre class="packages">{esc(chr(10).join(lines))}</pre></details>'
    )


def trial_page(
    trial: Trial,
    *,
    experiment_href: str,
    figures: Sequence[tuple[str, str, str]],
    environment: str,
    packages: str,
    log: Clipped | None,
    diff: Clipped | None,
) -> str:
    """``figures``: ``(image file, recorded path, caption)``."""
    t = trial
    summary = [
        ("experiment", f'<a href="{esc(experiment_href)}">{esc(t.experiment)}</a>'),
        ("status", _status(t.status)),
        ("main", esc(shown(t.main)) if t.status == "ok" else '<span class="muted">-</span>'),
        ("started", esc(t.started)),
        ("ended", esc(t.ended)),
        ("duration", f"{t.duration:.3f} s"),
        ("host", esc(t.host)),
        ("user", esc(t.user)),
        ("function", f"<code>{esc(t.function)}</code>"),
        ("mitosis", esc(t.mitosis)),
    ]
    parts = [
        f'<nav class="crumbs"><a href="../../../index.html">experiments</a> &rsaquo; '
        f'<a href="{esc(experiment_href)}">{esc(t.experiment)}</a> &rsaquo; {esc(t.id)}</nav>',
        f"<h1>Trial <code>{esc(t.id)}</code> {_status(t.status)}</h1>",
        f'<section id="summary">{_kv(summary)}</section>',
        f'<section id="params"><h2>Parameters</h2>{_params_table(t.params)}</section>',
    ]
    if t.untracked:
        parts.append(
            f'<section id="untracked"><h2>Untracked</h2>{_params_table(t.untracked)}</section>'
        )
    metrics = [[f"<code>{esc(k)}</code>", esc(shown(v))] for k, v in t.metrics.items()]
    parts.append(
        '<section id="metrics"><h2>Metrics</h2>'
        + (
            _table(["metric", "value"], metrics, "metrics")
            if metrics
            else '<p class="muted">none</p>'
        )
        + "</section>"
    )
    if len(t.steps) > 1:
        steps = [
            [
                esc(s.name),
                f"<code>{esc(s.function)}</code>",
                _status(s.status),
                esc(shown(s.main)) if s.status == "ok" else "",
                f"{s.duration:.3f} s",
                esc(s.reused_from or ""),
            ]
            for s in t.steps
        ]
        parts.append(
            '<section id="steps"><h2>Steps</h2>'
            + _table(["step", "function", "status", "main", "duration", "reused from"], steps)
            + "</section>"
        )
    if figures:
        shown_figures = "".join(
            f'<figure><a href="{esc(image)}"><img src="{esc(image)}" alt="{esc(caption or path)}">'
            f"</a><figcaption>{esc(caption) or f'<code>{esc(path)}</code>'}</figcaption></figure>"
            for image, path, caption in figures
        )
        parts.append(f'<section id="figures"><h2>Figures</h2>{shown_figures}</section>')
    if t.error:
        parts.append(
            f'<section id="error"><h2>Error</h2><pre class="error">{esc(t.error)}</pre></section>'
        )
    parts.append(f'<section id="output"><h2>Output</h2>{_long_text(log, "log")}</section>')
    code = '<p class="muted">not in a git repository</p>'
    if t.code is not None:
        remotes = ", ".join(f"{k}: {v}" for k, v in sorted(t.code.remotes.items()))
        code = _kv(
            [
                ("commit", f"<code>{esc(t.code.commit or '(no commit)')}</code>"),
                ("branch", esc(t.code.branch or "(detached)")),
                ("repository", esc(t.code.repository)),
                ("uncommitted changes", "yes (below)" if t.code.dirty else "no"),
                ("remotes", esc(remotes or "none")),
            ]
        )
    if diff is not None:
        code += f"<h3>Uncommitted changes</h3>{_long_text(diff, 'diff')}"
    parts.append(f'<section id="code"><h2>Code</h2>{code}</section>')
    parts.append(f'<section id="environment"><h2>Environment</h2>{environment}</section>')
    parts.append(f'<section id="packages"><h2>Packages</h2>{packages}</section>')
    return _page(
        f"mitosis: trial {t.id} of {t.experiment}",
        "../../../",
        "\n".join(parts),
        kind="trial-page",
    )


# -- compare ---------------------------------------------------------------------------


def compare_page() -> str:
    body = (
        '<nav class="crumbs"><a href="index.html">experiments</a> &rsaquo; compare</nav>\n'
        "<h1>Compare two trials</h1>\n"
        '<form class="compare-form" method="get" action="compare.html">'
        '<label>trial <input id="a" name="a" class="mono" autocomplete="off"></label> '
        '<label>with <input id="b" name="b" class="mono" autocomplete="off"></label> '
        '<button type="submit">compare</button></form>\n'
        "<noscript><p>Comparing needs JavaScript.</p></noscript>\n"
        '<div id="comparison"></div>'
    )
    return _page(
        "mitosis: compare two trials", "", body, scripts=["assets/mitosis.js"], kind="compare-page"
    )
