"""One optimizer step: forward under autocast, loss, backward, a finite-loss check, update.

``make_train_step`` is shared with ``resnet bench --mode train`` so that the speed figures measure
exactly the code that trains.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet.device import native_bf16


def amp_dtype_for(device: torch.device | str, amp: bool | None) -> torch.dtype | None:
    """The autocast dtype to train with: ``amp=None`` means on exactly where the device has native bf16."""
    device = torch.device(device)
    if amp is None:
        amp = native_bf16(device)
    if not amp:
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16  # needs a GradScaler; see make_scaler
    return torch.bfloat16


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision when ``amp_dtype`` is set; otherwise nothing at all (plain fp32)."""
    return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()


def make_scaler(device: torch.device | str, amp_dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
    if amp_dtype == torch.float16 and torch.device(device).type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


def make_optimizer(model: nn.Module, name: str, *, lr: float, momentum: float, weight_decay: float,
                   nesterov: bool = False) -> torch.optim.Optimizer:
    """SGD, Adam (Keras' default; L2 weight decay) or AdamW, fused where this torch supports it for the
    parameters' device, else foreach."""
    params = [p for p in model.parameters() if p.requires_grad]
    for impl in ({"fused": True}, {"foreach": True}):
        try:
            if name == "adamw":
                return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **impl)
            if name == "adam":
                return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **impl)
            return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, **impl)
        except (RuntimeError, ValueError, TypeError):
            continue  # fused not available for this device/dtype
    raise AssertionError("unreachable: foreach optimizers exist on every device")


class TrainStep:
    """Callable ``(x, y) -> loss`` doing one full optimizer step.

    After each call ``correct`` holds the batch's top-1 hits (a tensor, no device sync) and ``skipped``
    whether the update was withheld because the loss was not finite (the weights stay as they were).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        device: torch.device | str,
        amp_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        scaler: torch.amp.GradScaler | None = None,
        compile: bool = False,
        label_smoothing: float = 0.0,
        reduce_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
        check_finite: bool = True,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.device = torch.device(device)
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last
        self.scaler = scaler
        self.label_smoothing = label_smoothing
        self.reduce_loss = reduce_loss
        self.check_finite = check_finite
        self.forward: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model) if compile else model
        self.correct = torch.zeros((), dtype=torch.long, device=self.device)
        self.skipped = False

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.amp_dtype):
            logits = self.forward(x)
        # The loss in fp32: log-softmax in bf16 loses the small differences that matter late in training.
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        loss = loss.detach()
        if self.reduce_loss is not None:
            loss = self.reduce_loss(loss)  # the global loss under DDP, so every rank decides alike
        self.skipped = self.check_finite and not bool(torch.isfinite(loss))
        if self.skipped:
            self.optimizer.zero_grad(set_to_none=True)
            return loss
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.correct = (logits.detach().argmax(1) == y).sum()
        return loss


def make_train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device | str,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    scaler: torch.amp.GradScaler | None = None,
    compile: bool = False,
    label_smoothing: float = 0.0,
    reduce_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
    check_finite: bool = True,
) -> TrainStep:
    """A callable ``(x, y) -> loss tensor`` that trains ``model`` one step (see ``TrainStep``).

    With ``channels_last`` the model's weights are converted here (unless it is already wrapped in
    DDP, which must see the final layout when it is built) and each input is converted on the way in.
    """
    if channels_last and not isinstance(model, nn.parallel.DistributedDataParallel):
        model.to(memory_format=torch.channels_last)
    return TrainStep(
        model, optimizer, device=device, amp_dtype=amp_dtype, channels_last=channels_last, scaler=scaler,
        compile=compile, label_smoothing=label_smoothing, reduce_loss=reduce_loss, check_finite=check_finite,
    )
