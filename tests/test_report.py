"""clusterbench-report on fabricated run folders: aggregation, protocols, failures, gate, store;
runs without labels in all of them, and in the console table a run prints."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest

from clusterbench.report import gate, store
from clusterbench.report.cli import main as report_main
from clusterbench.report.runs import discover, load_runs, protocol_of, variant_of
from clusterbench.report.table import aggregate, to_markdown
from clusterbench.summary import format_table
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


# -- runs without labels -----------------------------------------------------------------------


def _result(run) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_console_table_of_labelled_runs_is_unchanged(tmp_path):
    row = _result(fabricate_run(tmp_path / "k", "kmeans", "digits", 0, {"nmi": 0.7412, "acc": 0.8, "ari": 0.66}))
    row["silhouette"] = 0.25  # a labelled run that also has internal scores shows only its label scores
    old = _result(fabricate_run(tmp_path / "g", "gmm", "digits", 1, {"nmi": 0.7412, "acc": 0.8, "ari": 0.66}, labels=None))  # no "labels" key
    rule = "-" * 75
    assert format_table([row, old]).splitlines() == [
        rule,
        "method  dataset  split    N   K  seed     NMI     ACC     ARI  purity  time",
        rule,
        "kmeans  digits   all    100  10     0  74.12%  80.00%  66.00%  80.00%  1.0s",
        "gmm     digits   all    100  10     1  74.12%  80.00%  66.00%  80.00%  1.0s",
        rule,
    ]


def test_console_table_of_a_labelled_and_an_unlabelled_run(tmp_path):
    labelled = _result(fabricate_run(tmp_path / "k", "kmeans", "digits", 0, {"nmi": 0.74, "acc": 0.8, "ari": 0.66}))
    unlabelled = _result(fabricate_run(tmp_path / "f", "moco", "folder", 1, {"silhouette": 0.4123, "calinski_harabasz": 1234.56,
                                                                               "davies_bouldin": 0.8766, "effective_clusters": 7.891}, labels=False))
    unlabelled["nmi"] = 0.0  # even a stray label score is never printed for a run without labels
    lines = format_table([labelled, unlabelled]).splitlines()
    assert lines[1].split() == ["method", "dataset", "split", "N", "K", "seed", "NMI", "ACC", "ARI", "purity", "silhouette", "CH", "DB", "eff.", "K", "time"]
    assert lines[3].split() == ["kmeans", "digits", "all", "100", "10", "0", "74.00%", "80.00%", "66.00%", "80.00%", "-", "-", "-", "-", "1.0s"]
    assert lines[4].split() == ["moco", "folder", "all", "100", "10", "1", "-", "-", "-", "-", "0.412", "1,234.6", "0.877", "7.89", "1.0s"]
    alone = format_table([unlabelled]).splitlines()  # only unlabelled: no label columns at all
    assert "NMI" not in alone[1] and "purity" not in alone[1] and "%" not in alone[3] and "0.412" in alone[3]
    undefined = {**unlabelled, "silhouette": None, "calinski_harabasz": None, "davies_bouldin": None}  # one cluster
    assert format_table([undefined]).splitlines()[3].split()[6:9] == ["-", "-", "-"]


def test_unlabelled_runs_aggregate_apart_and_are_never_compared_to_papers(tmp_path):
    fabricate_run(tmp_path / "lab", "kmeans", "cifar10", 0, {"nmi": 0.08, "acc": 0.21, "ari": 0.04})
    for seed, sil in enumerate([0.2, 0.4]):  # the same method and dataset, without labels
        fabricate_run(tmp_path / f"u{seed}", "kmeans", "cifar10", seed + 1, {"silhouette": sil, "effective_clusters": 8.0 + seed}, labels=False)
    fabricate_run(tmp_path / "u_one", "kmeans", "folder", 0, {"silhouette": None, "calinski_harabasz": None, "davies_bouldin": None}, labels=False)
    records = load_runs([tmp_path])
    assert sorted((r.path.name, r.labelled) for r in records) == [("lab", True), ("u0", False), ("u1", False), ("u_one", False)]
    assert set(next(r for r in records if r.path.name == "u0").metrics) == {"silhouette", "calinski_harabasz", "davies_bouldin", "effective_clusters"}
    report = aggregate(records)
    assert report.cells[("kmeans", "cifar10")].n == 1 and report.cells[("kmeans", "cifar10")].mean("acc") == pytest.approx(0.21)
    cell = report.internal[("kmeans", "cifar10")]
    assert cell.n == 2 and cell.mean("silhouette") == pytest.approx(0.3) and cell.std("silhouette") == pytest.approx(0.1414, abs=1e-4)
    assert list(report.published) == [("kmeans", "cifar10")]  # the labelled cell's reference only
    md = to_markdown(report)
    assert "**Runs without labels** (3)" in md
    assert "| kmeans | 2+1 | 10 | 0.300 ± 0.141 | 120.0 ± 0.0 | 1.100 ± 0.000 | 8.50 ± 0.71 | 10 | – | – | – | 9.00 |" in md
    assert md.index("| kmeans | 1 |") < md.index("Runs without labels")  # the labelled table comes first, as it was (one seed: no "(mean)")
    only = to_markdown(aggregate([r for r in records if not r.labelled]))
    assert "NMI" not in only.split("No labels:")[0] and "published" not in only and "best known" not in only


def test_report_cli_with_unlabelled_runs_writes_markdown_csv_and_html(tmp_path, capsys):
    runs = tmp_path / "runs"
    fabricate_run(runs / "k", "kmeans", "digits", 0, {"nmi": 0.74, "acc": 0.79, "ari": 0.66})
    fabricate_run(runs / "f", "moco", "folder", 0, {"silhouette": 0.35}, labels=False)
    assert report_main([str(runs), "--out", str(tmp_path / "out")]) == 0
    assert "Runs without labels" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "out" / "report.csv").open()))
    assert [(r["method"], r["labels"], r["nmi_mean"], r["silhouette_mean"]) for r in rows] == [("kmeans", "", "74.0", ""), ("moco", "False", "", "0.35")]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<h2>Runs without labels (1)</h2>" in html and "<td>0.350</td>" in html and "folder silhouette" in html
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["report_acc.png", "report_ari.png", "report_nmi.png"]
    # a night of unlabelled runs only: a report all the same, with no label table and no plots of label scores
    assert report_main([str(runs / "f"), "--out", str(tmp_path / "only")]) == 0
    md = (tmp_path / "only" / "report.md").read_text()
    assert "| moco | 1 | 10 | 0.350 |" in md and "NMI / ACC / ARI in %" not in md
    assert list(csv.DictReader((tmp_path / "only" / "report.csv").open()))[0]["silhouette_mean"] == "0.35"


def test_store_holds_internal_scores_and_old_stores_still_open(tmp_path):
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as con:  # a store written before unlabelled runs existed
        con.executescript(store.SCHEMA)
        con.execute("INSERT INTO runs VALUES ('old1', '2026-11-20T01:00:00+00:00', '2026-11-20', NULL, 'x', 'kmeans', 'digits', 'split=all', '', 0,"
                    " '[\"method=kmeans\"]', '{\"nmi\": 0.7, \"acc\": 0.8, \"ari\": 0.6, \"purity\": 0.8, \"n_clusters\": 10, \"n_classes\": 10}', '{}', 'completed', NULL, '/x')")
    run = fabricate_run(tmp_path / "f0", "moco", "folder", 0, {"silhouette": 0.31, "calinski_harabasz": 88.0, "davies_bouldin": 1.4,
                                                               "effective_clusters": 9.2}, labels=False, night="2026-11-20")
    store.append(db, store.from_result(_result(run), run))
    rows = {r.run_id: r for r in store.load(db)}
    assert rows["old1"].metrics["acc"] == 0.8
    new = rows[_result(run)["run_id"]].metrics
    assert new["labels"] is False and new["silhouette"] == 0.31 and new["effective_clusters"] == 9.2 and "nmi" not in new
    old_rec, new_rec = store.to_record(rows["old1"]), store.to_record(rows[_result(run)["run_id"]])
    assert old_rec.labelled and old_rec.metrics == {"nmi": 0.7, "acc": 0.8, "ari": 0.6, "purity": 0.8}
    assert not new_rec.labelled and new_rec.metrics == {"silhouette": 0.31, "calinski_harabasz": 88.0, "davies_bouldin": 1.4, "effective_clusters": 9.2}
    with sqlite3.connect(db) as con:  # plain SQL reaches the scores in the JSON column
        assert con.execute("SELECT json_extract(metrics, '$.silhouette') FROM runs WHERE method = 'moco'").fetchone() == (0.31,)
    report = aggregate([old_rec, new_rec], references={})
    assert set(report.cells) == {("kmeans", "digits")} and set(report.internal) == {("moco", "folder")}
    assert report_main(["--store", str(db), "--no-plots", "--trend", str(tmp_path / "trend.png")]) == 0  # the trend keeps to label scores


def test_gate_ignores_unlabelled_runs_and_names_a_baseline_entry_for_one(tmp_path, capsys):
    night1, night2 = tmp_path / "n1", tmp_path / "n2"
    fabricate_run(night1 / "k", "kmeans", "digits", 0, {"nmi": 0.74, "acc": 0.79, "ari": 0.66})
    fabricate_run(night1 / "f", "moco", "folder", 0, {"silhouette": 0.5}, labels=False)
    baseline = tmp_path / "baseline.json"
    assert report_main([str(night1), "--no-plots", "--write-baseline", str(baseline)]) == 0
    entries = json.loads(baseline.read_text())["entries"]
    assert [(e["row"], e["column"]) for e in entries] == [("kmeans", "digits")]  # never a baseline of an unlabelled run
    fabricate_run(night2 / "k", "kmeans", "digits", 0, {"nmi": 0.74, "acc": 0.79, "ari": 0.66})
    fabricate_run(night2 / "f", "moco", "folder", 0, {"silhouette": -0.5}, labels=False)  # far worse: still not gated
    assert report_main([str(night2), "--no-plots", "--baseline", str(baseline)]) == 0
    # a hand-written entry with NMI for a run without labels: one clear line, exit 1, no crash
    base = json.loads(baseline.read_text())
    base["entries"].append({"row": "moco", "column": "folder", "nmi": 0.5, "acc": 0.5, "ari": 0.5})
    baseline.write_text(json.dumps(base))
    capsys.readouterr()
    assert report_main([str(night2), "--no-plots", "--baseline", str(baseline)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("REGRESSION moco on folder: the baseline holds NMI/ACC/ARI for it, but its runs now have no labels")
    assert str(night2 / "f") in err[0]
    regressions = gate.check(aggregate(load_runs([night2]), references={}), base)
    assert [(r.row, r.unlabelled, r.metric) for r in regressions] == [("moco", True, None)]


# -- a report that fits sweeps ------------------------------------------------------------------


from html.parser import HTMLParser  # noqa: E402

from clusterbench.report.table import table_rows  # noqa: E402

VOID = {"meta", "img", "br", "input", "link", "hr", "col", "wbr"}


class _Page(HTMLParser):
    """Checks that tags nest and close; collects tables (rows of cell widths), links and scripts."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.tables, self.links, self.scripts = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self.links.append(attrs.get("href"))
        if tag == "table":
            self.tables.append([])
        if tag == "tr":
            self.tables[-1].append(0)
        if tag in ("td", "th"):
            self.tables[-1][-1] += int(attrs.get("colspan") or 1)
        if tag == "script":
            self.scripts.append("")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "script":
            self.scripts[-1] += data

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    assert not page.errors and not page.stack, (page.errors, page.stack)
    for widths in page.tables:  # every row spans as many columns as the header
        assert len(set(widths)) == 1, widths
    return page


