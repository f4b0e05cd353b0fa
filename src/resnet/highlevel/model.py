"""``resnet.Model``: the object a Keras or Paddle tutorial reader expects, as a thin facade.

``compile``/``prepare`` record choices, ``fit`` calls ``resnet.train.fit``, ``evaluate`` calls
``resnet.train.evaluate``, ``summary``/``plot`` call ``resnet.inspect``, ``save``/``load_model`` the
weights layer. No training logic lives here: the facade only translates the tutorials' vocabulary
(one-hot labels, NHWC arrays, 'adam', 'categorical_crossentropy', metrics lists) into ours.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet import report
from resnet.data.split import DataSplit
from resnet.errors import ResNetError
from resnet.highlevel.arrays import images_uint8_nchw, split_from_arrays, to_numpy

# The loss every name means here: cross-entropy on class indices (one-hot targets become indices).
LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy", "cross_entropy", "crossentropy")
# Metric names (Keras' and Paddle's) -> the EvalResult field that holds them.
METRICS = {"accuracy": "top1", "acc": "top1", "top1": "top1", "top_1": "top1",
           "top5": "top5", "top_5": "top5", "top_k_categorical_accuracy": "top5"}
# What each optimizer name means when no learning rate is given: the frameworks' own defaults.
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "adam": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "constant"},
    "adamw": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-2, "schedule": "constant"},
    "sgd": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.0, "weight_decay": 0.0, "schedule": "constant"},
    "momentum": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0, "schedule": "constant"},
}


@dataclass
class History:
    """What ``fit`` returns, as Keras: ``history.history["loss"]``, ``["val_accuracy"]``, ... one value per epoch."""

    history: dict[str, list[float]] = field(default_factory=dict)
    run_dir: Path | None = None


class Model:
    """A network with compile / fit / evaluate / predict / summary / plot / save.

    ``Model("resnet50", num_classes=6, in_chans=3)`` builds a registered network (any
    ``create_model`` option passes through); ``Model(module)`` wraps a network you built.
    """

    def __init__(self, network: str | nn.Module, *, num_classes: int | None = None, in_chans: int | None = None,
                 class_names: Sequence[str] | None = None, **options: Any) -> None:
        from resnet.models import create_model

        if isinstance(network, str):
            if class_names is not None and num_classes is None:
                num_classes = len(class_names)
            network = create_model(network, num_classes=num_classes, in_chans=in_chans or 3, **options)
        elif not isinstance(network, nn.Module):
            raise ResNetError(f"Model takes a model name or a torch.nn.Module, got {type(network).__name__}")
        elif options or num_classes is not None or in_chans is not None:
            raise ResNetError("num_classes, in_chans and model options apply to a model name, not to a module you built")
        self.network: nn.Module = network
        self.class_names: list[str] | None = list(class_names) if class_names else None
        self.mean: tuple[float, ...] | None = None  # the training statistics, set by fit or a checkpoint
        self.std: tuple[float, ...] | None = None
        self.image_size: tuple[int, int] | None = None
        self.metadata: dict[str, Any] = {}
        self.settings: dict[str, Any] = {}
        self.metrics: list[str] = ["accuracy"]
        self.compiled = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    # -- compile ---------------------------------------------------------------------------

    def compile(self, optimizer: str | Any = "adam", loss: str | Callable[..., Any] | None = "categorical_crossentropy",
                metrics: Sequence[Any] | Any | None = ("accuracy",), *, lr: float | None = None, **settings: Any) -> Model:
        """Choose the optimizer ('adam', 'adamw', 'sgd', 'momentum', or a torch optimizer whose class and
        learning rate are read), the loss (a cross-entropy name: one-hot or index labels alike) and the
        metrics reported by ``evaluate`` ('accuracy', 'top5'; Paddle's ``Accuracy(topk=(1, 5))``).
        Other keyword settings are ``resnet.train.TrainConfig`` fields (e.g. ``weight_decay=5e-4``)."""
        self.settings = {**_optimizer_settings(optimizer), **settings}
        if lr is not None:
            self.settings["lr"] = float(lr)
        if loss is not None and not (isinstance(loss, str) and loss.lower() in LOSSES) and not _is_cross_entropy(loss):
            raise ResNetError(f"loss {loss!r} is not supported; the classifier trains with cross-entropy "
                              f"({', '.join(LOSSES)})")
        self.metrics = _metric_names(metrics)
        self.compiled = True
        return self

    prepare = compile  # Paddle's name: model.prepare(optimizer, loss, metrics)

    # -- fit -------------------------------------------------------------------------------

    def fit(self, x: Any, y: Any = None, *, epochs: int = 1, batch_size: int = 32,
            validation_data: Any = None, eval_data: Any = None, callbacks: Sequence[Any] | None = None,
            save_dir: str | os.PathLike[str] | None = None, verbose: int = 1, seed: int = 0, shuffle: bool = True,
            augment: bool = False, num_workers: int = 0, **settings: Any) -> History:
        """Train: ``x`` is images (NHWC/NCHW, uint8 or 0..1 floats) with labels ``y`` (indices or one-hot), a
        dataset name or path, or a split from ``resnet.data.load``. ``validation_data`` is ``(x_val, y_val)``
        or a split (Paddle's ``eval_data``, also the second positional argument when ``y`` is a split); a
        torch ``Dataset`` of (image, label) or a ``DataLoader`` is trained on as it is (its own transforms).
        ``save_dir`` keeps the run folder (checkpoints, metrics, curves) there. ``augment`` turns on the
        library's random crop + flip (Keras' fit has none by default)."""
        from resnet.train import fit, resolve_config

        from torch.utils.data import DataLoader, Dataset

        if isinstance(y, (DataSplit, Dataset, DataLoader)) and validation_data is None and eval_data is None:
            y, eval_data = None, y  # Paddle: model.fit(train_dataset, eval_dataset, ...)
        train = self._as_split(x, y, split="train")
        self._adopt(train)
        val = validation_data if validation_data is not None else eval_data
        val_split = self._as_split(*_pair(val), split="val") if val is not None else None
        if isinstance(val_split, DataSplit) and isinstance(train, DataSplit):
            val_split = val_split.with_normalization(train.mean, train.std)
        if not shuffle:
            report.warn("shuffle=False is not supported: batches are a seeded permutation each epoch (exact resume)")
        if not self.compiled:
            report.info("fit: compile() was not called; training with Adam (lr 1e-3) and cross-entropy")
            self.compile()
        config = resolve_config({**self.settings, **settings, "epochs": epochs, "batch_size": batch_size, "seed": seed,
                                 "augment": augment, "num_workers": num_workers, "model": _model_name(self.network),
                                 "data": getattr(train, "name", type(train).__name__), "val_size": None, "val_fraction": None})
        result = fit(self.network, train, val_split, config, out=save_dir, overwrite=save_dir is not None,
                     callbacks=list(callbacks or ()), verbose=verbose)
        self.network = result.model
        return History(_history(result.history), result.run_dir)

    # -- evaluate / predict ---------------------------------------------------------------

    def evaluate(self, x: Any, y: Any = None, *, batch_size: int = 256, return_dict: bool = False,
                 verbose: int = 1) -> Any:
        """Loss and the compiled metrics on ``x``/``y`` (or a split): ``[loss, accuracy, ...]`` in Keras'
        order (a bare loss when no metrics), or a dict with ``return_dict=True``."""
        from resnet.train import evaluate

        data = self._as_split(x, y, split="test")
        if isinstance(data, DataSplit) and self.mean is not None and self.std is not None:
            data = data.with_normalization(self.mean, self.std)
        result = evaluate(self.network, data, batch_size=batch_size)
        values = {"loss": result.loss, **{name: getattr(result, METRICS[name]) for name in self.metrics}}
        if verbose:
            report.info("  ".join(f"{k} {v:.4f}" for k, v in values.items()))
        if return_dict:
            return values
        return list(values.values()) if self.metrics else values["loss"]

    def predict(self, x: Any, *, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (N, classes) for images (arrays as ``fit`` takes them, one image, or image
        files), prepared exactly as in training."""
        from resnet.data import preprocess_images
        from resnet.data.augment import Normalizer

        mean, std = self._statistics()
        device = next(self.network.parameters()).device
        if isinstance(x, (str, os.PathLike)) or (isinstance(x, (list, tuple)) and x and isinstance(x[0], (str, os.PathLike))):
            paths = [x] if isinstance(x, (str, os.PathLike)) else list(x)
            if self.image_size is None:
                raise ResNetError("predict on image files needs the training image size: fit the model or load a checkpoint first")
            batch = preprocess_images(paths, in_chans=len(mean), image_size=self.image_size, mean=mean, std=std)
        else:
            array = to_numpy(x, "x")
            if array.ndim == 3 and array.shape[-1] in (1, 3, 4) or array.ndim == 3 and array.shape[0] in (1, 3, 4):
                array = array[None]  # one image
            batch = Normalizer(mean, std, "cpu")(images_uint8_nchw(array))
        was_training = self.network.training
        self.network.eval()
        try:
            with torch.no_grad():
                probs = [torch.softmax(self.network(batch[i : i + batch_size].to(device)).float(), 1).cpu()
                         for i in range(0, batch.shape[0], batch_size)]
        finally:
            self.network.train(was_training)
        return torch.cat(probs).numpy()

    # -- inspect / save ---------------------------------------------------------------------

    def summary(self, input_size: Sequence[int] | None = None, *, depth: int = 2) -> Any:
        """Print the per-layer table (output shapes, parameters, multiply-adds) and return it."""
        from resnet.inspect import summary

        result = summary(self.network, tuple(input_size) if input_size else self._input_size())
        report.result(str(result))
        return result

    def plot(self, to_file: str | os.PathLike[str] = "model.png", *, level: str = "block",
             input_size: Sequence[int] | None = None) -> Path:
        """Draw the network with its shortcuts (.png, .svg, .pdf or .dot), as Keras' ``plot_model``."""
        from resnet.inspect import render_diagram

        return render_diagram(self.network, to_file, level=level, input_size=tuple(input_size) if input_size else self._input_size())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Our safetensors checkpoint: weights plus what rebuilds the model and prepares its inputs."""
        from resnet.models import save_weights

        meta = dict(self.metadata)
        meta.update({k: v for k, v in {"class_names": self.class_names, "mean": self.mean, "std": self.std,
                                       "image_size": self.image_size}.items() if v is not None})
        return save_weights(self.network, path, metadata=meta)

    # -- helpers ----------------------------------------------------------------------------

    def _as_split(self, x: Any, y: Any, *, split: str) -> Any:
        from torch.utils.data import DataLoader, Dataset

        if isinstance(x, (DataSplit, Dataset, DataLoader)):
            return x  # the trainer batches these itself (a Dataset's or loader's own transforms apply)
        if isinstance(x, (str, os.PathLike)) and y is None:
            from resnet.data import load

            return load(x, split if split != "val" else "test")
        if y is None:
            raise ResNetError(f"{type(x).__name__} given without labels: pass fit(x, y), a dataset name, or a resnet.data split")
        classes = getattr(self.network, "num_classes", None) or None
        return split_from_arrays(x, y, split=split, num_classes=classes, class_names=self.class_names,
                                 mean=self.mean if split != "train" else None,
                                 std=self.std if split != "train" else None)

    def _adopt(self, train: Any) -> None:
        if not isinstance(train, DataSplit):
            return  # a torch Dataset or DataLoader normalizes its own images: no statistics to keep
        classes = getattr(self.network, "num_classes", None)
        if classes and train.num_classes > classes:
            raise ResNetError(f"the data has {train.num_classes} classes but the model predicts {classes}")
        self.class_names = self.class_names or list(train.class_names)
        self.mean, self.std, self.image_size = tuple(train.mean), tuple(train.std), tuple(train.image_size)

    def _statistics(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self.mean is None or self.std is None:
            chans = int(getattr(self.network, "in_chans", 3))
            return (0.0,) * chans, (1.0,) * chans  # x / 255, the tutorials' own preparation
        return self.mean, self.std

    def _input_size(self) -> tuple[int, int, int]:
        chans = int(getattr(self.network, "in_chans", 3))
        if self.image_size is not None:
            return (chans, *self.image_size)
        from resnet.inspect.summary import default_input_size

        return default_input_size(_model_name(self.network), chans)


def load_model(path: str | os.PathLike[str], *, source: str = "auto") -> Model:
    """A Model from our checkpoint (safetensors, run folder) or from any file ``resnet.import_weights``
    reads (e.g. the Keras tutorial's ``ResNet50.h5``)."""
    from resnet.models import model_from_checkpoint, read_metadata
    from resnet.models.weights import is_safetensors

    path = Path(path)
    if path.is_dir():
        from resnet.train.inference import resolve_checkpoint

        path = resolve_checkpoint(path)
    if not path.is_file():
        raise ResNetError(f"model file not found: {path}")
    if source == "auto" and is_safetensors(path):
        network, meta = model_from_checkpoint(path)
        meta = read_metadata(path)
    else:
        import resnet

        network = resnet.import_weights(path, source=source)
        # What the file says about its inputs (e.g. the tutorial's x / 255 at 64x64) and its classes.
        meta = {**(getattr(network, "preprocessing", None) or {}), "class_names": getattr(network, "class_names", None)}
    model = Model(network, class_names=meta.get("class_names"))
    if meta.get("mean") and meta.get("std"):
        model.mean, model.std = tuple(meta["mean"]), tuple(meta["std"])
    if meta.get("image_size"):
        size = meta["image_size"]
        model.image_size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[-1]))
    model.metadata = {k: v for k, v in meta.items() if k not in ("class_names", "mean", "std", "image_size")}
    return model


