"""Aggregate run records into the paper-style table: rows are methods (plus their variant),
column groups are datasets (plus their protocol), each cell NMI / ACC / ARI as mean ± std
over seeds with the best run beside it, as in the MiCE paper's Table 2, next to the
published numbers and their deltas.

Runs without labels have no NMI / ACC / ARI. They aggregate into a table of their own
(``Report.internal``) of internal scores, mean ± std over seeds: never averaged into a
labelled cell, never matched to a published number, never in a baseline.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Optional

from clusterbench.metrics import INTERNAL_SCORES
from clusterbench.report.runs import RunRecord

METRICS = ("nmi", "acc", "ari")
NAMES = {"nmi": "NMI", "acc": "ACC", "ari": "ARI", "purity": "purity"}
INTERNAL_NAMES = {"silhouette": "silhouette", "calinski_harabasz": "CH", "davies_bouldin": "DB", "effective_clusters": "eff. K"}
INTERNAL_FORMATS = {"silhouette": "{:.3f}", "calinski_harabasz": "{:.1f}", "davies_bouldin": "{:.3f}", "effective_clusters": "{:.2f}"}
INTERNAL_NOTE = ("No labels: internal scores of the final features, mean ± sample std over seeds. "
                 "silhouette (cosine, −1 to 1) and CH (Calinski–Harabasz): higher is better; DB (Davies–Bouldin, ≥ 0): lower is better; "
                 "all three on a seeded subsample. eff. K = exp(entropy of the cluster sizes): how many of the K clusters are really used. "
                 "Not comparable with NMI / ACC / ARI, nor across datasets.")


@dataclass
class Cell:
    """All completed runs of one method variant on one dataset protocol."""

    runs: list[RunRecord]

    @property
    def n(self) -> int:
        return len(self.runs)

    def values(self, metric: str) -> list[float]:
        """The metric over the runs that have it: an internal score may be undefined in a seed."""
        return [r.metrics[metric] for r in self.runs if metric in r.metrics]

    def mean(self, metric: str) -> float:
        return statistics.fmean(self.values(metric))

    def std(self, metric: str) -> float:
        """Sample standard deviation over seeds (0 for a single run)."""
        values = self.values(metric)
        return statistics.stdev(values) if len(values) > 1 else 0.0

    @property
    def best(self) -> RunRecord:
        """The run with the highest ACC (ties: NMI), reported whole as the papers' 'best'."""
        return max(self.runs, key=lambda r: (r.metrics["acc"], r.metrics["nmi"]))

    @property
    def n_clusters(self) -> Optional[int]:
        return self.runs[0].n_clusters

    @property
    def n_classes(self) -> Optional[int]:
        return self.runs[0].result.get("n_classes")


@dataclass
class Reference:
    source: str
    label: str
    values: dict[str, float]  # % as published
    stat: str = "mean"


@dataclass
class Report:
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    problems: list[RunRecord]  # failed and unfinished runs, listed, never dropped
    published: dict[tuple[str, str], dict[str, Reference]] = field(default_factory=dict)  # (row, column) → stat → ref
    best_known: dict[str, list[Reference]] = field(default_factory=dict)  # column → refs
    internal: dict[tuple[str, str], Cell] = field(default_factory=dict)  # runs without labels, by (row, column)

    @property
    def internal_rows(self) -> list[str]:
        return sorted({k[0] for k in self.internal})

    @property
    def internal_columns(self) -> list[str]:
        return sorted({k[1] for k in self.internal})


def load_references() -> dict[str, Any]:
    return json.loads((resources.files("clusterbench.report") / "references.json").read_text())


def aggregate(records: list[RunRecord], references: Optional[dict[str, Any]] = None) -> Report:
    """Group completed runs by (row, column), labelled and unlabelled apart; keep failed and
    unfinished ones aside."""
    cells: dict[tuple[str, str], Cell] = {}
    internal: dict[tuple[str, str], Cell] = {}
    for r in records:
        if r.status == "completed":
            (cells if r.labelled else internal).setdefault((r.row, r.column), Cell([])).runs.append(r)
    rows = sorted({k[0] for k in cells})
    columns = sorted({k[1] for k in cells})
    problems = sorted((r for r in records if r.status != "completed"), key=lambda r: str(r.path))
    report = Report(rows, columns, cells, problems, internal=internal)
    _attach_references(report, references if references is not None else load_references())
    return report


