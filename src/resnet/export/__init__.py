"""Export: ONNX, TorchScript and torch.export files, each checked against PyTorch after writing."""

from __future__ import annotations

from resnet.export.onnx import export_onnx, onnx_session, run_onnx

__all__ = ["export_onnx", "onnx_session", "run_onnx"]
