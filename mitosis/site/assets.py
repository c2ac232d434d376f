# ruff: noqa: E501  (the embedded script keeps its own line lengths)
"""The browser's static assets: one style sheet and one script, as Python strings.

The script renders what needs JavaScript: the sortable, filterable trial table of an experiment
(from ``trials.js``) and the comparison of two trials (from their ``data.js``). It builds every
element with ``createElement`` and ``textContent``, never from HTML text, so recorded strings
cannot inject markup. Data files are plain ``<script>`` files (not fetched), so the site works
from ``file://``.
"""

from __future__ import annotations

__all__ = ["SCRIPT", "STYLE"]

STYLE = """\
:root { --fg: #1d2430; --muted: #5c6776; --line: #d9dee5; --bg: #fff; --alt: #f5f7fa;
  --ok: #1a7f37; --bad: #c62828; --warn: #9a6700; --accent: #0b5cad; --diff: #fff4d6; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  background: var(--bg); margin: 0 auto; padding: 1rem 1.5rem 3rem; max-width: 90rem; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
nav.crumbs { color: var(--muted); margin-bottom: .5rem; }
h1 { font-size: 1.5rem; margin: .2rem 0 .8rem; } h2 { font-size: 1.15rem; margin: 1.6rem 0 .5rem; }
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 12.5px; }
pre { background: var(--alt); border: 1px solid var(--line); padding: .6rem .8rem;
  overflow: auto; max-height: 40rem; white-space: pre-wrap; word-break: break-word; }
table { border-collapse: collapse; margin: .3rem 0; }
th, td { border-bottom: 1px solid var(--line); padding: .25rem .6rem; text-align: left;
  vertical-align: top; }
th { background: var(--alt); font-weight: 600; }
table.kv th { width: 11rem; background: none; color: var(--muted); font-weight: 500; }
tr.differs td { background: var(--diff); }
.status { font-weight: 600; } .status-ok { color: var(--ok); }
.status-failed, .status-killed { color: var(--bad); } .status-interrupted { color: var(--warn); }
.muted { color: var(--muted); }
figure { display: inline-block; margin: .4rem 1rem .8rem 0; vertical-align: top; }
figure img { max-width: 36rem; width: 100%; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; margin-top: .2rem; }
.plots figure img { max-width: 30rem; }
table.trials { font-size: 13px; }
table.trials th { cursor: pointer; white-space: nowrap; user-select: none; }
table.trials th.sorted-asc::after { content: " \\25B2"; }
table.trials th.sorted-desc::after { content: " \\25BC"; }
table.trials tr.filters th { cursor: default; background: #fff; }
table.trials input.filter, table.trials select.filter { width: 100%; min-width: 4rem;
  font-size: 12px; }
table.trials td.num { text-align: right; font-variant-numeric: tabular-nums; }
.toolbar { display: flex; gap: 1rem; align-items: center; margin: .4rem 0; }
.compare-form input { width: 12rem; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
details > summary { cursor: pointer; color: var(--accent); }
"""

