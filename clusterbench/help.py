"""``clusterbench --help``: the groups a user picks, a line per method and dataset, examples.

Answered from the packaged config folders alone, without composing a config or importing
torch, so it takes a fraction of a second; Hydra's own help (with the internal ``schema/*`` and
``method_dataset`` groups) stays behind ``--hydra-help``.
"""

from __future__ import annotations

from importlib import resources

METHODS = {
    "moco": "MoCo v2: momentum contrast with a queue of negatives; k-means on its features",
    "pcl": "PCL: MoCo v2 plus prototypes from per-epoch k-means (ProtoNCE)",
    "swav": "SwAV: swapped prediction of Sinkhorn–Knopp codes over prototypes, multi-crop",
    "deepcluster": "DeepCluster v1 / v2: k-means pseudo-labels re-computed every epoch",
    "mice": "MiCE: a mixture of contrastive experts with a gating network (EM)",
    "ae": "autoencoder; its bottleneck clustered by a GMM (or k-means)",
    "infogan": "InfoGAN: a GAN whose categorical code the recognition network Q clusters by",
    "scae": "Stacked Capsule Autoencoder: k-means on the presences of object capsules that explain part capsules",
    "kmeans": "k-means on raw pixels (the papers' baseline row)",
    "gmm": "Gaussian mixture on raw pixels",
}
DATASETS = {
    "digits": "scikit-learn's bundled 8×8 digits, 1,797 images: runs offline in seconds",
    "mnist": "MNIST, 70,000 1×28×28 (IDX files under dataset.root)",
    "cifar10": "CIFAR-10, 60,000 3×32×32",
    "cifar100": "CIFAR-100 with its 20 super-classes, 60,000 3×32×32",
    "stl10": "STL-10, 13,000 labelled 3×96×96 (+ 100,000 unlabelled)",
    "imagenet_dog": "ImageNet-Dog: 15 dog breeds from ImageNet's train split",
    "folder": "your own images: dataset.root=PATH (class subfolders optional)",
    "array": "your own NumPy array: dataset.path=FILE (.npy / .npz)",
    "synthetic": "tiny generated images for tests and smoke runs",
}
OTHER_GROUPS = ("backbone", "augment", "cluster", "hardware", "logger", "experiment")
EXAMPLES = (
    ("clusterbench", "MoCo on the bundled digits (the default run)"),
    ("clusterbench method=swav dataset=cifar10 dataset.root=/data", "the method × dataset recipe applies by itself"),
    ("clusterbench method=deepcluster dataset=mnist trainer.max_minutes=5", "a wall-clock budget"),
    ("clusterbench method=moco dataset=folder dataset.root=~/photos", "your own images"),
    ("clusterbench -m method=moco dataset=mnist method.queue_size=16,64,256", "a sweep, one run per value"),
    ("clusterbench method=pcl dataset=mnist --cfg job", "the composed config and the recipe it applied, without running"),
    ("clusterbench-recluster RUN_DIR cluster=umap", "another clustering stage on a finished run"),
    ("clusterbench-report outputs/", "tables across runs"),
)


def options(group: str) -> list[str]:
    folder = resources.files("clusterbench.conf") / group
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _rows(entries: dict[str, str], found: list[str], default: str) -> list[str]:
    names = [n for n in entries if n in found] + [n for n in found if n not in entries]  # a new option still shows
    width = max(len(n) for n in names) + len(" (default)")
    return [f"  {(n + (' (default)' if n == default else '')).ljust(width)}  {entries.get(n, '')}".rstrip() for n in names]


def help_text() -> str:
    lines = ["clusterbench: unsupervised image clustering benchmarks (NMI / ACC / ARI).", "",
             "Usage: clusterbench [group=option ...] [key=value ...]", "       clusterbench -m key=a,b,c ...   (a sweep: one run per combination)", "",
             "method=", *_rows(METHODS, options("method"), "moco"), "", "dataset=", *_rows(DATASETS, options("dataset"), "digits"), ""]
    for group in OTHER_GROUPS:
        lines.append(f"{group}=  {', '.join(options(group))}")
    lines += ["", "Every key of the config is an override (trainer.epochs=50, method.temperature=0.1, seed=1, ...);",
              "`--cfg job` prints them all. A method × dataset recipe (conf/method_dataset/) applies by itself;",
              "group=... and key=... on the command line win over it.", "", "Examples:"]
    width = max(len(cmd) for cmd, _ in EXAMPLES)
    lines += [f"  {cmd.ljust(width)}  # {why}" for cmd, why in EXAMPLES]
    lines += ["", "--hydra-help: Hydra's own options (launchers, --multirun, --cfg all, ...)."]
    return "\n".join(lines)


__all__ = ["help_text", "options"]
