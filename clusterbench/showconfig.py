"""``clusterbench [overrides] --cfg job``: the config a run would use, resolved, headed by the
method × dataset recipe that applied (and its source), without running anything.

Hydra's own ``--cfg job`` prints interpolations as written (``root: ${oc.env:...}``) and cannot
say which optional ``method_dataset`` file it merged; this one composes the same config through
Hydra's compose API and resolves it. ``--cfg hydra`` / ``--cfg all`` stay Hydra's.
"""

from __future__ import annotations

from typing import Optional, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


def wants_job_config(argv: Sequence[str]) -> Optional[list[str]]:
    """The overrides of a ``--cfg job`` call (not a sweep), or None for any other call."""
    args = list(argv)
    for flag in ("--cfg", "-c"):
        if flag in args and args.index(flag) + 1 < len(args) and args[args.index(flag) + 1] == "job":
            i = args.index(flag)
            args = args[:i] + args[i + 2 :]
            break
    else:
        if "--cfg=job" not in args:
            return None
        args.remove("--cfg=job")
    if any(a.startswith("-") for a in args):  # -m, --package, ...: Hydra's business
        return None
    return args


def job_config_text(overrides: Sequence[str]) -> str:
    from hydra import compose, initialize_config_module

    from clusterbench.config import register_schemas
    from clusterbench.plan import recipe_file, recipe_source

    register_schemas()
    with initialize_config_module(config_module="clusterbench.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    method, dataset, experiment = str(choices.method), str(choices.dataset), choices.get("experiment")
    recipe = recipe_file(method, dataset)
    head = (f"# recipe: {recipe}.yaml — {recipe_source(recipe)}" if recipe
            else f"# recipe: none for {method} × {dataset}: the generic defaults")
    head += f"\n# experiment: {experiment}" if experiment and str(experiment) != "None" else ""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    from clusterbench.recipes import recipe_groups

    # the backbone and views the run will use: a recipe's recipe_backbone / recipe_augment replace
    # the method's and the dataset's defaults at run time, so show them replaced
    augment, backbone, chosen = recipe_groups(job, list(overrides))
    OmegaConf.set_struct(job, False)
    job.augment, job.backbone = augment, backbone
    head += "".join(f"\n# {what}: {why}" for what, why in chosen.items())
    try:
        body = OmegaConf.to_yaml(job, resolve=True)
    except OmegaConfBaseException:  # an interpolation only a run can resolve: show it as written
        body = OmegaConf.to_yaml(job)
    return f"{head}\n{body}"


__all__ = ["job_config_text", "wants_job_config"]
