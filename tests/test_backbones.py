"""Learned backbones and projection heads: shapes, gradients, memory formats, configs, errors."""

from __future__ import annotations

from importlib import resources
from typing import Any, Callable

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from clusterbench.backbones.convnet import ConvNet, StridedConvNet
from clusterbench.backbones.heads import projection_head
from clusterbench.backbones.mlp import MLP
from clusterbench.backbones.pixels import Pixels
from clusterbench.backbones.resnet import ResNet
from clusterbench.config import BACKBONE_SCHEMAS, ResNetConfig
from clusterbench.errors import ConfigError


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These batches of 2 gain nothing from intra-op threads, and when other processes share
    the cores OpenMP's spinning barriers made this file 3× slower (52 s against 16 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "convnet": ConvNet,
    "strided": lambda c, s: StridedConvNet(c, s, widths=[32, 64, 128]),
    "mlp": lambda c, s: MLP(c, s, hidden=[64, 32]),  # small: the default's 2000-wide layer is slow to init
    "mlp_bn": lambda c, s: MLP(c, s, hidden=[64, 32], batch_norm=True),
    "resnet18": lambda c, s: ResNet(c, s, depth=18),
    "resnet34": lambda c, s: ResNet(c, s, depth=34),
    "resnet50": lambda c, s: ResNet(c, s, depth=50),
}
OUT_DIM = {"convnet": 128, "strided": 128, "mlp": 32, "mlp_bn": 32, "resnet18": 512, "resnet34": 512, "resnet50": 2048}
SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar": (3, 32, 32)}
# ResNet-34 differs from 18 only in block counts (the input adaptation is shared code), so it
# runs on one shape: the suite stays within ~10 s on 2 cores.
CASES = [(b, s) for b in ("convnet", "strided", "mlp", "mlp_bn") for s in SHAPES] + [
    (b, s) for b in ("resnet18", "resnet50") for s in ("mnist", "cifar")
] + [("resnet34", "cifar")]


def step(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Forward + backward of a scalar loss; returns the features."""
    out = model(x)
    out.square().mean().backward()
    return out


def assert_finite_grads(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"


# --- shapes and gradients --------------------------------------------------------------


@pytest.mark.parametrize("backbone,shape", CASES)
def test_output_shape_and_finite_grads(backbone, shape):
    torch.manual_seed(0)
    c, h, w = SHAPES[shape]
    model = BUILDERS[backbone](c, h).train()
    out = step(model, torch.randn(2, c, h, w))
    assert model.out_dim == OUT_DIM[backbone] and isinstance(model.out_dim, int)
    assert out.shape == (2, model.out_dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert_finite_grads(model)


def test_resnet_imagenet_stem_on_64px():
    torch.manual_seed(0)
    model = ResNet(3, 64, depth=18, cifar_stem=False).train()
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert isinstance(model.maxpool, nn.MaxPool2d)
    out = step(model, torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 512)
    assert_finite_grads(model)


def test_pixels_accepts_the_dataset_shape_and_keeps_its_behaviour():
    model = Pixels(in_channels=3, image_size=32)
    assert model.out_dim == 3 * 32 * 32 and model.name == "pixels"
    images = torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)
    assert torch.equal(model(images), torch.ones(2, 3 * 32 * 32))
    assert Pixels().out_dim == 64  # the old no-argument call still works (1×8×8)


# --- memory format ---------------------------------------------------------------------


@pytest.mark.parametrize("backbone,shape", [("convnet", "mnist"), ("convnet", "digits"), ("strided", "mnist"), ("strided", "digits"), ("mlp", "cifar"), ("resnet18", "cifar")])
def test_channels_last_matches_contiguous(backbone, shape):
    torch.manual_seed(0)
    c, h, w = SHAPES[shape]
    model = BUILDERS[backbone](c, h).eval()
    x = torch.randn(4, c, h, w)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    model.train()  # and training works in that format too
    step(model, x.to(memory_format=torch.channels_last))
    assert_finite_grads(model)


# --- architecture details --------------------------------------------------------------


def test_resnet_cifar_stem_and_parameter_count():
    model = ResNet(3, 32, depth=18)  # cifar_stem null → true at 32 px
    assert model.cifar_stem is True
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert not hasattr(model, "fc")
    # torchvision's 11,689,512 minus fc (513,000) minus the 7×7→3×3 conv1 (9,408 - 1,728).
    assert sum(p.numel() for p in model.parameters()) == 11_168_832


def test_resnet_stem_default_follows_image_size():
    assert ResNet(3, 64).cifar_stem is True
    assert ResNet(3, 96).cifar_stem is False  # STL-10: ImageNet stem
    assert ResNet(3, 96, cifar_stem=True).cifar_stem is True
    assert ResNet(1, 28).conv1.in_channels == 1


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_matches_torchvision_layout(depth):
    """At width 64 the state dict is torchvision's minus fc, so its weights load."""
    import torchvision

    ref = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    ours = ResNet(3, 224, depth=depth, cifar_stem=False)
    expected = {k: v.shape for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in ours.state_dict().items()} == expected


@pytest.mark.parametrize("depth,out_dim", [(18, 256), (50, 1024)])
def test_resnet_width_scales_every_stage(depth, out_dim):
    model = ResNet(3, 32, depth=depth, width=32)
    assert model.out_dim == out_dim and model.conv1.out_channels == 32
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, out_dim)


