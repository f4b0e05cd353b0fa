"""Using a trained checkpoint: find it in a run folder, evaluate it on a dataset, predict image files.

Checkpoints are loaded only through ``resnet.models.model_from_checkpoint`` (or, for a published
weight set, ``resnet.models.from_pretrained``): safetensors or weights-only PyTorch files, never
unpickled code (full unpickling only with an explicit ``unsafe=True``, i.e. ``--unsafe-load``).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet.data.images import IMAGE_EXTENSIONS, BadImage, decode_image, is_image_file
from resnet.device import resolve_device
from resnet.errors import ResNetError
from resnet.io import atomic_write
from resnet.train.evaluation import EvalResult, evaluate


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


def metadata_from_run_config(run: dict[str, Any]) -> dict[str, Any]:
    """What a run's config.json says about its model: the checkpoint metadata a plain state dict lacks."""
    if not run.get("model"):
        return {}
    dataset = run.get("dataset") or {}
    known = ("num_classes", "in_chans", "class_names", "mean", "std", "image_size")
    return {"arch": run["model"], "model_options": run.get("model_options") or {},
            **{k: dataset[k] for k in known if dataset.get(k) is not None},
            **({"dataset": dataset["name"]} if dataset.get("name") else {})}


@dataclass(frozen=True)
class CheckpointSource:
    """Which weights to load: a checkpoint file or run folder (``path``), or a published weight set
    (``pretrained``, with ``path`` as an explicit file for it). For a file without our header,
    ``model`` (and ``num_classes`` / ``in_chans`` where the tensors don't say) names the net."""

    path: str | None = None
    pretrained: str | None = None
    model: str | None = None
    num_classes: int | None = None
    in_chans: int | None = None


@dataclass
class Loaded:
    model: nn.Module
    metadata: dict[str, Any]
    path: Path
    device: torch.device


def load_checkpoint(path: str | Path | CheckpointSource, *, device: str | torch.device | None = None,
                    unsafe: bool = False) -> Loaded:
    """A checkpoint file or run folder, or a ``CheckpointSource`` (published weights, or a plain state dict)."""
    from resnet.models import from_pretrained, model_from_checkpoint

    source = path if isinstance(path, CheckpointSource) else CheckpointSource(path=str(path))
    if source.pretrained:
        model, meta = from_pretrained(source.pretrained, path=source.path)
        file = Path(meta["file"])
    else:
        if not source.path:
            raise ResNetError("no weights given: pass --checkpoint RUN_OR_FILE or --pretrained NAME")
        file = resolve_checkpoint(source.path)
        model, meta = model_from_checkpoint(file, unsafe=unsafe, model=source.model, num_classes=source.num_classes,
                                            in_chans=source.in_chans, metadata=metadata_from_run_config(run_config_of(file)))
    device = resolve_device(device)
    model.to(device).eval()
    return Loaded(model, meta, file, device)


def data_preparation(meta: dict[str, Any], run: dict[str, Any],
                     image_size: int | Sequence[int] | str | None = None) -> tuple[list[int] | None, Any]:
    """(image size, PhotoTransforms or None) to load a dataset with for this checkpoint, as its run validated.

    A run trained on photos: resize + centre crop at its image size; another run of ours the size it
    was trained at (its config.json's ``image_size``), else the data's own. ``image_size`` (e.g.
    --image-size) evaluates at another size.
    """
    from resnet.data.photo import PhotoTransforms
    from resnet.train.config import parse_image_size

    size = parse_image_size(image_size, "--image-size")
    if meta.get("train_crop") != "resized":
        return size or parse_image_size(run.get("image_size")), None
    size = size or [int(v) for v in meta["image_size"]]
    return size, PhotoTransforms(size=(size[0], size[-1]), crop_fraction=float(meta.get("crop_fraction") or 1.0),
                                 interpolation=str(meta.get("interpolation") or "bilinear"))


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
    size, photo = data_preparation(meta, run)
    try:
        train = load(spec, "train", data_dir=run.get("data_dir"), seed=int(run.get("seed", 0)), image_size=size, photo=photo)
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


# Below this much plain inference for the whole job, building any engine costs more than it saves: the
# search's budget (optimize.BUILD_BUDGET = 0.5 of it) would not fit one engine's first build
# (optimize.FIRST_BUILD_S = 2 s), and the search alone (references, parity, BatchNorm folding) made
# --fast 0.73x the plain path on 1,000 small images on Zen 3.
PLAIN_JOB_S = 4.0
# int8 needs the training data read for calibration and a quantization pass (seconds, more with
# OpenVINO's NNCF): below this much plain inference it cannot pay for itself, so "auto" leaves it out.
INT8_JOB_S = 20.0


