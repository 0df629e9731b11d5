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
import re
import statistics
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Optional

from clusterbench.metrics import INTERNAL_SCORES
from clusterbench.report.runs import RunRecord, is_stage, override_value

METRICS = ("nmi", "acc", "ari")
NAMES = {"nmi": "NMI", "acc": "ACC", "ari": "ARI", "purity": "purity"}
PROBES = ("knn_acc", "linear_acc")  # top-level in metrics.json when eval.knn / eval.linear ran: fractions
PROBE_NAMES = {"knn_acc": "kNN", "linear_acc": "linear"}
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
class GridReference:
    """A published sweep: ``values[(row value, column value)]`` in % of ``metric``."""

    source: str
    label: str
    metric: str
    values: dict[tuple[str, str], float]
    note: str = ""


@dataclass
class Grid:
    """A two-parameter sweep of one method on one dataset protocol: ``cells[(row value,
    column value)]``, a value being an override's value (``"default"`` where a row left the
    key at the method's default)."""

    method: str
    column: str
    row_key: str
    col_key: str
    row_values: list[str]
    col_values: list[str]
    cells: dict[tuple[str, str], Cell]
    reference: Optional[GridReference] = None
    stage: list[str] = field(default_factory=list)  # the clustering stage every cell shares (``cluster=scan``), if any

    @property
    def slug(self) -> str:
        """A file name stem: ``grid_moco_mnist`` (``grid_moco_cluster_scan_mnist`` after a stage)."""
        text = "_".join(["grid", self.method, *(o.replace("=", "_") for o in self.stage), self.column])
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("_")[:120]

    @property
    def title(self) -> str:
        method = f"{self.method} ({', '.join(self.stage)})" if self.stage else self.method
        return f"{method} on {self.column}: {self.row_key} × {self.col_key}"

    def matrix(self, metric: str, stat: str = "mean") -> list[list[Optional[float]]]:
        """Rows × columns of the metric in %, None where no run."""
        out = []
        for rv in self.row_values:
            line = []
            for cv in self.col_values:
                cell = self.cells.get((rv, cv))
                line.append(None if cell is None or not cell.values(metric) else 100 * (cell.mean(metric) if stat == "mean" else cell.std(metric)))
            out.append(line)
        return out

    def reference_matrix(self) -> Optional[list[list[Optional[float]]]]:
        if self.reference is None:
            return None
        return [[self.reference.values.get((rv, cv)) for cv in self.col_values] for rv in self.row_values]


@dataclass
class Report:
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    problems: list[RunRecord]  # failed and unfinished runs, listed, never dropped
    published: dict[tuple[str, str], dict[str, Reference]] = field(default_factory=dict)  # (row, column) → stat → ref
    best_known: dict[str, list[Reference]] = field(default_factory=dict)  # column → refs
    internal: dict[tuple[str, str], Cell] = field(default_factory=dict)  # runs without labels, by (row, column)
    labels: dict[str, str] = field(default_factory=dict)  # row → its label: the overrides that vary among its method's rows
    shared: dict[str, list[str]] = field(default_factory=dict)  # method → the overrides every one of its rows has
    probes: tuple[str, ...] = ()  # knn_acc / linear_acc when any run has them
    health: bool = False  # whether any run reported its training health
    grids: list[Grid] = field(default_factory=list)

    @property
    def internal_rows(self) -> list[str]:
        return sorted({k[0] for k in self.internal})

    @property
    def internal_columns(self) -> list[str]:
        return sorted({k[1] for k in self.internal})

    def label(self, row: str) -> str:
        return self.labels.get(row, row)


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
    rows = sorted({k[0] for k in cells}, key=natural_key)
    columns = sorted({k[1] for k in cells})
    problems = sorted((r for r in records if r.status != "completed"), key=lambda r: str(r.path))
    report = Report(rows, columns, cells, problems, internal=internal)
    refs = references if references is not None else load_references()
    _attach_references(report, refs)
    _label_rows(report, records)
    done = [r for c in cells.values() for r in c.runs]
    report.probes = tuple(p for p in PROBES if any(isinstance(r.result.get(p), (int, float)) for r in done))
    report.health = any(isinstance(r.result.get("health"), list) for r in done)
    report.grids = find_grids(report, refs)
    return report


