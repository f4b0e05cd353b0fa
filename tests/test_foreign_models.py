"""The model options that reproduce other frameworks' ResNets (BN eps, conv biases, stem-pool
padding, stride position, blocks per stage) and the variants registered with them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet.errors import ResNetError
from resnet.models import create_model, model_from_checkpoint, save_weights
from resnet.models.resnet import SamePadMaxPool2d, Subsample


def meta_model(name: str, **options: object) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **options)


def keras_count(model: nn.Module) -> int:
    """Keras' count_params: the weights plus each BatchNorm's moving mean and variance."""
    stats = sum(m.running_mean.numel() + m.running_var.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    return sum(p.numel() for p in model.parameters()) + stats


@pytest.mark.parametrize(
    "name,count",
    [("resnet50_keras", 25_636_712), ("resnet50v2_keras", 25_613_800), ("resnet101_keras", 44_707_176), ("resnet152v2_keras", 60_380_648)],
)
def test_keras_variants_have_keras_parameter_counts(name: str, count: int) -> None:
    assert keras_count(meta_model(name)) == count


def test_tutorial_and_slim_parameter_counts() -> None:
    # The tutorial's net: 23,600,006 in its Keras summary (6 classes, biases on every conv).
    assert keras_count(meta_model("resnet50_tutorial")) == 23_600_006
    # TF-slim v1 has torchvision's weights exactly (no biases); v2 the Keras V2 layout.
    assert sum(p.numel() for p in meta_model("resnet_v1_50_slim").parameters()) == 25_557_032
    assert sum(p.numel() for p in meta_model("resnet_v2_50_slim").parameters()) == 25_568_360


def test_conv_bias_unnormalized_is_stem_projection_and_last_conv() -> None:
    keys = set(meta_model("resnet50v2_keras").state_dict())
    assert {"conv1.bias", "layer1.0.conv3.bias", "layer1.0.downsample.0.bias", "layer4.2.conv3.bias"} <= keys
    assert not {"layer1.0.conv1.bias", "layer1.0.conv2.bias"} & keys
    keys = set(meta_model("resnet50_keras").state_dict())
    assert {"conv1.bias", "layer1.0.conv1.bias", "layer1.0.conv2.bias", "layer1.0.conv3.bias", "layer1.0.downsample.0.bias"} <= keys
    assert not any(k.endswith(".bias") and "conv" in k for k in meta_model("resnet50").state_dict())


def test_bn_eps_reaches_every_batchnorm() -> None:
    for name, eps in (("resnet50_keras", 1.001e-5), ("resnet50_tutorial", 1e-3), ("resnet_v2_50_slim", 1e-5)):
        norms = [m for m in meta_model(name).modules() if isinstance(m, nn.BatchNorm2d)]
        assert norms and all(m.eps == eps for m in norms), name
    frozen = meta_model("resnet18", norm_layer="frozen_batchnorm", bn_eps=1e-3)
    assert frozen.bn1.eps == 1e-3


def test_downsample_at_last_strides_the_last_block_of_stages_one_to_three() -> None:
    model = create_model("resnet_v2_50_slim", layers=(2, 2, 2, 2), widths=(8, 8, 16, 16)).eval()
    assert [info["reduction"] for info in model.feature_info] == [2, 8, 16, 32, 32]
    assert isinstance(model.layer1[1].downsample, Subsample) and model.layer1[1].downsample.stride == 2
    assert model.layer1[0].conv2.stride == (1, 1) and model.layer1[1].conv2.stride == (2, 2)
    assert all(m.conv2.stride == (1, 1) for m in model.layer4)  # the last stage does not stride
    sizes = []
    hooks = [getattr(model, f"layer{i}").register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1])) for i in range(1, 5)]
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert sizes == [64 // info["reduction"] for info in model.feature_info[1:]]


def test_subsampled_identity_takes_the_raw_input_in_preact_units() -> None:
    """Keras V2 / TF-slim v2: the strided last unit adds the raw input, subsampled, to its branch."""
    torch.manual_seed(0)
    block = create_model("resnet50v2_keras", layers=(2, 1, 1, 1), widths=(4, 4, 4, 4)).eval().layer1[1]
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        out = block(x)
        pre = F.relu(block.bn1(x))
        branch = block.conv3(F.relu(block.bn3(block.conv2(F.relu(block.bn2(block.conv1(pre)))))))
    assert torch.allclose(out, x[:, :, ::2, ::2] + branch, atol=1e-6)


def test_pool_paddings() -> None:
    x = -torch.rand(1, 1, 8, 8) - 1  # negative everywhere: padding choices show
    same = SamePadMaxPool2d(3, 2)(x)
    expected = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, 2)  # TF: the extra cell bottom/right
    assert same.shape == (1, 1, 4, 4) and torch.equal(same, expected)
    odd = torch.randn(1, 1, 7, 7)  # odd sizes pad one cell on each side
    assert torch.equal(SamePadMaxPool2d(3, 2)(odd), F.max_pool2d(odd, 3, 2, padding=1))
    zeros = create_model("resnet50v2_keras", layers=(1, 1, 1, 1)).maxpool(x)
    assert zeros.shape == (1, 1, 4, 4) and (zeros[..., 0, 0] == 0).all()  # Keras' ZeroPadding2D wins here
    assert (create_model("resnet50").maxpool(x) < 0).all()


def test_tutorial_net_pools_64_to_15_without_padding() -> None:
    model = create_model("resnet50_tutorial", layers=(1, 1, 1, 1), widths=(4, 8, 8, 8)).eval()
    assert model.num_classes == 6
    seen = []
    model.maxpool.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 6)
    assert seen == [(15, 15)]


def test_layers_option_rebuilds_from_checkpoint(tmp_path) -> None:
    model = create_model("resnet50v2_keras", num_classes=3, layers=(1, 2, 1, 1), widths=(8, 8, 16, 16)).eval()
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [1, 2, 1, 1]
    path = save_weights(model, tmp_path / "small.safetensors")
    rebuilt, meta = model_from_checkpoint(path)
    assert meta["model_options"]["layers"] == [1, 2, 1, 1]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt.eval()(x))


@pytest.mark.parametrize(
    "option,value", [("conv_bias", "some"), ("pool_padding", "reflect"), ("downsample_at", "middle"), ("bn_eps", 0.0)]
)
def test_bad_option_values_name_the_option(option: str, value: object) -> None:
    with pytest.raises(ResNetError, match=option):
        create_model("resnet18", **{option: value})
