"""int8 ONNX files: static post-training quantization with ONNX Runtime (optional: ``pip install 'resnet[deploy]'``).

QDQ with per-channel weights, unsigned activations and signed weights (u8s8): the form ONNX Runtime's
x86 kernels run fastest (s8s8 measured 3x slower). The final classifier stays fp32. Without VNNI the
u8s8 multiply can saturate, so there the weights use 7 bits (``reduce_range``), as ONNX Runtime's
guide advises. Used by ``resnet export --precision int8`` and by ``resnet.optimize``'s ONNX Runtime engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from resnet import device as hw
from resnet.errors import ResNetError
from resnet.export.onnx import onnx_session
from resnet.io import atomic_write
from resnet.speed.backends.calibration import check_calibration


def quantize_onnx_int8(
    onnx_in: str | os.PathLike[str], onnx_out: str | os.PathLike[str], calibration: Iterable[torch.Tensor]
) -> Path:
    """Write an int8 copy of the fp32 ONNX model ``onnx_in`` to ``onnx_out``, calibrated on ``calibration``.

    ``calibration`` is an iterable of input batches (NCHW float tensors shaped like the model's input,
    or ``(x, y)`` pairs); the activation ranges come from running them through the model. The file
    appears atomically. Raises ``ResNetError`` for a missing file or unusable calibration batches.
    """
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise ResNetError(f"int8 quantization needs onnxruntime: pip install 'resnet[deploy]' ({exc})") from None

    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    if not onnx_in.is_file():
        raise ResNetError(f"{onnx_in}: no such ONNX file to quantize")
    model_input = onnx_session(onnx_in).get_inputs()[0]  # a corrupt or foreign file fails here, in one line
    sample_shape = tuple(d if isinstance(d, int) else None for d in model_input.shape[1:])
    batches = check_calibration(calibration, sample_shape)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {model_input.name: batch.numpy()}

    def write(tmp: Path) -> None:
        # Shape inference and graph clean-up first (BatchNorm folded, shapes known), as ORT recommends.
        prepared = tmp.with_name(tmp.name + ".pre.onnx")
        try:
            quant_pre_process(str(onnx_in), str(prepared))
            import onnx

            # The classifier stays fp32: quantizing it cost 1.6 points of test top-1 on a trained
            # resnet18 (logits up to 330) and would save almost nothing (one small matrix product).
            head = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type in ("Gemm", "MatMul")]
            quantize_static(
                str(prepared),
                str(tmp),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                reduce_range=not hw.cpu_info().native_int8,
                nodes_to_exclude=head,
            )
        finally:
            prepared.unlink(missing_ok=True)

    return atomic_write(onnx_out, write)
