"""resnet.import_weights / `resnet convert` for PyTorch sources (torchvision, timm, our checkpoints) and
the source dispatch; the Keras reader has its own tests (test_convert_keras.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from conftest import randomize_norms
from resnet import import_weights
from resnet.convert import detect_source, read
from resnet.errors import ResNetError
from resnet.models import create_model, model_from_checkpoint, read_metadata, save_weights

IMAGES = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(IMAGES)


def test_torchvision_file_infers_its_architecture(tmp_path: Path) -> None:
    torch.manual_seed(0)
    theirs = randomize_norms(torchvision.models.resnet18(num_classes=7)).eval()
    torch.save(theirs.state_dict(), tmp_path / "tv.pth")
    model = import_weights(tmp_path / "tv.pth")
    assert model.model_name == "resnet18" and model.num_classes == 7 and model.model_options == {}
    assert torch.allclose(logits(model), logits(theirs), atol=1e-5)


def test_reduced_depth_torchvision_net_gets_a_layers_option(tmp_path: Path) -> None:
    theirs = randomize_norms(torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [1, 2, 1, 1], num_classes=4)).eval()
    save_file(theirs.state_dict(), str(tmp_path / "small.safetensors"))
    model = import_weights(tmp_path / "small.safetensors", "torchvision")
    assert model.model_name == "resnet50" and model.model_options == {"layers": [1, 2, 1, 1]}
    assert torch.allclose(logits(model), logits(theirs), atol=1e-5)


def test_timm_file_with_its_own_names(tmp_path: Path) -> None:
    import timm  # in the test extra
    theirs = randomize_norms(timm.create_model("resnet18d", pretrained=False, num_classes=3)).eval()
    save_file(theirs.state_dict(), str(tmp_path / "timm.safetensors"))
    model = import_weights(tmp_path / "timm.safetensors", "timm")
    assert model.model_name == "resnet18d"
    assert torch.allclose(logits(model), logits(theirs), atol=1e-5)


def test_model_flag_names_the_architecture(tmp_path: Path) -> None:
    torch.save(create_model("resnet18").state_dict(), tmp_path / "w.pth")
    assert import_weights(tmp_path / "w.pth", model="resnet18").model_name == "resnet18"
    with pytest.raises(ResNetError, match="does not match resnet34"):
        import_weights(tmp_path / "w.pth", model="resnet34")


def test_our_checkpoint_is_read_with_its_header(tmp_path: Path) -> None:
    ours = randomize_norms(create_model("resnet50_tutorial", layers=(1, 1, 1, 1), widths=(8, 8, 16, 16)))
    path = save_weights(ours, tmp_path / "ours.safetensors", metadata={"class_names": list("abcdef")})
    imported = read(path)
    assert imported.arch == "resnet50_tutorial" and imported.class_names == list("abcdef")
    model = import_weights(path)
    assert torch.allclose(logits(model), logits(ours))


def test_unknown_files_and_flags_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not weights")
    with pytest.raises(ResNetError, match="notes.txt"):
        detect_source(junk)
    with pytest.raises(ResNetError, match="unknown source 'caffe'"):
        import_weights(junk, "caffe")
    with pytest.raises(ResNetError, match="not found"):
        import_weights(tmp_path / "missing.h5")


def test_cli_convert_torchvision_checkpoint(tmp_path: Path) -> None:
    theirs = randomize_norms(torchvision.models.resnet18(num_classes=5)).eval()
    torch.save({"state_dict": {f"module.{k}": v for k, v in theirs.state_dict().items()}}, tmp_path / "wrapped.pth")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "out.safetensors"
    done = subprocess.run([sys.executable, "-m", "resnet", "convert", str(tmp_path / "wrapped.pth"), "-o", str(out), "--from", "torchvision"],
                          capture_output=True, text=True, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert read_metadata(out)["converted_from"]["file"] == "wrapped.pth"
    model, _ = model_from_checkpoint(out)
    assert torch.allclose(logits(model), logits(theirs), atol=1e-5)