def _attach_references(report: Report, refs: dict[str, Any]) -> None:
    sources = refs.get("sources", {})
    for (row, column), cell in report.cells.items():
        run = cell.runs[0]
        if run.variant and not run.variant.startswith("method.num_clusters="):
            continue  # a published row describes the method's defaults, not a variant
        for ref in refs.get("references", []):
            if ref["method"] != run.method or ref["dataset"] != run.dataset:
                continue
            if ref.get("protocol", "split=all") != run.protocol:
                continue
            wanted_k = ref.get("num_clusters") or cell.n_classes
            if cell.n_clusters != wanted_k:
                continue  # a K = 30 purity is no reference for a K = 10 run, and vice versa
            values = {m: float(ref[m]) for m in (*METRICS, "purity") if m in ref}
            stat = ref.get("stat", "mean")
            report.published.setdefault((row, column), {})[stat] = Reference(ref["source"], sources.get(ref["source"], ref["source"]), values, stat)
    for column in report.columns:
        dataset = column.split(" [", 1)[0]
        report.best_known[column] = [
            Reference(b["source"], sources.get(b["source"], b["source"]) + (f" ({b['protocol']})" if b.get("protocol") else ""), {m: float(b[m]) for m in METRICS if m in b})
            for b in refs.get("best_known", [])
            if b["dataset"] == dataset
        ]


# --- rendering -----------------------------------------------------------------------


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _named(values: dict[str, float]) -> str:
    return ", ".join(f"{NAMES[m]} {values[m]:.1f}" for m in (*METRICS, "purity") if m in values)


def _delta(ours: dict[str, float], published: dict[str, float]) -> str:
    shared = [m for m in (*METRICS, "purity") if m in published and m in ours]
    return ", ".join(f"{NAMES[m]} {ours[m] - published[m]:+.1f}" for m in shared)


def table_rows(report: Report) -> list[list[str]]:
    """The table as text cells: header, then a mean row and a best row per method variant."""
    header = ["method", "runs"]
    for column in report.columns:
        header += [f"{column} NMI", f"{column} ACC", f"{column} ARI", f"{column} published", f"{column} Δ"]
    lines = [header]
    for row in report.rows:
        mean_line, best_line = [f"{row} (mean)"], [f"{row} (best)"]
        counts = [str(report.cells[(row, c)].n) for c in report.columns if (row, c) in report.cells]
        mean_line.append("+".join(counts))
        best_line.append("")
        for column in report.columns:
            cell = report.cells.get((row, column))
            if cell is None:
                mean_line += ["–"] * 5
                best_line += ["–"] * 5
                continue
            mean_line += [f"{pct(cell.mean(m))} ± {pct(cell.std(m))}" for m in METRICS]
            best = cell.best.metrics
            best_line += [pct(best[m]) for m in METRICS]
            refs = report.published.get((row, column), {})
            ours_mean = {m: 100 * cell.mean(m) for m in (*METRICS, "purity") if all(m in r.metrics for r in cell.runs)}
            ours_best = {m: 100 * best[m] for m in best}
            for line, ref, ours in ((mean_line, refs.get("mean"), ours_mean), (best_line, refs.get("best"), ours_best)):
                line += [_named(ref.values) + f" [{ref.source}]", _delta(ours, ref.values)] if ref else ["", ""]
        lines += [mean_line, best_line]
    for column in report.columns:
        for ref in report.best_known.get(column, []):
            line = [f"best known: {ref.source}", ""]
            for c in report.columns:
                line += [f"{ref.values[m]:.1f}" if c == column and m in ref.values else "" for m in METRICS] + ["", ""]
            lines.append(line)
    return lines


