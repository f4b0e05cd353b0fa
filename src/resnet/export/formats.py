"""The three file formats ``resnet export`` writes, and loading each back as a callable.

- ``onnx``: see ``resnet.export.onnx`` (runs in onnxruntime, OpenVINO, TensorRT, ...).
- ``exported-program``: ``torch.export`` (``.pt2``), PyTorch's own deployable graph; the batch axis is
  a symbolic ``Dim`` when dynamic.
- ``torchscript``: ``torch.jit.trace`` (``.pt``). PyTorch has deprecated TorchScript in favour of
  torch.export; it is kept for runtimes that still load it (LibTorch C++, older mobile).
  A ResNet has no data-dependent control flow, so tracing captures it completely, and nothing in
  the traced graph depends on the batch size, so any batch runs.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet.errors import ResNetError
from resnet.export.onnx import export_onnx, onnx_session, run_onnx
from resnet.io import atomic_write, atomic_write_bytes

FORMATS = ("onnx", "torchscript", "exported-program")
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript", ".pt2": "exported-program"}


def format_for(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The format asked for, or the one the file name implies (.onnx, .pt/.ts, .pt2)."""
    if fmt:
        if fmt not in FORMATS:
            raise ResNetError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ResNetError(f"cannot tell the format from {Path(path).name!r}; pass --format {'|'.join(FORMATS)} or name the file .onnx/.pt/.pt2")
    return SUFFIXES[suffix]


def _to_eval(model: nn.Module) -> bool:
    was_training = model.training
    model.eval()
    return was_training


def export_torchscript(model: nn.Module, example_input: torch.Tensor, path: str | os.PathLike[str]) -> Path:
    """Trace ``model`` (eval mode) with ``example_input`` and save the TorchScript archive atomically."""
    was_training = _to_eval(model)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation: chosen knowingly, see above
            # check_trace re-runs and compares the trace; the parity check after writing does that job.
            traced = torch.jit.trace(model, example_input.detach(), check_trace=False)
            return atomic_write(path, lambda tmp: torch.jit.save(traced, str(tmp)))
    finally:
        model.train(was_training)


def export_program(model: nn.Module, example_input: torch.Tensor, path: str | os.PathLike[str], *, dynamic_batch: bool = True) -> Path:
    """``torch.export`` the model (eval mode) and save the ExportedProgram (``.pt2``) atomically."""
    if dynamic_batch and example_input.shape[0] == 1:
        # torch.export specializes a size-1 axis to a constant; trace with two samples.
        example_input = example_input.expand(2, *example_input.shape[1:]).contiguous()
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=65536)},) if dynamic_batch else None
    was_training = _to_eval(model)
    try:
        with torch.no_grad():
            program = torch.export.export(model, (example_input.detach(),), dynamic_shapes=dynamic_shapes)
        buffer = io.BytesIO()  # torch.export.save wants a name ending in .pt2 or a buffer, not our temp file
        torch.export.save(program, buffer)
        return atomic_write_bytes(path, buffer.getvalue())
    finally:
        model.train(was_training)


def export_file(
    model: nn.Module,
    example_input: torch.Tensor,
    path: str | os.PathLike[str],
    fmt: str,
    *,
    dynamic_batch: bool = True,
    opset: int = 17,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` to ``path`` in ``fmt`` (one of ``FORMATS``); ONNX files carry ``metadata``
    (class names, mean/std, ...: see ``export_onnx``)."""
    fmt = format_for(path, fmt)
    if fmt == "onnx":
        return export_onnx(model, example_input, path, dynamic_batch=dynamic_batch, opset=opset, metadata=metadata)
    if fmt == "torchscript":
        return export_torchscript(model, example_input, path)
    return export_program(model, example_input, path, dynamic_batch=dynamic_batch)


def load_exported(path: str | os.PathLike[str], fmt: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Load an exported file as a function from an input batch to the CPU output tensor."""
    fmt = format_for(path, fmt)
    path = Path(path)
    if not path.is_file():
        raise ResNetError(f"exported file not found: {path}")
    if fmt == "onnx":
        session = onnx_session(path)
        return lambda x: run_onnx(session, x)
    try:
        if fmt == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu")
        else:
            module = torch.export.load(str(path)).module()
    except (RuntimeError, ValueError, OSError, KeyError) as exc:
        raise ResNetError(f"{path} is not a loadable {fmt} file ({str(exc).splitlines()[0]})") from exc

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x.detach().cpu().float()).float()

    return run
