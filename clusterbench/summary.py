"""The tidy table a run prints when it ends."""

from __future__ import annotations

from typing import Any, Mapping

COLUMNS = (
    ("method", "method", "{}"),
    ("dataset", "dataset", "{}"),
    ("split", "split", "{}"),
    ("N", "n_samples", "{:,}"),
    ("K", "n_clusters", "{}"),
    ("seed", "seed", "{}"),
    ("NMI", "nmi", "{:.2%}"),
    ("ACC", "acc", "{:.2%}"),
    ("ARI", "ari", "{:.2%}"),
    ("purity", "purity", "{:.2%}"),
    ("time", "wall_seconds", "{:.1f}s"),
)


def format_table(rows: list[Mapping[str, Any]]) -> str:
    """Fixed-width text table of result dicts (metrics as percentages)."""
    cells = [[head for head, _, _ in COLUMNS]]
    for row in rows:
        cells.append([fmt.format(row[key]) if row.get(key) is not None else "-" for _, key, fmt in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    rule = "-" * len(lines[0])
    return "\n".join([rule, lines[0], rule, *lines[1:], rule])


def format_timings(timings: Mapping[str, float]) -> str:
    return "phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
