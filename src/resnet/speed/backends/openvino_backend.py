"""OpenVINO (optional: ``pip install 'resnet[deploy]'``): fp32, bf16 and int8 (NNCF post-training).

The precision is set explicitly with INFERENCE_PRECISION_HINT, because OpenVINO otherwise picks bf16
on its own wherever the CPU has it, which would make an "fp32" figure a bf16 one.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from torch import nn

from resnet.speed.backends import Candidate, Job, Runner, engine_threads, quiet_stdout

NAME = "openvino"


def missing() -> str | None:
    try:
        import openvino  # noqa: F401
        from resnet.export.onnx import export_onnx  # noqa: F401 - needs onnx and onnxscript too
    except ImportError as exc:
        return f"{exc.name or 'openvino'} is not installed (pip install 'resnet[deploy]')"
    return None


def supports(precision: str, device: torch.device) -> str | None:
    if device.type != "cpu":
        return "runs on the CPU only here"
    if precision == "int8":
        try:
            import nncf  # noqa: F401
        except ImportError:
            return "int8 needs nncf (pip install 'resnet[deploy]')"
    return None


def candidates(job: Job) -> list[Candidate]:
    if supports(job.precision, job.example_input.device):
        return []
    variant = {"fp32": "f32 hint", "bf16": "bf16 hint", "int8": "NNCF post-training"}[job.precision]
    return [Candidate(NAME, job.precision, variant, lambda: build(job))]


def build(job: Job) -> Runner:
    import openvino as ov

    model = ov.Core().read_model(str(job.onnx_file()))
    if job.precision == "int8":
        model = quantize_int8(model, job.calibration)
    return compiled_runner(model, job.precision)


def quantize_int8(model, calibration: list[torch.Tensor]):  # noqa: ANN001, ANN201 - openvino.Model, lazily imported
    """NNCF's post-training quantization of an OpenVINO model (defaults: symmetric weights, per-channel)."""
    import nncf

    logging.getLogger("nncf").setLevel(logging.ERROR)
    samples = sum(len(b) for b in calibration)
    with quiet_stdout():
        return nncf.quantize(model, nncf.Dataset(calibration, lambda b: b.numpy()), subset_size=samples)


def compiled_runner(model, precision: str) -> Runner:  # noqa: ANN001 - openvino.Model
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": engine_threads()}
    if precision in ("fp32", "bf16"):
        config["INFERENCE_PRECISION_HINT"] = "f32" if precision == "fp32" else "bf16"
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        request.infer({0: x.detach().to("cpu", torch.float32).contiguous().numpy()})
        # The request reuses its output buffer on the next call: copy out.
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    return run


def peer(model: nn.Module, x: torch.Tensor, precision: str, calibration: list[torch.Tensor], cache: dict[Any, Any]) -> Runner:
    """The unmodified model converted by OpenVINO and compiled as its guide does (``resnet bench``'s peer)."""
    import openvino as ov

    if "ov_model" not in cache:
        with quiet_stdout(), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its tracer's deprecation notes are not the user's concern
            cache["ov_model"] = ov.convert_model(model, example_input=x)
    ov_model = cache["ov_model"]
    if precision == "int8":
        ov_model = quantize_int8(ov_model, calibration)
    return compiled_runner(ov_model, precision)
