"""Run several clusterbench jobs in one torchrun process group (tests/test_ddp_equality.py).

    torchrun --nproc_per_node=2 tests/ddp_worker.py SPEC.json

SPEC.json: ``{"jobs": [[arg, ...], ...], "fail": {"rank": 1, "step": 2}}`` (``fail`` optional).
The group is set up here once and shared by every job (``clusterbench.distributed.init`` joins a
group it did not create and leaves it standing), so N jobs pay for one start-up, not N. Each
job is the CLI in this process, with ``hardware=ddp`` added. With ``fail``, that rank raises
inside its training step at that global step, as a crashing rank would.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

import torch.distributed as dist


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    dist.init_process_group("gloo", timeout=timedelta(seconds=float(spec.get("timeout_s", 120))))
    fail = spec.get("fail")
    if fail is not None and dist.get_rank() == fail["rank"]:
        from clusterbench.methods.deep import DeepMethod

        original = DeepMethod.before_optimizer_step

        def crash(self, step: int) -> None:
            if step >= fail["step"]:
                raise RuntimeError(f"injected failure on rank {dist.get_rank()} at step {step}")
            original(self, step)

        DeepMethod.before_optimizer_step = crash  # type: ignore[method-assign]
    from clusterbench.cli import main as cli

    code = 0
    for args in spec["jobs"]:
        sys.argv = ["clusterbench", *args, "hardware=ddp", "hardware.device=cpu"]
        try:
            cli()
        except SystemExit as ex:
            code = code or int(ex.code or 0)
    if code == 0:  # with a failed job a peer may be gone: no more collectives
        dist.barrier()
    dist.destroy_process_group()
    sys.exit(code)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
