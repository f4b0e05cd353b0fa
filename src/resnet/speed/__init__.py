"""Speed: fast inference on whatever machine this runs on (``optimize``), int8 ONNX files, benchmarks."""

from __future__ import annotations

from resnet.speed.backends.onnxruntime_backend import quantize_onnx_int8
from resnet.speed.optimize import (
    FP32_MAX_ABS_DIFF,
    RELATIVE_TOLERANCE,
    OptimizedModel,
    check_calibration,
    fold_batchnorm,
    optimize,
)

__all__ = [
    "FP32_MAX_ABS_DIFF",
    "RELATIVE_TOLERANCE",
    "OptimizedModel",
    "check_calibration",
    "fold_batchnorm",
    "optimize",
    "quantize_onnx_int8",
]