def fast_callable(model: nn.Module, example: torch.Tensor, *, precision: str = "auto",
                  calibration: Sequence[torch.Tensor] | Callable[[], Sequence[torch.Tensor] | None] | None = None,
                  job_images: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The fastest end-to-end inference callable for a job of ``job_images`` images (``resnet.optimize``).

    A job the plain model finishes in a few seconds (``PLAIN_JOB_S``) keeps the plain model: no engine's
    build pays for itself there. Otherwise the search is limited to what can pay for itself and its choice is
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
    path: str | Path | CheckpointSource,
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
    image_size: int | Sequence[int] | str | None = None,
) -> tuple[EvalResult, Loaded, Any]:
    """Evaluate a checkpoint (file or run folder) on a split; the data defaults to what it was trained on.

    A run trained on photos is evaluated as it validated (resize + centre crop at its image size);
    ``image_size`` evaluates at another size instead (N, (H, W) or "HxW").
    """
    from resnet.data import load

    loaded = load_checkpoint(path, device=device, unsafe=unsafe)
    meta, run = loaded.metadata, run_config_of(loaded.path)
    size, photo = data_preparation(meta, run, image_size)
    spec = data or run.get("data") or meta.get("dataset")
    if not spec:
        raise ResNetError(f"{loaded.path} does not say which data it was trained on; pass --data")
    data_dir = data_dir or (run.get("data_dir") if not data else None)
    split_data = load(spec, split, data_dir=data_dir, seed=int(run.get("seed", 0)), download=download, strict=strict,
                      image_size=size, photo=photo,
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
    error: str | None = None  # why the file could not be read; then ``top`` is empty

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "predictions": [{"class": name, "index": index, "probability": prob}
                                                     for name, index, prob in self.top], "error": self.error}


def _walk_sorted(folder: Path) -> Iterator[Path]:
    """Image files under ``folder``, recursively, in ``sorted(paths)`` order, found lazily folder by folder.

    Hidden files and folders are left out, and symlinked folders are not followed (no cycles).
    """
    try:
        with os.scandir(folder) as it:
            entries = sorted((entry.name, entry.is_dir(follow_symlinks=False)) for entry in it if not entry.name.startswith("."))
    except OSError as exc:
        raise ResNetError(f"cannot list folder {folder}: {exc.strerror or exc}") from None
    for name, is_dir in entries:
        if is_dir:
            yield from _walk_sorted(folder / name)
        elif is_image_file(folder / name):
            yield folder / name


