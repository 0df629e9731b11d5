"""The GPU check: what a few lent GPU minutes must confirm, in one script, within a budget.

    python benchmarks/gpu_check.py --out gpu_check/ [--root DATA] [--budget-minutes 8]
    python benchmarks/gpu_check.py --tiny --out /tmp/gc      # its CPU-runnable parts, tiny (tests)

Checks, in order (each one's failure is recorded and the next runs; a check that would start
past the budget is skipped):

1. ``methods``: every deep method a few steps on the device in fp32, bf16 and fp16 (GradScaler;
   CUDA only), then resumed from its checkpoint for one more epoch on the same device.
2. ``compile``: ``trainer.compile=true`` on MoCo beside the same run eager.
3. ``step_efficiency``: a full MoCo step in the real engine against the backbone's bare
   forward + backward (+ SGD) in the same process, bf16 autocast and channels_last, for the MNIST
   ConvNet (1×28×28) and ResNet-18 (CIFAR stem, 3×32×32); augmentation's share of a step (the
   Augmenter alone on one batch, synchronised, against the step's time).
4. ``placement``: ``data.placement=host`` (pinned staging, each batch copied one step ahead on a
   side stream) against ``device``: the same losses, and its images/s.
5. ``kmeans``: 60,000 × 512 features, K = 10, 20 Lloyd iterations: the torch back-end on the
   device and faiss-gpu when installed, against faiss and torch on the CPU.
6. ``mnist_moco``: ``method=moco dataset=mnist trainer.max_minutes=3`` (needs MNIST under
   --root; its .gz files are enough, 11 MB) against the MNIST study's 96.9% in 5 minutes.
7. ``cifar_epoch``: one epoch of MoCo's CIFAR-10 recipe (ResNet-18, batch 512, fp32) against
   the MoCo demo's ≈ 20 s per epoch (V100, fp32) and lightly's 26–34 s; real CIFAR-10 under
   --root, else 60,000 random images in its format (the timing does not depend on pixels).

Writes ``gpu_check.json`` and ``gpu_check.md`` into --out after every check, so a run cut off by
its time limit still leaves what it measured. Every run is the CLI in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from _common import SHARED_DATA

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import formats  # noqa: E402 — writers of the real file formats (CIFAR pickles), for stand-in data

METHODS = ("moco", "pcl", "swav", "deepcluster", "mice", "ae")
PRECISIONS = ("fp32", "bf16", "fp16")
# a few steps of each method: small heads, queues and prototype counts that fit 512 images
TINY_METHOD = {
    "moco": ["method.queue_size=256", "method.head_hidden=64", "method.feature_dim=32"],
    "pcl": ["method.queue_size=256", "method.head_hidden=64", "method.feature_dim=32", "method.num_prototypes=[4,8]",
            "method.warmup_epochs=1", "method.estep_restarts=1", "method.negative_prototypes=4"],
    "swav": ["method.head_hidden=64", "method.feature_dim=32", "method.num_prototypes=8", "method.freeze_prototypes_niters=2",
             "method.queue_length=128", "method.epoch_queue_starts=1"],
    "deepcluster": ["method.num_prototypes=8", "method.pca_dim=16"],
    "mice": ["method.queue_size=256", "method.feature_dim=16"],
    "ae": ["method.embedding_dim=8", "method.decoder_hidden=[64]", "backbone=mlp", "backbone.hidden=[64]"],
}
STUDY_MNIST_ACC = 0.969  # the MNIST study's MoCo, 5 minutes on a GPU
CIFAR_EPOCH_S = {"MoCo demo (V100, fp32)": 20.0, "lightly (26–34 s)": 30.0}


def cli(args: list[str]) -> tuple[int, str]:
    """``clusterbench ARGS`` in this process: (exit status, the last lines of stderr)."""
    from clusterbench.cli import main

    err = io.StringIO()
    argv = sys.argv
    sys.argv = ["clusterbench", *args]
    code = 0
    try:
        with contextlib.redirect_stderr(err):
            main()
    except SystemExit as ex:
        code = int(ex.code or 0)
    finally:
        sys.argv = argv
    return code, err.getvalue()[-600:]


def history(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- 1. every method × precision, then resume --------------------------------------------


def check_methods(ctx: "Context") -> dict[str, Any]:
    rows = {}
    for method in ctx.methods:
        for precision in PRECISIONS:
            key = f"{method}/{precision}"
            if precision == "fp16" and ctx.device.type != "cuda":
                rows[key] = {"status": "skipped", "why": "fp16 autocast needs CUDA"}
                continue
            run_dir = ctx.scratch / "methods" / method / precision
            common = [f"method={method}", "dataset=synthetic", f"dataset.num_samples={ctx.tiny_images}", "dataset.image_size=32",
                      "dataset.channels=3", "dataset.num_classes=4", "augment=mocov2", "augment.blur=0", "backbone=strided",
                      "trainer.batch_size=64", "trainer.eval_every=0", f"trainer.precision={precision}", *ctx.hardware,
                      "plots.enabled=false", f"hydra.run.dir={run_dir}", *TINY_METHOD[method]]
            start = time.perf_counter()
            code, err = cli([*common, "trainer.epochs=2"])
            if code != 0:
                rows[key] = {"status": "failed", "error": err.strip().splitlines()[-1] if err.strip() else f"exit {code}"}
                continue
            first = history(run_dir)
            code, err = cli([*common, "trainer.epochs=3", "resume=true"])
            after = history(run_dir) if code == 0 else []
            # the resumed run keeps the first two epochs' lines and adds a third
            resumed = code == 0 and len(after) == 3 and [r["loss"] for r in after[:2]] == [r["loss"] for r in first[:2]]
            state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True) if code == 0 else {}
            rows[key] = {
                "status": "ok" if resumed else "failed",
                "losses": [round(r["loss"], 4) for r in after or first],
                "resumed_to_epoch": int(state.get("epoch", 0)),
                "seconds": round(time.perf_counter() - start, 1),
                **({} if resumed else {"error": err.strip().splitlines()[-1] if err.strip() else "resume did not continue the history"}),
            }
    failed = [k for k, r in rows.items() if r["status"] == "failed"]
    return {"status": "failed" if failed else "ok", "runs": rows, **({"failed": failed} if failed else {})}


# --- 2. torch.compile --------------------------------------------------------------------


def check_compile(ctx: "Context") -> dict[str, Any]:
    """MoCo eager, compiled, and (on a GPU) compiled with CUDA graphs (compile_mode=reduce_overhead):
    ResNet-18 for the first two, the small strided net (launch-bound) eager and with graphs."""
    if ctx.tiny and not ctx.args.compile:
        return {"status": "skipped", "why": "--tiny (compiling takes minutes on a CPU; --compile runs it)"}
    runs = [("resnet18 eager", "resnet18", False, "default"), ("resnet18 compiled", "resnet18", True, "default")]
    if ctx.device.type == "cuda":
        runs += [("strided eager", "strided", False, "default"), ("strided cuda graphs", "strided", True, "reduce_overhead")]
    out = {}
    for name, backbone, compiled, mode in runs:
        run_dir = ctx.scratch / "compile" / name.replace(" ", "_")
        code, err = cli(["method=moco", "dataset=synthetic", f"dataset.num_samples={4 * ctx.tiny_images}", "dataset.image_size=32",
                         "dataset.channels=3", "augment=mocov2", "augment.blur=0", f"backbone={backbone}", "trainer.batch_size=128",
                         "trainer.epochs=3", "trainer.eval_every=0", f"trainer.compile={compiled}", f"trainer.compile_mode={mode}",
                         *ctx.hardware, *TINY_METHOD["moco"], "plots.enabled=false", f"hydra.run.dir={run_dir}"])
        if code != 0:
            return {"status": "failed", "run": name, "images_per_s": out, "error": err.strip().splitlines()[-1] if err.strip() else f"exit {code}"}
        out[name] = round(history(run_dir)[-1]["images_per_s"], 1)  # the last epoch: compiled by then
    result = {"status": "ok", "images_per_s": out, "compiled_over_eager": round(out["resnet18 compiled"] / out["resnet18 eager"], 2)}
    if "strided cuda graphs" in out:
        result["graphs_over_eager"] = round(out["strided cuda graphs"] / out["strided eager"], 2)
    return result


# --- 3. step efficiency and the augmentation's share -------------------------------------


def check_step_efficiency(ctx: "Context") -> dict[str, Any]:
    from backbone_speed import bare_step_throughput
    from loop_efficiency import composed, moco_throughput

    from clusterbench.data.augment import Augmenter

    cases = {  # name: overrides, image shape, batch
        "mnist convnet": (["method=moco", "backbone=convnet", "dataset=mnist", "augment=mnist"], (1, 28, 28), 256),
        "cifar resnet18": (["method=moco", "backbone=resnet18", "dataset=cifar10", "augment=mocov2", "augment.blur=0"], (3, 32, 32), 256),
    }
    precision = "bf16" if ctx.device.type == "cuda" or not ctx.tiny else "fp32"
    steps = 4 if ctx.tiny else 30
    rows = {}
    for name, (overrides, shape, batch) in cases.items():
        if ctx.tiny:
            batch, overrides = 16, overrides + (["backbone.width=16"] if "resnet" in name else [])
        cfg = composed(overrides)
        from hydra.utils import instantiate

        backbone = instantiate(cfg.backbone, in_channels=shape[0], image_size=shape[1]).to(ctx.device)
        bare = bare_step_throughput(copy.deepcopy(backbone), (batch, *shape), steps, True,
                                    autocast=torch.bfloat16 if precision == "bf16" else None)
        moco, _ = moco_throughput(overrides, shape, batch, steps, True, device=ctx.device, precision=precision)
        # the Augmenter alone on one batch, synchronised: the step's own timer only sees kernel launches on a GPU
        aug = Augmenter(cfg.augment, shape[1], shape[0], [0.5] * shape[0], [0.25] * shape[0])
        x = torch.randint(0, 256, (batch, *shape), dtype=torch.uint8, device=ctx.device)
        gen = torch.Generator(device=ctx.device).manual_seed(0)
        for _ in range(3):
            aug(x, gen)
        synchronize(ctx.device)
        start = time.perf_counter()
        for _ in range(steps):
            aug(x, gen)
        synchronize(ctx.device)
        aug_s = (time.perf_counter() - start) / steps
        step_s = batch / moco
        rows[name] = {"batch": batch, "precision": precision, "bare_img_s": round(bare), "moco_img_s": round(moco),
                      "moco_over_bare": round(moco / bare, 3), "augment_share": round(aug_s / step_s, 3)}
    return {"status": "ok", "cases": rows}


# --- 3b. host placement: the copy-ahead feed ---------------------------------------------


def check_placement(ctx: "Context") -> dict[str, Any]:
    """MoCo (strided net, 32 px RGB) with the images on the device and on the host (pinned
    staging, each batch copied a step ahead): the same losses, and the host path's speed."""
    rates, losses = {}, {}
    for placement in ("device", "host"):
        run_dir = ctx.scratch / "placement" / placement
        code, err = cli(["method=moco", "dataset=synthetic", f"dataset.num_samples={8 * ctx.tiny_images}", "dataset.image_size=32",
                         "dataset.channels=3", "augment=mocov2", "augment.blur=0", "backbone=strided", "trainer.batch_size=256",
                         "trainer.epochs=2", "trainer.eval_every=0", f"data.placement={placement}", *ctx.hardware, *TINY_METHOD["moco"],
                         "plots.enabled=false", f"hydra.run.dir={run_dir}"])
        if code != 0:
            return {"status": "failed", "placement": placement, "error": err.strip().splitlines()[-1] if err.strip() else f"exit {code}"}
        lines = history(run_dir)
        rates[placement], losses[placement] = round(lines[-1]["images_per_s"]), [r["loss"] for r in lines]
    same = losses["device"] == losses["host"]
    return {"status": "ok" if same else "failed", "images_per_s": rates, "host_over_device": round(rates["host"] / rates["device"], 3),
            "same_losses": same}