def _label_rows(report: Report, records: list[RunRecord]) -> None:
    """Each row's label: its method plus the overrides that differ among that method's rows.

    An override every row of a method has (``trainer.max_minutes=0.5`` of a whole sweep) is
    said once, in ``report.shared``, not in every label; the row keys stay whole, so runs of
    different variants are never merged. The clustering stage (``cluster=scan``,
    ``cluster.*``) always stays in the label, shared or not. A method's only row keeps its
    full label."""
    items: dict[str, dict[str, str]] = {}
    method_of: dict[str, str] = {}
    for r in sorted(records, key=lambda r: r.status != "completed"):
        items.setdefault(r.row, r.items)
        method_of.setdefault(r.row, r.method)
    done = {r.row for r in records if r.status == "completed"}  # a failed run's row (only in the failures list) is labelled, not compared
    by_method: dict[str, list[str]] = {}
    for row, method in method_of.items():
        by_method.setdefault(method, []).append(row)
    for method, rows in by_method.items():
        compared = [row for row in rows if row in done]
        if len(compared) < 2:
            report.labels.update({row: row for row in rows})
            continue
        first = items[compared[0]]
        constant = {k for k, o in first.items() if not is_stage(k) and all(items[row].get(k) == o for row in compared)}
        if constant:
            report.shared[method] = sorted(first[k] for k in constant)
        for row in rows:
            varying = sorted((o for k, o in items[row].items() if not (k in constant and o == first[k])), key=natural_key)
            report.labels[row] = f"{method} ({', '.join(varying)})" if varying else method


def natural_key(text: str) -> list:
    """Numbers inside a string compare as numbers: queue 16 < 128, momentum 0.9 < 0.99."""
    return [(0, float(t), "") if t and t[0].isdigit() else (1, 0.0, t) for t in re.split(r"(\d+(?:\.\d+)?(?:e-?\d+)?)", text)]


def _number(value: str) -> Optional[float]:
    try:
        return float(value)
    except ValueError:
        return None


def _same_value(a: Any, b: Any) -> bool:
    x, y = _number(str(a)), _number(str(b))
    return x == y if x is not None and y is not None else str(a) == str(b)


def _ordered(values: set[str]) -> list[str]:
    """Numbers in numeric order, the default first; otherwise alphabetical."""
    rest = sorted(v for v in values if v != DEFAULT)
    if all(_number(v) is not None for v in rest):
        rest.sort(key=lambda v: _number(v))
    return ([DEFAULT] if DEFAULT in values else []) + rest


DEFAULT = "default"