def _sweep(root, queues=(16, 64), momenta=(0.9, 0.99), seeds=(0,), skip=(), overrides_extra=(), **kw):
    """A queue × momentum sweep of MoCo on MNIST with one constant override."""
    for m in momenta:
        for q in queues:
            if (m, q) in skip:
                continue
            for seed in seeds:
                acc = 0.9 + q / 10000 - m / 100 + seed / 1000
                fabricate_run(root / f"m{m}_q{q}_s{seed}", "moco", "mnist", seed, {"nmi": acc - 0.05, "acc": acc, "ari": acc - 0.1},
                              overrides=[f"method.queue_size={q}", f"method.momentum={m}", "trainer.max_minutes=0.5", *overrides_extra], **kw)


def test_labels_show_only_the_overrides_that_vary_within_a_method(tmp_path):
    _sweep(tmp_path)
    fabricate_run(tmp_path / "k", "kmeans", "mnist", 0, overrides=["method.num_clusters=30"], n_clusters=30)
    report = aggregate(load_runs([tmp_path]), references={})
    row = "moco (method.momentum=0.9,method.queue_size=16,trainer.max_minutes=0.5)"
    assert row in report.rows and len(report.rows) == 5  # the keys keep every override: no two variants merge
    assert report.label(row) == "moco (method.momentum=0.9, method.queue_size=16)"
    assert report.shared == {"moco": ["trainer.max_minutes=0.5"]}
    assert report.label("kmeans (method.num_clusters=30)") == "kmeans (method.num_clusters=30)"  # a method's only row: whole
    md = to_markdown(report)
    assert "| moco (method.momentum=0.9, method.queue_size=16) | 1 |" in md
    assert md.count("trainer.max_minutes=0.5") == 1 and "Every row of moco: trainer.max_minutes=0.5." in md
    # natural order: queue 16 before 64, momentum 0.9 before 0.99
    labels = [line[0] for line in table_rows(report)[1:] if line[0].startswith("moco")]
    assert labels == ["moco (method.momentum=0.9, method.queue_size=16)", "moco (method.momentum=0.9, method.queue_size=64)",
                      "moco (method.momentum=0.99, method.queue_size=16)", "moco (method.momentum=0.99, method.queue_size=64)"]


