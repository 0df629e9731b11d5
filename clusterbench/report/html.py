"""The report as one self-contained HTML page: the table (sortable, scrolling sideways within
itself on a narrow screen, each row linked to its run folders and their plots), the
two-parameter sweeps as grids, the runs without labels, the failures, plots inlined.

Every string that comes from a run (labels, overrides, paths, errors) is HTML-escaped: an
override value may be ``<script>``. The one script is the page's own sorter, inline.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence
from urllib.parse import quote

from clusterbench.report.runs import RunRecord
from clusterbench.report.table import (INTERNAL_NOTE, LABELLED_NOTE, PROBE_NOTE, Grid, Report, grid_note, grid_tables, internal_rows,
                                       layout, mean_std, pct, shared_note)

RUN_PLOTS = ("curves.png", "confusion.png", "embedding.png", "clusters.png", "samples.png")  # what a run folder may hold (clusterbench.run)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 100%; }
.scroll { overflow-x: auto; max-width: 100%; margin: 0.5em 0 1em; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; vertical-align: top; }
th { background: #f4f4f4; } th.group { text-align: center; white-space: normal; }
table.sortable thead tr:last-child th { cursor: pointer; user-select: none; }
table.sortable th[data-dir="asc"]::after { content: " \\25B2"; font-size: 9px; }
table.sortable th[data-dir="desc"]::after { content: " \\25BC"; font-size: 9px; }
th:first-child, td:first-child { text-align: left; white-space: normal; min-width: 16em; max-width: 26em; }
table.sortable th.stick, table.sortable td:first-child { position: sticky; left: 0; z-index: 1; min-width: 19em;
  box-shadow: inset -1px 0 #bbb; }
table.sortable th.stick { background: #f4f4f4; } table.sortable td:first-child { background: #fff; }
td.wrap { white-space: normal; min-width: 4em; max-width: 14em; text-align: left; }
td.links { white-space: normal; text-align: left; min-width: 12em; max-width: 22em; font-size: 12px; }
td.links a { margin-right: 0.2em; } td.links span.run { white-space: nowrap; display: inline-block; margin-right: 0.6em; }
tr.best td { color: #555; } tr.known td { font-style: italic; color: #666; }
table.grid td { text-align: center; } table.grid td small { color: #444; display: block; }
.grids { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.note { font-size: 13px; color: #444; max-width: 70em; }
.failed { color: #a00; } img { max-width: 100%; margin: 1em 0; }
"""