def find_grids(report: Report, refs: Optional[dict[str, Any]] = None) -> list[Grid]:
    """The two-parameter sweeps in the labelled table: the rows of one method on one column
    that differ in exactly two override keys, each with two or more values, most of the
    combinations present; each clustering stage (``cluster=...``) a sweep of its own. Where
    the references hold such a sweep (of the method's own read-out), it is attached."""
    grids = []
    for column in report.columns:
        by_method: dict[tuple[str, tuple[str, ...]], list[Cell]] = {}  # (method, its stage overrides): each stage's sweep apart
        for (row, c), cell in sorted(report.cells.items()):
            if c == column:
                stage = tuple(sorted(o for k, o in cell.runs[0].items.items() if is_stage(k)))
                by_method.setdefault((cell.runs[0].method, stage), []).append(cell)
        for (method, stage_of), cells in by_method.items():
            if len(cells) < 3:
                continue
            items = [{k: o for k, o in cell.runs[0].items.items() if not is_stage(k)} for cell in cells]
            keys = sorted({k for i in items for k in i})
            varying = [k for k in keys if len({i.get(k) for i in items}) > 1]
            if len(varying) != 2:
                continue
            a, b = varying
            value = {k: [override_value(i[k]) if k in i else DEFAULT for i in items] for k in varying}
            values_a, values_b = set(value[a]), set(value[b])
            combos = set(zip(value[a], value[b]))
            if len(values_a) < 2 or len(values_b) < 2 or len(combos) != len(cells) or 2 * len(combos) <= len(values_a) * len(values_b):
                continue
            stage = list(stage_of)
            # a published sweep describes the papers' read-out (k-means, or the method's own): none
            # beside another stage's grid; cluster=kmeans with its defaults is that read-out
            ref = None if stage not in ([], ["cluster=kmeans"]) else _grid_reference(refs or {}, method, cells[0], a, b)
            if ref is not None:
                row_key, col_key = ref[0], ref[1]
            else:  # the longer list down the page: tall tables fit a screen
                row_key, col_key = (a, b) if len(values_a) >= len(values_b) else (b, a)
            grid = Grid(method, column, row_key, col_key, _ordered(set(value[row_key])), _ordered(set(value[col_key])),
                        {(value[row_key][n], value[col_key][n]): cell for n, cell in enumerate(cells)}, stage=stage)
            if ref is not None:
                grid.reference = _match_reference_values(ref[2], grid)
            grids.append(grid)
    return grids


def _grid_reference(refs: dict[str, Any], method: str, cell: Cell, a: str, b: str) -> Optional[tuple[str, str, dict[str, Any]]]:
    """The published sweep for this method, dataset and pair of keys (either way round) and
    the class count as K: (row key, column key, entry)."""
    run = cell.runs[0]
    for entry in refs.get("grids", []):
        if entry["method"] != method or entry["dataset"] != run.dataset:
            continue
        if "protocol" in entry and entry["protocol"] != run.protocol:
            continue
        if cell.n_clusters != (entry.get("num_clusters") or cell.n_classes):
            continue
        if {entry["rows"]["key"], entry["columns"]["key"]} == {a, b}:
            entry = {**entry, "label": refs.get("sources", {}).get(entry["source"], entry["source"])}
            return entry["rows"]["key"], entry["columns"]["key"], entry
    return None


def _match_reference_values(entry: dict[str, Any], grid: Grid) -> GridReference:
    """The published values under our value strings (``0.990`` matches the study's 0.99)."""
    values: dict[tuple[str, str], float] = {}
    for i, rv in enumerate(entry["rows"]["values"]):
        for j, cv in enumerate(entry["columns"]["values"]):
            ours_r = next((v for v in grid.row_values if _same_value(v, rv)), None)
            ours_c = next((v for v in grid.col_values if _same_value(v, cv)), None)
            if ours_r is not None and ours_c is not None and entry["values"][i][j] is not None:
                values[(ours_r, ours_c)] = float(entry["values"][i][j])
    return GridReference(entry["source"], entry["label"], entry.get("metric", "acc"), values, entry.get("note", ""))


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


def mean_std(values: list[float]) -> str:
    """``70.0 ± 10.0`` in %; a single run has no ±; ``–`` for none."""
    if not values:
        return "–"
    if len(values) == 1:
        return pct(values[0])
    return f"{pct(statistics.fmean(values))} ± {pct(statistics.stdev(values))}"


def _probe_values(cell: Cell, probe: str) -> list[float]:
    return [float(r.result[probe]) for r in cell.runs if isinstance(r.result.get(probe), (int, float))]