def test_published_references_still_match_beside_shortened_labels(tmp_path):
    fabricate_run(tmp_path / "d", "kmeans", "mnist", 0, {"nmi": 0.5, "acc": 0.55, "ari": 0.4})
    fabricate_run(tmp_path / "k30", "kmeans", "mnist", 0, {"nmi": 0.7, "acc": 0.5, "ari": 0.4, "purity": 0.76}, overrides=["method.num_clusters=30"], n_clusters=30)
    report = aggregate(load_runs([tmp_path]))
    assert report.published[("kmeans", "mnist")]["mean"].source == "dec"
    assert report.published[("kmeans (method.num_clusters=30)", "mnist")]["mean"].source == "mnist_study"
    md = to_markdown(report)
    assert "ACC 53.5 [dec] | ACC +1.5 |" in md and "purity 75.2 [mnist_study] | purity +0.8 |" in md


def test_single_seed_cells_have_no_plus_minus_and_no_best_row(tmp_path):
    fabricate_run(tmp_path / "g", "gmm", "digits", 0, {"nmi": 0.7, "acc": 0.8, "ari": 0.6})
    for seed in (0, 1):
        fabricate_run(tmp_path / f"k{seed}", "kmeans", "digits", seed, {"nmi": 0.7, "acc": 0.8 + seed / 10, "ari": 0.6})
    md = to_markdown(aggregate(load_runs([tmp_path]), references={}))
    assert "| gmm | 1 | 70.0 | 80.0 | 60.0 |" in md and "gmm (best)" not in md and "gmm (mean)" not in md
    assert "| kmeans (mean) | 2 | 70.0 ± 0.0 | 85.0 ± 7.1 | 60.0 ± 0.0 |" in md and "| kmeans (best) |  | 70.0 | 90.0 | 60.0 |" in md


