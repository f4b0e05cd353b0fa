"""ONNX Runtime (optional: ``pip install 'resnet[deploy]'``): fp32, and int8 by static post-training
quantization (``resnet.export.quantize``: QDQ, per-channel u8s8, the classifier kept fp32)."""

from __future__ import annotations

import os
import shutil
import weakref
from typing import Any

import torch
from torch import nn

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
    from resnet.export.quantize import quantize_onnx_int8

    return session_runner(quantize_onnx_int8(job.onnx_file(), job.workdir / "model.int8.onnx", job.calibration))


def session_runner(path: str | os.PathLike[str]) -> Runner:
    """A callable running the ONNX file at ``path`` with as many threads as torch uses."""
    from resnet.export.onnx import onnx_session

    session = onnx_session(path, threads=engine_threads())
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(session.run(None, {input_name: array})[0])

    return run


def peer(model: nn.Module, x: torch.Tensor, precision: str, calibration: list[torch.Tensor], cache: dict[Any, Any]) -> Runner:
    """The unmodified model exported to ONNX and run as ONNX Runtime's guide does (``resnet bench``'s peer)."""
    from resnet.export.quantize import quantize_onnx_int8

    if "job" not in cache:  # one export for every precision and batch size
        cache["job"] = Job(model, x, "fp32", calibration)
        # Its files go with the bench's engine cache, whether the bench ends or fails.
        weakref.finalize(cache["job"], shutil.rmtree, cache["job"].workdir, True)
    job = cache["job"]
    if precision == "int8":
        return session_runner(quantize_onnx_int8(job.onnx_file(), job.workdir / "peer.int8.onnx", calibration))
    return session_runner(job.onnx_file())