def test_convnet_padding_and_fc_size_follow_image_size():
    mnist = ConvNet(1, 28)
    assert mnist.padding == 0 and mnist.fc.in_features == 9216  # the reference net exactly
    # the reference's 1,199,882 parameters minus its 128→10 classifier
    assert sum(p.numel() for p in mnist.parameters()) == 1_199_882 - 1_290
    digits = ConvNet(1, 8)
    assert digits.padding == 1 and digits.fc.in_features == 64 * 4 * 4
    assert ConvNet(3, 96).fc.in_features == 64 * 46 * 46  # computed, not hard-coded to 28


def test_strided_first_stride_depends_on_image_size():
    assert StridedConvNet(1, 8).features[0].stride == (1, 1)
    assert StridedConvNet(1, 8).final_size == 2  # 8 → 8 → 4 → 2
    assert StridedConvNet(1, 28, widths=[32, 64, 128]).features[0].stride == (2, 2)
    assert StridedConvNet(1, 28, widths=[32, 64, 128]).final_size == 4  # 28 → 14 → 7 → 4


@pytest.mark.parametrize("size,widths,final", [(8, [32, 64, 128], 2), (28, [32, 64, 128, 256], 2), (32, [32, 64, 128, 256], 2),
                                               (96, [32, 64, 128, 256, 256, 256], 2), (3, [32, 64], 2), (2, [32], 2)])
def test_strided_widths_default_to_one_stage_per_halving(size, widths, final):
    net = StridedConvNet(1, size)
    assert [m.out_channels for m in net.features if isinstance(m, nn.Conv2d)] == widths
    assert net.final_size == final and net.out_dim == widths[-1]


def test_mlp_layers():
    model = MLP(1, 28)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 500), (500, 500), (500, 2000)]
    assert model.out_dim == 2000 and not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    bn = MLP(3, 32, hidden=[16], batch_norm=True)
    assert [type(m) for m in bn.layers] == [nn.Linear, nn.BatchNorm1d, nn.ReLU]
    assert bn.layers[0].in_features == 3 * 32 * 32 and bn.layers[0].bias is None


# --- projection heads ------------------------------------------------------------------


def test_projection_head_single_linear():
    head = projection_head(512, 2048, 128, num_layers=1)
    assert isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (512, 128)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_projection_head_two_layers(batch_norm):
    head = projection_head(512, 2048, 128, num_layers=2, batch_norm=batch_norm)
    expected = [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear] if batch_norm else [nn.Linear, nn.ReLU, nn.Linear]
    assert [type(m) for m in head] == expected
    assert (head[0].in_features, head[0].out_features, head[-1].out_features) == (512, 2048, 128)
    assert (head[0].bias is None) == batch_norm and head[-1].bias is not None
    assert head(torch.randn(4, 512)).shape == (4, 128)


def test_projection_head_three_layers():
    head = projection_head(64, 32, 16, num_layers=3, batch_norm=True)
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 32), (32, 16)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head) == 2
    assert head(torch.randn(3, 64)).shape == (3, 16)


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"in_dim": 0}, "head.in_dim"),
        ({"hidden_dim": -1}, "head.hidden_dim"),
        ({"out_dim": 1.5}, "head.out_dim"),
        ({"num_layers": 0}, "head.num_layers"),
        ({"num_layers": True}, "head.num_layers"),
        ({"batch_norm": "yes"}, "head.batch_norm"),
        ({"in_dim": 0, "prefix": "method.head"}, "method.head.in_dim"),
        ({"hidden_dim": 0, "keys": {"hidden_dim": "method.head_hidden"}}, "method.head_hidden"),
        ({"out_dim": 0, "keys": {"hidden_dim": "method.head_hidden"}}, "head.out_dim"),
    ],
)
def test_projection_head_rejects_bad_arguments(kwargs, key):
    """The error names the config key the value came from (prefix / keys), by default head.<arg>."""
    args: dict[str, Any] = {"in_dim": 512, "hidden_dim": 2048, "out_dim": 128, **kwargs}
    with pytest.raises(ConfigError) as ex:
        projection_head(**args)
    assert ex.value.key == key and str(ex.value).startswith(f"{key}: ")


