"""resnet.export: ONNX (dynamic batch, in onnxruntime), TorchScript, ExportedProgram; resnet export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import resnet.export
from resnet.cli.main import main
from resnet.errors import ResNetError
from resnet.export import FP32_TOLERANCE, check_parity, export_file, export_onnx, load_exported, onnx_session, run_onnx
from resnet.models import create_model, save_weights

onnx = pytest.importorskip("onnx")  # the optional [export] extra
pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)  # random weights, but the same ones every run


def _max_diff(model: torch.nn.Module, run, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (run(x) - model.eval()(x)).abs().max().item()


@pytest.mark.parametrize("opset", [17, 18])  # 17: the TorchScript tracer; 18: the torch.export exporter
def test_resnet20_onnx_dynamic_batch_matches_pytorch(tmp_path: Path, opset: int) -> None:
    model = create_model("resnet20")
    path = export_onnx(model, torch.randn(1, 3, 32, 32), tmp_path / "r20.onnx", opset=opset)
    assert model.training  # export uses eval mode and restores the caller's
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == opset
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    assert {n.op_type for n in proto.graph.node}.isdisjoint({"BatchNormalization"})  # folded into the convs
    session = onnx_session(path)
    for batch in (1, 3, 5):
        x = torch.randn(batch, 3, 32, 32)
        assert run_onnx(session, x).shape == (batch, 10)
        assert _max_diff(model, lambda t: run_onnx(session, t), x) <= FP32_TOLERANCE


@pytest.mark.slow
def test_resnet50_onnx_dynamic_batch_matches_pytorch(tmp_path: Path) -> None:
    model = create_model("resnet50", num_classes=100)
    path = export_onnx(model, torch.randn(2, 3, 64, 64), tmp_path / "r50.onnx")
    session = onnx_session(path)
    for batch in (1, 3):
        x = torch.randn(batch, 3, 64, 64)
        assert _max_diff(model, lambda t: run_onnx(session, t), x) <= FP32_TOLERANCE


def test_fixed_batch_onnx_rejects_other_batch_sizes(tmp_path: Path) -> None:
    model = create_model("resnet20")
    path = export_onnx(model, torch.randn(2, 3, 32, 32), tmp_path / "fixed.onnx", dynamic_batch=False)
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    session = onnx_session(path)
    assert _max_diff(model, lambda t: run_onnx(session, t), torch.randn(2, 3, 32, 32)) <= FP32_TOLERANCE
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    with pytest.raises(InvalidArgument, match=r"(?s)invalid dimensions for input.*index: 0 Got: 3 Expected: 2"):
        run_onnx(session, torch.randn(3, 3, 32, 32))


@pytest.mark.parametrize("fmt,suffix", [("torchscript", ".pt"), ("exported-program", ".pt2")])
def test_torch_formats_round_trip_with_any_batch(tmp_path: Path, fmt: str, suffix: str) -> None:
    model = create_model("resnet20", in_chans=1, num_classes=4)
    path = export_file(model, torch.randn(2, 1, 28, 28), tmp_path / f"m{suffix}", fmt)
    run = load_exported(path, fmt)
    for batch in (1, 3):
        x = torch.randn(batch, 1, 28, 28)
        assert _max_diff(model, run, x) <= FP32_TOLERANCE


def test_parity_flags_a_wrong_file() -> None:
    model = create_model("resnet20").eval()
    inputs = [torch.randn(2, 3, 32, 32)]
    ok = check_parity(model, lambda x: model(x).detach(), inputs)
    assert ok.passed and ok.max_abs_diff == 0.0 and ok.top1_agreement == 1.0
    off = check_parity(model, lambda x: model(x).detach() + 1e-3, inputs)
    assert not off.passed and off.max_abs_diff == pytest.approx(1e-3, rel=1e-2)
    wrong_shape = check_parity(model, lambda x: model(x).detach()[:, :5], inputs)
    assert not wrong_shape.passed and "shape" in wrong_shape.criterion


def test_bad_files_and_inputs(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ResNetError, match="not a loadable ONNX"):
        onnx_session(junk)
    with pytest.raises(ResNetError, match="not found"):
        load_exported(tmp_path / "missing.pt2", "exported-program")
    with pytest.raises(ResNetError, match="N, C, H, W"):
        export_onnx(create_model("resnet20"), torch.randn(3, 32, 32), tmp_path / "x.onnx")
    with pytest.raises(ResNetError, match="--format"):
        export_file(create_model("resnet20"), torch.randn(1, 3, 32, 32), tmp_path / "x.bin", None)  # type: ignore[arg-type]


def _checkpoint(tmp_path: Path, **metadata) -> Path:
    model = create_model("resnet20", num_classes=10, in_chans=1)
    return save_weights(model, tmp_path / "ckpt.safetensors", metadata={"image_size": [28, 28], **metadata})


def test_export_command_from_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = _checkpoint(tmp_path)
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "--dynamic-batch", "--opset", "17", "-o", str(out)]) == 0
    line = capsys.readouterr().out
    assert "max abs diff" in line and line.rstrip().endswith("ok")
    assert onnx_session(out).get_inputs()[0].shape[1:] == [1, 28, 28]
    assert main(["export", "--checkpoint", str(ckpt), "-o", str(tmp_path / "model.pt2")]) == 0
    assert "exported-program" in capsys.readouterr().out


def test_export_command_exits_nonzero_when_parity_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = resnet.export.load_exported

    def off_by_a_little(path, fmt):  # a file whose logits are 1e-3 away from PyTorch's
        run = real(path, fmt)
        return lambda x: run(x) + 1e-3

    monkeypatch.setattr(resnet.export, "load_exported", off_by_a_little)
    assert main(["export", "--model", "resnet20", "-o", str(tmp_path / "m.pt")]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_export_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--checkpoint", str(tmp_path / "none.safetensors"), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["export", "--model", "resnet20", "--precision", "int8", "-o", str(tmp_path / "m.pt")]) == 2
    assert "ONNX" in capsys.readouterr().err
    assert main(["export", "--model", "resnet20", "-o", str(tmp_path / "m.bin")]) == 2
    assert "--format" in capsys.readouterr().err
    assert main(["export", "--model", "resnet20", "--precision", "int8", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "--data" in capsys.readouterr().err


def test_int8_onnx_export_agrees_on_top1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from resnet.data.testing import write_fashion_mnist

    data_dir = write_fashion_mnist(tmp_path / "fm", train=64, test=64)
    ckpt = _checkpoint(tmp_path, dataset="fashion-mnist")
    out = tmp_path / "int8.onnx"
    rc = main(["export", "--checkpoint", str(ckpt), "--precision", "int8", "--data-dir", str(data_dir),
               "--calibration-batches", "2", "-o", str(out)])
    line = capsys.readouterr().out
    assert rc == 0, line
    assert "top-1 agrees" in line
    proto = onnx.load(str(out))
    assert any("QuantizeLinear" in n.op_type or n.op_type.startswith("QLinear") for n in proto.graph.node)