# --- 4. k-means -----------------------------------------------------------------------


def check_kmeans(ctx: "Context") -> dict[str, Any]:
    import faiss

    from clusterbench.cluster import kmeans

    n, d = (6_000, 64) if ctx.tiny else (60_000, 512)
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(10, d, generator=gen) * 3
    x = centres[torch.randint(10, (n,), generator=gen)] + torch.randn(n, d, generator=gen)
    runs: dict[str, Callable[[], Any]] = {
        "faiss (cpu)": lambda: kmeans(x, 10, niter=20, tol=0, backend="faiss", seed=0, device="cpu"),
        "torch (cpu)": lambda: kmeans(x, 10, niter=20, tol=0, backend="torch", seed=0, device="cpu"),
    }
    if ctx.device.type == "cuda":
        runs[f"torch ({ctx.device})"] = lambda: kmeans(x, 10, niter=20, tol=0, backend="torch", seed=0, device=ctx.device)
        if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
            runs["faiss-gpu"] = lambda: kmeans(x, 10, niter=20, tol=0, backend="faiss", seed=0, device=ctx.device)
    seconds = {}
    for name, fn in runs.items():
        fn()  # warm-up: CUDA context, kernels, faiss's index
        synchronize(ctx.device)
        start = time.perf_counter()
        fn()
        synchronize(ctx.device)
        seconds[name] = round(time.perf_counter() - start, 3)
    base = seconds["faiss (cpu)"]
    return {"status": "ok", "shape": [n, d], "fit_s": seconds, "speed_vs_faiss_cpu": {k: round(base / v, 2) for k, v in seconds.items()},
            "faiss_gpus": int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0}