def health_of(runs: list[RunRecord]) -> str:
    """The health signs that fired in these runs, counted once per run (``collapse×2``), or
    ``ok``; ``–`` when no run reported its health (results from before health checks)."""
    counts: dict[str, int] = {}
    reported = False
    for r in runs:
        warnings = r.result.get("health")
        if not isinstance(warnings, list):
            continue
        reported = True
        for sign in dict.fromkeys(str(w.get("sign", "?")) if isinstance(w, dict) else str(w) for w in warnings):
            counts[sign] = counts.get(sign, 0) + 1
    if not reported:
        return "–"
    return ", ".join(f"{s}×{n}" if n > 1 else s for s, n in sorted(counts.items())) if counts else "ok"


@dataclass
class Line:
    """One body line of the labelled table: ``kind`` is mean (or single), best or known."""

    kind: str
    row: Optional[str]
    cells: list[str]
    runs: list[RunRecord] = field(default_factory=list)


@dataclass
class Layout:
    """The labelled table before rendering: column groups (dataset protocols, '' for the
    method and run count) each with its sub-columns, and the body lines."""

    groups: list[tuple[str, list[str]]]
    lines: list[Line]

    @property
    def header(self) -> list[str]:
        return [f"{g} {name}" if g else name for g, names in self.groups for name in names]


def layout(report: Report) -> Layout:
    """The labelled table: a mean line per method variant (the run's own numbers for a single
    seed, with no ±), a (best) line after it only where a cell has more than one seed; the
    published and Δ columns only for a dataset that has a published number."""
    with_refs = {c for (_, c) in report.published}
    groups: list[tuple[str, list[str]]] = [("", ["method", "runs"])]
    for column in report.columns:
        names = [NAMES[m] for m in METRICS] + [PROBE_NAMES[p] for p in report.probes] + (["health"] if report.health else [])
        names += ["published", "Δ"] if column in with_refs else []
        groups.append((column, names))
    lines: list[Line] = []
    for row in report.rows:
        present = [report.cells[(row, c)] for c in report.columns if (row, c) in report.cells]
        several = any(c.n > 1 for c in present)
        label = report.label(row)
        mean_line = Line("mean", row, [f"{label} (mean)" if several else label, "+".join(str(c.n) for c in present)],
                         [r for c in present for r in sorted(c.runs, key=lambda r: (r.seed is None, r.seed or 0, str(r.path)))])
        best_line = Line("best", row, [f"{label} (best)", ""])
        for column in report.columns:
            cell = report.cells.get((row, column))
            width = len(dict(groups)[column])
            if cell is None:
                mean_line.cells += ["–"] * width
                best_line.cells += ["–"] * width
                continue
            best = cell.best
            mean_line.cells += [mean_std(cell.values(m)) for m in METRICS]
            mean_line.cells += [mean_std(_probe_values(cell, p)) for p in report.probes]
            solo = cell.n == 1  # its best is its mean: said once
            best_line.cells += ["" if solo else pct(best.metrics[m]) for m in METRICS]
            best_line.cells += ["" if solo or not isinstance(best.result.get(p), (int, float)) else pct(best.result[p]) for p in report.probes]
            if report.health:
                mean_line.cells.append(health_of(cell.runs))
                best_line.cells.append("" if solo else health_of([best]))
            if column in with_refs:
                refs = report.published.get((row, column), {})
                ours_mean = {m: 100 * cell.mean(m) for m in (*METRICS, "purity") if all(m in r.metrics for r in cell.runs)}
                ours_best = {m: 100 * best.metrics[m] for m in best.metrics}
                for line, ref, ours in ((mean_line, refs.get("mean"), ours_mean), (best_line, refs.get("best"), ours_best)):
                    line.cells += [_named(ref.values) + f" [{ref.source}]", _delta(ours, ref.values)] if ref else ["", ""]
        lines.append(mean_line)
        if several:
            lines.append(best_line)
    for column in report.columns:
        for ref in report.best_known.get(column, []):
            line = Line("known", None, [f"best known: {ref.source}", ""])
            for c, names in groups[1:]:
                line.cells += [f"{ref.values[m]:.1f}" if c == column and m in ref.values else "" for m in METRICS] + [""] * (len(names) - len(METRICS))
            lines.append(line)
    return Layout(groups, lines)


