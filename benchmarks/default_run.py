"""The default experiment (`clusterbench`: MoCo on digits) against k-means on the same pixels,
3 seeds, with wall time (the default must finish in under a minute on 2 CPU cores).

    python benchmarks/default_run.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse

from _common import TABLE_HEAD, summary_row, sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    print(TABLE_HEAD)
    print(summary_row("kmeans digits (pixels)", sweep(["method=kmeans", "plots.enabled=false"], args.seeds)), flush=True)
    print(summary_row("clusterbench (moco digits, default)", sweep(["plots.enabled=false"], args.seeds)), flush=True)


if __name__ == "__main__":
    main()