def _optimizer_settings(optimizer: Any) -> dict[str, Any]:
    if isinstance(optimizer, str):
        key = optimizer.lower()
        if key not in OPTIMIZER_DEFAULTS:
            raise ResNetError(f"optimizer {optimizer!r} is not one of {', '.join(OPTIMIZER_DEFAULTS)} (or a torch optimizer)")
        return dict(OPTIMIZER_DEFAULTS[key])
    if isinstance(optimizer, torch.optim.Optimizer):  # read its kind and settings; ours is built on the right params
        group = optimizer.param_groups[0]
        kind = type(optimizer).__name__.lower()
        if kind not in ("adam", "adamw", "sgd"):
            raise ResNetError(f"{type(optimizer).__name__} is not supported; use Adam, AdamW or SGD (or their names)")
        found = {"optimizer": kind, "lr": float(group["lr"]), "weight_decay": float(group.get("weight_decay", 0.0)),
                 "schedule": "constant"}
        if kind == "sgd":
            found.update(momentum=float(group.get("momentum", 0.0)), nesterov=bool(group.get("nesterov", False)))
        return found
    raise ResNetError(f"optimizer must be a name ({', '.join(OPTIMIZER_DEFAULTS)}) or a torch optimizer, got {type(optimizer).__name__}")


