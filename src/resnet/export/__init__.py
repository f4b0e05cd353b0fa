"""Export: ONNX, TorchScript and torch.export files, each checked against PyTorch after writing."""

from __future__ import annotations

from resnet.export.formats import FORMATS, export_file, export_program, export_torchscript, format_for, load_exported
from resnet.export.onnx import export_onnx, onnx_session, run_onnx
from resnet.export.parity import FP32_MAX_ABS_DIFF, FP32_TOLERANCE, RELATIVE_TOLERANCE, Parity, check_parity, compare

__all__ = [
    "FORMATS",
    "FP32_MAX_ABS_DIFF",
    "FP32_TOLERANCE",
    "RELATIVE_TOLERANCE",
    "Parity",
    "check_parity",
    "compare",
    "export_file",
    "export_onnx",
    "export_program",
    "export_torchscript",
    "format_for",
    "load_exported",
    "onnx_session",
    "run_onnx",
]
