"""clusterbench-report on fabricated run folders: aggregation, protocols, failures, gate, store."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest

from clusterbench.report import gate, store
from clusterbench.report.cli import main as report_main
from clusterbench.report.runs import load_runs, protocol_of, variant_of
from clusterbench.report.table import aggregate, to_markdown
from fabricate import fabricate_run


def test_variant_and_protocol_split_the_overrides():
    o = ["method=kmeans", "dataset=mnist", "seed=1", "method.num_clusters=30", "dataset.limit=500", "dataset.root=/x", "hardware=cpu", "hydra.run.dir=/y"]
    assert variant_of(o) == "method.num_clusters=30"
    assert protocol_of("test", o) == "split=test,dataset.limit=500"


def test_mean_std_and_best_over_seeds(tmp_path):
    for seed, acc in enumerate([0.60, 0.70, 0.80]):
        fabricate_run(tmp_path / f"s{seed}", "kmeans", "mnist", seed, {"nmi": acc - 0.1, "acc": acc, "ari": acc - 0.2})
    report = aggregate(load_runs([tmp_path]), references={})
    cell = report.cells[("kmeans", "mnist")]
    assert cell.n == 3
    assert cell.mean("acc") == pytest.approx(0.70)
    assert cell.std("acc") == pytest.approx(0.10)  # sample std of 0.6, 0.7, 0.8
    assert cell.best.seed == 2
    md = to_markdown(report)
    assert "| kmeans (mean) | 3 | 60.0 ± 10.0 | 70.0 ± 10.0 | 50.0 ± 10.0 |" in md
    assert "| kmeans (best) |  | 70.0 | 80.0 | 60.0 |" in md


def test_different_protocols_and_variants_are_never_averaged(tmp_path):
    fabricate_run(tmp_path / "a", "kmeans", "mnist", 0, {"nmi": 0.5, "acc": 0.5, "ari": 0.5})
    fabricate_run(tmp_path / "b", "kmeans", "mnist", 0, {"nmi": 0.9, "acc": 0.9, "ari": 0.9}, split="test")
    fabricate_run(tmp_path / "c", "kmeans", "mnist", 0, {"nmi": 0.7, "acc": 0.7, "ari": 0.7}, overrides=["dataset.limit=100"])
    fabricate_run(tmp_path / "d", "kmeans", "mnist", 0, {"nmi": 0.3, "acc": 0.3, "ari": 0.3}, overrides=["method.num_clusters=30"], n_clusters=30)
    report = aggregate(load_runs([tmp_path]), references={})
    assert set(report.cells) == {
        ("kmeans", "mnist"),
        ("kmeans", "mnist [split=test]"),
        ("kmeans", "mnist [split=all,dataset.limit=100]"),
        ("kmeans (method.num_clusters=30)", "mnist"),
    }
    assert all(c.n == 1 for c in report.cells.values())


def test_failed_and_unfinished_runs_are_listed_with_their_error(tmp_path):
    fabricate_run(tmp_path / "ok", "gmm", "digits", 0)
    fabricate_run(tmp_path / "bad", "gmm", "digits", 1, status="failed")
    fabricate_run(tmp_path / "cut", "gmm", "digits", 2, status="unfinished")
    report = aggregate(load_runs([tmp_path]), references={})
    assert [(r.path.name, r.status, r.method, r.seed) for r in report.problems] == [("bad", "failed", "gmm", 1), ("cut", "unfinished", "gmm", 2)]
    md = to_markdown(report)
    assert "2 run(s) failed or unfinished" in md and "method.pca_dim: 99 is too large" in md and "unfinished" in md


def test_published_numbers_and_deltas_match_method_dataset_and_k(tmp_path):
    fabricate_run(tmp_path / "c", "kmeans", "cifar10", 0, {"nmi": 0.080, "acc": 0.210, "ari": 0.042})
    fabricate_run(tmp_path / "m30", "kmeans", "mnist", 0, {"nmi": 0.7, "acc": 0.5, "ari": 0.4, "purity": 0.76}, overrides=["method.num_clusters=30"], n_clusters=30)
    report = aggregate(load_runs([tmp_path]))
    ref = report.published[("kmeans", "cifar10")]["mean"]
    assert ref.source == "mice" and ref.values == {"nmi": 8.7, "acc": 22.9, "ari": 4.9}
    k30 = report.published[("kmeans (method.num_clusters=30)", "mnist")]["mean"]
    assert k30.source == "mnist_study" and k30.values == {"purity": 75.2}  # K=30 matches the study's K
    md = to_markdown(report)
    assert "NMI -0.7, ACC -1.9, ARI -0.7" in md and "purity +0.8" in md
    assert "best known: scan" in md  # CIFAR-10's later state of the art


def test_report_cli_writes_markdown_csv_and_self_contained_html(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        fabricate_run(runs / f"k{seed}", "kmeans", "digits", seed, {"nmi": 0.74, "acc": 0.79 + seed / 100, "ari": 0.66})
        fabricate_run(runs / f"g{seed}", "gmm", "digits", seed, {"nmi": 0.70, "acc": 0.70, "ari": 0.60})
    fabricate_run(runs / "broken", "gmm", "digits", 2, status="failed")
    assert report_main([str(runs), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "kmeans (mean)" in out and "gmm (mean)" in out and "1 failed or unfinished" in out
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html and "broken" in html
    rows = list(csv.DictReader((tmp_path / "out" / "report.csv").open()))
    assert {r["method"] for r in rows} == {"kmeans", "gmm"} and rows[0]["runs"] == "2"


def test_report_cli_bad_input_is_one_line_usage_error(tmp_path, capsys):
    assert report_main([str(tmp_path / "missing")]) == 2
    assert report_main([str(tmp_path)]) == 2  # exists but holds no run folder
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("error: ") for line in err) and len(err) == 2


def test_regression_gate_exit_codes_and_names(tmp_path, capsys):
    night1, night2 = tmp_path / "n1", tmp_path / "n2"
    for seed in (0, 1):
        fabricate_run(night1 / f"k{seed}", "kmeans", "digits", seed, {"nmi": 0.74, "acc": 0.79, "ari": 0.66})
        fabricate_run(night1 / f"g{seed}", "gmm", "digits", seed, {"nmi": 0.70, "acc": 0.70, "ari": 0.60})
    baseline = tmp_path / "baseline.json"
    assert report_main([str(night1), "--no-plots", "--write-baseline", str(baseline)]) == 0
    assert report_main([str(night1), "--no-plots", "--baseline", str(baseline)]) == 0  # same night: passes
    # next night: kmeans ACC drops 5 points, gmm within tolerance (1 point)
    for seed in (0, 1):
        fabricate_run(night2 / f"k{seed}", "kmeans", "digits", seed, {"nmi": 0.74, "acc": 0.74, "ari": 0.66})
        fabricate_run(night2 / f"g{seed}", "gmm", "digits", seed, {"nmi": 0.69, "acc": 0.69, "ari": 0.60})
    capsys.readouterr()
    assert report_main([str(night2), "--no-plots", "--baseline", str(baseline)]) == 1
    err = capsys.readouterr().err
    assert "REGRESSION kmeans on digits: ACC 79.0 → 74.0" in err and str(night2 / "k0") in err
    assert "gmm" not in err
    assert report_main([str(night2), "--no-plots", "--baseline", str(baseline), "--tolerance", "0.06"]) == 0
    # a baseline entry with no completed run tonight is a regression too
    (night2 / "g0" / "metrics.json").unlink()
    (night2 / "g1" / "metrics.json").unlink()
    assert report_main([str(night2), "--no-plots", "--baseline", str(baseline), "--tolerance", "0.06"]) == 1
    assert "REGRESSION gmm on digits: in the baseline but no completed run now" in capsys.readouterr().err
    assert report_main([str(night2), "--baseline", str(tmp_path / "nope.json")]) == 2


def test_store_round_trip_and_baseline_from_a_chosen_night(tmp_path):
    db = tmp_path / "results.sqlite"
    for night, acc in (("2026-11-22", 0.70), ("2026-11-23", 0.72)):
        for seed in (0, 1):
            run = fabricate_run(tmp_path / night / f"k{seed}", "kmeans", "digits", seed, {"nmi": 0.7, "acc": acc, "ari": 0.6}, night=night)
            store.append(db, store.from_result(json.loads((run / "metrics.json").read_text()), run))
    failed = {"status": "failed", "error": "boom", "method": "gmm", "dataset": "digits", "seed": 0, "night": "2026-11-23", "run_id": "f1", "overrides": ["method=gmm"]}
    store.append(db, store.from_result(failed, tmp_path / "f1"))
    assert store.nights(db) == ["2026-11-22", "2026-11-23"]
    rows = store.load(db, "2026-11-23")
    assert len(rows) == 3 and {r.status for r in rows} == {"completed", "failed"}
    k0 = next(r for r in rows if r.seed == 0 and r.status == "completed")
    assert k0.metrics["acc"] == 0.72 and k0.overrides[0] == "method=kmeans" and k0.night == "2026-11-23"
    with sqlite3.connect(db) as con:  # plain SQL works on it
        assert con.execute("SELECT COUNT(*) FROM runs WHERE status='completed'").fetchone()[0] == 4
    out = tmp_path / "base.json"
    assert report_main(["--store", str(db), "--night", "2026-11-22", "--no-plots", "--write-baseline", str(out), "--trend", str(tmp_path / "trend.png")]) == 0
    base = json.loads(out.read_text())
    tight = {"nmi": 0.02, "acc": 0.02, "ari": 0.02}  # the two seeds agree: the default tolerance
    assert base["entries"] == [{"row": "kmeans", "column": "digits", "runs": 2, "nmi": 0.7, "acc": 0.7, "ari": 0.6, "tolerance": tight}]
    assert (tmp_path / "trend.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the latest night is the default, and it lists the failed run
    assert report_main(["--store", str(db), "--no-plots", "--baseline", str(out)]) == 0


def test_baseline_tolerance_covers_each_cells_seed_noise(tmp_path):
    for seed, acc in enumerate([0.50, 0.64]):  # a noisy method: std 0.099 over 2 seeds
        fabricate_run(tmp_path / f"g{seed}", "gmm", "mnist", seed, {"nmi": 0.6, "acc": acc, "ari": 0.4})
    base = gate.make_baseline(aggregate(load_runs([tmp_path]), references={}), "test")
    tol = base["entries"][0]["tolerance"]
    assert tol["acc"] == pytest.approx(3 * 0.0989949 / 2 ** 0.5, abs=1e-3) and tol["nmi"] == 0.02
