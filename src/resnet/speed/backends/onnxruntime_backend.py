"""ONNX Runtime (optional: ``pip install 'resnet[deploy]'``): fp32, and int8 by static post-training quantization.

int8 is QDQ with per-channel weights, unsigned activations and signed weights (u8s8): the form ONNX
Runtime's x86 kernels run fastest (s8s8 measured 3x slower). The final classifier stays fp32. Without VNNI the u8s8 multiply can
saturate, so there the weights use 7 bits (``reduce_range``), as ONNX Runtime's guide advises.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from resnet import device as hw
from resnet.errors import ResNetError
from resnet.io import atomic_write
from resnet.speed.backends import Candidate, Job, Runner, engine_threads

NAME = "onnxruntime"


def missing() -> str | None:
    try:
        import onnxruntime  # noqa: F401
        from resnet.export.onnx import export_onnx  # noqa: F401 - needs onnx and onnxscript too
    except ImportError as exc:
        return f"{exc.name or 'onnxruntime'} is not installed (pip install 'resnet[deploy]')"
    return None


def supports(precision: str, device: torch.device) -> str | None:
    if device.type != "cpu":
        return "runs on the CPU only here"
    if precision == "bf16":
        return "ONNX Runtime has no fast bf16 path on CPU"
    return None


def candidates(job: Job) -> list[Candidate]:
    if supports(job.precision, job.example_input.device):
        return []
    if job.precision == "int8":
        return [Candidate(NAME, "int8", "static QDQ per-channel u8s8", lambda: _int8(job))]
    return [Candidate(NAME, "fp32", "all graph optimizations", lambda: session_runner(job.onnx_file()))]


def _int8(job: Job) -> Runner:
    return session_runner(quantize_onnx_int8(job.onnx_file(), job.workdir / "model.int8.onnx", job.calibration))


def session_runner(path: str | os.PathLike[str]) -> Runner:
    """A callable running the ONNX file at ``path`` with as many threads as torch uses."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = engine_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(session.run(None, {input_name: array})[0])

    return run


def quantize_onnx_int8(
    onnx_in: str | os.PathLike[str], onnx_out: str | os.PathLike[str], calibration: Iterable[torch.Tensor]
) -> Path:
    """Write an int8 copy of the fp32 ONNX model ``onnx_in`` to ``onnx_out``, calibrated on ``calibration``.

    ``calibration`` is an iterable of input batches (NCHW float tensors shaped like the model's input,
    or ``(x, y)`` pairs); the activation ranges come from running them through the model. The file
    appears atomically. Raises ``ResNetError`` for a missing file or unusable calibration batches.
    """
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise ResNetError(f"int8 quantization needs onnxruntime: pip install 'resnet[deploy]' ({exc})") from None
    from resnet.speed.optimize import check_calibration

    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    if not onnx_in.is_file():
        raise ResNetError(f"{onnx_in}: no such ONNX file to quantize")
    try:
        model_input = ort.InferenceSession(str(onnx_in), providers=["CPUExecutionProvider"]).get_inputs()[0]
    except Exception as exc:  # ORT raises its own types for a corrupt or foreign file
        raise ResNetError(f"{onnx_in}: not a readable ONNX model ({str(exc).splitlines()[0]})") from None
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