SCRIPT = r"""
(function () {
  "use strict";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { node.textContent = attrs[k]; }
      else if (k === "className") { node.className = attrs[k]; }
      else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  // Records are untrusted: a name such as "constructor" or "__proto__" is looked up as the
  // record's own field only, never one every object inherits.
  function has(o, k) { return Object.prototype.hasOwnProperty.call(o, k); }
  function own(o, k) { return has(o, k) ? o[k] : undefined; }

  function fmt(v) {
    if (v === null || v === undefined) { return ""; }
    if (typeof v === "number") { return Number.isInteger(v) ? String(v) : String(+v.toPrecision(4)); }
    if (typeof v === "string") { return v; }
    return JSON.stringify(v);
  }

  function num(v) {
    if (typeof v === "number") { return v; }
    if (typeof v === "string" && v.trim() !== "" && !isNaN(Number(v))) { return Number(v); }
    return null;
  }

  var OPS = ["<=", ">=", "!=", "<", ">", "="];

  // A column filter: "<0.1", ">=2", "!=low", "=low" or text found anywhere (any case).
  function matcher(text) {
    text = text.trim();
    if (!text) { return null; }
    for (var i = 0; i < OPS.length; i++) {
      var op = OPS[i];
      if (text.indexOf(op) === 0) {
        var want = text.slice(op.length).trim(), target = num(want);
        return function (v) {
          var n = num(v), s = fmt(v);
          if (op === "=") { return s === want || (n !== null && target !== null && n === target); }
          if (op === "!=") { return !(s === want || (n !== null && target !== null && n === target)); }
          if (n === null || target === null) { return false; }
          return op === "<" ? n < target : op === ">" ? n > target : op === "<=" ? n <= target : n >= target;
        };
      }
    }
    var lower = text.toLowerCase();
    return function (v) { return fmt(v).toLowerCase().indexOf(lower) !== -1; };
  }

  function compare(a, b) {
    var x = num(a), y = num(b);
    if (a === null || a === undefined || a === "") { return (b === null || b === undefined || b === "") ? 0 : 1; }
    if (b === null || b === undefined || b === "") { return -1; }
    if (x !== null && y !== null) { return x - y; }
    return fmt(a) < fmt(b) ? -1 : fmt(a) > fmt(b) ? 1 : 0;
  }

  function experimentPage(data) {
    var root = document.getElementById("trial-table");
    var columns = [
      {label: "id", get: function (r) { return r.id; }, link: true},
      {label: "started", get: function (r) { return r.started; }},
      {label: "status", get: function (r) { return r.status; }, status: true}
    ];
    data.params.forEach(function (p) {
      columns.push({label: p, get: function (r) { return own(r.params, p); }});
    });
    columns.push({label: "main", get: function (r) { return r.main; }, number: true});
    data.metrics.forEach(function (m) {
      columns.push({label: m, title: "metric " + m, get: function (r) { return own(r.metrics, m); }, number: true});
    });
    columns.push({label: "duration (s)", get: function (r) { return r.duration; }, number: true});
    columns.push({label: "commit", get: function (r) { return r.commit; }});
    var state = {sort: 1, desc: true, filters: {}, limit: 500, chosen: []};
    var statuses = {};
    data.rows.forEach(function (r) { statuses[r.status] = true; });

    var headRow = el("tr"), filterRow = el("tr", {className: "filters"});
    headRow.appendChild(el("th", {text: "\u2713", title: "choose two trials to compare"}));
    filterRow.appendChild(el("th"));
    columns.forEach(function (c, i) {
      var th = el("th", {text: c.label, title: c.title || "sort by " + c.label});
      th.addEventListener("click", function () {
        state.desc = state.sort === i ? !state.desc : false;
        state.sort = i;
        render();
      });
      headRow.appendChild(th);
      var input;
      if (c.status) {
        input = el("select", {className: "filter", "aria-label": "filter status"},
          [el("option", {value: "", text: "all"})].concat(Object.keys(statuses).sort().map(function (s) {
            return el("option", {value: "=" + s, text: s});
          })));
        input.addEventListener("change", function () { state.filters[i] = matcher(input.value); render(); });
      } else {
        input = el("input", {className: "filter", type: "search", placeholder: c.number ? "<0.1" : "filter",
          "aria-label": "filter " + c.label});
        input.addEventListener("input", function () { state.filters[i] = matcher(input.value); render(); });
      }
      filterRow.appendChild(el("th", {}, [input]));
    });
    var body = el("tbody");
    root.appendChild(el("thead", {}, [headRow, filterRow]));
    root.appendChild(body);
    var shown = document.getElementById("shown");
    var more = document.getElementById("more");
    var button = document.getElementById("compare");
    more.addEventListener("click", function () { state.limit += 500; render(); });
    button.addEventListener("click", function () {
      if (state.chosen.length === 2) {
        window.location.href = data.root + "compare.html?a=" + encodeURIComponent(state.chosen[0]) +
          "&b=" + encodeURIComponent(state.chosen[1]);
      }
    });

    function choose(id, on) {
      state.chosen = state.chosen.filter(function (x) { return x !== id; });
      if (on) { state.chosen.push(id); }
      while (state.chosen.length > 2) { state.chosen.shift(); }
      button.disabled = state.chosen.length !== 2;
      button.textContent = "compare " + (state.chosen.length === 2 ? state.chosen.join(" and ") : "two chosen trials");
    }

    function render() {
      var rows = data.rows.filter(function (r) {
        return columns.every(function (c, i) { var f = state.filters[i]; return !f || f(c.get(r)); });
      });
      var col = columns[state.sort];
      rows.sort(function (a, b) {
        var d = compare(col.get(a), col.get(b));
        return state.desc ? -d : d;
      });
      Array.prototype.forEach.call(headRow.children, function (th, i) {
        th.className = i - 1 === state.sort ? (state.desc ? "sorted-desc" : "sorted-asc") : "";
      });
      body.textContent = "";
      rows.slice(0, state.limit).forEach(function (r) {
        var box = el("input", {type: "checkbox", "aria-label": "compare " + r.id});
        box.checked = state.chosen.indexOf(r.id) !== -1;
        box.addEventListener("change", function () { choose(r.id, box.checked); render(); });
        var tr = el("tr", {"data-id": r.id}, [el("td", {}, [box])]);
        columns.forEach(function (c) {
          var v = c.get(r), td = el("td", {className: c.number ? "num" : ""});
          if (c.link) { td.appendChild(el("a", {href: r.href, className: "mono", text: v})); }
          else if (c.status) { td.appendChild(el("span", {className: "status status-" + v, text: v})); }
          else { td.textContent = fmt(v); }
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
      shown.textContent = "showing " + Math.min(rows.length, state.limit) + " of " + rows.length +
        " matching trials (" + data.rows.length + " in all)";
      more.hidden = rows.length <= state.limit;
    }
    choose("", false);
    render();
  }

  function comparePage() {
    var query = new URLSearchParams(window.location.search);
    var ids = [query.get("a") || "", query.get("b") || ""];
    var out = document.getElementById("comparison");
    document.getElementById("a").value = ids[0];
    document.getElementById("b").value = ids[1];
    if (!ids[0] || !ids[1]) { out.textContent = "Choose two trials in an experiment's table, or give two trial ids."; return; }
    var pattern = /^[0-9a-f]{4,64}$/;
    if (!pattern.test(ids[0]) || !pattern.test(ids[1])) { out.textContent = "Trial ids are hexadecimal: give two full ids."; return; }
    var got = {}, pending = 2;
    window.mitosisTrial = function (d) { got[d.id] = d; };
    ids.forEach(function (id) {
      var s = el("script", {src: "trials/" + id.slice(0, 2) + "/" + id + "/data.js"});
      s.onload = s.onerror = function () {
        pending -= 1;
        if (pending === 0) { showComparison(out, got[ids[0]], got[ids[1]], ids); }
      };
      document.body.appendChild(s);
    });
  }

  function showComparison(out, a, b, ids) {
    out.textContent = "";
    if (!a || !b) { out.textContent = "No trial " + (!a ? ids[0] : ids[1]) + " in this site (give full ids)."; return; }
    function link(t) { return el("a", {href: t.href, className: "mono", text: t.id}); }
    function section(title, rows) {
      if (!rows.length) { return; }
      out.appendChild(el("h2", {text: title}));
      var table = el("table", {className: "compare"}, [el("tr", {}, [el("th", {text: ""}), el("th", {}, [link(a)]), el("th", {}, [link(b)])])]);
      rows.forEach(function (row) {
        var x = fmt(row[1]), y = fmt(row[2]);
        table.appendChild(el("tr", {className: x === y ? "" : "differs"}, [el("th", {text: row[0]}), el("td", {text: x}), el("td", {text: y})]));
      });
      out.appendChild(table);
    }
    function keys(p, q) { return Object.keys(p).concat(Object.keys(q).filter(function (k) { return !has(p, k); })); }
    function param(p) { return p ? p.variant + (p.source === "variant" ? " = " + fmt(p.value) : "") : ""; }
    section("Trial", [["experiment", a.experiment, b.experiment], ["status", a.status, b.status],
      ["main", a.main, b.main], ["started", a.started, b.started], ["duration (s)", a.duration, b.duration],
      ["host", a.host, b.host], ["function", a.function, b.function], ["code commit", a.commit, b.commit],
      ["uncommitted changes", a.dirty, b.dirty], ["python", a.python, b.python], ["platform", a.platform, b.platform]]);
    function sides(field, show) {
      return keys(a[field], b[field]).map(function (k) { return [k, show(own(a[field], k)), show(own(b[field], k))]; });
    }
    section("Parameters", sides("params", param));
    section("Untracked", sides("untracked", param));
    section("Metrics", sides("metrics", function (v) { return v; }));
    var ra = new Set(a.requirements), rb = new Set(b.requirements);
    var onlyA = a.requirements.filter(function (l) { return !rb.has(l); });
    var onlyB = b.requirements.filter(function (l) { return !ra.has(l); });
    out.appendChild(el("h2", {text: "Packages"}));
    out.appendChild(onlyA.length || onlyB.length ?
      el("div", {className: "side"}, [el("pre", {text: onlyA.join("\n") || "(nothing only here)"}), el("pre", {text: onlyB.join("\n") || "(nothing only here)"})]) :
      el("p", {className: "muted", text: "the same " + a.requirements.length + " distributions"}));
    out.appendChild(el("h2", {text: "Figures"}));
    var side = el("div", {className: "side"});
    [a, b].forEach(function (t) {
      var column = el("div");
      t.figures.forEach(function (f) {
        column.appendChild(el("figure", {}, [el("img", {src: f.src, alt: f.caption || f.path}), el("figcaption", {text: f.caption || f.path})]));
      });
      if (!t.figures.length) { column.appendChild(el("p", {className: "muted", text: "no figures"})); }
      side.appendChild(column);
    });
    out.appendChild(side);
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (window.mitosisExperiment && document.getElementById("trial-table")) { experimentPage(window.mitosisExperiment); }
    if (document.getElementById("comparison")) { comparePage(); }
  });
})();
"""
