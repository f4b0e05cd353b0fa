"""The registry/factory split and backbone mode as a wrapper around the classifier net (issue 14, section 3)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from resnet.errors import ResNetError
from resnet.models import FeatureBackbone, ResNet, create_model, load_weights, model_from_checkpoint, register_model, save_weights
from resnet.models.registry import _BUILDERS


def _imported_modules(module: object) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}


def test_registry_and_weights_do_not_import_each_other() -> None:
    import resnet
    import resnet.models.registry as registry
    import resnet.models.weights as weights

    assert not {"resnet.models.weights", "resnet.models.factory"} & _imported_modules(registry)
    assert not {"resnet.models.registry", "resnet.models.factory"} & _imported_modules(weights)
    assert not hasattr(registry, "create_model") and not hasattr(weights, "model_from_checkpoint")
    assert resnet.create_model is resnet.models.factory.create_model
    assert resnet.model_from_checkpoint is model_from_checkpoint


def test_registering_a_name_twice_is_an_error() -> None:
    def resnet18(**kwargs: object) -> ResNet:  # noqa: ARG001
        raise AssertionError("never built")

    before = _BUILDERS["resnet18"]
    with pytest.raises(ResNetError, match="'resnet18' is already registered"):
        register_model(resnet18)
    assert _BUILDERS["resnet18"] is before


def test_classifier_forward_always_returns_a_tensor() -> None:
    model = create_model("resnet20").eval()
    assert isinstance(model, ResNet) and not hasattr(model, "features_only")
    with torch.no_grad():
        out = model(torch.randn(2, 3, 16, 16))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)


def test_features_only_returns_the_wrapper_with_unchanged_key_names() -> None:
    classifier = create_model("resnet18")
    backbone = create_model("resnet18", features_only=True, out_indices=(1, 4))
    assert isinstance(backbone, FeatureBackbone) and not isinstance(backbone, ResNet)
    # The classifier's keys minus the head: torchvision/timm checkpoints line up name for name.
    assert set(backbone.state_dict()) == {k for k in classifier.state_dict() if not k.startswith("fc.")}
    assert backbone.model_name == "resnet18" and backbone.model_options == {"features_only": True, "out_indices": [1, 4]}
    with pytest.raises(ResNetError, match="out_indices only applies with features_only=True"):
        create_model("resnet18", out_indices=(1,))


def test_backbone_outputs_equal_the_classifier_stages() -> None:
    torch.manual_seed(0)
    classifier = create_model("resnet50_v2").eval()  # pre-activation: the last output includes the final norm
    backbone = create_model("resnet50_v2", features_only=True, out_indices=(0, 1, 4)).eval()
    load_weights(backbone, classifier.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        stem = classifier.forward_stem(x)
        c2 = classifier.layer1(classifier.maxpool(stem))
        outs = backbone(x)
        assert torch.allclose(outs[0], stem) and torch.allclose(outs[1], c2)
        assert torch.allclose(outs[2], classifier.forward_features(x), atol=1e-6)


def test_load_weights_into_a_backbone_ignores_the_classifier(tmp_path) -> None:
    torch.manual_seed(0)
    classifier = create_model("resnet18", num_classes=7)
    path = save_weights(classifier, tmp_path / "clf.safetensors")
    backbone = create_model("resnet18", features_only=True)
    result = load_weights(backbone, path)  # strict: the fc.* keys are not "unexpected" for a backbone
    assert result.exact
    assert torch.equal(backbone.layer4[1].conv2.weight, classifier.layer4[1].conv2.weight)
    fresh = create_model("resnet18", features_only=True, pretrained_path=str(path))
    assert torch.equal(fresh.conv1.weight, classifier.conv1.weight)
    # A saved backbone rebuilds as a backbone.
    rebuilt, meta = model_from_checkpoint(save_weights(backbone, tmp_path / "bb.safetensors"))
    assert isinstance(rebuilt, FeatureBackbone) and meta["model_options"]["features_only"] is True


def test_backbone_grad_checkpointing_matches_plain_backward() -> None:
    torch.manual_seed(0)
    backbone = create_model("resnet20", features_only=True)
    x = torch.randn(2, 3, 16, 16)
    sum(o.sum() for o in backbone(x)).backward()
    expected = [p.grad.clone() for p in backbone.parameters()]
    backbone.zero_grad()
    backbone.set_grad_checkpointing()
    sum(o.sum() for o in backbone(x)).backward()
    assert all(torch.allclose(e, p.grad, atol=1e-5) for e, p in zip(expected, backbone.parameters(), strict=True))
