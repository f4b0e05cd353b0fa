"""The model a server scores with: loaded from a checkpoint, preprocessed and scored as ``resnet predict`` does.

Preprocessing is the project's own (``resnet.data.images.decode_image`` and the training
``Normalizer``), so a served image gets the probabilities ``resnet predict`` prints for the same file.
Scoring runs on the engine ``resnet.optimize`` picks for this machine (``--no-fast``: the eager fp32
model), warmed up at start on every batch size up to ``max_batch`` the batcher will send.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnet import report
from resnet.data.augment import Normalizer
from resnet.data.images import BadImage, decode_image
from resnet.errors import ResNetError
from resnet.serve.limits import RequestError, check_image_header
from resnet.train.inference import CheckpointSource, Loaded, calibration_batches, input_preparation, load_checkpoint


@dataclass
class EngineOptions:
    fast: bool = True
    precision: str = "auto"
    backend: str = "auto"
    compile: bool = True
    max_batch: int = 32


@dataclass
class ServedModel:
    """A checkpoint ready to serve: what it expects, and (once ``warm``) the engine that scores it."""

    loaded: Loaded
    name: str
    class_names: list[str]
    in_chans: int
    image_size: tuple[int, int]
    mean: list[float]
    std: list[float]
    sha256: str
    normalizer: Normalizer
    engine: Callable[[torch.Tensor], torch.Tensor] | None = None
    backend: str = "torch"
    precision: str = "fp32"
    variant: str = "eager"
    warmup_s: float = 0.0
    # Published weights' own preprocessing (shorter side to resize_size, centre crop); None: resize.
    resize_size: int | None = None
    interpolation: str = "bilinear"

    @property
    def ready(self) -> bool:
        return self.engine is not None

    def preprocess(self, data: bytes, max_pixels: int) -> torch.Tensor:
        """Encoded image bytes -> a model-ready float image (C, H, W), exactly as ``resnet predict``.

        Raises ``RequestError`` (400/415) naming the problem for anything that is not a usable image.
        """
        check_image_header(data, max_pixels)
        # Only published weights carry resize_size: a checkpoint of ours decodes exactly as `resnet predict` does.
        crop = {"resize_size": self.resize_size, "interpolation": self.interpolation} if self.resize_size else {}
        try:
            array = decode_image(io.BytesIO(data), in_chans=self.in_chans, image_size=self.image_size, **crop)
        except BadImage as exc:
            raise RequestError(400, "bad_image", f"cannot decode the image (truncated or corrupt?): {exc}") from None
        return self.normalizer(torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None])[0]

    def score(self, batch: torch.Tensor) -> torch.Tensor:
        """Float batch (N, C, H, W) -> class probabilities (N, K) on the CPU; runs on the inference thread."""
        assert self.engine is not None, "score() before warm-up"
        with torch.inference_mode():
            logits = self.engine(batch.to(self.loaded.device))
        return torch.softmax(logits.float(), dim=1).cpu()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "arch": self.loaded.metadata.get("arch"), "classes": self.class_names,
            "input_size": [self.in_chans, *self.image_size],
            "preprocessing": {"resize": self.resize_size or list(self.image_size),
                              "centre_crop": list(self.image_size) if self.resize_size else None,
                              "interpolation": self.interpolation,
                              "channels": "gray" if self.in_chans == 1 else "RGB", "scale": "1/255",
                              "mean": self.mean, "std": self.std},
            "backend": self.backend, "precision": self.precision, "variant": self.variant,
            "device": str(self.loaded.device), "checkpoint": str(self.loaded.path), "sha256": self.sha256,
            "ready": self.ready,
        }


def load_served_model(checkpoint: str | Path | None, *, pretrained: str | None = None, name: str | None = None,
                      device: str | None = None, unsafe: bool = False) -> ServedModel:
    """Read a checkpoint (file or run folder), or a published weight set by name, and what it says about
    its inputs; no engine yet."""
    loaded = load_checkpoint(weights_source(checkpoint, pretrained), device=device, unsafe=unsafe)
    meta = loaded.metadata
    in_chans, image_size = input_preparation(loaded)  # the same checks and sizes as `resnet predict`
    num_classes = int(meta.get("num_classes") or loaded.model.num_classes)
    names = [str(n) for n in (meta.get("class_names") or range(num_classes))]
    names += [str(i) for i in range(len(names), num_classes)]
    return ServedModel(loaded, name or str(meta.get("arch") or loaded.path.stem), names, in_chans, image_size,
                       [float(m) for m in meta["mean"]], [float(s) for s in meta["std"]], file_sha256(loaded.path),
                       Normalizer(meta["mean"], meta["std"], "cpu"),
                       resize_size=int(meta["resize_size"]) if meta.get("resize_size") else None,
                       interpolation=str(meta.get("interpolation") or "bilinear"))


def weights_source(checkpoint: str | Path | None, pretrained: str | None) -> Any:
    """What ``load_checkpoint`` takes: the checkpoint path, or (``pretrained``) a published weight set by
    name through the project's loader for them (``resnet.train.inference.CheckpointSource``)."""
    if not pretrained:
        if not checkpoint:
            raise ResNetError("no weights given: pass --checkpoint RUN_OR_FILE or --pretrained NAME")
        return checkpoint
    return CheckpointSource(path=str(checkpoint) if checkpoint else None, pretrained=pretrained)


def warm_up(model: ServedModel, options: EngineOptions) -> None:
    """Build the engine (``resnet.optimize`` unless ``fast`` is off) and run it once per batch size."""
    start = time.perf_counter()
    loaded = model.loaded
    example = torch.randn(options.max_batch, model.in_chans, *model.image_size)
    if options.fast:
        from resnet import optimize

        # int8 ranges come from the training images; without them "auto" leaves int8 out rather than
        # calibrate on made-up inputs (an explicit --precision int8 then stops with the reason).
        calibration = calibration_batches(loaded)
        if calibration:
            example = calibration[0][: options.max_batch].repeat(
                (options.max_batch + calibration[0].shape[0] - 1) // calibration[0].shape[0], 1, 1, 1
            )[: options.max_batch]
        engine = optimize(loaded.model, example.to(loaded.device), precision=options.precision,
                          backend=options.backend, calibration=calibration, compile=options.compile)
        model.backend, model.precision, model.variant = engine.backend, engine.precision, engine.variant
    else:
        engine = loaded.model.eval()
        model.backend, model.precision, model.variant = "torch", "fp32", "eager"
    with torch.inference_mode():
        for size in warmup_sizes(options.max_batch):
            engine(example[:size].to(loaded.device))
    model.warmup_s = time.perf_counter() - start
    model.engine = engine
    report.info(f"serve: {model.name} on {model.backend} {model.precision} ({model.variant}), "
                f"warmed for batches up to {options.max_batch} in {model.warmup_s:.1f} s")


def warmup_sizes(max_batch: int) -> list[int]:
    """1, 2, 3 and the powers of two up to ``max_batch``, and ``max_batch``: engines that specialize on the
    batch size (torch.compile) settle on a dynamic batch axis after the first few."""
    sizes = {1, 2, 3, max_batch}
    power = 4
    while power < max_batch:
        sizes.add(power)
        power *= 2
    return sorted(s for s in sizes if s <= max_batch)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