def test_a_two_parameter_sweep_is_a_grid_also_with_one_combination_missing(tmp_path):
    _sweep(tmp_path, queues=(16, 64, 256), seeds=(0, 1), skip={(0.99, 256)})
    fabricate_run(tmp_path / "k", "kmeans", "mnist", 0)
    report = aggregate(load_runs([tmp_path]), references={})
    [grid] = report.grids
    assert (grid.method, grid.column, grid.row_key, grid.col_key) == ("moco", "mnist", "method.queue_size", "method.momentum")  # the longer list down
    assert grid.row_values == ["16", "64", "256"] and grid.col_values == ["0.9", "0.99"] and grid.reference is None
    acc = grid.matrix("acc")
    assert acc[0][0] == pytest.approx(100 * (0.9 + 0.0016 - 0.009 + 0.0005)) and acc[2][1] is None
    md = to_markdown(report, {grid.slug: "grid_moco_mnist.png"})
    assert "**Sweep: moco on mnist: method.queue_size × method.momentum**" in md
    assert "| method.queue_size ↓ method.momentum → | 0.9 | 0.99 |" in md and "| 256 | 91.7 ± 0.1 | – |" in md
    assert "NMI / ARI (ours):" in md and "![grid_moco_mnist](grid_moco_mnist.png)" in md
    # three parameters varying, or only two rows: no grid
    fabricate_run(tmp_path / "x", "moco", "mnist", 0, overrides=["method.queue_size=16", "method.momentum=0.9", "trainer.max_minutes=1"])
    assert aggregate(load_runs([tmp_path]), references={}).grids == []


