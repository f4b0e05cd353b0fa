"""Speed: fast inference on whatever machine this runs on (``optimize``), int8 ONNX files, benchmarks.

Engines live in ``resnet.speed.backends`` (one module each, found by ``backends.engines()``); the
timing loop in ``speed.timing``; parity and its tolerances in ``resnet.export.parity``; int8
quantization in ``resnet.export.quantize``.
"""

from __future__ import annotations

from resnet.export.parity import FP32_MAX_ABS_DIFF, RELATIVE_TOLERANCE
from resnet.export.quantize import quantize_onnx_int8
from resnet.speed.backends.calibration import check_calibration
from resnet.speed.optimize import OptimizedModel, fold_batchnorm, optimize

__all__ = [
    "FP32_MAX_ABS_DIFF",
    "RELATIVE_TOLERANCE",
    "OptimizedModel",
    "check_calibration",
    "fold_batchnorm",
    "optimize",
    "quantize_onnx_int8",
]
