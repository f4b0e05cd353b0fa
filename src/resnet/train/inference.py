"""Using a trained checkpoint: find it in a run folder, evaluate it on a dataset, predict image files.

Checkpoints are loaded only through ``resnet.models.model_from_checkpoint``: safetensors, never
unpickled code (full unpickling only with an explicit ``unsafe=True``, i.e. ``--unsafe-load``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet.device import resolve_device
from resnet.errors import ResNetError
from resnet.train.fit import EvalResult, evaluate


def resolve_checkpoint(path: str | Path) -> Path:
    """A weights file, or a run folder (its best checkpoint, else its last)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.safetensors", "last.safetensors"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
            if (path / name).is_file():
                return path / name
        raise ResNetError(f"{path} is a folder without checkpoints/best.safetensors or last.safetensors; "
                          "give a run folder or a .safetensors file")
    if not path.is_file():
        raise ResNetError(f"checkpoint not found: {path}")
    return path


def run_config_of(checkpoint: Path) -> dict[str, Any]:
    """The config.json of the run a checkpoint belongs to (RUN/checkpoints/x.safetensors), or {}."""
    for folder in (checkpoint.parent.parent, checkpoint.parent):
        config = folder / "config.json"
        if config.is_file():
            try:
                return json.loads(config.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
    return {}


@dataclass
class Loaded:
    model: nn.Module
    metadata: dict[str, Any]
    path: Path
    device: torch.device


def load_checkpoint(path: str | Path, *, device: str | torch.device | None = None, unsafe: bool = False) -> Loaded:
    from resnet.models import model_from_checkpoint

    file = resolve_checkpoint(path)
    model, meta = model_from_checkpoint(file, unsafe=unsafe)
    device = resolve_device(device)
    model.to(device).eval()
    return Loaded(model, meta, file, device)


def calibration_batches(loaded: Loaded, *, count: int = 512, batch_size: int = 64) -> list[torch.Tensor] | None:
    """About ``count`` shuffled training images of the checkpoint's dataset, prepared as in training.

    int8 calibration must see the training distribution, never the images it is then scored on.
    None when the training data cannot be found (the caller says so and falls back).
    """
    from resnet import report
    from resnet.data import load

    meta, run = loaded.metadata, run_config_of(loaded.path)
    spec = run.get("data") or meta.get("dataset")
    if not spec:
        return None
    try:
        train = load(spec, "train", data_dir=run.get("data_dir"), seed=int(run.get("seed", 0)))
    except ResNetError as exc:
        report.warn(f"int8 calibration: the training data of {loaded.path} is not available ({exc})")
        return None
    if meta.get("mean") and meta.get("std"):
        train = train.with_normalization(meta["mean"], meta["std"])
    batches: list[torch.Tensor] = []
    for x, _ in train.batches(min(batch_size, len(train)), shuffle=True, seed=0, device="cpu"):
        batches.append(x)
        if len(batches) * batch_size >= count:
            break
    return batches


# Below this much plain inference for the whole job, building any engine costs more than it saves.
PLAIN_JOB_S = 1.0
# int8 needs the training data read for calibration and a quantization pass (seconds, more with
# OpenVINO's NNCF): below this much plain inference it cannot pay for itself, so "auto" leaves it out.
INT8_JOB_S = 20.0


def fast_callable(model: nn.Module, example: torch.Tensor, *, precision: str = "auto",
                  calibration: Sequence[torch.Tensor] | Callable[[], Sequence[torch.Tensor] | None] | None = None,
                  job_images: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The fastest end-to-end inference callable for a job of ``job_images`` images (``resnet.optimize``).

    A job the plain model finishes in about a second keeps the plain model: no engine's build pays
    for itself there. Otherwise the search is limited to what can pay for itself and its choice is
    remembered per machine, weights and shape. ``calibration`` (batches, or a function giving them,
    called only when int8 is tried) comes from the training data.
    """
    import time

    from resnet import optimize, report
    from resnet.speed.optimize import remembered_choice

    plain_s = float("inf")
    if job_images is not None:
        param = next(model.parameters(), None)
        probe = example[: min(8, example.shape[0])].to(param.device if param is not None else example.device)
        with torch.inference_mode():
            model(probe)  # the first call pays one-time set-up; time the second
            start = time.perf_counter()
            model(probe)
            plain_s = (time.perf_counter() - start) / probe.shape[0] * job_images
        if plain_s < PLAIN_JOB_S:
            report.info(f"--fast: {job_images} image(s) take about {plain_s:.2f} s with the plain model; "
                        "building a faster engine would cost more than it saves, so the plain model runs")
            return model
    try_int8 = precision == "int8" or (precision == "auto" and example.device.type == "cpu" and _native_int8())
    if precision == "auto" and try_int8 and plain_s < INT8_JOB_S:
        report.info(f"--fast: int8 left out: its calibration and quantization cost more than they save in a "
                    f"{plain_s:.0f} s job")
        try_int8 = False
    if not try_int8:
        calibration = None
    elif callable(calibration):
        remembered = remembered_choice(model, example, precision=precision) if precision == "auto" else None
        calibration = calibration() if remembered is None or remembered.get("precision") == "int8" else [example]
    if try_int8 and calibration is None:
        report.warn("int8 calibration falls back to the input images themselves (training data not found)")
        calibration = [example]
    fast = optimize(model, example, precision=precision, calibration=calibration, job_images=job_images, cache=True)
    report.info(f"--fast: {getattr(fast, 'backend', '?')} {getattr(fast, 'precision', '?')} "
                f"(max |logit difference| vs fp32 {getattr(fast, 'max_abs_diff', float('nan')):.3g})")
    return fast


def _native_int8() -> bool:
    from resnet.device import cpu_info

    return cpu_info().native_int8


def evaluate_checkpoint(
    path: str | Path,
    *,
    data: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    fast: bool = False,
    precision: str = "auto",
    unsafe: bool = False,
    download: bool = False,
    strict: bool = False,
    flip_tta: bool | None = None,
) -> tuple[EvalResult, Loaded, Any]:
    """Evaluate a checkpoint (file or run folder) on a split; the data defaults to what it was trained on."""
    from resnet.data import load

    loaded = load_checkpoint(path, device=device, unsafe=unsafe)
    meta, run = loaded.metadata, run_config_of(loaded.path)
    spec = data or run.get("data") or meta.get("dataset")
    if not spec:
        raise ResNetError(f"{loaded.path} does not say which data it was trained on; pass --data")
    data_dir = data_dir or (run.get("data_dir") if not data else None)
    split_data = load(spec, split, data_dir=data_dir, seed=int(run.get("seed", 0)), download=download, strict=strict,
                      **({k: run.get(k) for k in ("val_size", "val_fraction")} if split == "val" else {}))
    num_classes = meta.get("num_classes") or getattr(loaded.model, "num_classes", None)
    if num_classes is not None and split_data.num_classes != num_classes:
        raise ResNetError(f"{loaded.path} predicts {num_classes} classes but {spec} has {split_data.num_classes}; "
                          "evaluate on the data it was trained on")
    if meta.get("mean") and meta.get("std"):
        split_data = split_data.with_normalization(meta["mean"], meta["std"])  # exactly as in training
    model: Any = loaded.model
    if fast:
        x, _ = next(split_data.batches(min(batch_size, len(split_data)), device="cpu"))
        passes = 2 if (bool(run.get("tta", False)) if flip_tta is None else flip_tta) else 1
        model = fast_callable(loaded.model, x, precision=precision, calibration=lambda: calibration_batches(loaded),
                              job_images=len(split_data) * passes)
    result = evaluate(model, split_data, batch_size=batch_size, device=loaded.device if not fast else "cpu",
                      flip_tta=bool(run.get("tta", False)) if flip_tta is None else flip_tta)  # None: as the run scored it
    return result, loaded, split_data


@dataclass
class Prediction:
    image: str
    top: list[tuple[str, int, float]]  # (class name, class index, probability), most likely first


def predict_files(
    path: str | Path,
    images: Sequence[str | Path],
    *,
    top_k: int = 5,
    device: str | torch.device | None = None,
    fast: bool = False,
    precision: str = "auto",
    unsafe: bool = False,
    batch_size: int = 64,
) -> list[Prediction]:
    """Top-k classes with probabilities for each image file, preprocessed exactly as in training."""
    from resnet.data import preprocess_images

    loaded = load_checkpoint(path, device=device if not fast else "cpu", unsafe=unsafe)
    meta = loaded.metadata
    missing = [k for k in ("image_size", "mean", "std") if not meta.get(k)]
    if missing:
        raise ResNetError(f"{loaded.path} lacks {', '.join(missing)} in its metadata, so images cannot be prepared "
                          "as in training; use a checkpoint written by `resnet train`")
    in_chans = int(meta.get("in_chans") or len(meta["mean"]))
    x = preprocess_images([str(p) for p in images], in_chans=in_chans, image_size=meta["image_size"],
                          mean=meta["mean"], std=meta["std"])
    num_classes = int(meta.get("num_classes") or loaded.model.num_classes)
    names = list(meta.get("class_names") or [str(i) for i in range(num_classes)])
    model: Callable[[torch.Tensor], torch.Tensor] = loaded.model
    if fast:
        model = fast_callable(loaded.model, x, precision=precision, calibration=lambda: calibration_batches(loaded),
                              job_images=len(images))
    probs = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size].to(loaded.device))
            probs.append(torch.softmax(logits.float(), dim=1).cpu())
    prob = torch.cat(probs)
    k = max(1, min(top_k, prob.shape[1]))
    values, indices = prob.topk(k, dim=1)
    return [
        Prediction(str(image), [(names[i] if i < len(names) else str(i), i, float(v)) for v, i in zip(vs.tolist(), ix.tolist())])
        for image, vs, ix in zip(images, values, indices)
    ]
