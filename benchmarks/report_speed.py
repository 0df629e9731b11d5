"""clusterbench-report on 1,000 fabricated run folders: wall time of the whole report.

    python benchmarks/report_speed.py [--runs 1000]

The baseline in the same run is the bare cost of reading every metrics.json (json.loads
of 1,000 files): the report's overhead is the ratio to it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fabricate import fabricate_run  # noqa: E402

from clusterbench.report.cli import main as report_main  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    methods = ["kmeans", "gmm", "ae", "moco", "pcl", "swav", "deepcluster", "mice"]
    datasets = ["digits", "mnist", "cifar10", "cifar100", "stl10"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(args.runs):
            status = "failed" if i % 97 == 0 else "unfinished" if i % 89 == 0 else "completed"
            m, d = methods[i % len(methods)], datasets[(i // len(methods)) % len(datasets)]
            acc = 0.3 + 0.6 * ((i * 7919) % 1000) / 1000
            fabricate_run(root / "multirun" / f"{m}_{d}_{i}", m, d, i % 5, {"nmi": acc * 0.9, "acc": acc, "ari": acc * 0.8}, status=status)
        start = time.perf_counter()
        for p in root.glob("multirun/*/metrics.json"):
            json.loads(p.read_text())
        bare = time.perf_counter() - start
        timings = {}
        for label, extra in (("table + md/csv/html", ["--no-plots"]), ("with plots", [])):
            best = float("inf")
            for _ in range(2):  # the first call also pays for imports
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    report_main([str(root), "--out", str(root / "out"), *extra])
                best = min(best, time.perf_counter() - start)
            timings[label] = best
    print()
    print(f"{args.runs} runs: reading metrics.json alone {bare:.2f} s")
    for label, t in timings.items():
        print(f"report ({label}): {t:.2f} s = {t / bare:.1f}× the bare reads")


if __name__ == "__main__":
    main()
