"""resnet.inspect: per-layer summary and MACs, Table 1, diagrams; and their commands."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from resnet.cli.main import main
from resnet.errors import ResNetError
from resnet.inspect import meta_model, parse_input_size, summary, table1
from resnet.models import create_model

# torchvision's published GFLOPS (really multiply-adds) at 224x224, to the third decimal.
IMAGENET_GMACS = {
    "resnet18": 1.814, "resnet34": 3.664, "resnet50": 4.089, "resnet101": 7.801, "resnet152": 11.514,
    # The paper's own bottleneck nets stride in the first 1x1: its rounded 3.8 / 7.6 / 11.3.
    "resnet50_v1": 3.858, "resnet101_v1": 7.570, "resnet152_v1": 11.282,
}
# CIFAR nets at 32x32 (MMACs) and their parameter counts (the paper's 0.27M / 0.85M / 1.7M).
CIFAR = {"resnet20": (40.55, 269_722), "resnet56": (125.49, 853_018), "resnet110": (252.89, 1_727_962)}


@pytest.mark.parametrize("name", list(IMAGENET_GMACS))
def test_headline_macs_match_published_figures(name: str) -> None:
    s = summary(meta_model(name), (3, 224, 224))
    assert round(s.macs / 1e9, 3) == IMAGENET_GMACS[name]
    # Parameters agree with torchvision's own model of the same depth (the v1 stride moves no weights).
    with torch.device("meta"):
        reference = getattr(torchvision.models, name.removesuffix("_v1"))()
    assert s.params == sum(p.numel() for p in reference.parameters())
    assert isinstance(s.params, int) and isinstance(s.macs, int)


@pytest.mark.parametrize("name", list(CIFAR))
def test_cifar_macs_and_params(name: str) -> None:
    mmacs, params = CIFAR[name]
    s = summary(meta_model(name), (3, 32, 32))
    assert round(s.macs / 1e6, 2) == mmacs
    assert s.params == params


@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d", "resnet20"])
def test_macs_agree_with_torch_flop_counter(name: str) -> None:
    # An independent count: PyTorch's FlopCounterMode sees a convolution or matmul as 2 FLOPs per
    # multiply-add (grouped convs included) and, like us, leaves out biases and element-wise ops.
    model = meta_model(name).eval()
    size = (3, 64, 64)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros((1, *size), device="meta"))
    assert 2 * summary(model, size).macs == counter.get_total_flops()


def test_rows_shapes_and_aggregation() -> None:
    model = create_model("resnet18", num_classes=7)
    s = summary(model, (3, 64, 64))
    by_name = {layer.name: layer for layer in s.layers}
    assert [by_name[f"layer{i}"].output_shape for i in range(1, 5)] == [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4), (1, 512, 2, 2)]
    assert by_name["fc"].output_shape == (1, 7) and by_name["fc"].macs == 512 * 7
    conv1 = by_name["conv1"]
    assert conv1.macs == 64 * 32 * 32 * 3 * 7 * 7
    # A container's MACs and parameters are its children's.
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        blocks = [layer for layer in s.layers if layer.name.startswith(stage + ".") and layer.depth == 2]
        assert len(blocks) == 2
        assert by_name[stage].macs == sum(b.macs for b in blocks)
        assert by_name[stage].params == sum(b.params for b in blocks)
    top = s.rows(depth=1)
    assert all(layer.depth == 1 for layer in top)
    assert sum(layer.macs for layer in top) == s.macs
    assert sum(layer.params for layer in top) == s.params == sum(p.numel() for p in model.parameters())
    # Residual additions: one per block, each the size of the block's output.
    assert s.other_ops["add"] == 2 * (64 * 16 * 16 + 128 * 8 * 8 + 256 * 4 * 4 + 512 * 2 * 2)
    assert s.other_ops["batchnorm"] > 0 and s.other_ops["activation"] > 0
    assert model.training  # summary restores the mode


def test_frozen_parameters_are_not_trainable() -> None:
    model = create_model("resnet20")
    for p in model.layer1.parameters():
        p.requires_grad_(False)
    s = summary(model, (3, 32, 32))
    frozen = sum(p.numel() for p in model.layer1.parameters())
    assert s.trainable_params == s.params - frozen
    assert next(layer for layer in s.layers if layer.name == "layer1").trainable == 0


def test_json_and_csv_carry_plain_totals() -> None:
    s = summary(meta_model("resnet20"), (3, 32, 32))
    data = json.loads(json.dumps(s.to_dict(depth=2)))
    assert data["macs"] == 40_551_040 and data["params"] == 269_722
    assert max(layer["depth"] for layer in data["layers"]) == 2
    rows = list(csv.DictReader(io.StringIO(s.to_csv())))
    assert rows[-1]["name"] == "total" and int(rows[-1]["macs"]) == s.macs
    assert sum(int(r["macs"]) for r in rows[:-1] if r["depth"] == "1") == s.macs


def test_bad_input_sizes() -> None:
    assert parse_input_size("3x224x224") == (3, 224, 224)
    assert parse_input_size("64") == (3, 64, 64)
    with pytest.raises(ResNetError, match="CxHxW"):
        parse_input_size("big")
    with pytest.raises(ResNetError, match="3-channel"):
        summary(meta_model("resnet20"), (1, 32, 32))


def test_table1_generated_from_code() -> None:
    t = table1()
    assert t.columns == ["layer name", "output size", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    rows = {row[0]: row for row in t.rows}
    assert [rows[n][1] for n in ("conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x")] == ["112x112", "56x56", "28x28", "14x14", "7x7"]
    assert rows["conv1"][2] == "7x7, 64, stride 2"
    assert rows["conv2_x"][2] == "3x3 max pool, stride 2; [3x3, 64; 3x3, 64] x2"
    assert rows["conv4_x"][3] == "[3x3, 256; 3x3, 256] x6"
    assert rows["conv3_x"][6] == "[1x1, 128; 3x3, 128; 1x1, 512] x8"
    assert rows["conv4_x"][5] == "[1x1, 256; 3x3, 256; 1x1, 1024] x23"
    assert rows["MACs"][2:] == ["1.814 G", "3.664 G", "4.089 G", "7.801 G", "11.514 G"]
    assert rows["MACs (paper's v1)"][2:] == ["1.814 G", "3.664 G", "3.858 G", "7.570 G", "11.282 G"]


def test_summary_command_json_csv_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet20", "--json", "--depth", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_size"] == [3, 32, 32] and data["macs"] == 40_551_040
    assert main(["summary", "resnet18", "--input", "1x64x64", "--in-chans", "1", "--num-classes", "5", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[-1]["name"] == "total"
    assert next(r for r in rows if r["name"] == "fc")["output_shape"] == "1x5"
    assert main(["summary", "resnet20"]) == 0
    out = capsys.readouterr().out
    assert "40,551,040" in out and "layer3.2" in out


def test_summary_command_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet19"]) == 2
    assert "resnet" in capsys.readouterr().err
    assert main(["summary", "resnet20", "--input", "3by32"]) == 2
    assert "CxHxW" in capsys.readouterr().err
    assert main(["summary"]) == 2
    assert "--table1" in capsys.readouterr().err


def test_diagram_shows_every_residual_addition(tmp_path) -> None:
    from resnet.inspect.diagram import build

    layer = build(meta_model("resnet20"), level="layer", input_size=(3, 32, 32)).source
    assert layer.count('label="add') == 9  # one per block
    assert "layer2.0.conv1" in layer and "ZeroPadShortcut" in layer
    block = build(meta_model("resnet50"), level="block").source
    assert "layer4.2" in block and "projection shortcut" in block and "2048x7x7" in block
    stage = build(meta_model("resnet50"), level="stage").source
    assert "layer3" in stage and "6 blocks" in stage and "layer3.0" not in stage


def test_diagram_command_renders_png_and_svg(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("graphviz")  # the optional [diagram] extra
    png, svg = tmp_path / "net.png", tmp_path / "net.svg"
    assert main(["diagram", "resnet20", "-o", str(png), "--level", "block"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["diagram", "resnet20", "-o", str(svg), "--level", "stage"]) == 0
    assert "<svg" in svg.read_text() and "layer3" in svg.read_text()
    assert main(["diagram", "resnet20", "-o", str(tmp_path / "net.gif")]) == 2
    assert ".svg" in capsys.readouterr().err


def test_diagram_without_dot_says_how_to_install(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("graphviz")
    from resnet.inspect.diagram import render

    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on it
    with pytest.raises(ResNetError, match="apt-get install graphviz"):
        render(meta_model("resnet20"), tmp_path / "net.png", input_size=(3, 32, 32))
    assert not (tmp_path / "net.png").exists()
