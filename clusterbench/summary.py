"""The tidy table a run prints when it ends.

A run without labels has no NMI / ACC / ARI / purity: its row shows the internal scores
(silhouette, Calinski–Harabasz, Davies–Bouldin, effective number of clusters) instead, and
"-" under the label columns, never a 0 that reads as a terrible score. The internal columns
appear only when a row has no labels, so a table of labelled runs is the one it always was.
"""

from __future__ import annotations

from typing import Any, Mapping

from clusterbench.report.runs import is_labelled

Column = tuple[str, str, str]  # header, result key, format

HEAD: tuple[Column, ...] = (
    ("method", "method", "{}"),
    ("dataset", "dataset", "{}"),
    ("split", "split", "{}"),
    ("N", "n_samples", "{:,}"),
    ("K", "n_clusters", "{}"),
    ("seed", "seed", "{}"),
)
LABEL_COLUMNS: tuple[Column, ...] = (
    ("NMI", "nmi", "{:.2%}"),
    ("ACC", "acc", "{:.2%}"),
    ("ARI", "ari", "{:.2%}"),
    ("purity", "purity", "{:.2%}"),
)
INTERNAL_COLUMNS: tuple[Column, ...] = (
    ("silhouette", "silhouette", "{:.3f}"),
    ("CH", "calinski_harabasz", "{:,.1f}"),
    ("DB", "davies_bouldin", "{:.3f}"),
    ("eff. K", "effective_clusters", "{:.2f}"),
)
TAIL: tuple[Column, ...] = (("time", "wall_seconds", "{:.1f}s"),)
COLUMNS = HEAD + LABEL_COLUMNS + TAIL  # the table of labelled runs
LABEL_KEYS = frozenset(key for _, key, _ in LABEL_COLUMNS)


def _cell(row: Mapping[str, Any], key: str, fmt: str, labelled: bool) -> str:
    if row.get(key) is None or (not labelled and key in LABEL_KEYS):
        return "-"
    return fmt.format(row[key])


def format_table(rows: list[Mapping[str, Any]]) -> str:
    """Fixed-width text table of result dicts (label metrics as percentages).

    Label columns are shown when some row has labels (or there are no rows), internal
    columns when some row has none; a row shows "-" where it has no value."""
    labelled = [is_labelled(row) for row in rows]
    columns = HEAD + (LABEL_COLUMNS if any(labelled) or not rows else ()) + (INTERNAL_COLUMNS if not all(labelled) else ()) + TAIL
    cells = [[head for head, _, _ in columns]]
    for row, has_labels in zip(rows, labelled):
        cells.append([_cell(row, key, fmt, has_labels) for _, key, fmt in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    rule = "-" * len(lines[0])
    return "\n".join([rule, lines[0], rule, *lines[1:], rule])


def format_timings(timings: Mapping[str, float]) -> str:
    return "phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
