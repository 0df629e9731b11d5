"""How close SCAE's training step gets to its backbone's bare forward + backward, and where the
rest goes: the step (both autoencoders, the loss, backward, RMSProp) against the part encoder
CNN alone on the same canvases, measured in the same process, then the step's top operators.

    python benchmarks/scae_step.py [--canvas 40] [--batch 128] [--steps 5] [--threads 1]

The official MNIST model (40 parts, 32 objects, 11×11 templates) by default. Unlike the
contrastive methods, the backbone is the small part of an SCAE step: each image draws M
templates (and their alphas) onto the whole canvas and scores a B×M×S×S pixel mixture.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from backbone_speed import bare_step_throughput
from clusterbench.backbones.capsule import CapsuleConvNet
from clusterbench.methods.deep import InputShape
from clusterbench.methods.scae import SCAE


def seconds(fn, steps: int) -> float:
    for _ in range(2):  # warm-up: allocator, oneDNN primitives
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--canvas", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--parts", type=int, default=40)
    parser.add_argument("--objects", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="also print the step's top operators (torch.profiler)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    method = SCAE(part_capsules=args.parts, object_capsules=args.objects, canvas_size=args.canvas)
    method.configure_clusters(10)
    backbone = CapsuleConvNet(1, args.image_size)
    method.model = method.setup(backbone, InputShape(1, args.image_size, (0.13,), (0.31,)))
    x = torch.randn(args.batch, 1, args.image_size, args.image_size)
    optimizer = torch.optim.RMSprop(method.model.parameters(), lr=3e-5, alpha=0.9, momentum=0.9, eps=1e-3)

    def step() -> None:
        loss = method.losses(method.forward(x, training=True))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    full = seconds(step, args.steps)
    # the physical limit: the part encoder alone, forward + backward + SGD on canvas-sized batches
    base = args.batch / bare_step_throughput(copy.deepcopy(backbone), (args.batch, 1, args.canvas, args.canvas), args.steps, channels_last=False)
    print(f"SCAE step, batch {args.batch}, {args.parts} parts / {args.objects} objects, {args.canvas}-px canvas, {args.threads} thread(s):")
    print(f"  whole step     {full:.3f} s  ({args.batch / full:.0f} img/s)")
    print(f"  backbone only  {base:.3f} s  ({args.batch / base:.0f} img/s): the step is {full / base:.1f}× the bare backbone")
    if args.profile:
        from torch.profiler import profile

        with profile() as prof:
            step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
