"""Inference engines behind ``resnet.optimize`` and ``resnet bench``: one module each, same small interface.

Each engine is a module ``<name>_backend.py`` in this package (``engines()`` finds them, so adding an
engine is adding one file) with ``NAME``, ``missing() -> str | None`` (why it cannot run here at
all, or None), ``supports(precision, device) -> str | None`` (why not this precision there, or None)
and ``candidates(job) -> list[Candidate]``: lazily built inference callables for one precision. The
optimizer builds, checks and times them; the backends only know how to make their engine fast. An
engine that users also run directly has ``peer(model, x, precision, calibration, cache) -> Runner |
None``: the model run as the engine's own documentation suggests, which ``resnet bench`` compares against.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import os
import pkgutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Job:
    """What the backends are asked to speed up: a BN-folded eval model, an example batch, a precision."""

    model: nn.Module  # fp32, eval mode, BatchNorm folded, on example_input's device
    example_input: torch.Tensor
    precision: str  # "fp32" | "bf16" | "int8"
    calibration: list[torch.Tensor] = field(default_factory=list)  # validated CPU fp32 batches
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="resnet-optimize-")))
    # Shared by the jobs made with ``for_precision``: the model is exported to ONNX once.
    _files: dict[str, Path] = field(default_factory=dict)

    def for_precision(self, precision: str) -> Job:
        return dataclasses.replace(self, precision=precision)

    def onnx_file(self) -> Path:
        """The fp32 model as ONNX with a dynamic batch axis (read by ONNX Runtime and OpenVINO)."""
        if "onnx" not in self._files:
            from resnet.export.onnx import export_onnx

            with warnings.catch_warnings():  # the exporter's notes on its own internals are not the user's concern
                warnings.simplefilter("ignore")
                self._files["onnx"] = export_onnx(
                    self.model, self.example_input.detach().cpu(), self.workdir / "model.onnx", dynamic_batch=True
                )
        return self._files["onnx"]


@dataclass
class Candidate:
    backend: str  # "torch" | "onnxruntime" | "openvino"
    precision: str
    variant: str  # how, e.g. "eager", "compile", "QDQ per-channel u8s8"
    build: Callable[[], Runner]


def engine_threads() -> int:
    """The thread count every engine gets: torch's own, so the comparison is fair and the user's choice holds."""
    return max(1, torch.get_num_threads())


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Some engines (NNCF) draw their own progress bars on stdout, which belongs to our results; hide them."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


@functools.cache
def engines() -> dict[str, ModuleType]:
    """Every engine module of this package by its NAME, torch first (the always-present reference)."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.endswith("_backend"):
            found.append(importlib.import_module(f"{__name__}.{info.name}"))
    found.sort(key=lambda m: (m.NAME != "torch", m.NAME))
    return {m.NAME: m for m in found}
