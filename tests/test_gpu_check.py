"""benchmarks/gpu_check.py stays runnable without a GPU: its checks at tiny size on the CPU
(fp16 and the real-data checks are skipped there and say why)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_gpu_check_runs_its_cpu_parts_at_tiny_size(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_check

    summary = gpu_check.main(["--tiny", "--cpu", "--out", str(tmp_path), "--methods", "moco", "--root", str(tmp_path / "no-data")])
    checks = json.loads((tmp_path / "gpu_check.json").read_text())["checks"]
    assert checks.keys() == gpu_check.CHECKS.keys() and summary["checks"].keys() == checks.keys()
    assert all(c["status"] in ("ok", "skipped") for c in checks.values()), {k: c for k, c in checks.items() if c["status"] == "failed"}
    runs = checks["methods"]["runs"]
    assert runs["moco/fp32"]["status"] == runs["moco/bf16"]["status"] == "ok" and runs["moco/fp32"]["resumed_to_epoch"] == 3
    assert runs["moco/fp16"] == {"status": "skipped", "why": "fp16 autocast needs CUDA"}
    assert {"mnist convnet", "cifar resnet18"} == set(checks["step_efficiency"]["cases"])
    assert 0 < checks["step_efficiency"]["cases"]["mnist convnet"]["moco_over_bare"]
    assert checks["placement"]["same_losses"] and checks["placement"]["images_per_s"]["host"] > 0
    assert set(checks["kmeans"]["fit_s"]) == {"faiss (cpu)", "torch (cpu)"}
    assert checks["cifar_epoch"]["data"] == "random images in CIFAR-10's format"
    assert "| methods | ok |" in (tmp_path / "gpu_check.md").read_text()
    sys.modules.pop("gpu_check", None)