SORTER = """
document.querySelectorAll('table.sortable').forEach(function (t) {
  var heads = t.tHead.rows[t.tHead.rows.length - 1].cells;
  Array.prototype.forEach.call(heads, function (th, i) {
    th.addEventListener('click', function () {
      var dir = th.dataset.dir === 'desc' ? 'asc' : 'desc';
      Array.prototype.forEach.call(heads, function (h) { delete h.dataset.dir; });
      th.dataset.dir = dir;
      var groups = Array.prototype.filter.call(t.tBodies, function (b) { return !b.classList.contains('fixed'); });
      var fixed = Array.prototype.filter.call(t.tBodies, function (b) { return b.classList.contains('fixed'); });
      function key(b) { var c = b.rows[0].cells[i]; var v = c ? c.textContent.trim() : ''; var n = parseFloat(v); return isNaN(n) ? v : n; }
      groups.sort(function (a, b) {
        var x = key(a), y = key(b), r;
        if (typeof x === 'number' && typeof y === 'number') r = x - y;
        else if (typeof x === 'number') return -1;
        else if (typeof y === 'number') return 1;
        else r = String(x).localeCompare(String(y));
        return dir === 'asc' ? r : -r;
      });
      groups.concat(fixed).forEach(function (b) { t.appendChild(b); });
    });
  });
});
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def href(path: Path, base: Optional[Path]) -> str:
    """A link to ``path`` relative to the page's folder ``base`` (as a file: URL when the two
    share no root, e.g. other drives), percent-encoded then escaped for an attribute."""
    try:
        rel = os.path.relpath(Path(path).resolve(), Path(base).resolve()) if base is not None else None
    except ValueError:
        rel = None
    if rel is None:
        return esc(Path(path).resolve().as_uri())
    return esc(quote(Path(rel).as_posix()))


def run_links(runs: Sequence[RunRecord], base: Optional[Path], several_columns: bool) -> str:
    """Each run: its folder (named by seed) and the plots it holds."""
    parts = []
    for r in runs:
        name = f"seed {r.seed}" if r.seed is not None else r.path.name
        if several_columns:
            name = f"{r.column} · {name}"
        plots = [p for p in RUN_PLOTS if (r.path / p).is_file()]
        links = "".join(f' <a href="{href(r.path / p, base)}">{esc(p[:-4])}</a>' for p in plots)
        parts.append(f'<span class="run"><a href="{href(r.path, base)}/" title="{esc(r.path)}">{esc(name)}</a>' + (f"<small>:{links}</small>" if links else "") + "</span>")
    return " ".join(parts)


def render(report: Report, title: str, plots: Sequence[Path] = (), base: Optional[Path] = None,
           grid_images: Optional[Mapping[str, Path]] = None) -> str:
    """The page. ``base``: the folder report.html goes to, for the relative links to run
    folders; ``grid_images``: a grid's slug → its heatmap PNG, inlined under the grid."""
    from clusterbench.report.plots import png_data_uri

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{esc(title)}</h1>"]
    if report.cells or not report.internal:
        parts += [_labelled_table(report, base), f"<p class='note'>{esc(LABELLED_NOTE)}</p>"]
        if report.probes or report.health:
            parts.append(f"<p class='note'>{esc(PROBE_NOTE)}</p>")
        if report.shared:
            parts.append(f"<p class='note'>{esc(shared_note(report))}</p>")
    for grid in report.grids:
        parts.append(_grid(grid, grid_images or {}, png_data_uri))
    if report.internal:
        parts += [f"<h2>Runs without labels ({sum(c.n for c in report.internal.values())})</h2>", _table(internal_rows(report)),
                  f"<p class='note'>{esc(INTERNAL_NOTE)}</p>"]
    if report.problems:
        parts.append(f"<h2 class='failed'>{len(report.problems)} run(s) failed or unfinished</h2><div class='scroll'><table><thead><tr><th>run folder</th>"
                     "<th>method</th><th>dataset</th><th>seed</th><th>status</th><th>error</th></tr></thead><tbody>")
        parts += [f"<tr class='failed'><td><a href=\"{href(r.path, base)}/\">{esc(r.path)}</a></td><td>{esc(report.label(r.row))}</td><td>{esc(r.column)}</td>"
                  f"<td>{esc(r.seed)}</td><td>{esc(r.status)}</td><td class='wrap'>{esc(r.error or '')}</td></tr>" for r in report.problems]
        parts.append("</tbody></table></div>")
    parts += [f"<img alt='{esc(p.stem)}' src='{png_data_uri(p)}'>" for p in plots]
    parts.append(f"<script>{SORTER}</script></body></html>")
    return "\n".join(parts)


