"""One optimizer step: forward under autocast, loss, backward (over micro-batches), a finite-loss check, clip, update.

``make_train_step`` is shared with ``resnet bench --mode train`` so that the speed figures measure
exactly the code that trains.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet.device import native_bf16
from resnet.train.compiling import CompileChoice


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
                   nesterov: bool = False, groups: list[dict[str, Any]] | None = None) -> torch.optim.Optimizer:
    """SGD, Adam (Keras' default; L2 weight decay) or AdamW, fused where this torch supports it for the
    parameters' device, else foreach. ``groups``: parameter groups with their own lr, instead of one group."""
    params: Any = groups if groups is not None else [p for p in model.parameters() if p.requires_grad]
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
    """Callable ``(x, y) -> loss`` doing one full optimizer step; ``run(micro_batches)`` accumulates several.

    After each call ``correct`` holds the batch's top-1 hits (a tensor, no device sync; against the
    dominant label when targets are mixed) and ``skipped`` whether the update was withheld because
    the loss was not finite (the weights stay as they were). ``mix`` turns (x, y) into (x, soft
    targets) (mixup/cutmix); ``class_weights`` weight the loss per class; ``clip_grad`` caps the
    gradients' global norm before the update.
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
        compile: bool | None = False,
        label_smoothing: float = 0.0,
        reduce_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
        class_weights: torch.Tensor | None = None,
        clip_grad: float | None = None,
        mix: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.device = torch.device(device)
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last
        self.scaler = scaler
        self.label_smoothing = label_smoothing
        self.reduce_loss = reduce_loss
        self.class_weights = class_weights.to(self.device) if class_weights is not None else None
        self.clip_grad = clip_grad
        self.mix = mix
        if compile is not False:
            # "No CUDA runtime is found" from torch's extension builder, on every CPU-only compile: not news.
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        self.forward: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model) if compile else model
        self.compile_pending = bool(compile)  # the first call compiles; a failure there falls back to eager
        # compile=None: eager and compiled steps are timed in the first steps and the faster kept (train/compiling.py).
        self.compile_choice: CompileChoice | None = CompileChoice(self, compile_model=torch.compile) if compile is None else None
        self.correct = torch.zeros((), dtype=torch.long, device=self.device)
        self.skipped = False
        self.grad_norm: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.run([(x, y)])

    @property
    def compiled(self) -> bool | None:
        """Whether steps run through torch.compile (False after a compiler failure); None while auto still measures."""
        return None if self.compile_choice is not None else self.forward is not self.model

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.compile_pending:
            return self.forward(x)
        self.compile_pending = False
        try:
            return self.forward(x)
        except Exception as exc:  # noqa: BLE001 -- any compiler failure (no C++ compiler, unsupported op)
            from resnet import report

            first = (str(exc).strip().splitlines() or [""])[0][:160]
            report.warn(f"--compile: torch.compile failed ({type(exc).__name__}: {first}); training without it")
            self.forward = self.model
            return self.forward(x)

    def run(self, micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """One optimizer step over equal micro-batches: the mean of their losses, i.e. the loss of their union."""
        choice = self.compile_choice
        if choice is not None:
            choice.start(micro_batches[0][0])
            started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        count = len(micro_batches)
        loss_sum = torch.zeros((), dtype=torch.float32, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        for i, (x, y) in enumerate(micro_batches):
            target = y
            if self.mix is not None:
                x, target = self.mix(x, y)
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            # DDP all-reduces gradients on the last micro-batch only.
            last = i == count - 1 or not isinstance(self.model, nn.parallel.DistributedDataParallel)
            with contextlib.nullcontext() if last else self.model.no_sync():
                with autocast(self.device, self.amp_dtype):
                    logits = self._forward(x)
                # The loss in fp32: log-softmax in bf16 loses the small differences that matter late in training.
                loss = F.cross_entropy(logits.float(), target, weight=self.class_weights,
                                       label_smoothing=self.label_smoothing)
                scaled = loss / count if count > 1 else loss
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            loss_sum += loss.detach()
            hard = target.argmax(1) if target.dim() == 2 else target
            correct += (logits.detach().argmax(1) == hard).sum()
        loss = loss_sum / count if count > 1 else loss_sum
        if self.reduce_loss is not None:
            loss = self.reduce_loss(loss)  # the global loss under DDP, so every rank decides alike
        self.skipped = not bool(torch.isfinite(loss))
        if self.skipped:
            self.optimizer.zero_grad(set_to_none=True)
            return loss
        if self.clip_grad is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            self.grad_norm = torch.nn.utils.clip_grad_norm_(params, self.clip_grad)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.correct = correct
        if choice is not None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            choice.done(time.perf_counter() - started)
            if choice.decided:
                self.compile_choice = None
        return loss


def make_train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device | str,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    scaler: torch.amp.GradScaler | None = None,
    compile: bool | None = False,
    label_smoothing: float = 0.0,
    reduce_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
    class_weights: torch.Tensor | None = None,
    clip_grad: float | None = None,
    mix: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> TrainStep:
    """A callable ``(x, y) -> loss tensor`` that trains ``model`` one step (see ``TrainStep``).

    With ``channels_last`` the model's weights are converted here (unless it is already wrapped in
    DDP, which must see the final layout when it is built) and each input is converted on the way in.
    """
    if channels_last and not isinstance(model, nn.parallel.DistributedDataParallel):
        model.to(memory_format=torch.channels_last)
    return TrainStep(
        model, optimizer, device=device, amp_dtype=amp_dtype, channels_last=channels_last, scaler=scaler,
        compile=compile, label_smoothing=label_smoothing, reduce_loss=reduce_loss, class_weights=class_weights,
        clip_grad=clip_grad, mix=mix,
    )


def make_mix(mixup_alpha: float, cutmix_alpha: float, num_classes: int) -> Callable[..., tuple[torch.Tensor, torch.Tensor]] | None:
    """mixup and/or cutmix of a batch with soft targets (torchvision's v2 transforms; one of the two per batch when both).

    Their draws come from torch's global RNG, which the trainer seeds per epoch and saves in
    checkpoints: resume stays exact.
    """
    if not mixup_alpha and not cutmix_alpha:
        return None
    from torchvision.transforms import v2

    chosen = [v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha else []
    chosen += [v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)] if cutmix_alpha else []
    return chosen[0] if len(chosen) == 1 else v2.RandomChoice(chosen)
