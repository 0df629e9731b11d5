"""Prediction throughput: ``clusterbench-predict`` on 10,000 new images against the run's own
embedding step, in one process.

A short MoCo run on MNIST (train split, `dataset.limit`) makes the run folder; then, on the
10,000 MNIST test images (new to the run):

- baseline: the run's own embedding step — ``engine.embed_dataset`` of the loaded network over
  the images already in memory, as the run's final evaluation does;
- prediction: the whole ``clusterbench.predict.predict`` call — read model.pt and
  clusters.npz, rebuild the network, load the images, embed, assign, write assignments.csv
  and metrics.json.

    python benchmarks/predict_speed.py [--root ../shared/data] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from _common import SHARED_DATA, run_clusterbench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=SHARED_DATA)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from omegaconf import OmegaConf

    from clusterbench import distributed as D
    from clusterbench import runfolder
    from clusterbench.data import build_dataset
    from clusterbench.engine import embed_dataset
    from clusterbench.methods.deep import DeepMethod, InputShape, eval_mode
    from clusterbench.predict import predict
    from clusterbench.run import build

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        m = run_clusterbench(["method=moco", "dataset=mnist", f"dataset.root={args.root}", "dataset.split=train", "dataset.limit=5000",
                              "trainer.epochs=2", "trainer.eval_every=0", "plots.enabled=false", "hardware=cpu"], run_dir)
        print(f"run: MoCo, MNIST train limit 5000, 2 epochs: ACC {m['acc']:.3f}")

        state = runfolder.read_model(run_dir)
        cfg = OmegaConf.create(state["config"])
        test_cfg = OmegaConf.merge(cfg.dataset, {"split": "test", "root": str(args.root), "limit": None})
        images = build_dataset(test_cfg, 0).images  # 10,000 × 1×28×28
        method: DeepMethod = build(cfg.method)
        c, h, _ = state["input_shape"]
        model = method.setup(build(cfg.backbone, in_channels=c, image_size=h), InputShape(c, h))
        model.load_state_dict(state["state_dict"])
        method.model = model.to(memory_format=torch.channels_last)

        embed_s, predict_s = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            with eval_mode(model):
                embed_dataset(method.embed, images, state["mean"], state["std"], int(cfg.trainer.embed_batch_size), D.DistInfo(), True)
            embed_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            summary = predict(run_dir, ["dataset=mnist", f"dataset.root={args.root}", "dataset.split=test"], Path(tmp) / "pred",
                              device="cpu", progress=False)
            predict_s.append(time.perf_counter() - t0)
        n = len(images)
        e, p = statistics.median(embed_s), statistics.median(predict_s)
        print(f"| step | images/s (median of {args.repeats}) | ratio |\n|---|---|---|")
        print(f"| the run's embedding step (embed_dataset, images in memory) | {n / e:,.0f} | 1.00 |")
        print(f"| clusterbench-predict, whole (load model + data, embed, assign, write) | {n / p:,.0f} | {e / p:.2f} |")
        print(f"predicted test ACC {summary['acc']:.3f} (the run's train ACC {m['acc']:.3f})")


if __name__ == "__main__":
    main()