def _internal_value(cell: Cell, metric: str) -> str:
    values = cell.values(metric)
    if not values:
        return "–"  # undefined in every seed (one cluster, constant features)
    fmt = INTERNAL_FORMATS[metric]
    return fmt.format(cell.mean(metric)) + (f" ± {fmt.format(cell.std(metric))}" if len(values) > 1 else "")


def internal_rows(report: Report) -> list[list[str]]:
    """The unlabelled runs' table as text cells: header, then one row per method variant."""
    columns = report.internal_columns
    header = ["method", "runs"]
    for column in columns:
        header += [f"{column} K", *(f"{column} {INTERNAL_NAMES[m]}" for m in INTERNAL_SCORES)]
    lines = [header]
    for row in report.internal_rows:
        line = [row, "+".join(str(report.internal[(row, c)].n) for c in columns if (row, c) in report.internal)]
        for column in columns:
            cell = report.internal.get((row, column))
            if cell is None:
                line += ["–"] * (1 + len(INTERNAL_SCORES))
                continue
            line += [str(cell.n_clusters) if cell.n_clusters is not None else "–", *(_internal_value(cell, m) for m in INTERNAL_SCORES)]
        lines.append(line)
    return lines


def _markdown_table(lines: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(lines[0]), *("| " + " | ".join(cells) + " |" for cells in lines[1:])]


LABELLED_NOTE = ("NMI / ACC / ARI in %, mean ± sample std over seeds; (best) = the run with the highest ACC. "
                 "ACC is one-to-one Hungarian; a published number marked 'purity' is majority-vote over-clustering. "
                 "Δ = ours − published, in points.")


def to_markdown(report: Report) -> str:
    """The labelled table and its note, the table of runs without labels and its note (when
    there are such runs), then the failed and unfinished runs."""
    out: list[str] = []
    if report.cells or not report.internal:
        out += [*_markdown_table(table_rows(report)), "", LABELLED_NOTE]
    if report.internal:
        out += [*([""] if out else []), f"**Runs without labels** ({sum(c.n for c in report.internal.values())})", "",
                *_markdown_table(internal_rows(report)), "", INTERNAL_NOTE]
    if report.problems:
        out += ["", f"**{len(report.problems)} run(s) failed or unfinished**", "", "| run folder | method | dataset | seed | status | error |", "|---|---|---|---|---|---|"]
        out += [f"| {r.path} | {r.row} | {r.column} | {r.seed} | {r.status} | {(r.error or '').replace('|', '/')} |" for r in report.problems]
    return "\n".join(out)


def to_csv_rows(report: Report) -> list[dict[str, Any]]:
    """Long format, one line per (method variant, dataset protocol): for spreadsheets and scripts.

    Lines of runs without labels come last, with ``labels`` false, their internal scores
    (not in %) and no NMI / ACC / ARI / published columns; the columns are the union."""
    rows = []
    for (row, column), cell in sorted(report.cells.items()):
        run = cell.runs[0]
        line: dict[str, Any] = {"row": row, "method": run.method, "variant": run.variant, "dataset": run.dataset, "protocol": run.protocol, "runs": cell.n}
        for m in METRICS:
            line[f"{m}_mean"] = round(100 * cell.mean(m), 3)
            line[f"{m}_std"] = round(100 * cell.std(m), 3)
            line[f"{m}_best"] = round(100 * cell.best.metrics[m], 3)
        ref = report.published.get((row, column), {}).get("mean")
        for m in (*METRICS, "purity"):
            line[f"published_{m}"] = ref.values.get(m) if ref else None
        line["published_source"] = ref.source if ref else None
        rows.append(line)
    for (row, column), cell in sorted(report.internal.items()):
        run = cell.runs[0]
        line = {"row": row, "method": run.method, "variant": run.variant, "dataset": run.dataset, "protocol": run.protocol, "runs": cell.n,
                "labels": False, "n_clusters": cell.n_clusters}
        for m in INTERNAL_SCORES:
            values = cell.values(m)
            line[f"{m}_mean"] = round(cell.mean(m), 6) if values else None
            line[f"{m}_std"] = round(cell.std(m), 6) if values else None
        rows.append(line)
    return rows
