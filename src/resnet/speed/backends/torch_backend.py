"""PyTorch: the folded model in channels_last, eager or torch.compile (inductor with frozen weights).

Always available. fp32 and bf16 (weights and activations in bf16, offered only where bf16 is native:
elsewhere it is emulated and several times slower). No int8 here: PyTorch's own post-training int8
path (PT2E with the x86 inductor quantizer) failed on torchvision's resnet50, so int8 goes to ONNX
Runtime or OpenVINO.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from resnet.speed.backends import Candidate, Job, Runner

NAME = "torch"


def missing() -> str | None:
    return None


def supports(precision: str, device: torch.device) -> str | None:
    """Why this backend cannot run ``precision`` on ``device``, or None."""
    if precision == "int8":
        return "torch has no int8 path here (use onnxruntime or openvino)"
    return None


def candidates(job: Job, *, compile: bool = True) -> list[Candidate]:
    if supports(job.precision, job.example_input.device):
        return []
    dtype = torch.bfloat16 if job.precision == "bf16" else torch.float32
    found = [Candidate(NAME, job.precision, "eager", lambda: _runner(job.model, dtype, compiled=False))]
    if compile:
        found.append(Candidate(NAME, job.precision, "compile", lambda: _runner(job.model, dtype, compiled=True)))
    return found


def _runner(model: nn.Module, dtype: torch.dtype, *, compiled: bool) -> Runner:
    # channels_last is the layout oneDNN's (and cuDNN's) fast convolutions want; converting the
    # input once here saves a reorder in front of every convolution.
    module = copy.deepcopy(model).to(dtype=dtype, memory_format=torch.channels_last)
    if compiled:
        # freezing: inductor treats the weights as constants, so it can fold and pre-pack them for oneDNN.
        module = torch.compile(module, options={"freezing": True})

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x.to(dtype=dtype, memory_format=torch.channels_last)).float()

    return run