def image_files(inputs: Sequence[str | Path]) -> Iterator[Path]:
    """The files to predict: each file as given, each folder's images recursively (sorted by path)."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            yield from _walk_sorted(path)
        else:
            yield path


def _check_inputs(inputs: Sequence[str | Path]) -> int:
    """How many files ``image_files(inputs)`` will give; a ResNetError for a missing path or an empty folder."""
    if not inputs:
        raise ResNetError("no image files given")
    total = 0
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sum(1 for _ in _walk_sorted(path))
            if not found:
                raise ResNetError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
            total += found
        elif path.is_file():
            total += 1
        else:
            raise ResNetError(f"image not found: {path}")
    return total


def _decode_one(path: Path, in_chans: int, size: tuple[int, int], resize_size: int | None,
                interpolation: str) -> tuple[torch.Tensor | None, str | None]:
    try:
        array = decode_image(path, in_chans=in_chans, image_size=size, resize_size=resize_size, interpolation=interpolation)
    except BadImage as exc:
        return None, str(exc) or "unreadable"
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))), None


def decoded_batches(
    files: Iterator[Path], *, in_chans: int, image_size: tuple[int, int], batch_size: int, workers: int, depth: int = 2,
    resize_size: int | None = None, interpolation: str = "bilinear",
) -> Iterator[tuple[list[Path], list[torch.Tensor | None], list[str | None]]]:
    """Batches of (paths, uint8 C,H,W images or None, errors), decoded by ``workers`` threads ahead of use.

    Each image is prepared by ``resnet.data.decode_image`` (resized to ``image_size``, or, with
    ``resize_size``, shorter side resized and centre-cropped as published weights expect).

    At most ``depth`` batches are being decoded while the caller works on the one yielded (Pillow
    releases the GIL while decoding and resizing, so threads overlap with inference). Memory is
    therefore ``(depth + 1) * batch_size`` images, whatever the number of files.
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="resnet-decode")
    pending: deque[tuple[list[Path], list[Future[tuple[torch.Tensor | None, str | None]]]]] = deque()

    def submit_batch() -> None:
        paths = list(itertools.islice(files, batch_size))
        if paths:
            pending.append((paths, [pool.submit(_decode_one, p, in_chans, image_size, resize_size, interpolation) for p in paths]))

    try:
        for _ in range(depth):
            submit_batch()
        while pending:
            paths, futures = pending.popleft()
            submit_batch()  # keep ``depth`` batches decoding while this one is used
            results = [f.result() for f in futures]
            yield paths, [image for image, _ in results], [error for _, error in results]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class PredictionStream:
    """Predictions of many image files, made as they are iterated: batched, decoded ahead in threads.

    ``total`` is the number of files, ``k`` the number of classes in each prediction. Iterating yields
    one ``Prediction`` per file, in order; unreadable files give a ``Prediction`` with ``error`` set and
    are summed up in one warning at the end.
    """

    loaded: Loaded
    inputs: Sequence[str | Path]
    total: int
    k: int
    class_names: list[str]
    batch_size: int
    workers: int
    fast: bool
    precision: str
    image_size: Sequence[int] | None = None  # overrides the checkpoint's

    failures: int = field(default=0, init=False)  # unreadable files seen by the last iteration

    def __iter__(self) -> Iterator[Prediction]:
        from resnet import report
        from resnet.data.augment import Normalizer

        meta = self.loaded.metadata
        in_chans, size = input_preparation(self.loaded, self.image_size)
        normalize = Normalizer(meta["mean"], meta["std"], "cpu")  # exactly as in training
        model: Callable[[torch.Tensor], torch.Tensor] | None = None if self.fast else self.loaded.model
        self.failures, first_failure = 0, None
        batches = decoded_batches(image_files(self.inputs), in_chans=in_chans, image_size=size,
                                  batch_size=self.batch_size, workers=self.workers, resize_size=resize_for(meta, size),
                                  interpolation=meta.get("interpolation") or "bilinear")
        with report.progress(self.total, "predicting") as bar, torch.no_grad():
            for paths, images, errors in batches:
                good = [image for image in images if image is not None]
                tops: Iterator[list[tuple[str, int, float]]] = iter(())
                if good:
                    x = normalize(torch.stack(good))
                    if model is None:  # --fast: the engine is chosen on the first real batch
                        model = fast_callable(self.loaded.model, x, precision=self.precision,
                                              calibration=lambda: calibration_batches(self.loaded), job_images=self.total)
                    tops = iter(self._top(model(x.to(self.loaded.device))))
                for path, image, error in zip(paths, images, errors):
                    if image is None:
                        self.failures += 1
                        first_failure = first_failure or (path, error)
                        yield Prediction(str(path), [], error)
                    else:
                        yield Prediction(str(path), next(tops))
                bar.advance(len(paths))
        if first_failure is not None:
            report.warn(f"{self.failures} of {self.total} files could not be read and were skipped "
                        f"(first: {first_failure[0]}: {first_failure[1]})")

    def _top(self, logits: torch.Tensor) -> list[list[tuple[str, int, float]]]:
        values, indices = torch.softmax(logits.float(), dim=1).cpu().topk(self.k, dim=1)
        names = self.class_names
        return [[(names[i] if i < len(names) else str(i), i, float(v)) for v, i in zip(vs.tolist(), ix.tolist())]
                for vs, ix in zip(values, indices)]


def input_preparation(loaded: Loaded, image_size: int | Sequence[int] | str | None = None) -> tuple[int, tuple[int, int]]:
    """(channels, (H, W)) that images are prepared at for this checkpoint, as in training; a ResNetError
    when its metadata cannot say (no image size or statistics, or statistics of another channel count).
    ``image_size`` (N, (H, W) or "HxW", e.g. --image-size) overrides the checkpoint's size."""
    meta = loaded.metadata
    missing = [k for k in ("image_size", "mean", "std") if not meta.get(k)]
    if missing:
        raise ResNetError(f"{loaded.path} lacks {', '.join(missing)} in its metadata, so images cannot be prepared "
                          "as in training; use a checkpoint written by `resnet train`")
    in_chans = int(meta.get("in_chans") or len(meta["mean"]))
    if len(meta["mean"]) != in_chans or len(meta["std"]) != in_chans:
        raise ResNetError(f"{loaded.path}: mean/std have {len(meta['mean'])}/{len(meta['std'])} values but the model "
                          f"takes {in_chans} channels")
    if image_size is not None:
        from resnet.train.config import parse_image_size

        height, width = parse_image_size(image_size, "--image-size") or ()
        return in_chans, (height, width)
    size = meta["image_size"]
    return in_chans, ((int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[-1])))