# --- bad backbone configs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "build,key",
    [
        (lambda: ResNet(3, 32, depth=20), "backbone.depth"),
        (lambda: ResNet(3, 32, width=0), "backbone.width"),
        (lambda: ResNet(1, 8, cifar_stem=False), "backbone.cifar_stem"),  # 8 px through the ImageNet stem
        (lambda: ResNet(1, 4), "backbone.image_size"),
        (lambda: ConvNet(1, 28, channels=[]), "backbone.channels"),
        (lambda: ConvNet(1, 28, channels=[32]), "backbone.channels"),
        (lambda: ConvNet(1, 28, channels=[32, -64]), "backbone.channels"),
        (lambda: ConvNet(1, 28, hidden=0), "backbone.hidden"),
        (lambda: ConvNet(1, 28, dropout=1.0), "backbone.dropout"),
        (lambda: ConvNet(0, 28), "backbone.in_channels"),
        (lambda: ConvNet(1, 1), "backbone.image_size"),
        (lambda: StridedConvNet(1, 28, widths=[]), "backbone.widths"),
        (lambda: StridedConvNet(1, 28, widths=[32, 0]), "backbone.widths"),
        (lambda: StridedConvNet(1, 8, widths=[8, 8, 8, 8, 8]), "backbone.widths"),  # 8 → 8 → 4 → 2 → 1 → ?
        (lambda: MLP(1, 8, hidden=[]), "backbone.hidden"),
        (lambda: MLP(1, 8, hidden=[10, 0]), "backbone.hidden"),
        (lambda: Pixels(1, 0), "backbone.image_size"),
    ],
)
def test_bad_backbone_values_raise_config_error(build, key):
    with pytest.raises(ConfigError) as ex:
        build()
    assert ex.value.key == key
    assert "; " in str(ex.value)  # what is wrong; how to fix it


def test_strided_accepts_the_deepest_valid_stack():
    assert StridedConvNet(1, 8, widths=[8, 8, 8, 8]).final_size == 1


# --- YAML options ------------------------------------------------------------------------

SCHEMAS = BACKBONE_SCHEMAS  # every option names one of these in its defaults


def backbone_options() -> list[str]:
    folder = resources.files("clusterbench.conf") / "backbone"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def test_every_new_option_exists():
    assert {"pixels", "convnet", "strided", "resnet18", "resnet34", "resnet50", "mlp"} <= set(backbone_options())


@pytest.mark.parametrize("option", backbone_options())
def test_yaml_composes_into_its_schema_and_instantiates(option):
    from hydra.utils import instantiate

    raw = OmegaConf.create((resources.files("clusterbench.conf") / "backbone" / f"{option}.yaml").read_text())
    schema_ref = next(d for d in raw.defaults if isinstance(d, str) and d.startswith("/schema/backbone/"))
    schema = SCHEMAS[schema_ref.removeprefix("/schema/backbone/").removesuffix("@_here_")]
    del raw["defaults"]
    cfg = OmegaConf.merge(OmegaConf.structured(schema), raw)  # fails on a key the schema lacks
    assert cfg.name == option
    spatial = option == "capsule"  # SCAE's part encoder: a feature map, at its 40-px MNIST canvas (8 px vanish under its strides)
    size = 40 if spatial else 8
    model = instantiate(cfg, in_channels=1, image_size=size)
    assert isinstance(model, nn.Module) and isinstance(model.out_dim, int)
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 1, size, size))
    assert out.shape == ((2, model.out_dim, 5, 5) if spatial else (2, model.out_dim))
    assert getattr(model, "spatial", False) == spatial
    if schema is ResNetConfig:
        assert model.depth == int(option.removeprefix("resnet"))


def test_bad_value_reaches_the_run_as_a_config_error():
    """Hydra wraps constructor errors; the run unwraps a ConfigError cause (run.build)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    cfg = OmegaConf.merge(OmegaConf.structured(ResNetConfig), {"_target_": "clusterbench.backbones.resnet.ResNet", "name": "resnet18", "depth": 20})
    with pytest.raises(InstantiationException) as ex:
        instantiate(cfg, in_channels=3, image_size=32)
    assert isinstance(ex.value.__cause__, ConfigError) and ex.value.__cause__.key == "backbone.depth"