# --- 5. MoCo on MNIST in 3 minutes ------------------------------------------------------


def check_mnist_moco(ctx: "Context") -> dict[str, Any]:
    if ctx.tiny:
        return {"status": "skipped", "why": "--tiny (needs the real MNIST)"}
    root = ctx.args.root
    if not (root / "MNIST" / "raw").is_dir():
        return {"status": "skipped", "why": f"no MNIST under {root} (copy MNIST/raw/*.gz there)"}
    run_dir = ctx.scratch / "mnist_moco"
    code, err = cli(["method=moco", "dataset=mnist", f"dataset.root={root}", "trainer.max_minutes=3", *ctx.hardware,
                     "plots.enabled=false", f"hydra.run.dir={run_dir}"])
    if code != 0:
        return {"status": "failed", "error": err.strip().splitlines()[-1] if err.strip() else f"exit {code}"}
    m = json.loads((run_dir / "metrics.json").read_text())
    info = m["method_info"]
    return {"status": "ok", "acc": round(m["acc"], 4), "nmi": round(m["nmi"], 4), "ari": round(m["ari"], 4), "epochs": info.get("epochs"),
            "images_per_s": round(info.get("images_per_s", 0)), "wall_s": round(m["wall_seconds"]), "study_acc_5min": STUDY_MNIST_ACC}


