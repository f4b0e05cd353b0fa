"""``evaluate``: loss, top-1, top-5, per-class accuracy and the confusion matrix of a model on a split;
``recompute_batchnorm``: BatchNorm's running statistics recomputed over a pass of data (precise BN).

The module is named ``evaluation`` so that ``resnet.train.evaluate`` is always the function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet.device import resolve_device
from resnet.errors import ResNetError
from resnet.train import distributed
from resnet.train.distributed import DistContext
from resnet.train.inputs import as_data
from resnet.train.step import autocast


@dataclass
class EvalResult:
    loss: float
    top1: float
    top5: float  # top-k with k = min(5, classes)
    num_samples: int
    per_class: list[float]  # accuracy (recall) of each true class; nan where a class has no samples
    confusion: torch.Tensor  # int64 (classes, classes): rows true, columns predicted
    class_names: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss, "top1": self.top1, "top5": self.top5, "num_samples": self.num_samples,
            "per_class": {n: (None if math.isnan(a) else a) for n, a in zip(self.class_names, self.per_class)},
            "confusion": self.confusion.tolist(), "class_names": self.class_names,
        }


@torch.no_grad()
def evaluate(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    data: Any,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    dist: DistContext | None = None,
    flip_tta: bool = False,
) -> EvalResult:
    """Loss, top-1, top-5, per-class accuracy and confusion matrix of ``model`` on ``data``.

    ``data``: a DataSplit, a torch Dataset of (image, label) or a DataLoader (see ``inputs.as_data``).

    Under DDP each process evaluates its shard and the sums are added up, so every process gets the
    result for the whole split. ``flip_tta`` averages the logits of each image and its mirror image
    (test-time augmentation; right for data trained with flips, twice the cost).
    """
    is_module = isinstance(model, nn.Module)  # else any callable, e.g. what resnet.optimize returns
    if device is None:
        param = next(model.parameters(), None) if is_module else None
        device = param.device if param is not None else resolve_device("cpu" if not is_module else None)
    device = torch.device(device)
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    data = as_data(data, num_classes=getattr(model, "num_classes", None), split="eval")
    classes = data.num_classes
    k = min(5, classes)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, top-1 hits, top-k hits
    confusion = torch.zeros(classes * classes, dtype=torch.int64, device=device)
    was_training = model.training if is_module else False
    if is_module:
        model.eval()
    try:
        for x, y in data.batches(batch_size, device=device, rank=rank, world_size=world, channels_last=channels_last):
            with autocast(device, amp_dtype):
                logits = model(x).float()
                if flip_tta:
                    logits = (logits + model(x.flip(3)).float()) / 2
            top = logits.topk(k, dim=1).indices
            sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
            sums[1] += (top[:, 0] == y).sum()
            sums[2] += (top == y[:, None]).any(1).sum()
            confusion += torch.bincount(y * classes + top[:, 0], minlength=classes * classes)
    finally:
        if is_module:
            model.train(was_training)
    if dist is not None:
        sums, confusion = distributed.all_reduce_sum(sums, dist), distributed.all_reduce_sum(confusion, dist)
    sums, confusion = sums.cpu(), confusion.cpu().view(classes, classes)
    n = int(confusion.sum())
    if n == 0:
        raise ResNetError(f"nothing to evaluate: the {getattr(data, 'split', '')} split of {getattr(data, 'name', 'the data')} is empty")
    per_class_total = confusion.sum(1)
    per_class = [float(confusion[i, i] / t) if t else float("nan") for i, t in enumerate(per_class_total.tolist())]
    return EvalResult(
        loss=float(sums[0]) / n, top1=float(sums[1]) / n, top5=float(sums[2]) / n, num_samples=n,
        per_class=per_class, confusion=confusion, class_names=list(data.class_names),
    )


@torch.no_grad()
def recompute_batchnorm(models: Sequence[nn.Module], batches: Iterable[tuple[torch.Tensor, Any]]) -> None:
    """The running statistics of every BatchNorm layer in ``models`` that is in training mode, recomputed as the
    cumulative average over ``batches`` (inputs, anything), each batch going through every model.

    Only those BatchNorm layers run in training mode (dropout and stochastic depth stay off, as in evaluation);
    layers already in eval mode (frozen stages) keep their statistics. Every module's mode and momentum is
    restored afterwards.
    """
    norms = [m for model in models for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    if not norms:
        return
    modes = [(m, m.training) for model in models for m in model.modules()]
    momenta = [m.momentum for m in norms]
    for model in models:
        model.eval()
    for m in norms:
        m.train()
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    try:
        for x, _ in batches:
            for model in models:
                model(x)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for m, training in modes:
            m.training = training