def test_the_study_grid_stands_beside_ours_with_the_difference(tmp_path, capsys):
    _sweep(tmp_path / "runs", queues=(16, 32, 64, 128, 256), momenta=(0.9, 0.99, 0.999, 0.9999), plots=("curves.png",))
    report = aggregate(load_runs([tmp_path / "runs"]))
    [grid] = report.grids
    assert (grid.row_key, grid.col_key) == ("method.momentum", "method.queue_size")  # the study's orientation
    assert grid.reference.source == "mnist_study_moco" and "METHODS.md" in grid.reference.label
    assert grid.reference.values[("0.99", "64")] == 96.91 and len(grid.reference.values) == 20
    md = to_markdown(report)
    ours = 100 * (0.9 + 0.0064 - 0.0099)
    assert "ACC published [mnist_study_moco]:" in md and "| 0.99 | 92.98 | 93.27 | 96.91 | 96.14 | 95.36 |" in md
    assert md.split("Δ ACC:")[1].split("\n")[5].split(" | ")[3] == f"{ours - 96.91:+.1f}"  # row m 0.99, column queue 64
    assert report_main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    png = tmp_path / "out" / f"{grid.slug}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "out" / "report.html").read_text()
    _parse(html)
    assert "published 96.91 · Δ" in html and "Sweep: moco on mnist" in html and html.count("data:image/png;base64,") == 4  # 3 bars + heatmap
    assert "](" + png.name + ")" in (tmp_path / "out" / "report.md").read_text()
    # a reference for another pair of keys, or another dataset, is not attached
    other = aggregate(load_runs([tmp_path / "runs"]), references={"grids": [{**load_refs()["grids"][0], "dataset": "cifar10"}]})
    assert other.grids[0].reference is None


def load_refs():
    from clusterbench.report.table import load_references

    return load_references()