# --- 6. one CIFAR-10 epoch of MoCo's recipe ----------------------------------------------


def check_cifar_epoch(ctx: "Context") -> dict[str, Any]:
    root = ctx.args.root
    real = (root / "cifar-10-batches-py" / "data_batch_1").exists() and not ctx.tiny
    if not real:
        root = ctx.scratch / "cifar_standin"
        per_batch = 200 if ctx.tiny else 10_000
        formats.write_cifar10(root, per_batch=per_batch, n_test=per_batch)
    run_dir = ctx.scratch / "cifar_epoch"
    tiny = ["backbone=strided", "trainer.batch_size=64", *TINY_METHOD["moco"]] if ctx.tiny else []
    code, err = cli(["method=moco", "dataset=cifar10", f"dataset.root={root}", "trainer.epochs=1", *ctx.hardware, *tiny,
                     "plots.enabled=false", f"hydra.run.dir={run_dir}"])
    if code != 0:
        return {"status": "failed", "error": err.strip().splitlines()[-1] if err.strip() else f"exit {code}"}
    epoch = history(run_dir)[0]
    steps_s = epoch["epoch_s"] - epoch.get("epoch_start_s", 0.0)
    return {"status": "ok", "data": "real CIFAR-10" if real else "random images in CIFAR-10's format", "epoch_s": round(epoch["epoch_s"], 1),
            "images_per_s": round(epoch["images_per_s"]), "vs": {k: round(v / max(steps_s, 1e-9), 2) for k, v in CIFAR_EPOCH_S.items()}}