def resize_for(meta: dict[str, Any], size: tuple[int, int]) -> int | None:
    """The shorter side before the centre crop, for images prepared at ``size``: the checkpoint's own at its
    own size, else size / its crop fraction (None: plain resize, as for checkpoints without one)."""
    if not meta.get("resize_size"):
        return None
    own = meta.get("image_size")
    if own is not None and [int(v) for v in own] == list(size):
        return int(meta["resize_size"])
    fraction = float(meta.get("crop_fraction") or max(own or size) / int(meta["resize_size"]))
    return math.floor(max(size) / fraction)


def predict_stream(
    path: str | Path | CheckpointSource,
    inputs: Sequence[str | Path],
    *,
    top_k: int = 5,
    device: str | torch.device | None = None,
    fast: bool = False,
    precision: str = "auto",
    unsafe: bool = False,
    batch_size: int = 64,
    workers: int | None = None,
    image_size: int | Sequence[int] | str | None = None,
) -> PredictionStream:
    """Top-k classes of image files and folders (recursively), preprocessed exactly as in training.

    Checks everything it can before any work (the checkpoint, every path, ``batch_size``), then
    returns a stream that predicts as it is iterated, in bounded memory. ``workers`` decoding threads
    (default: up to 4, one per core) run ahead of inference.
    """
    if batch_size < 1:
        raise ResNetError(f"--batch-size must be at least 1, got {batch_size}")
    if workers is not None and workers < 1:
        raise ResNetError(f"--workers must be at least 1, got {workers}")
    total = _check_inputs(inputs)
    loaded = load_checkpoint(path, device=device if not fast else "cpu", unsafe=unsafe)
    meta = loaded.metadata
    size = input_preparation(loaded, image_size)[1]  # fails now, before any file is read, if images cannot be prepared
    num_classes = int(meta.get("num_classes") or loaded.model.num_classes)
    names = list(meta.get("class_names") or [str(i) for i in range(num_classes)])
    return PredictionStream(loaded, list(inputs), total, max(1, min(top_k, num_classes)), names, batch_size,
                            workers or min(4, os.cpu_count() or 1), fast, precision, size if image_size is not None else None)


def predict_files(
    path: str | Path | CheckpointSource,
    images: Sequence[str | Path],
    *,
    top_k: int = 5,
    device: str | torch.device | None = None,
    fast: bool = False,
    precision: str = "auto",
    unsafe: bool = False,
    batch_size: int = 64,
) -> list[Prediction]:
    """``predict_stream`` gathered into a list (for a few files; stream many with ``predict_stream``)."""
    return list(predict_stream(path, images, top_k=top_k, device=device, fast=fast, precision=precision,
                               unsafe=unsafe, batch_size=batch_size))


PREDICTION_FORMATS = (".csv", ".jsonl")


def prediction_format(path: str | Path) -> str:
    """``csv`` or ``jsonl`` from the file name; a ResNetError for any other suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in PREDICTION_FORMATS:
        raise ResNetError(f"--output {path}: the file must end in {' or '.join(PREDICTION_FORMATS)}")
    return suffix[1:]


def write_predictions(stream: PredictionStream, path: str | Path) -> tuple[Path, int, int]:
    """Write one row per file as the stream runs (CSV or JSON lines, from the suffix), atomically.

    CSV columns: image, then class/index/probability for each of the top k, then error (empty when
    the file was read). JSON lines: the objects of ``predict --json``. Returns (path, rows, errors).
    """
    fmt = prediction_format(path)
    counts = [0, 0]

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n") if fmt == "csv" else None
            if writer is not None:
                ranks = range(1, stream.k + 1)
                writer.writerow(["image", *(f"{c}_{r}" for r in ranks for c in ("class", "index", "probability")), "error"])
            for p in stream:
                counts[0] += 1
                counts[1] += p.error is not None
                if writer is None:
                    fh.write(json.dumps(p.to_dict()) + "\n")
                    continue
                cells = [v for name, index, prob in p.top for v in (name, index, f"{prob:.6g}")]
                writer.writerow([p.image, *cells, *[""] * (3 * stream.k - len(cells)), p.error or ""])

    return atomic_write(path, write), counts[0], counts[1]