def test_html_escapes_override_values_links_runs_and_parses(tmp_path):
    runs = tmp_path / "runs"
    fabricate_run(runs / "evil", "kmeans", "digits", 0, overrides=["method.init=<script>alert(1)</script>"], plots=("curves.png", "confusion.png"))
    fabricate_run(runs / "plain", "kmeans", "digits", 0)
    for seed in (0, 1):
        fabricate_run(runs / f"g{seed}", "gmm", "digits", seed, {"nmi": 0.6, "acc": 0.6 + seed / 10, "ari": 0.5})
    fabricate_run(runs / "bad <b>", "gmm", "digits", 3, status="failed")
    out = tmp_path / "site" / "out"
    assert report_main([str(runs), "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<b>" not in html
    md = (out / "report.md").read_text()
    assert "<script>" not in md and "\\<script\\>alert(1)" in md
    page = _parse(html)
    assert len(page.scripts) == 1 and "sortable" in page.scripts[0]  # the page's own sorter, nothing else
    assert "class='sortable'" in html and "<div class='scroll'><table class='sortable'>" in html and "overflow-x: auto" in html
    assert "../../runs/evil/" in page.links and "../../runs/evil/curves.png" in page.links and "../../runs/evil/confusion.png" in page.links
    assert "../../runs/g0/" in page.links and "../../runs/g1/" in page.links and "../../runs/bad%20%3Cb%3E/" in page.links
    assert not any(link.startswith("/") or "://" in link for link in page.links)  # all relative
    assert "../../runs/plain/curves.png" not in page.links  # only the plots a run has
    tbodies = html.count("<tbody")  # one per row group (mean + best line sort together), one for the failures
    assert tbodies >= 4


def test_knn_linear_and_health_columns_and_csv_fields(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        fabricate_run(runs / f"m{seed}", "moco", "digits", seed, {"nmi": 0.7, "acc": 0.8, "ari": 0.6},
                      probes={"knn_acc": 0.90 + seed / 100, "linear_acc": 0.95}, health=["collapse", "flat_loss"] if seed == 0 else ["collapse"])
    fabricate_run(runs / "k", "kmeans", "digits", 0, health=[])
    report = aggregate(load_runs([runs]), references={})
    assert report.probes == ("knn_acc", "linear_acc") and report.health
    header, *lines = table_rows(report)
    assert header[2:7] == ["digits NMI", "digits ACC", "digits ARI", "digits kNN", "digits linear"] and header[7] == "digits health"
    moco = next(line for line in lines if line[0] == "moco (mean)")
    assert moco[5:8] == ["90.5 ± 0.7", "95.0 ± 0.0", "collapse×2, flat_loss"]
    kmeans = next(line for line in lines if line[0] == "kmeans")
    assert kmeans[5:8] == ["–", "–", "ok"]
    assert report_main([str(runs), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "out" / "report.csv").open())}
    assert rows["moco"]["knn_acc_mean"] == "90.5" and rows["moco"]["linear_acc_std"] == "0.0" and rows["moco"]["health"] == "collapse×2, flat_loss"
    assert rows["kmeans"]["knn_acc_mean"] == "" and rows["kmeans"]["health"] == "ok" and rows["kmeans"]["label"] == "kmeans"
    _parse((tmp_path / "out" / "report.html").read_text())
    # runs without probes or health (older results): no such columns
    fabricate_run(tmp_path / "old" / "k", "kmeans", "digits", 0)
    assert table_rows(aggregate(load_runs([tmp_path / "old"]), references={}))[0] == ["method", "runs", "digits NMI", "digits ACC", "digits ARI"]


def test_the_clustering_stage_stays_in_every_label_and_grid(tmp_path):
    _sweep(tmp_path / "own", queues=(16, 32, 64, 128, 256), momenta=(0.9, 0.99, 0.999, 0.9999))
    _sweep(tmp_path / "scan", queues=(16, 64), momenta=(0.9, 0.99))  # the same sweep read out by SCAN: cluster=scan in every run
    for run in (tmp_path / "scan").iterdir():
        result = json.loads((run / "metrics.json").read_text())
        result["overrides"] += ["cluster=scan", "cluster.epochs=5"]
        result["variant"] = variant_of(result["overrides"])
        (run / "metrics.json").write_text(json.dumps(result))
    report = aggregate(load_runs([tmp_path / "scan"]), references={})
    row = "moco (cluster.epochs=5,cluster=scan,method.momentum=0.9,method.queue_size=16,trainer.max_minutes=0.5)"
    assert row in report.rows
    assert report.label(row) == "moco (cluster.epochs=5, cluster=scan, method.momentum=0.9, method.queue_size=16)"  # the stage, though shared
    assert report.shared == {"moco": ["trainer.max_minutes=0.5"]}
    assert all("cluster=scan" in line[0] for line in table_rows(report)[1:])
    [grid] = report.grids
    assert grid.stage == ["cluster.epochs=5", "cluster=scan"] and "moco (cluster.epochs=5, cluster=scan) on mnist" in grid.title
    # both stages together: two grids, the study's sweep beside the method's own read-out only
    report = aggregate(load_runs([tmp_path]))
    own, scan = sorted(report.grids, key=lambda g: len(g.stage))
    assert own.stage == [] and own.reference is not None and own.reference.source == "mnist_study_moco"
    assert scan.stage and scan.reference is None and own.slug != scan.slug
    assert report.label("moco (method.momentum=0.9,method.queue_size=16,trainer.max_minutes=0.5)") == "moco (method.momentum=0.9, method.queue_size=16)"
    # cluster=kmeans with its defaults (clusterbench-recluster RUN cluster=kmeans) is the papers' read-out: the study beside it
    _sweep(tmp_path / "km", queues=(16, 32, 64, 128, 256), momenta=(0.9, 0.99, 0.999, 0.9999), overrides_extra=["cluster=kmeans"])
    [km] = aggregate(load_runs([tmp_path / "km"])).grids
    assert km.stage == ["cluster=kmeans"] and km.reference is not None and km.reference.source == "mnist_study_moco"


def test_store_based_report_keeps_probes_and_health_and_single_seed_csv_has_no_spread(tmp_path):
    db = tmp_path / "results.sqlite"
    for seed in (0, 1):
        run = fabricate_run(tmp_path / "runs" / f"m{seed}", "moco", "digits", seed, {"nmi": 0.7, "acc": 0.8, "ari": 0.6}, night="2026-12-01",
                            probes={"knn_acc": 0.90 + seed / 100, "linear_acc": 0.95}, health=["collapse"] if seed == 0 else [])
        store.append(db, store.from_result(json.loads((run / "metrics.json").read_text()), run))
    run = fabricate_run(tmp_path / "runs" / "g", "gmm", "digits", 0, night="2026-12-01", health=[])
    store.append(db, store.from_result(json.loads((run / "metrics.json").read_text()), run))
    out = tmp_path / "out"
    assert report_main(["--store", str(db), "--no-plots", "--out", str(out)]) == 0
    rows = {r["method"]: r for r in csv.DictReader((out / "report.csv").open())}
    assert rows["moco"]["knn_acc_mean"] == "90.5" and rows["moco"]["linear_acc_mean"] == "95.0" and rows["moco"]["health"] == "collapse"
    assert rows["moco"]["acc_std"] == "0.0" and rows["moco"]["acc_best"] == "80.0"  # two seeds: a spread, even of zero
    assert rows["gmm"]["health"] == "ok" and rows["gmm"]["acc_std"] == "" and rows["gmm"]["acc_best"] == ""  # one seed: none


def test_a_stage_re_run_by_recluster_is_found_as_its_own_run(tmp_path):
    run = fabricate_run(tmp_path / "runs" / "m0", "moco", "digits", 0, {"nmi": 0.7, "acc": 0.8, "ari": 0.6})
    stage = run / "stages" / "umap-1"  # what clusterbench-recluster writes: metrics.json, no .hydra/
    stage.mkdir(parents=True)
    result = json.loads((run / "metrics.json").read_text())
    result.update({"acc": 0.97, "overrides": [*result["overrides"], "cluster=umap"], "reclustered_from": str(run)})
    result["variant"] = variant_of(result["overrides"])
    (stage / "metrics.json").write_text(json.dumps(result))
    found = discover([tmp_path / "runs"])
    assert found == [run, stage]
    report = aggregate(load_runs([tmp_path / "runs"]), references={})
    assert len(report.rows) == 2 and any("cluster=umap" in report.label(row) for row in report.rows)