def _is_cross_entropy(loss: Any) -> bool:
    return isinstance(loss, nn.CrossEntropyLoss) or type(loss).__name__ == "CrossEntropyLoss"


def _metric_names(metrics: Any) -> list[str]:
    if metrics is None:
        return []
    items: Iterable[Any] = [metrics] if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)) else metrics
    names: list[str] = []
    for item in items:
        topk = getattr(item, "topk", None)  # Paddle's Accuracy(topk=(1, 5))
        if topk is not None:
            names += ["accuracy" if k == 1 else "top5" for k in (topk if isinstance(topk, (list, tuple)) else [topk])]
            continue
        name = str(item).lower()
        if name not in METRICS:
            raise ResNetError(f"metric {item!r} is not one of {', '.join(sorted(set(METRICS)))}")
        names.append(name)
    return names


def _pair(value: Any) -> tuple[Any, Any]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return value[0], value[1]
    return value, None


def _model_name(network: nn.Module) -> str:
    return str(getattr(network, "model_name", None) or type(network).__name__)


def _history(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    names = {"train_loss": "loss", "train_top1": "accuracy", "val_loss": "val_loss", "val_top1": "val_accuracy",
             "val_top5": "val_top5", "lr": "lr"}
    history: dict[str, list[float]] = {}
    for row in rows:
        for ours, theirs in names.items():
            if row.get(ours) is not None and row.get(ours) != "":
                history.setdefault(theirs, []).append(float(row[ours]))
    return history