CHECKS: dict[str, Callable[["Context"], dict[str, Any]]] = {
    "methods": check_methods, "compile": check_compile, "step_efficiency": check_step_efficiency, "placement": check_placement,
    "kmeans": check_kmeans, "mnist_moco": check_mnist_moco, "cifar_epoch": check_cifar_epoch,
}


class Context:
    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args, self.scratch, self.tiny = args, scratch, args.tiny
        self.device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
        self.hardware = [f"hardware.device={self.device.type}"] + (["hardware.threads=1"] if self.tiny else [])
        self.methods = args.methods
        self.tiny_images = 128 if self.tiny else 512


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda, bf16=torch.cuda.is_bf16_supported())
    try:
        import faiss

        env["faiss"] = faiss.__version__
    except ImportError:
        pass
    return env


def markdown(summary: dict[str, Any]) -> str:
    """The summary a note quotes: one line per check, then each check's figures."""
    lines = ["# GPU check", "", f"{json.dumps(summary['environment'])}", "",
             f"total {summary['seconds']:.0f} s of a {summary['budget_minutes']} min budget", "", "| check | status | s | figures |", "|---|---|---|---|"]
    for name, r in summary["checks"].items():
        figures = {k: v for k, v in r.items() if k not in ("status", "seconds", "runs", "cases")}
        lines.append(f"| {name} | {r['status']} | {r.get('seconds', 0):.0f} | {json.dumps(figures)[:300]} |")
    methods = summary["checks"].get("methods", {}).get("runs", {})
    if methods:
        lines += ["", "| method / precision | status | losses (3 epochs, the 3rd resumed) | s |", "|---|---|---|---|"]
        lines += [f"| {k} | {r['status']} | {r.get('losses', r.get('why', r.get('error', '')))} | {r.get('seconds', '')} |" for k, r in methods.items()]
    cases = summary["checks"].get("step_efficiency", {}).get("cases", {})
    if cases:
        lines += ["", "| case | batch | precision | bare img/s | MoCo img/s | MoCo / bare | augment share |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {k} | {r['batch']} | {r['precision']} | {r['bare_img_s']} | {r['moco_img_s']} | {r['moco_over_bare']} | {r['augment_share']} |"
                  for k, r in cases.items()]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    parser.add_argument("--root", type=Path, default=SHARED_DATA, help="MNIST / CIFAR-10 as torchvision lays them out")
    parser.add_argument("--budget-minutes", type=float, default=8.0, help="no check starts after this")
    parser.add_argument("--checks", nargs="+", default=list(CHECKS), choices=list(CHECKS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--tiny", action="store_true", help="tiny sizes; runs on the CPU when no GPU is visible (the test)")
    parser.add_argument("--cpu", action="store_true", help="use the CPU even when a GPU is visible")
    parser.add_argument("--compile", action="store_true", help="with --tiny: run the compile check too")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(args, Path(tmp))
        summary: dict[str, Any] = {"environment": environment(ctx.device), "budget_minutes": args.budget_minutes, "checks": {}, "seconds": 0.0}
        for name in args.checks:
            t0 = time.perf_counter()
            if t0 - start > 60 * args.budget_minutes:
                result = {"status": "skipped", "why": "past the budget"}
            else:
                try:
                    result = CHECKS[name](ctx)
                except Exception as ex:  # one broken check must not lose the others' figures
                    result = {"status": "failed", "error": f"{type(ex).__name__}: {ex}"[:400], "where": traceback.format_exc().splitlines()[-3:]}
            result["seconds"] = round(time.perf_counter() - t0, 1)
            summary["checks"][name] = result
            summary["seconds"] = time.perf_counter() - start
            (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=1))
            (args.out / "gpu_check.md").write_text(markdown(summary))
            print(f"{name}: {result['status']} ({result['seconds']} s)", flush=True)
    print(markdown(summary))
    return summary


if __name__ == "__main__":
    main()
