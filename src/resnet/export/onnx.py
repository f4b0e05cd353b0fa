"""ONNX export with a dynamic batch dimension, and running the exported file in onnxruntime.

Which exporter, and why: ``torch.onnx.export`` has two. The torch.export-based one (``dynamo=True``)
is PyTorch's maintained path, but it emits opset 18 or newer natively, and its down-conversion to
opset 17 fails on ResNet's global average pool (``ReduceMean`` with its axes as an input; the
converter warns and silently leaves the file at opset 18). The TorchScript tracer (``dynamo=False``)
emits opset 17 directly, captures a ResNet completely (no data-dependent control flow), supports a
named dynamic batch axis, and exports faster. So: the tracer for opset <= 17 (the
team's default, which every runtime we target reads), the torch.export exporter for opset >= 18.
Both fold BatchNorm into the convolutions in eval mode, so the file holds only Conv/Relu/Add/pool/Gemm.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet.errors import ResNetError
from resnet.io import atomic_write

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# Checkpoint metadata an ONNX file carries (metadata_props): what a runtime needs to prepare images and
# name the classes, and where the weights came from.
METADATA_KEYS = ("arch", "num_classes", "class_names", "mean", "std", "image_size", "resize_size", "crop_fraction",
                 "interpolation", "pretrained", "pretrained_from", "dataset")
# Below opset 18 the torch.export-based exporter cannot produce a ResNet (see the module docstring).
FIRST_DYNAMO_OPSET = 18


def export_onnx(
    model: nn.Module,
    example_input: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    dynamic_batch: bool = True,
    opset: int = 17,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` (in eval mode) as one self-contained ONNX file; returns the path.

    ``metadata`` (a checkpoint's: class names, mean/std, image size, the weights' resize and crop)
    goes into the file's ``metadata_props``, one entry per key in ``METADATA_KEYS``, each value
    JSON text, so a runtime prepares images and names classes without our code.

    With ``dynamic_batch`` the first axis of input and output is named ``batch`` and any batch size
    runs; otherwise the file is fixed to ``example_input``'s batch. The model's train/eval mode is
    restored afterwards. The file appears atomically (a failed export leaves no partial file).
    """
    if example_input.dim() != 4:
        raise ResNetError(f"example input must be a batch of images (N, C, H, W), got shape {tuple(example_input.shape)}")
    if not 7 <= opset <= 23:
        raise ResNetError(f"--opset {opset} is not supported; use a value between 7 and 23 (17 is the default)")
    if dynamic_batch and example_input.shape[0] == 1:
        # torch.export specializes a size-1 axis to a constant, so trace with two samples.
        example_input = example_input.expand(2, *example_input.shape[1:]).contiguous()
    example_input = example_input.detach()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return atomic_write(path, lambda tmp: _export(model, example_input, tmp, dynamic_batch, opset, metadata))
    finally:
        model.train(was_training)


def _export(model: nn.Module, example_input: torch.Tensor, tmp: Path, dynamic_batch: bool, opset: int,
            metadata: Mapping[str, Any] | None = None) -> None:
    _export_graph(model, example_input, tmp, dynamic_batch, opset)
    if metadata:
        add_metadata(tmp, metadata)


def add_metadata(path: Path, metadata: Mapping[str, Any]) -> None:
    """Write the ``METADATA_KEYS`` of ``metadata`` into the ONNX file's metadata_props (JSON values)."""
    try:
        import onnx
    except ImportError as exc:
        raise ResNetError("writing the class names and mean/std into an ONNX file needs onnx; install it with: "
                          "pip install 'resnet[export]'") from exc

    proto = onnx.load(str(path))
    entries = {k: json.dumps(metadata[k]) for k in METADATA_KEYS if metadata.get(k) is not None}
    kept = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata_props of an ONNX file written by ``export_onnx``, JSON values decoded."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    out: dict[str, Any] = {}
    for prop in proto.metadata_props:
        try:
            out[prop.key] = json.loads(prop.value)
        except ValueError:
            out[prop.key] = prop.value  # written by another tool
    return out


def _export_graph(model: nn.Module, example_input: torch.Tensor, tmp: Path, dynamic_batch: bool, opset: int) -> None:
    names = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME], "opset_version": opset}
    if opset >= FIRST_DYNAMO_OPSET:
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=65536)},) if dynamic_batch else None
        torch.onnx.export(
            model, (example_input,), str(tmp), dynamo=True, external_data=False,  # one self-contained file
            dynamic_shapes=dynamic_shapes, verbose=False, **names,
        )
        return
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        # The tracer is chosen on purpose for opset <= 17 (see the module docstring).
        warnings.simplefilter("ignore", DeprecationWarning)
        # Strided slices (the CIFAR nets' zero-padding shortcut) are left unfolded; harmless.
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(model, (example_input,), str(tmp), dynamo=False, dynamic_axes=dynamic_axes, **names)


def onnx_session(path: str | os.PathLike[str], *, providers: list[str] | None = None,
                 threads: int | None = None) -> Any:  # onnxruntime.InferenceSession
    """An onnxruntime session for ``path`` (CPU unless ``providers`` says otherwise; every graph
    optimization on; ``threads`` for its intra-op pool, else onnxruntime's default)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ResNetError("running ONNX files needs onnxruntime; install it with: pip install 'resnet[export]'") from exc
    path = Path(path)
    if not path.is_file():
        raise ResNetError(f"ONNX file not found: {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only; its warnings are about graph rewrites, not the user
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        raise ResNetError(f"{path} is not a loadable ONNX model ({str(exc).splitlines()[0]})") from exc


def run_onnx(session_or_path: Any, x: torch.Tensor) -> torch.Tensor:
    """Run an ONNX file (or an open session) on ``x``; returns the first output as a CPU tensor."""
    session = onnx_session(session_or_path) if isinstance(session_or_path, (str, os.PathLike)) else session_or_path
    name = session.get_inputs()[0].name
    out = session.run(None, {name: x.detach().cpu().float().numpy()})[0]
    return torch.from_numpy(out)
