"""Every config-group option composes, and the typed schemas catch typos and wrong types."""

from __future__ import annotations

from importlib import resources

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf


def options(group: str) -> list[str]:
    folder = resources.files("clusterbench.conf") / group
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def test_groups_hold_the_expected_options():
    assert set(options("method")) == {"kmeans", "gmm", "ae", "moco", "pcl", "swav", "deepcluster", "mice", "infogan", "scae"}
    assert set(options("dataset")) == {"mnist", "cifar10", "cifar100", "stl10", "imagenet_dog", "digits", "synthetic", "folder", "array"}
    assert set(options("hardware")) == {"cpu", "gpu", "auto", "ddp"}
    assert {"pixels", "convnet", "strided", "resnet18", "resnet34", "resnet50", "mlp", "infogan", "capsule"} <= set(options("backbone"))
    assert {"mnist", "mocov2", "multicrop", "none"} <= set(options("augment"))


@pytest.mark.parametrize("method", options("method"))
@pytest.mark.parametrize("dataset", options("dataset"))
def test_every_method_composes_with_every_dataset(compose, method, dataset):
    cfg = compose(f"method={method}", f"dataset={dataset}")
    assert cfg.dataset.name == dataset
    assert cfg.method._target_.startswith("clusterbench.methods.")
    assert str(cfg.dataset.split.value) == "all"
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


@pytest.mark.parametrize("group", ["backbone", "hardware", "augment"])
def test_every_backbone_hardware_and_augment_option_composes(compose, group):
    for option in options(group):
        cfg = compose(f"{group}={option}")
        OmegaConf.to_container(cfg[group], resolve=True)


@pytest.mark.parametrize("experiment", [o for o in options("experiment") if o.endswith("_cifar10")])
def test_every_experiment_recipe_composes(compose, experiment):
    """experiment=<method>_cifar10 is method=<method> dataset=cifar10: the pair's recipe
    (conf/method_dataset/) applies, with the backbone and views it chooses."""
    from clusterbench.recipes import recipe_groups

    cfg = compose(f"experiment={experiment}")
    method, dataset = experiment.rsplit("_", 1)
    assert cfg.method._target_.lower().endswith(method.replace("_", "")) and cfg.dataset.name == dataset
    _, backbone, chosen = recipe_groups(cfg, [f"experiment={experiment}"])
    assert backbone.name.startswith("resnet") and "backbone" in chosen
    OmegaConf.to_container(cfg, resolve=True)


def test_defaults_are_moco_on_digits(compose):
    cfg = compose()
    assert cfg.method._target_.endswith("MoCo") and cfg.dataset.name == "digits"
    assert cfg.seed == 0 and cfg.method.num_clusters is None and cfg.resume is False


def test_methods_pick_their_backbone_and_datasets_their_views(compose):
    assert compose("method=kmeans").backbone.name == "pixels"
    assert compose("method=moco").backbone.name == "strided"
    assert compose("method=moco", "backbone=resnet18").backbone.depth == 18
    assert compose("method=ae").backbone.name == "mlp"
    assert compose("dataset=mnist").augment.name == "mnist"
    assert compose("dataset=cifar10").augment.name == "mocov2"
    assert compose("dataset=cifar10", "augment=multicrop").augment.local_crops == 6


@pytest.mark.parametrize("override", ["trainer.epoch=3", "trainer.optimizer=adagrad", "trainer.precision=fp8", "augment.hflipp=0.5", "method.queue_size=big"])
def test_trainer_and_augment_typos_fail_at_compose_time(compose, override):
    with pytest.raises(ConfigCompositionException):
        compose(override)


@pytest.mark.parametrize(
    "override",
    ["method.nitre=5", "dataset.targets=fine", "seed=abc", "method.pca_dim=1.5", "dataset.split=val", "hardware.device=tpu", "dataset.download=maybe"],
)
def test_typos_and_wrong_types_fail_at_compose_time(compose, override):
    with pytest.raises(ConfigCompositionException):
        compose(override)


def test_dataset_specific_keys_exist_only_where_they_mean_something(compose):
    assert compose("dataset=cifar100", "dataset.targets=fine").dataset.targets.value == "fine"
    assert compose("dataset=stl10", "dataset.unlabeled=true").dataset.unlabeled is True
    assert compose("dataset=imagenet_dog", "dataset.image_size=64").dataset.image_size == 64


def test_dataset_root_follows_the_environment(compose, monkeypatch):
    monkeypatch.setenv("CLUSTERBENCH_DATA", "/somewhere")
    assert OmegaConf.to_container(compose("dataset=mnist").dataset, resolve=True)["root"] == "/somewhere"


def test_the_mnist_5min_recipe_keeps_time_for_its_stage(compose):
    cfg = compose("experiment=mnist_5min")
    assert cfg.method._target_.endswith("DeepCluster") and cfg.dataset.name == "mnist"
    assert cfg.cluster.name == "umap" and 0 < cfg.cluster.minutes < cfg.trainer.max_minutes == 5
    OmegaConf.to_container(cfg, resolve=True)


def test_the_infogan_budget_recipe_is_the_papers_run_cut_by_the_clock(compose):
    cfg = compose("experiment=infogan_mnist_10min")
    assert cfg.method._target_.endswith("InfoGAN") and cfg.dataset.name == "mnist" and cfg.trainer.max_minutes == 10
    assert cfg.trainer.batch_size == 128 and cfg.trainer.lr == 2e-4 and str(cfg.trainer.schedule.value) == "constant"  # the MNIST recipe's


def test_the_scae_budget_recipe_is_the_official_run_cut_by_the_clock(compose):
    cfg = compose("experiment=scae_mnist_10min")
    assert cfg.method._target_.endswith("SCAE") and cfg.dataset.name == "mnist" and cfg.trainer.max_minutes == 10
    assert cfg.method.canvas_size == 40 and cfg.method.part_capsules == 40 and cfg.method.object_capsules == 32  # the official run's
    assert str(cfg.trainer.optimizer.value) == "rmsprop" and cfg.trainer.lr == 3e-5 and cfg.trainer.batch_size == 128
    assert str(cfg.trainer.schedule.value) == "constant"


def test_every_experiment_is_tested():
    assert set(options("experiment")) == {"moco_cifar10", "pcl_cifar10", "swav_cifar10", "deepcluster_cifar10", "mice_cifar10", "mnist_5min",
                                          "infogan_mnist_10min", "scae_mnist_10min"}


def test_a_recipe_may_choose_its_views_and_backbone_and_the_command_line_wins(compose):
    from clusterbench.recipes import recipe_groups

    cfg = compose("dataset=mnist", "recipe_augment=mnist_study", "recipe_backbone=convnet", "augment.global_scale=[0.5,1.0]")
    augment, backbone, chosen = recipe_groups(cfg, ["dataset=mnist", "augment.global_scale=[0.5,1.0]"])
    assert augment.name == "mnist_study" and backbone.name == "convnet" and set(chosen) == {"augment", "backbone"}
    assert list(augment.global_scale) == [0.5, 1.0]  # augment.* settings go over the recipe's views
    user = ["dataset=mnist", "augment=mnist", "backbone=strided"]
    augment, backbone, chosen = recipe_groups(compose(*user, "recipe_augment=mnist_study", "recipe_backbone=convnet"), user)
    assert augment.name == "mnist" and backbone.name == "strided" and chosen == {}
