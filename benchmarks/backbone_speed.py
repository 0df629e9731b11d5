"""Bare training-step throughput of the learned backbones: contiguous vs channels_last.

One step is forward + backward + an SGD update on random data (fp32, eager; ``--compile``
adds torch.compile rows), with torch's intra-op threads set to the core count. No data
loading, no augmentation, no loss beyond a mean of squares: the ceiling a training loop can
approach. A 2048² fp32 matmul is timed in the same process (before and after each model, best
kept) as the machine's baseline, and each row's achieved GFLOP/s (FLOPs counted by torch's
FlopCounterMode) is given as a share of it, so figures from different machines compare. The
table is printed at the end, once the baseline is known; progress goes to stderr.

    python benchmarks/backbone_speed.py [--steps N] [--repeats 3] [--compile] [--models convnet strided resnet18]

Other benchmarks reuse the timing loop the way they use ``_common``: scripts run from
``benchmarks/`` have it on ``sys.path``, so ``from backbone_speed import bare_step_throughput``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from clusterbench.backbones.convnet import ConvNet, StridedConvNet
from clusterbench.backbones.resnet import ResNet


def _loss(features: torch.Tensor) -> torch.Tensor:
    # Any scalar that depends on every feature gives the backward pass its full cost.
    return features.float().square().mean()


def _batch(batch_shape: Sequence[int], channels_last: bool, device: torch.device) -> torch.Tensor:
    x = torch.randn(*batch_shape, device=device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def bare_step_throughput(
    model: nn.Module,
    batch_shape: Sequence[int],
    steps: int,
    channels_last: bool,
    *,
    warmup: int = 2,
    lr: float = 0.01,
    autocast: Optional[torch.dtype] = None,
) -> float:
    """Images per second of ``steps`` timed training steps (forward, backward, SGD) on ``model``.

    ``batch_shape`` is N×C×H×W. ``channels_last`` converts the model (in place) and the input to
    that memory format. ``warmup`` untimed steps come first: oneDNN builds its kernels and
    torch.compile compiles on the first calls. The model is trained on random data in place,
    so pass a throw-away copy. ``model`` may be a torch.compile'd module. ``autocast``: the
    forward in that dtype (bf16, fp16), as the engine's ``trainer.precision`` runs it.
    """
    if steps < 1 or len(batch_shape) != 4:
        raise ValueError(f"need steps ≥ 1 and an N×C×H×W batch shape, got steps={steps}, batch_shape={tuple(batch_shape)}")
    device = next(model.parameters()).device
    model.train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    x = _batch(batch_shape, channels_last, device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            out = model(x)
        _loss(out).backward()
        opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * batch_shape[0] / (time.perf_counter() - start)


def step_flops_per_image(model: nn.Module, image_shape: Sequence[int]) -> float:
    """FLOPs of one forward + backward per image (convs and matmuls; FlopCounterMode's count)."""
    x = torch.randn(2, *image_shape)
    with FlopCounterMode(display=False) as counter:
        _loss(model(x)).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best-of-``repeats`` GFLOP/s of an n×n fp32 matmul: this process's compute baseline."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up: thread pool start, BLAS dispatch
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


@dataclass
class Case:
    name: str
    build: Callable[[], nn.Module]
    batch_shape: tuple[int, int, int, int]
    # Default timed steps: 1-8 s per measurement on 2 cores, the whole run ≈ 1.5 min. Short
    # measurements, repeated, make best-of robust to other processes taking the cores for a while.
    steps: int


CASES = {
    "convnet": Case("convnet", lambda: ConvNet(1, 28), (256, 1, 28, 28), 10),
    "strided": Case("strided", lambda: StridedConvNet(1, 28), (256, 1, 28, 28), 20),
    "resnet18": Case("resnet18 (CIFAR stem)", lambda: ResNet(3, 32, depth=18), (128, 3, 32, 32), 2),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default: per model)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved measurements per format; the best is kept")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models (slow to compile)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch intra-op threads (default: the cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    # The matmul baseline is re-measured between the models and its best is kept: other
    # processes on the machine slow one measurement down now and then, never speed one up.
    matmul = [matmul_gflops()]
    modes = [("contiguous", False, False), ("channels_last", True, False)]
    if args.compile:
        modes += [("compiled contiguous", False, True), ("compiled channels_last", True, True)]
    rows: list[tuple[str, str, str, float, float]] = []  # backbone, batch, mode, img/s, FLOPs/img
    for key in args.models:
        case = CASES[key]
        steps = args.steps or case.steps
        torch.manual_seed(0)
        flops = step_flops_per_image(case.build(), case.batch_shape[1:])
        models: dict[str, nn.Module] = {}
        for mode, channels_last, compiled in modes:
            torch.manual_seed(0)  # the same weights in every mode
            m = case.build()
            models[mode] = torch.compile(m) if compiled else m
        # Interleave the modes, best of --repeats: this machine's speed drifts within a run,
        # and drift would otherwise land on whichever mode ran last. One warm-up step (oneDNN
        # kernel creation, compilation of forward and backward) before the first measurement.
        best: dict[str, float] = {mode: 0.0 for mode, _, _ in modes}
        for r in range(args.repeats):
            for mode, channels_last, _ in modes:
                rate = bare_step_throughput(models[mode], case.batch_shape, steps, channels_last, warmup=1 if r == 0 else 0)
                best[mode] = max(best[mode], rate)
        matmul.append(matmul_gflops())
        shape = "×".join(map(str, case.batch_shape))
        rows += [(case.name, shape, mode, best[mode], flops) for mode, _, _ in modes]
        print(f"{case.name}: done", file=sys.stderr, flush=True)

    baseline = max(matmul)
    print(f"torch {torch.__version__}, {args.threads} threads; matmul 2048² fp32: {baseline:.1f} GFLOP/s "
          f"(best of {len(matmul)}; worst {min(matmul):.1f}: a large gap means other processes competed for the cores)\n")
    print("| backbone | batch | mode | img/s | ratio to contiguous | GFLOP/s | % of matmul |")
    print("|---|---|---|---|---|---|---|")
    contiguous = {name: rate for name, _, mode, rate, _ in rows if mode == "contiguous"}
    for name, shape, mode, rate, flops in rows:
        gflops = rate * flops / 1e9
        print(f"| {name} | {shape} | {mode} | {rate:,.0f} | {rate / contiguous[name]:.2f} | {gflops:.1f} | {100 * gflops / baseline:.0f}% |")


if __name__ == "__main__":
    main()
