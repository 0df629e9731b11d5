"""How close the full MoCo training step gets to the physical limit: the backbone's bare
forward + backward (+ SGD) images/s, measured in the same process.

    python benchmarks/loop_efficiency.py [--steps 20] [--cases mnist cifar]

A MoCo step costs more than one bare step by construction: the key encoder's forward
(≈ 1/3 of a forward + backward), the projection heads, the loss and the queue, plus making
two augmented views. So ≈ 0.75 of the bare figure is the practical ceiling; the table splits
the step into its phases (augmentation vs the rest) to show where the remainder goes.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from backbone_speed import bare_step_throughput
from clusterbench.config import register_schemas
from clusterbench.data.dataset import ImageDataset
from clusterbench.engine import train
from clusterbench.methods.base import RunContext

CASES = {
    # name: (overrides, image shape C×H×W, batch)
    "mnist": (["method=moco", "backbone=convnet", "dataset=mnist", "augment=mnist"], (1, 28, 28), 256),
    "mnist-strided": (["method=moco", "backbone=strided", "dataset=mnist", "augment=mnist"], (1, 28, 28), 256),
    "cifar": (["method=moco", "backbone=resnet18", "dataset=cifar10", "augment=mocov2", "augment.blur=0"], (3, 32, 32), 128),
}


def composed(overrides: list[str]):  # noqa: ANN201 — a DictConfig
    register_schemas()
    with initialize_config_module(config_module="clusterbench.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def moco_throughput(overrides: list[str], shape: tuple[int, int, int], batch: int, steps: int, channels_last: bool,
                    device: torch.device = torch.device("cpu"), precision: str = "fp32") -> tuple[float, dict[str, float]]:
    """Images/s of MoCo's steps in the real engine (one untimed warm-up epoch first), and phase seconds per step
    (host seconds: on a GPU the step's phases are kernel launches, not their run time)."""
    cfg = composed([*overrides, f"trainer.batch_size={batch}", "trainer.epochs=2", "trainer.eval_every=0",
                    "trainer.checkpoint_every=0", f"trainer.channels_last={channels_last}", f"trainer.precision={precision}"])
    n = batch * steps
    gen = torch.Generator().manual_seed(0)
    data = ImageDataset("random", torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen), torch.arange(n) % 10,
                        [str(i) for i in range(10)], "all")
    method = instantiate(cfg.method)
    backbone = instantiate(cfg.backbone, in_channels=shape[0], image_size=shape[1])
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(device, 0, backbone, Path(tmp), progress=False, trainer=cfg.trainer, augment=cfg.augment)
        prediction = train(method, data, ctx)
        history = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    t = prediction.timings  # both epochs: the phase split, not the throughput
    per_step = {k: t[k] / (2 * steps) for k in ("augment", "step") if k in t}
    return history[-1]["images_per_s"], per_step  # the second epoch: kernels built, caches warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed MoCo steps (the CIFAR ResNet-18 case uses a quarter)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 eager\n")
    print("| case | layout | bare fwd+bwd img/s | MoCo step img/s | ratio | augment ms/step | rest of step ms/step |\n|---|---|---|---|---|---|---|")
    for name in args.cases:
        overrides, shape, batch = CASES[name]
        steps = max(2, args.steps // 4) if name == "cifar" else args.steps
        cfg = composed(overrides)
        for channels_last in (False, True):
            backbone = instantiate(cfg.backbone, in_channels=shape[0], image_size=shape[1])
            bare = bare_step_throughput(copy.deepcopy(backbone), (batch, *shape), steps, channels_last)
            moco, phases = moco_throughput(overrides, shape, batch, steps, channels_last)
            print(f"| {name} ({cfg.backbone.name}, bs {batch}) | {'channels_last' if channels_last else 'contiguous'} | {bare:.0f} | {moco:.0f} | "
                  f"{moco / bare:.2f} | {1000 * phases.get('augment', 0):.1f} | {1000 * phases.get('step', 0):.1f} |", flush=True)


if __name__ == "__main__":
    main()
