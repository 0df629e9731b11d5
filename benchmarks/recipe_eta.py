"""Every method × dataset recipe's whole-run time on this machine, from a few measured steps.

For each recipe (conf/method_dataset/<method>_<dataset>.yaml) the recipe itself runs one short
epoch (`--steps` optimiser steps at its own batch, backbone, views and precision) on images of the
dataset's shape, written in the dataset's real file format into a scratch folder (CIFAR pickles,
STL-10 binaries, an ImageNet-Dog folder: tests/formats.py's writers), so no real data is needed.
The epoch's measured images/s then gives

    ETA = (training images of the real dataset) × epochs / (images per second)

with the real set's size (CIFAR 60,000, STL-10 13,000 or 113,000 with the unlabelled split,
ImageNet-Dog 19,500, MNIST 70,000, digits 1,797). Not included: PCL's, DeepCluster's and MiCE's
per-epoch passes over the whole set, and evaluations (a few % of an epoch each). The first step's
set-up cost is inside the measured epoch, so the figure is an upper estimate at small --steps.

    python benchmarks/recipe_eta.py [--methods moco ...] [--datasets cifar10 ...] [--steps 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

from _common import run_clusterbench

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import formats  # noqa: E402 — the tests' writers of tiny files in the real formats

METHODS = ("moco", "pcl", "swav", "deepcluster", "mice", "ae", "infogan", "scae")
DATASETS = ("cifar10", "cifar100", "stl10", "imagenet_dog", "mnist", "digits")
REAL_SIZE = {"cifar10": 60_000, "cifar100": 60_000, "stl10": 13_000, "imagenet_dog": 19_500, "mnist": 70_000, "digits": 1_797}
STL10_UNLABELLED = 100_000


def write_images(dataset: str, root: Path, n: int) -> None:
    """At least ``n`` training images of ``dataset``'s shape and format under ``root``."""
    if dataset == "cifar10":
        formats.write_cifar10(root, per_batch=math.ceil(n / 5), n_test=10)
    elif dataset == "cifar100":
        formats.write_cifar100(root, n_train=n, n_test=10)
    elif dataset == "stl10":
        formats.write_stl10(root, n_train=n, n_test=10, n_unlabeled=n)
    elif dataset == "imagenet_dog":
        formats.write_imagenet_dog(root, per_class=math.ceil(n / 15))
    elif dataset == "mnist":
        formats.write_mnist(root, n_train=n, n_test=10)


def recipe(method: str, dataset: str) -> dict:
    from omegaconf import OmegaConf

    path = Path(__file__).resolve().parents[1] / "conf" / "method_dataset" / f"{method}_{dataset}.yaml"
    return OmegaConf.to_container(OmegaConf.load(path)) if path.exists() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--steps", type=int, default=4, help="optimiser steps measured per recipe")
    parser.add_argument("--threads", type=int, default=0, help="hardware.threads (0: torch's default)")
    args = parser.parse_args()
    print("| method | dataset | source | backbone | epochs | batch | images/s | ETA on this CPU |\n|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for dataset in args.datasets:
            for method in args.methods:
                spec = recipe(method, dataset)
                batch = int(spec.get("trainer", {}).get("batch_size", 256))
                epochs = int(spec.get("trainer", {}).get("epochs", 100))
                root = Path(scratch) / f"{dataset}_{method}"
                write_images(dataset, root, batch * args.steps)
                overrides = [f"method={method}", f"dataset={dataset}", "trainer.epochs=1", "trainer.eval_every=0", "trainer.max_minutes=null",
                             "trainer.checkpoint_every=0", "plots.enabled=false", "cluster=kmeans", "export.features=false", "export.model=false"]
                overrides += [] if dataset == "digits" else [f"dataset.root={root}"]
                overrides += [f"dataset.limit={batch * args.steps}"] if dataset in ("digits",) else []
                overrides += [f"hardware.threads={args.threads}"] if args.threads else []
                prototypes = spec.get("method", {}).get("num_prototypes")
                cap = batch * args.steps // 2
                # DeepCluster's and PCL's per-epoch k-means need more images than the few measured
                # steps hold; the step's own cost hardly depends on K (an output layer, a few
                # prototype logits), so K shrinks for the measurement (PCL's list in proportion)
                if method == "deepcluster" and isinstance(prototypes, int) and prototypes > cap:
                    overrides.append(f"method.num_prototypes={cap}")
                if method == "pcl" and isinstance(prototypes, list) and max(prototypes) > cap:
                    overrides.append("method.num_prototypes=[" + ",".join(str(max(2, k * cap // max(prototypes))) for k in prototypes) + "]")
                try:
                    result = run_clusterbench(overrides, Path(scratch) / f"run_{dataset}_{method}")
                except RuntimeError as ex:
                    print(f"| {method} | {dataset} | failed: {str(ex).splitlines()[-1][:80]} | | | | | |", flush=True)
                    continue
                history = [json.loads(line) for line in (Path(scratch) / f"run_{dataset}_{method}" / "metrics.jsonl").read_text().splitlines()]
                ips = history[0]["images_per_s"]
                n = REAL_SIZE[dataset] + (STL10_UNLABELLED if dataset == "stl10" and spec.get("dataset", {}).get("unlabeled") else 0)
                plan = result.get("plan", {})
                source = (plan.get("source") or "–")[:70]
                from clusterbench.eta import duration

                print(f"| {method} | {dataset} | {source} | {plan.get('backbone', '?')} | {epochs} | {batch} | {ips:.0f} | {duration(n * epochs / ips)} |", flush=True)


if __name__ == "__main__":
    main()
