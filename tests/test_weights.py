"""Weights in and out: safetensors with metadata, wrapped/prefixed PyTorch files, shape errors,
pretrained loading for a new task, and refusing pickles that would run code."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from resnet.errors import ResNetError
from resnet.models import (
    create_model,
    load_weights,
    model_from_checkpoint,
    read_metadata,
    read_state_dict,
    save_weights,
)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def trained() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=6, in_chans=1, drop_path_rate=0.1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # differ from any fresh initialisation
    return model


# --- safetensors with the rebuild recipe in the header -------------------------------------------


def test_save_weights_writes_metadata_and_rebuilds(tmp_path: Path, trained: torch.nn.Module) -> None:
    path = tmp_path / "ckpt" / "best.safetensors"
    extra = {"class_names": list("abcdef"), "mean": (0.286,), "std": torch.tensor([0.353]), "image_size": [28, 28]}
    save_weights(trained, path, metadata=extra)
    assert [p.name for p in path.parent.iterdir()] == ["best.safetensors"]  # no temporary files left
    meta = read_metadata(path)
    assert meta["arch"] == "resnet20" and meta["num_classes"] == 6 and meta["in_chans"] == 1
    assert meta["model_options"] == {"drop_path_rate": 0.1}
    assert meta["class_names"] == list("abcdef") and meta["image_size"] == [28, 28]
    assert meta["mean"] == [0.286] and meta["std"] == pytest.approx([0.353])
    model, meta2 = model_from_checkpoint(path)
    assert meta2 == meta and model.model_name == "resnet20"
    assert _same_weights(model, trained)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), trained.eval()(x))


def test_save_weights_unwraps_a_compiled_model(tmp_path: Path, trained: torch.nn.Module) -> None:
    path = save_weights(torch.compile(trained), tmp_path / "w.safetensors")
    assert not any(k.startswith("_orig_mod.") for k in read_state_dict(path))
    assert read_metadata(path)["arch"] == "resnet20"


def test_metadata_must_be_json(tmp_path: Path, trained: torch.nn.Module) -> None:
    with pytest.raises(ResNetError, match="metadata value of type object"):
        save_weights(trained, tmp_path / "w.safetensors", metadata={"bad": object()})
    assert not (tmp_path / "w.safetensors").exists()


def test_not_a_resnet_checkpoint(tmp_path: Path, trained: torch.nn.Module) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(plain))
    with pytest.raises(ResNetError, match="not a resnet checkpoint"):
        model_from_checkpoint(plain)
    # ...but its weights load into a model built by hand.
    model = create_model("resnet20", num_classes=6, in_chans=1)
    assert load_weights(model, plain).exact and _same_weights(model, trained)
    pt = tmp_path / "w.pt"
    torch.save(trained.state_dict(), pt)
    with pytest.raises(ResNetError, match="not a safetensors file"):
        read_metadata(pt)
    with pytest.raises(ResNetError, match="not found"):
        model_from_checkpoint(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x01 not weights at all")
    with pytest.raises(ResNetError, match="neither a safetensors nor a PyTorch"):
        load_weights(model, garbage)


# --- wrappers, prefixes, other layouts ---------------------------------------------------------------


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {f"module.{k}": v for k, v in sd.items()},  # DataParallel / DDP
        lambda sd: {f"backbone.{k}": v for k, v in sd.items()},  # detection frameworks
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 7, "best_acc": 0.9},
        lambda sd: {"model": sd, "optimizer": {"state": {}, "param_groups": []}},
    ],
    ids=["module-prefix", "backbone-prefix", "state_dict-wrapper", "model-wrapper"],
)
def test_load_weights_unwraps_and_strips(tmp_path: Path, trained: torch.nn.Module, wrap) -> None:
    wrapped = wrap(trained.state_dict())
    path = tmp_path / "ckpt.pt"
    torch.save(wrapped, path)
    for source in (wrapped, path):
        model = create_model("resnet20", num_classes=6, in_chans=1)
        result = load_weights(model, source)
        assert result.missing_keys == [] and result.unexpected_keys == []
        assert _same_weights(model, trained)


def test_mmpretrain_deep_stem_names_are_mapped() -> None:
    source = create_model("resnet18d")
    renames = {"conv1.0.": "stem.0.conv.", "conv1.1.": "stem.0.bn.", "conv1.3.": "stem.1.conv.", "conv1.4.": "stem.1.bn.", "conv1.6.": "stem.2.conv.", "bn1.": "stem.2.bn.", "fc.": "head.fc."}

    def mm_name(key: str) -> str:
        for ours, theirs in renames.items():
            if key.startswith(ours):
                return theirs + key[len(ours) :]
        return key

    state = {mm_name(k): v for k, v in source.state_dict().items()}
    assert "stem.2.bn.weight" in state and "bn1.weight" not in state
    model = create_model("resnet18d")
    load_weights(model, state)
    assert _same_weights(model, source)


# --- mismatches ------------------------------------------------------------------------------------


def test_wrong_shapes_name_every_key(tmp_path: Path) -> None:
    path = tmp_path / "ten.safetensors"
    save_weights(create_model("resnet20"), path)
    model = create_model("resnet20", num_classes=6, in_chans=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ResNetError) as err:
        load_weights(model, path)
    message = str(err.value)
    assert "\n" not in message and "3 tensor(s) differ in shape" in message
    assert "conv1.weight model (16, 1, 3, 3) vs checkpoint (16, 3, 3, 3)" in message
    assert "fc.weight model (6, 64) vs checkpoint (10, 64)" in message and "fc.bias model (6,) vs checkpoint (10,)" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing half-loaded


def test_missing_and_unexpected_keys(trained: torch.nn.Module) -> None:
    state = dict(trained.state_dict())
    state.pop("layer3.2.bn2.running_var")
    state["extra.weight"] = torch.zeros(3)
    model = create_model("resnet20", num_classes=6, in_chans=1)
    with pytest.raises(ResNetError, match=r"missing 1 key\(s\): layer3.2.bn2.running_var; unexpected 1 key\(s\): extra.weight"):
        load_weights(model, state)
    result = load_weights(model, state, strict=False)
    assert result.missing_keys == ["layer3.2.bn2.running_var"] and result.unexpected_keys == ["extra.weight"]
    assert torch.equal(model.layer1[0].conv1.weight, trained.layer1[0].conv1.weight)


def test_another_architecture_is_rejected(tmp_path: Path) -> None:
    path = save_weights(create_model("resnet18"), tmp_path / "r18.safetensors")
    with pytest.raises(ResNetError, match="does not fit resnet34|does not match resnet34"):
        load_weights(create_model("resnet34"), path)


# --- pretrained weights for a new task -------------------------------------------------------------------


def test_pretrained_path_keeps_all_but_a_mismatched_classifier(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    source = create_model("resnet20")  # 10 classes
    path = save_weights(source, tmp_path / "cifar.safetensors")
    with caplog.at_level(logging.INFO, logger="resnet"):
        model = create_model("resnet20", num_classes=6, pretrained_path=str(path))
    assert "classifier not loaded" in caplog.text and "10 classes" in caplog.text
    assert model.fc.out_features == 6
    own, theirs = model.state_dict(), source.state_dict()
    assert all(torch.equal(own[k], theirs[k]) for k in own if not k.startswith("fc."))


def test_pretrained_rgb_weights_adapt_to_grayscale(tmp_path: Path) -> None:
    source = create_model("resnet18")
    path = save_weights(source, tmp_path / "rgb.safetensors")
    model = create_model("resnet18", in_chans=1, pretrained_path=str(path))
    assert torch.allclose(model.conv1.weight, source.conv1.weight.sum(1, keepdim=True))
    # Same response to a gray image as the RGB model to that image in all three channels.
    gray = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(gray), source.eval()(gray.expand(1, 3, 32, 32)), atol=1e-4)


# --- pickles -----------------------------------------------------------------------------------------------


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # what an attacker puts in a "checkpoint"
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_runs_nothing(tmp_path: Path, trained: torch.nn.Module) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": trained.state_dict(), "payload": _RunsCodeWhenUnpickled(marker)}, path)
    assert not marker.exists()
    model = create_model("resnet20", num_classes=6, in_chans=1)
    with pytest.raises(ResNetError) as err:
        load_weights(model, path)
    assert "refused" in str(err.value) and "unsafe=True" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ResNetError, match="refused"):
        create_model("resnet20", pretrained_path=str(path))
    assert not marker.exists()


def test_full_pickles_need_unsafe(tmp_path: Path, trained: torch.nn.Module, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "whole_model.pt"
    torch.save(trained, path)  # an old-style checkpoint: the pickled module object
    model = create_model("resnet20", num_classes=6, in_chans=1)
    with pytest.raises(ResNetError, match="--unsafe-load"):
        load_weights(model, path)
    with caplog.at_level(logging.WARNING, logger="resnet"):
        load_weights(model, path, unsafe=True)
    assert "unsafe=True" in caplog.text
    assert _same_weights(model, trained)


def test_weights_only_pytorch_files_need_no_unsafe(tmp_path: Path, trained: torch.nn.Module) -> None:
    path = tmp_path / "plain.pth"
    torch.save({"model": trained.state_dict(), "epoch": 3, "meta": {"classes": ["a"]}}, path)
    model = create_model("resnet20", num_classes=6, in_chans=1)
    load_weights(model, path)
    assert _same_weights(model, trained)
    assert read_metadata(save_weights(model, path.with_suffix(".safetensors")))["arch"] == "resnet20"