def _labelled_table(report: Report, base: Optional[Path]) -> str:
    """Two header rows (dataset protocols over their scores), then one <tbody> per method
    variant (its mean line and its best line sort together), the best-known lines last."""
    lay = layout(report)
    # the method column stays in view while the table scrolls sideways: its own cell in the top row too
    (_, first), *rest = lay.groups
    top = "<th class='group stick'></th>" + (f"<th class='group' colspan='{len(first) - 1}'></th>" if len(first) > 1 else "")
    top += "".join(f"<th class='group' colspan='{len(names)}'>{esc(group)}</th>" for group, names in rest) + "<th class='group'></th>"
    names = [name for _, names in lay.groups for name in names] + ["run folders · plots"]
    head = "".join(f"<th{' class=stick' if i == 0 else ''}>{esc(n)}</th>" for i, n in enumerate(names))
    several_columns = len(report.columns) > 1
    wrap = {i for i, n in enumerate(names) if n in ("published", "Δ", "health")}
    body = []
    group: list[str] = []
    for line in lay.lines:
        links = run_links(line.runs, base, several_columns) if line.kind == "mean" else ""
        tds = "".join(f"<td{' class=wrap' if i in wrap else ''}>{esc(c)}</td>" for i, c in enumerate(line.cells))
        tr = f"<tr class='{line.kind}'>{tds}<td class='links'>{links}</td></tr>"
        if line.kind == "mean" and group:
            body.append(f"<tbody>{''.join(group)}</tbody>")
            group = []
        if line.kind == "known":
            if group:
                body.append(f"<tbody>{''.join(group)}</tbody>")
                group = []
            body.append(f"<tbody class='fixed'>{tr}</tbody>")
        else:
            group.append(tr)
    if group:
        body.append(f"<tbody>{''.join(group)}</tbody>")
    return f"<div class='scroll'><table class='sortable'><thead><tr>{top}</tr><tr>{head}</tr></thead>{''.join(body)}</table></div>"


def _grid(grid: Grid, images: Mapping[str, Path], data_uri) -> str:
    """Ours (ACC large, NMI / ARI small, the published value and Δ under it where there is
    one), shaded by ACC; then the heatmap."""
    acc = grid.matrix("acc")
    finite = [v for line in acc for v in line if v is not None]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    ref = grid.reference
    head = f"<th>{esc(grid.row_key)} ↓ {esc(grid.col_key)} →</th>" + "".join(f"<th>{esc(v)}</th>" for v in grid.col_values)
    rows = []
    for i, rv in enumerate(grid.row_values):
        tds = []
        for j, cv in enumerate(grid.col_values):
            cell = grid.cells.get((rv, cv))
            if cell is None:
                tds.append("<td>–</td>")
                continue
            shade = 0.5 if hi == lo else (acc[i][j] - lo) / (hi - lo)
            text = f"<b>{esc(mean_std(cell.values('acc')))}</b><small>NMI {pct(cell.mean('nmi'))} · ARI {pct(cell.mean('ari'))}</small>"
            published = ref.values.get((rv, cv)) if ref else None
            if published is not None:
                text += f"<small>published {published:.2f} · Δ {100 * cell.mean('acc') - published:+.1f}</small>"
            tds.append(f"<td style='background: hsl(140, 45%, {95 - 30 * shade:.0f}%)'>{text}</td>")
        rows.append(f"<tr><th>{esc(rv)}</th>{''.join(tds)}</tr>")
    parts = [f"<h2>Sweep: {esc(grid.title)}</h2>", f"<p class='note'>{esc(grid_note(grid))}</p>",
             f"<div class='scroll'><table class='grid'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"]
    if ref is not None:  # the published sweep and Δ as plain tables, side by side
        tables = [t for t in grid_tables(grid) if t[0].startswith(("ACC published", "Δ"))]
        parts.append("<div class='grids'>" + "".join(f"<div><h3>{esc(name)}</h3>{_table(lines)}</div>" for name, lines in tables) + "</div>")
    if grid.slug in images:
        parts.append(f"<img alt='{esc(grid.slug)}' src='{data_uri(images[grid.slug])}'>")
    return "\n".join(parts)


def _table(rows: list[list[str]]) -> str:
    """Header row, then body rows classed by kind: a (best) row and a best-known row are
    greyed so the eye lands on the means."""
    head = "".join(f"<th>{esc(c)}</th>" for c in rows[0])
    body = []
    for cells in rows[1:]:
        kind = "best" if cells[0].endswith("(best)") else "known" if cells[0].startswith("best known") else "mean"
        body.append(f'<tr class="{kind}">' + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
