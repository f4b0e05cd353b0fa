"""Weight compatibility: torchvision's and timm's state dicts load into our models and give the same
logits (eval mode, random batch, max abs diff < 1e-4). torchvision and timm are test dependencies."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import randomize_norms
from resnet.models import create_model, load_weights

torchvision = pytest.importorskip("torchvision")

TORCHVISION_NAMES = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "resnext50_32x4d",
    "resnext101_32x8d",
]


def max_logit_diff(ours: nn.Module, reference: nn.Module, size: int = 64, *, relative: bool = False) -> float:
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = reference.eval()(x)
        diff = (ours.eval()(x) - expected).abs().max().item()
    return diff / max(1.0, expected.abs().max().item()) if relative else diff


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_torchvision_state_dict_loads_strictly_with_same_logits(name: str) -> None:
    torch.manual_seed(0)
    reference = randomize_norms(getattr(torchvision.models, name)(weights=None))
    with torch.device("meta"):  # no initialisation: every tensor comes from torchvision's model
        ours = create_model(name)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    # The big nets run at 64x64 (the deepest stage at 2x2) to keep the suite quick.
    assert max_logit_diff(ours, reference) < 1e-4


def test_torchvision_weights_through_load_weights_file(tmp_path) -> None:
    reference = randomize_norms(torchvision.models.resnet18(weights=None))
    path = tmp_path / "resnet18-f37072fd.pth"  # the shape of torchvision's published files
    torch.save(reference.state_dict(), path)
    ours = create_model("resnet18")
    assert load_weights(ours, path).exact
    assert max_logit_diff(ours, reference) < 1e-4


@pytest.mark.parametrize("name,timm_name", [("resnet50d", "resnet50d"), ("resnet50c", "resnet50c"), ("resnet18d", "resnet18d"), ("resnet50_v2", "resnetv2_50")])
def test_timm_state_dict_loads_through_load_weights(name: str, timm_name: str) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = randomize_norms(timm.create_model(timm_name, pretrained=False))
    ours = create_model(name)
    result = load_weights(ours, reference.state_dict(), strict=True)
    assert result.exact
    # Pre-activation nets have no BN between the last unit and the head, so with random weights
    # their logits reach ~100 and fp32 rounding (timm's 1x1-conv head vs our linear) scales with them.
    assert max_logit_diff(ours, reference, relative=name.endswith("_v2")) < 1e-4