def table_rows(report: Report) -> list[list[str]]:
    """The table as text cells: header, then a mean line (and a best line) per method variant."""
    lay = layout(report)
    return [lay.header, *(line.cells for line in lay.lines)]


def shared_note(report: Report) -> str:
    """What the labels leave out: the overrides every row of a method has."""
    if not report.shared:
        return ""
    return "Every row of " + "; of ".join(f"{m}: {', '.join(o)}" for m, o in sorted(report.shared.items())) + "."


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
        line = [report.label(row), "+".join(str(report.internal[(row, c)].n) for c in columns if (row, c) in report.internal)]
        for column in columns:
            cell = report.internal.get((row, column))
            if cell is None:
                line += ["–"] * (1 + len(INTERNAL_SCORES))
                continue
            line += [str(cell.n_clusters) if cell.n_clusters is not None else "–", *(_internal_value(cell, m) for m in INTERNAL_SCORES)]
        lines.append(line)
    return lines


def md_text(text: str) -> str:
    """A user's string in a Markdown table cell: its ``|`` and ``<`` cannot end the cell or
    open HTML (an override value may be ``<script>``)."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<").replace(">", "\\>")


def _markdown_table(lines: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(map(md_text, lines[0])) + " |", "|" + "---|" * len(lines[0]), *("| " + " | ".join(map(md_text, cells)) + " |" for cells in lines[1:])]


LABELLED_NOTE = ("NMI / ACC / ARI in %, mean ± sample std over seeds (a single run: its own numbers, no ±); "
                 "(best) = the run with the highest ACC, shown where a cell has more than one seed. "
                 "ACC is one-to-one Hungarian; a published number marked 'purity' is majority-vote over-clustering. "
                 "Δ = ours − published, in points.")
PROBE_NOTE = ("kNN / linear: probe accuracy of the features (eval.knn, eval.linear), in %. "
              "health: the training-health signs that fired (×n: in n runs), ok when none.")


def grid_note(grid: Grid) -> str:
    text = f"ACC %, mean over seeds; rows {grid.row_key}, columns {grid.col_key}."
    if grid.reference is not None:
        text += f" Published: {grid.reference.label}" + (f" ({grid.reference.note})" if grid.reference.note else "") + "; Δ = ours − published, in points."
    return text


def _f(value: Optional[float], fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def grid_tables(grid: Grid) -> list[tuple[str, list[list[str]]]]:
    """The sweep as text tables: (title, header + rows) for ours (ACC, ± over seeds), the
    published sweep and Δ (where there is one), and NMI / ARI."""
    corner = f"{grid.row_key} ↓ {grid.col_key} →"
    head = [corner, *grid.col_values]

    def table(fn) -> list[list[str]]:
        return [head, *([rv, *(fn(rv, cv) for cv in grid.col_values)] for rv in grid.row_values)]

    def ours(rv: str, cv: str) -> str:
        cell = grid.cells.get((rv, cv))
        return mean_std(cell.values("acc")) if cell else "–"

    def nmi_ari(rv: str, cv: str) -> str:
        cell = grid.cells.get((rv, cv))
        return f"{pct(cell.mean('nmi'))} / {pct(cell.mean('ari'))}" if cell else "–"

    out = [("ACC (ours)", table(ours))]
    ref = grid.reference
    if ref is not None:
        def delta(rv: str, cv: str) -> str:
            cell, published = grid.cells.get((rv, cv)), ref.values.get((rv, cv))
            return f"{100 * cell.mean('acc') - published:+.1f}" if cell and published is not None else "–"

        out += [(f"ACC published [{ref.source}]", table(lambda rv, cv: _f(ref.values.get((rv, cv)), "{:.2f}"))), ("Δ ACC", table(delta))]
    out.append(("NMI / ARI (ours)", table(nmi_ari)))
    return out


def to_markdown(report: Report, grid_images: Optional[dict[str, str]] = None) -> str:
    """The labelled table and its note, the two-parameter sweeps as grids, the table of runs
    without labels and its note (when there are such runs), then the failed and unfinished
    runs. ``grid_images``: a grid's slug → its heatmap's file name, linked under it."""
    out: list[str] = []
    if report.cells or not report.internal:
        out += [*_markdown_table(table_rows(report)), "", LABELLED_NOTE]
        out += [PROBE_NOTE] if report.probes or report.health else []
        out += [md_text(shared_note(report))] if report.shared else []
    for grid in report.grids:
        out += ["", f"**Sweep: {md_text(grid.title)}** — {md_text(grid_note(grid))}"]
        for title, lines in grid_tables(grid):
            out += ["", f"{title}:", "", *_markdown_table(lines)]
        if grid_images and grid.slug in grid_images:
            out += ["", f"![{grid.slug}]({grid_images[grid.slug]})"]
    if report.internal:
        out += [*([""] if out else []), f"**Runs without labels** ({sum(c.n for c in report.internal.values())})", "",
                *_markdown_table(internal_rows(report)), "", INTERNAL_NOTE]
    if report.problems:
        out += ["", f"**{len(report.problems)} run(s) failed or unfinished**", "", "| run folder | method | dataset | seed | status | error |", "|---|---|---|---|---|---|"]
        out += ["| " + " | ".join(md_text(x) for x in (r.path, report.label(r.row), r.column, r.seed, r.status, (r.error or "").replace("|", "/"))) + " |"
                for r in report.problems]
    return "\n".join(out)


def to_csv_rows(report: Report) -> list[dict[str, Any]]:
    """Long format, one line per (method variant, dataset protocol): for spreadsheets and scripts.

    ``knn_acc_*`` / ``linear_acc_*`` (in %) when any run has them, ``health`` when any run
    reported it. Lines of runs without labels come last, with ``labels`` false, their
    internal scores (not in %) and no NMI / ACC / ARI / published columns; the columns are
    the union."""
    rows = []
    for (row, column), cell in sorted(report.cells.items()):
        run = cell.runs[0]
        line: dict[str, Any] = {"row": row, "label": report.label(row), "method": run.method, "variant": run.variant, "dataset": run.dataset,
                                "protocol": run.protocol, "runs": cell.n}
        solo = cell.n < 2  # one seed: no spread and no best to report, as in the tables (empty, not 0.0)
        for m in METRICS:
            line[f"{m}_mean"] = round(100 * cell.mean(m), 3)
            line[f"{m}_std"] = None if solo else round(100 * cell.std(m), 3)
            line[f"{m}_best"] = None if solo else round(100 * cell.best.metrics[m], 3)
        for p in report.probes:
            values = _probe_values(cell, p)
            line[f"{p}_mean"] = round(100 * statistics.fmean(values), 3) if values else None
            line[f"{p}_std"] = round(100 * statistics.stdev(values), 3) if len(values) > 1 else None
        if report.health:
            line["health"] = health_of(cell.runs)
        ref = report.published.get((row, column), {}).get("mean")
        for m in (*METRICS, "purity"):
            line[f"published_{m}"] = ref.values.get(m) if ref else None
        line["published_source"] = ref.source if ref else None
        rows.append(line)
    for (row, column), cell in sorted(report.internal.items()):
        run = cell.runs[0]
        line = {"row": row, "label": report.label(row), "method": run.method, "variant": run.variant, "dataset": run.dataset, "protocol": run.protocol,
                "runs": cell.n, "labels": False, "n_clusters": cell.n_clusters}
        for m in INTERNAL_SCORES:
            values = cell.values(m)
            line[f"{m}_mean"] = round(cell.mean(m), 6) if values else None
            line[f"{m}_std"] = round(cell.std(m), 6) if values else None
        rows.append(line)
    return rows
