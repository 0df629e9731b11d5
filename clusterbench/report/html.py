"""The report as one self-contained HTML page: the table, the runs without labels, the
failures, plots inlined."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

from clusterbench.report.table import INTERNAL_NOTE, LABELLED_NOTE, Report, internal_rows, table_rows

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
tr.best td { color: #555; } tr.known td { font-style: italic; color: #666; }
.failed { color: #a00; } img { max-width: 100%; margin: 1em 0; }
"""


def render(report: Report, title: str, plots: Sequence[Path] = ()) -> str:
    from clusterbench.report.plots import png_data_uri

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if report.cells or not report.internal:
        parts += [_table(table_rows(report)), f"<p>{html.escape(LABELLED_NOTE)}</p>"]
    if report.internal:
        parts += [f"<h2>Runs without labels ({sum(c.n for c in report.internal.values())})</h2>", _table(internal_rows(report)),
                  f"<p>{html.escape(INTERNAL_NOTE)}</p>"]
    if report.problems:
        parts.append(f"<h2 class='failed'>{len(report.problems)} run(s) failed or unfinished</h2><table><tr><th>run folder</th><th>method</th><th>dataset</th><th>seed</th><th>status</th><th>error</th></tr>")
        parts += [f"<tr class='failed'><td>{html.escape(str(r.path))}</td><td>{html.escape(r.row)}</td><td>{html.escape(r.column)}</td><td>{r.seed}</td><td>{r.status}</td><td>{html.escape(r.error or '')}</td></tr>" for r in report.problems]
        parts.append("</table>")
    parts += [f"<img alt='{html.escape(p.stem)}' src='{png_data_uri(p)}'>" for p in plots]
    parts.append("</body></html>")
    return "\n".join(parts)


def _table(rows: list[list[str]]) -> str:
    """Header row, then body rows classed by kind: a (best) row and a best-known row are
    greyed so the eye lands on the means."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = []
    for cells in rows[1:]:
        kind = "best" if cells[0].endswith("(best)") else "known" if cells[0].startswith("best known") else "mean"
        body.append(f'<tr class="{kind}">' + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
