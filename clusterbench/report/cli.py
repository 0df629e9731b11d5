"""``clusterbench-report``: turn run folders (or a night of the results store) into a table.

    clusterbench-report outputs/multirun/2026-11-24/10-00-00
    clusterbench-report outputs/nightly/2026-11-24 --baseline benchmarks/baseline.json
    clusterbench-report --store outputs/nightly/results.sqlite --night 2026-11-24 --write-baseline benchmarks/baseline.json
    clusterbench-report --store outputs/nightly/results.sqlite --trend trend.png

Writes report.md, report.csv and report.html (plots inlined) into --out (default: the first
PATH). Exit status: 0; 1 when the baseline gate finds a regression; 2 on bad input.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from clusterbench.io import atomic_write_bytes
from clusterbench.report import gate, store
from clusterbench.report.runs import RunRecord, load_runs
from clusterbench.report.table import METRICS, Report, aggregate, to_csv_rows, to_markdown

REGRESSION, USAGE = 1, 2


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="clusterbench-report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", type=Path, help="run folders, multirun trees, or folders holding many")
    p.add_argument("--store", type=Path, help="read runs from this SQLite results store instead of folders")
    p.add_argument("--night", help="with --store: only this night (default: the latest)")
    p.add_argument("--out", type=Path, help="folder for report.md/.csv/.html (default: the first PATH, or the store's folder)")
    p.add_argument("--baseline", type=Path, help="baseline JSON: exit 1 when a metric drops beyond its tolerance")
    p.add_argument("--tolerance", type=float, help="absolute drop allowed for every metric, as a fraction (overrides the file's)")
    p.add_argument("--write-baseline", type=Path, help="write a baseline from these runs (e.g. a chosen night)")
    p.add_argument("--trend", type=Path, help="with --store: write a night-over-night trend plot here")
    p.add_argument("--no-plots", action="store_true", help="skip the plots of the HTML page")
    return p.parse_args(argv)


def load_records(args: argparse.Namespace) -> tuple[list[RunRecord], str]:
    if args.store:
        night = args.night or (store.nights(args.store) or [None])[-1]
        if night is None:
            raise ValueError(f"results store {args.store} holds no runs")
        return [store.to_record(r) for r in store.load(args.store, night)], f"night {night} of {args.store}"
    if not args.paths:
        raise ValueError("give run folders to report on, or --store FILE")
    return load_runs(args.paths), ", ".join(str(p) for p in args.paths)


def write_outputs(report: Report, out: Path, title: str, plots: bool) -> list[Path]:
    written = []
    md = out / "report.md"
    grid_images: dict[str, Path] = {}
    if plots:
        from clusterbench.report.plots import plot_grid_heatmap

        for grid in report.grids:
            ref = grid.reference
            grid_images[grid.slug] = plot_grid_heatmap(
                grid.matrix("acc"), grid.row_values, grid.col_values, out / f"{grid.slug}.png", row_name=grid.row_key, col_name=grid.col_key,
                title=f"{grid.title} (ACC %)", reference=grid.reference_matrix(), reference_name=f"published [{ref.source}]" if ref else "published")
    atomic_write_bytes(md, (f"# {title}\n\n" + to_markdown(report, {s: p.name for s, p in grid_images.items()}) + "\n").encode())
    rows = to_csv_rows(report)
    buf = io.StringIO()
    if rows:  # labelled and unlabelled lines have different columns: write their union
        writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_bytes(out / "report.csv", buf.getvalue().encode())
    images: list[Path] = []
    if plots and report.cells:
        from clusterbench.report.plots import plot_scores_bars

        for metric in METRICS:
            bars = [
                {"method": report.label(row), "dataset": column, "mean": cell.mean(metric), "std": cell.std(metric), "published": _published(report, row, column, metric)}
                for row in report.rows for column in report.columns if (cell := report.cells.get((row, column))) is not None
            ]
            images.append(plot_scores_bars(bars, out / f"report_{metric}.png", metric=metric))
    from clusterbench.report.html import render

    atomic_write_bytes(out / "report.html", render(report, title, images, base=out, grid_images=grid_images).encode())
    written += [md, out / "report.csv", out / "report.html", *images, *grid_images.values()]
    return written


def _published(report: Report, row: str, column: str, metric: str) -> Optional[float]:
    """The published mean of ``metric`` for a cell, as a fraction, if there is one."""
    ref = report.published.get((row, column), {}).get("mean")
    return ref.values[metric] / 100 if ref and metric in ref.values else None


def trend_points(path: Path) -> list[dict]:
    """Per night and per (row, column), the mean metrics of the completed runs."""
    points = []
    for night in store.nights(path):
        report = aggregate([store.to_record(r) for r in store.load(path, night)], references={})
        for (row, column), cell in sorted(report.cells.items()):
            points.append({"night": night, "series": f"{row} · {column}", **{m: cell.mean(m) for m in METRICS}})
    return points


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        records, title = load_records(args)
        report = aggregate(records)
        baseline = gate.read_baseline(args.baseline) if args.baseline else None
    except (ValueError, FileNotFoundError) as ex:
        print(f"error: {ex}", file=sys.stderr)
        return USAGE
    if not records:
        print(f"error: no run folders (folders holding .hydra/) under {title}", file=sys.stderr)
        return USAGE
    print(to_markdown(report))
    out = args.out or (args.store.parent if args.store else (args.paths[0] if args.paths[0].is_dir() else args.paths[0].parent))
    written = write_outputs(report, out, f"clusterbench report: {title}", plots=not args.no_plots)
    if args.trend:
        if not args.store:
            print("error: --trend needs --store", file=sys.stderr)
            return USAGE
        from clusterbench.report.plots import plot_trend

        points = trend_points(args.store)
        if points:
            written.append(plot_trend(points, args.trend))
        else:
            print(f"no trend plot: {args.store} holds no completed run", file=sys.stderr)
    if args.write_baseline:
        gate.write_baseline(args.write_baseline, gate.make_baseline(report, title, args.tolerance or gate.DEFAULT_TOLERANCE))
        written.append(args.write_baseline)
    n_ok = sum(r.status == "completed" for r in records)
    print(f"\n{len(records)} runs ({n_ok} completed, {len(records) - n_ok} failed or unfinished) in {time.perf_counter() - start:.1f}s; wrote {', '.join(str(p) for p in written)}")
    if baseline is not None:
        regressions = gate.check(report, baseline, args.tolerance)
        for r in regressions:
            print(str(r), file=sys.stderr)
        if regressions:
            return REGRESSION
        print(f"baseline {args.baseline}: no regression")
    return 0


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
