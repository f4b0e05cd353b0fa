"""The training loop: ``fit`` and the ``Trainer`` behind it, and ``run_training`` (the whole of ``resnet train``).

The loop only trains: batches in, optimizer steps, the epoch's row of numbers out. Everything else
(run-folder files, checkpoints, console, early stopping, TensorBoard, the NaN guard) is a callback
(callbacks.py) and everything a resume needs is the ``TrainingState`` (state.py). The loop is
deterministic given the seed: batches, augmentation, mixup draws and the balanced sampler are
pure functions of (seed, epoch, position) and the learning rate of the step, so a run killed at
any moment and resumed ends with the same weights as one never interrupted.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from resnet import report
from resnet.data.augment import seeded_generator
from resnet.device import describe
from resnet.errors import ResNetError
from resnet.io import atomic_write_text
from resnet.train import distributed
from resnet.train.callbacks import Callback, CallbackList, StepLogs, default_callbacks
from resnet.train.config import TrainConfig, resolve_config
from resnet.train.evaluation import EvalResult, evaluate, recompute_batchnorm
from resnet.train.inputs import as_data, epoch_seed
from resnet.train.rundir import dataset_info, prepare_run_dir, versions
from resnet.train.schedule import make_scheduler
from resnet.train.state import TrainingState, fresh_partial
from resnet.train.step import amp_dtype_for, make_mix, make_optimizer, make_scaler, make_train_step

if TYPE_CHECKING:
    from resnet.data.photo import PhotoTransforms
    from resnet.models.pretrained import PretrainedCfg

_BALANCED = 3  # stream id of the balanced sampler's draws (DataSplit uses 1 and 2)
# An epoch of fewer optimizer steps leaves BatchNorm's running statistics (momentum 0.1) far from
# the activations' real ones: 0.9**12 = 28% of their initial values after 12 steps, while a high
# lr has moved the weights a long way. Evaluation with such statistics explodes (validation loss
# 1e2..1e14 on a 110-image folder). So after such an epoch they are recomputed over the training
# set (precise BN). Fashion-MNIST's 429 steps per epoch are far above this and unaffected.
BN_RECALIBRATE_BELOW = 64


@dataclass
class FitResult:
    model: nn.Module  # the model to use (the EMA model when EMA is on)
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    run_dir: Path | None = None
    test: EvalResult | None = None
    best: dict[str, Any] | None = field(default=None)
    already_finished: bool = False  # resume of a finished run: nothing trained, nothing written


# --------------------------------------------------------------------------------------------
# Signals: Ctrl-C and SIGTERM finish the current step, save, and exit


class _StopFlag:
    def __init__(self) -> None:
        self.signal: int | None = None


@contextmanager
def _graceful_stop() -> Iterator[_StopFlag]:
    """First SIGINT/SIGTERM sets a flag the loop checks between steps; a second one interrupts at once."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.signal is not None:
            raise KeyboardInterrupt
        flag.signal = signum
        report.info(f"{signal.Signals(signum).name}: finishing this step, saving, then stopping (again to abort)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# --------------------------------------------------------------------------------------------
# Parts the trainer is assembled from


def _set_determinism(config: TrainConfig, device: torch.device) -> None:
    if config.deterministic:
        # cuBLAS needs a fixed workspace for deterministic GEMMs; it must be set before CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels


def freeze_stages(model: nn.Module, stages: int) -> str:
    """Freeze the stem and the first ``stages`` stages (the model's ``frozen_stages`` machinery); says what is frozen."""
    names = getattr(model, "stage_names", None)
    if names is None or not hasattr(model, "_freeze_stages"):
        raise ResNetError(f"--freeze needs one of our ResNets (stem + stages); {type(model).__name__} has no stages")
    if not 0 <= stages <= len(names):
        raise ResNetError(f"--freeze {stages}: this model has {len(names)} stages; give 0 (the stem only) to {len(names)}")
    model.frozen_stages = stages
    model._freeze_stages()
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen, rest = ["stem", *names[:stages]], names[stages:]
    training = f"{', '.join(rest)} and the classifier" if rest else "the classifier only"
    return (f"frozen: {', '.join(frozen)} ({total - trained:,} of {total:,} parameters); "
            f"training: {training} ({trained:,} parameters)")


def _backbone_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]] | None:
    """Two parameter groups, the classifier's (first: its lr is the one reported) and the backbone's at
    lr x backbone_lr_scale, when --freeze-backbone-epochs or --backbone-lr-scale ask for them; else None."""
    if not config.freeze_backbone_epochs and config.backbone_lr_scale == 1.0:
        return None
    get_classifier = getattr(model, "get_classifier", None)
    classifier = get_classifier() if get_classifier is not None else None
    head = [p for p in classifier.parameters() if p.requires_grad] if classifier is not None else []
    if not head:
        raise ResNetError(f"--freeze-backbone-epochs and --backbone-lr-scale need a model with a classifier to tell "
                          f"from its backbone; {type(model).__name__} has none")
    ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [{"params": head, "lr": config.lr}, {"params": backbone, "lr": config.lr * config.backbone_lr_scale}]


def class_weights(config: TrainConfig, data: Any) -> torch.Tensor | None:
    """Per-class loss weights: "balanced" = n / (classes * count), as scikit-learn's; or the listed numbers."""
    if config.class_weights is None:
        return None
    classes = data.num_classes
    if config.class_weights == "balanced":
        labels = data.labels
        if labels is None:
            raise ResNetError("--class-weights balanced needs the labels: give a Dataset with a `targets` attribute")
        counts = torch.bincount(labels, minlength=classes).double()
        return (counts.sum() / (classes * counts.clamp_min(1))).float()
    weights = torch.tensor([float(w) for w in config.class_weights], dtype=torch.float32)
    if len(weights) != classes:
        raise ResNetError(f"--class-weights has {len(weights)} numbers but the data has {classes} classes")
    return weights


def balanced_indices(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """An epoch of sample indices drawn with replacement so that every class is equally likely."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    weights = (1.0 / counts.clamp_min(1))[labels]
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive groups of ``size`` (the micro-batches of one optimizer step); a short tail is dropped."""
    group: list[Any] = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []


def _merge(partial: dict[str, float], loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, seconds: float) -> dict[str, float]:
    """Add this stretch of the epoch to what a mid-epoch checkpoint carried over."""
    return {"loss": partial["loss"] + float(loss_sum), "correct": partial["correct"] + float(correct),
            "seen": partial["seen"] + seen, "seconds": partial["seconds"] + seconds}


# --------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    """A model, its data and a config assembled into a run; ``fit()`` trains it (see ``resnet.train.fit``)."""

    def __init__(
        self,
        model: nn.Module,
        train_data: Any,
        val_data: Any | None = None,
        config: TrainConfig | dict[str, Any] | None = None,
        *,
        out: str | Path | None = None,
        test_data: Any | None = None,
        resume: bool = False,
        overwrite: bool = False,
        callbacks: Sequence[Callback] = (),
        verbose: int = 1,
    ) -> None:
        config = resolve_config(config) if isinstance(config, dict) else (config or TrainConfig())
        self.config = config
        self.ctx = ctx = distributed.setup(config.device)
        self.device = device = ctx.device
        self.is_main = ctx.is_main
        if config.threads is not None:
            # On a CPU shared with other jobs, fewer threads than cores avoids OpenMP's spin-wait stalls.
            torch.set_num_threads(config.threads)
        _set_determinism(config, device)
        classes = getattr(model, "num_classes", None)
        self.train_data = as_data(train_data, num_classes=classes, split="train")
        self.val_data = as_data(val_data, num_classes=classes, split="val") if val_data is not None else None
        self.test_data = as_data(test_data, num_classes=classes, split="test") if test_data is not None else None
        self.run_dir = Path(out) if out is not None else None
        self.resumed = resume
        if self.run_dir is not None:
            if ctx.is_main:
                prepare_run_dir(self.run_dir, resume=resume, overwrite=overwrite)
            distributed.barrier(ctx)
        elif resume:
            raise ResNetError("resume needs the run folder (out=...)")

        self._plan_batches()
        model = self._prepare_model(model)
        self.amp_dtype, self.amp_reason = self._choose_amp(model)
        self.amp_name = str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off"
        compile_setting, self.compile_reason = self._choose_compile()
        self.net = distributed.wrap(model, ctx)
        optimizer = make_optimizer(model, config.optimizer, lr=config.lr, momentum=config.momentum,
                                   weight_decay=config.weight_decay, nesterov=config.nesterov,
                                   groups=_backbone_groups(model, config))
        scheduler = make_scheduler(optimizer, config, self.steps_per_epoch, self.total_steps)
        ema = None
        if config.ema:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        self.state = TrainingState(model=model, optimizer=optimizer, scheduler=scheduler,
                                   scaler=make_scaler(device, self.amp_dtype), ema=ema,
                                   arch=getattr(model, "model_name", type(model).__name__))
        reduce_loss = (lambda t: distributed.all_reduce_sum(t, ctx) / ctx.world_size) if ctx.enabled else None
        self.step = make_train_step(
            self.net, optimizer, device=device, amp_dtype=self.amp_dtype, channels_last=config.channels_last,
            scaler=self.state.scaler, label_smoothing=config.label_smoothing,
            compile=compile_setting,
            reduce_loss=reduce_loss, class_weights=class_weights(config, self.train_data), clip_grad=config.clip_grad,
            mix=make_mix(config.mixup, config.cutmix, self.train_data.num_classes),
        )
        if config.balanced_sampler and self.train_data.labels is None:
            raise ResNetError("--balanced-sampler needs the labels: give a DataSplit, a TensorDataset or a Dataset "
                              "with a `targets` attribute (not a DataLoader)")
        self.callbacks = CallbackList([*default_callbacks(config, verbose=verbose), *callbacks])
        data = self.train_data  # what eval/predict need to prepare images as in training
        photo = getattr(data, "photo", None)
        self.metadata = {k: v for k, v in {
            "class_names": list(data.class_names), "mean": data.mean and list(data.mean),
            "std": data.std and list(data.std), "image_size": list(data.image_size), "dataset": data.name,
            **({"train_crop": "resized", **photo.metadata()} if photo is not None else {}),
        }.items() if v is not None}
        self.last_test: EvalResult | None = None

    def _plan_batches(self) -> None:
        """--batch-size is the global batch of one optimizer step, split among processes and micro-batches."""
        config, world, accum = self.config, self.ctx.world_size, self.config.accum_steps
        loader = getattr(self.train_data, "loader", None)  # a DataLoader brings its own batch size
        fits = len(self.train_data) // (world * accum) * (world * accum)
        if loader is None and config.batch_size > len(self.train_data) and fits > 0:
            report.info(f"--batch-size {config.batch_size} is more than the {len(self.train_data)} training images: "
                        f"using batches of {fits}")
            self.config = config = replace(config, batch_size=fits)
        if config.batch_size % (world * accum) and loader is None:
            raise ResNetError(f"--batch-size {config.batch_size} is the global batch and must divide evenly among "
                              f"{world} process(es) x {accum} accumulation step(s)")
        self.micro_batch = config.batch_size // (world * accum)
        self.batch_size = loader.batch_size if loader is not None else config.batch_size
        batches = self.train_data.num_batches(self.micro_batch, drop_last=True, world_size=world)
        self.steps_per_epoch = batches // accum
        if self.steps_per_epoch < 1:
            raise ResNetError(f"the training split has {len(self.train_data)} images, fewer than one batch of "
                              f"{config.batch_size}; lower --batch-size")
        # The paper counts iterations: --max-steps decides and the epochs follow.
        self.total_steps = config.max_steps if config.max_steps is not None else config.epochs * self.steps_per_epoch
        self.num_epochs = math.ceil(self.total_steps / self.steps_per_epoch)

    def _prepare_model(self, model: nn.Module) -> nn.Module:
        """The model on the device, in its memory layout, with synchronized BatchNorm and frozen stages as asked."""
        config = self.config
        model.to(self.device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        if config.sync_bn and self.ctx.enabled:
            model = distributed.convert_sync_batchnorm(model, self.device)
        self.frozen: str | None = None  # the confirmation line, said when training starts
        if config.freeze is not None:  # after the BatchNorm swap, whose new layers would be trainable again
            self.frozen = freeze_stages(model, config.freeze)
        return model

    def _choose_amp(self, model: nn.Module) -> tuple[torch.dtype | None, str | None]:
        """The autocast dtype (None: fp32) and, when it was chosen rather than asked for, the line saying why.

        --amp/--no-amp and GPUs decide by themselves; on a CPU with native bf16 the choice is measured
        (train/precision.py). A resumed run keeps the precision it was trained in (config.json), so it
        ends bit-identical to an uninterrupted one whatever a new timing would say; under torchrun
        the processes could time differently, so they keep the flag rule instead."""
        config, device = self.config, self.device
        if config.amp is not None or device.type != "cpu":
            return amp_dtype_for(device, config.amp), None
        if self.resumed and "amp_dtype" in (saved := self._config_json()):
            return (torch.bfloat16 if saved["amp_dtype"] == "bfloat16" else None), None
        if self.ctx.enabled:
            return amp_dtype_for(device, None), None
        from resnet.train.precision import choose_cpu_amp

        data = self.train_data
        return choose_cpu_amp(model, (data.in_chans, *data.image_size), channels_last=config.channels_last)

    def _choose_compile(self) -> tuple[bool | None, str | None]:
        """--compile as given; for ``auto`` (None) False where measuring cannot decide, else None (measured in the
        run); and, when auto was decided here for a reason worth a line, that line.

        Under torchrun the processes could time differently and compile differently, so auto is measured only
        alone. Under progressive resizing the measurement would time the first phase's size only, and every
        later size would compile again (10-60 s each), so auto stays eager; --compile still compiles."""
        config = self.config
        if config.compile is not None:
            return config.compile, None
        if self.ctx.enabled:
            return False, None
        if config.progressive_sizes:
            return False, "off (progressive resizing changes the input size by phase, and each size would compile again)"
        return None, None

    # -- what callbacks use ----------------------------------------------------------------------

    @property
    def model(self) -> nn.Module:
        return self.state.model

    @property
    def eval_model(self) -> nn.Module:
        return self.state.eval_model

    def epoch_steps(self, epoch: int) -> int:
        """Optimizer steps in ``epoch`` (the last one is short when --max-steps ends it early)."""
        return min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)

    def save(self, name: str, *, with_state: bool = True) -> Path | None:
        """Write checkpoint ``name`` (rank 0, with a run folder); the callbacks' states travel with it."""
        if self.run_dir is None or not self.is_main:
            return None
        self.state.callbacks = self.callbacks.states()
        self.state.total_steps = self.total_steps
        return self.state.save(self.run_dir / "checkpoints", name, metadata=self.metadata,
                               config=self.config.to_dict(), with_state=with_state)

    def resolved_config(self) -> dict[str, Any]:
        """config.json: the settings plus what they resolved to here."""
        return {
            **self.config.to_dict(),
            "world_size": self.ctx.world_size, "amp_dtype": self.amp_dtype and self.amp_name,
            "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps, "num_epochs": self.num_epochs,
            "device": str(self.device), "hardware": describe(self.device), "versions": versions(),
            "dataset": dataset_info(self.train_data, self.val_data, self.test_data),
        }

    # -- the loop ------------------------------------------------------------------------------

    def fit(self) -> FitResult:
        state = self.state
        if self.resumed:
            assert self.run_dir is not None
            state.restore(self.run_dir / "checkpoints")
            self.callbacks.load_states(state.callbacks)
            finished = self._continue_or_finished()
            if finished is not None:
                return finished
        elif self.run_dir is not None and self.is_main:
            atomic_write_text(self.run_dir / "config.json", json.dumps(self.resolved_config(), indent=2, default=str) + "\n")
        started = time.perf_counter()
        self.callbacks.on_train_start(self)
        try:
            with _graceful_stop() as stop:
                for epoch in range(state.epoch, self.num_epochs):
                    self._train_epoch(epoch, stop)
                    if state.stop_reason:
                        break
                    if stop.signal is not None and epoch + 1 < self.num_epochs:
                        report.info(f"stopped after epoch {epoch + 1}; continue with: resnet train --resume {self.run_dir}")
                        raise KeyboardInterrupt
            result = self._result(time.perf_counter() - started)
            self.callbacks.on_train_end(self, result)
        finally:
            self.callbacks.close()
        return result

    def _train_epoch(self, epoch: int, stop: _StopFlag) -> None:
        config, state, ctx, device = self.config, self.state, self.ctx, self.device
        first = state.batch  # > 0 only when resuming mid-epoch
        if first == 0:
            # Anything random outside the data pipeline (dropout, stochastic depth, mixup) restarts
            # from (seed, epoch) too; a mid-epoch resume restores the saved RNG instead.
            torch.manual_seed(epoch_seed(config.seed, epoch))
            state.partial = fresh_partial()
        self.net.train()
        self.callbacks.on_epoch_start(self, epoch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        epoch_start = time.perf_counter()
        micro_batches = self._epoch_data(epoch).batches(
            self.micro_batch, shuffle=not config.balanced_sampler, augment=config.augment, epoch=epoch, seed=config.seed,
            device=device, drop_last=True, rank=ctx.rank, world_size=ctx.world_size, channels_last=config.channels_last,
            num_workers=config.num_workers, start_batch=first * config.accum_steps, padding=config.crop_padding,
        )
        size = self.epoch_image_size(epoch)
        if size is not None:
            micro_batches = _resized(micro_batches, size, channels_last=config.channels_last)
        epoch_steps = self.epoch_steps(epoch)
        for index, group in enumerate(_chunks(micro_batches, config.accum_steps), start=first):
            if index >= epoch_steps:
                break
            loss = self.step.run(group)
            if not self.step.skipped:
                if state.ema is not None:
                    state.ema.update_parameters(state.model)
                images = sum(y.shape[0] for _, y in group)
                loss_sum += loss.double() * images
                correct += self.step.correct
                seen += images
            state.scheduler.step()
            state.step += 1
            state.batch = index + 1
            self.callbacks.on_step_end(self, StepLogs(epoch, index, loss, self.step.skipped, seen, correct,
                                                      time.perf_counter() - epoch_start))
            if stop.signal is not None and index + 1 < epoch_steps:
                state.partial = _merge(state.partial, loss_sum, correct, seen, time.perf_counter() - epoch_start)
                self.callbacks.on_interrupt(self)
                raise KeyboardInterrupt
        # The epoch's numbers, over all processes.
        state.partial = _merge(state.partial, loss_sum, correct, seen, time.perf_counter() - epoch_start)
        totals = distributed.all_reduce_sum(torch.tensor(
            [state.partial["loss"], state.partial["correct"], state.partial["seen"]], dtype=torch.float64, device=device), ctx
        ).tolist()
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": totals[0] / max(totals[2], 1), "train_top1": totals[1] / max(totals[2], 1),
            "val_loss": None, "val_top1": None, "val_top5": None,
            "lr": state.optimizer.param_groups[0]["lr"],
            "images_per_s": round(totals[2] / max(state.partial["seconds"], 1e-9), 1),
        }
        if self.steps_per_epoch < BN_RECALIBRATE_BELOW:
            self._recalibrate_batchnorm()
        self.callbacks.on_validation_start(self)
        if self.val_data is not None:
            val = self._evaluate(self.val_data)
            row.update(val_loss=val.loss, val_top1=val.top1, val_top5=val.top5)
        self.last_test = None
        if self.test_data is not None and ((epoch + 1) % config.test_every == 0 or epoch + 1 == self.num_epochs):
            # Test error every epoch by default, as in the paper's figures; reported only, never used to choose.
            self.last_test = self._evaluate(self.test_data)
            row.update(test_loss=self.last_test.loss, test_top1=self.last_test.top1)
        row["seconds"] = round(time.perf_counter() - epoch_start, 3)
        row["nonfinite_steps"] = state.nonfinite
        self.callbacks.on_validation_end(self, row)
        state.history.append(row)
        state.epoch, state.batch = epoch + 1, 0
        self.callbacks.on_epoch_end(self, row)

    def epoch_image_size(self, epoch: int) -> int | None:
        """The square size ``epoch`` trains at under progressive resizing, or None for the data's own size.

        A pure function of the epoch, so a resumed run trains each epoch at the size it would have. The last
        epoch is always at the data's own size (with fewer epochs than phases the even split would skip it),
        since that is the size the model is scored at.
        """
        sizes = self.config.progressive_sizes
        if epoch >= self.num_epochs - 1:
            return None
        phase = epoch * (len(sizes) + 1) // self.num_epochs
        return sizes[phase] if phase < len(sizes) else None

    def size_phases(self) -> str:
        """Which epochs train at which size, e.g. 'epochs 1-3 at 20 px, epochs 4-6 at 24 px, epochs 7-8 at 28x28 (the data's own)'."""
        own = "x".join(map(str, self.train_data.image_size)) + " (the data's own)"
        phases = []
        for size, epochs in itertools.groupby(range(1, self.num_epochs + 1), key=lambda e: self.epoch_image_size(e - 1)):
            first, *rest = epochs
            span = f"epochs {first}-{rest[-1]}" if rest else f"epoch {first}"
            phases.append(f"{span} at {f'{size} px' if size is not None else own}")
        return ", ".join(phases)

    def _epoch_data(self, epoch: int) -> Any:
        """The training data of ``epoch``: as it is, or a class-balanced draw seeded by (seed, epoch)."""
        if not self.config.balanced_sampler:
            return self.train_data
        data = self.train_data
        generator = seeded_generator(self.config.seed, epoch, _BALANCED)
        return data.subset(balanced_indices(data.labels, data.num_classes, generator))

    def _recalibrate_batchnorm(self) -> None:
        """BatchNorm's running statistics recomputed over the whole training set, as evaluated (precise BN).

        Every process goes over the same images, so all end with the same statistics.
        """
        models = [self.model] + ([self.eval_model] if self.eval_model is not self.model else [])
        recompute_batchnorm(models, self.train_data.batches(self.config.eval_batch_size, device=self.device,
                                                            channels_last=self.config.channels_last))

    def _evaluate(self, data: Any) -> EvalResult:
        config = self.config
        return evaluate(self.eval_model, data, batch_size=config.eval_batch_size, device=self.device,
                        amp_dtype=self.amp_dtype, channels_last=config.channels_last, dist=self.ctx, flip_tta=config.tta)

    # -- resume: continue, extend, or say it is finished ---------------------------------------

    def _continue_or_finished(self) -> FitResult | None:
        state, planned = self.state, self.state.total_steps or self._planned_in_config_json()
        if state.step > self.total_steps:
            raise ResNetError(f"{self.run_dir} has trained {state.epoch} epochs ({state.step} steps) already, more than "
                              f"the {self.num_epochs} asked for; --epochs can only extend it (give more than {state.epoch})")
        extended = bool(planned) and self.total_steps > planned
        if extended:
            state.stop_reason = None
            if self.is_main:
                assert self.run_dir is not None
                atomic_write_text(self.run_dir / "config.json",
                                  json.dumps(self.resolved_config(), indent=2, default=str) + "\n")
                report.info(f"extending {self.run_dir} to {self.num_epochs} epochs: the learning-rate schedule is "
                            f"recomputed for {self.num_epochs} epochs and continues from step {state.step}")
        elif state.step >= self.total_steps or state.stop_reason:
            why = f" ({state.stop_reason})" if state.stop_reason else ""
            report.info(f"{self.run_dir} is finished: {state.epoch} of {self.num_epochs} epochs trained{why}; nothing "
                        f"to do (to train it further: resnet train --resume {self.run_dir} --epochs N, N > {self.num_epochs})")
            summary_path = self.run_dir / "summary.json" if self.run_dir is not None else None
            summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path and summary_path.is_file() else {}
            return FitResult(model=self.eval_model, history=state.history, summary=summary, run_dir=self.run_dir,
                             best=state.best, already_finished=True)
        # The learning rate of the step we continue from, on the (possibly recomputed) schedule:
        # bit-identical to the saved one when nothing changed.
        for group, base, factor in zip(state.optimizer.param_groups, state.scheduler.base_lrs, state.scheduler.lr_lambdas):
            group["lr"] = base * factor(state.scheduler.last_epoch)
        return None

    def _planned_in_config_json(self) -> int:
        """The run's length from config.json, for state files written before they recorded it."""
        return int(self._config_json().get("total_steps") or 0)

    def _config_json(self) -> dict[str, Any]:
        """What the run folder's config.json recorded when the run started ({} without one)."""
        if self.run_dir is None:
            return {}
        try:
            return json.loads((self.run_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _result(self, seconds: float) -> FitResult:
        state, config = self.state, self.config
        summary: dict[str, Any] = {
            "model": state.arch, "data": self.train_data.name, "epochs": self.num_epochs, "steps": state.step,
            "wall_seconds": round(seconds, 1), "resumed": self.resumed,
            "final": state.history[-1] if state.history else None, "best": state.best,
            "nonfinite_steps": state.nonfinite, "hardware": describe(self.device),
            "compiled": self.step.compiled,  # what --compile auto resolved to here (None: too short a run to decide)
        }
        if state.stop_reason:
            summary["stopped"] = state.stop_reason
        test = self.last_test
        if self.test_data is not None and test is None:  # nothing left to train after a resume
            test = self._evaluate(self.test_data)
        if test is not None:
            summary.update(test_loss=test.loss, test_top1=test.top1, test_top5=test.top5, test_size=test.num_samples)
        summary["train_seconds"] = round(sum(row["seconds"] for row in state.history), 1)
        if self.run_dir is not None and self.is_main:
            summary["run_dir"] = str(self.run_dir)
            atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
        return FitResult(model=self.eval_model, history=state.history, summary=summary, run_dir=self.run_dir,
                         test=test, best=state.best)


def fit(
    model: nn.Module,
    train_data: Any,
    val_data: Any | None = None,
    config: TrainConfig | dict[str, Any] | None = None,
    *,
    out: str | Path | None = None,
    test_data: Any | None = None,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    verbose: int = 1,
) -> FitResult:
    """Train ``model`` on ``train_data``, validating on ``val_data`` each epoch; Keras' ``fit``.

    Data: a ``resnet.data.DataSplit`` (or the ``DataSplits`` of ``resnet.data.load_splits``, which
    fills val and test), any torch ``Dataset`` of (image tensor, label), or a ``DataLoader`` (used
    as it is: its batch size, order and transforms). ``config`` is a TrainConfig or a dict of its
    fields (a recipe name under "recipe"). With ``out`` the run folder is written there
    (config.json, metrics.csv/.jsonl, checkpoints/, curves.png, summary.json) and ``resume=True``
    continues the run saved there. ``test_data``, when given, is evaluated after every epoch
    (reported, never used to choose a checkpoint). ``callbacks`` run after the built-in ones
    (see resnet.train.callbacks). ``verbose`` as Keras: 0 silent, 1 a progress bar (on a terminal)
    and a line per epoch, 2 the lines only. The model is moved to the device in place. Under
    torchrun every process calls fit; rank 0 writes.
    """
    from resnet.data import DataSplits

    if isinstance(train_data, DataSplits):
        train_data, val_data, test_data = train_data.train, val_data or train_data.val, test_data or train_data.test
    if verbose:
        report.ensure_visible()
    return Trainer(model, train_data, val_data, config, out=out, test_data=test_data, resume=resume,
                   overwrite=overwrite, callbacks=callbacks, verbose=verbose).fit()


# --------------------------------------------------------------------------------------------
# The whole job from a config: data, model, fit (what `resnet train` and torchrun run)


def open_data(config: TrainConfig) -> tuple[TrainConfig, Any]:
    """The dataset of ``config`` opened once: (config as it applies to this data, its DataSplits).

    A recipe's carve is dropped when the data has a val split of its own (the returned config says
    so, for config.json: eval of split 'val' must then read the same images).
    """
    from resnet.data import load_splits
    from resnet.data.photo import PHOTO_MIN_SIDE

    published = _published_weights(config)
    if config.image_size is None and published is not None:
        config = replace(config, image_size=list(published.input_size[1:]))
        report.info(f"--image-size {config.image_size[0]}x{config.image_size[1]}: the input size of {published.name} "
                    "(give --image-size to train at another)")
    # train_crop "auto": photos are images of 64 px or more, or anything trained from ImageNet-sized weights.
    imagenet = published is not None and min(published.input_size[1:]) >= PHOTO_MIN_SIDE
    splits = load_splits(config.data, data_dir=config.data_dir, val_size=config.val_size,
                         val_fraction=config.val_fraction, prefer_own_val=config.own_val_first, seed=config.seed,
                         download=config.download, strict=config.strict, image_size=config.image_size,
                         photo=photo_transforms(config),
                         photo_if_native=PHOTO_MIN_SIDE if config.train_crop == "auto" and not imagenet else None)
    if splits.own_val and (config.val_size is not None or config.val_fraction is not None):
        config = replace(config, val_size=None, val_fraction=None)
    if config.train_crop == "auto":  # config.json says what "auto" became, so eval and a resume agree
        config = replace(config, train_crop="resized" if splits.train.photo is not None else "pad")
    return config, splits


def _published_weights(config: TrainConfig) -> PretrainedCfg | None:
    """The published weight set --pretrained names (its PretrainedCfg), or None (a file, or no --pretrained)."""
    if not config.pretrained:
        return None
    from resnet.models.factory import resolve_pretrained
    from resnet.models.pretrained import PretrainedCfg

    found = resolve_pretrained(config.pretrained, config.model)
    return found if isinstance(found, PretrainedCfg) else None


def photo_transforms(config: TrainConfig) -> PhotoTransforms | None:
    """The photo preparation ``config`` asks for (train_crop "resized", or "auto" to be decided by the data), else None."""
    from resnet.data.photo import PhotoTransforms

    if config.train_crop == "pad":
        return None
    return PhotoTransforms(
        size=tuple(config.image_size) if config.image_size else None, crop_fraction=config.crop_fraction,
        scale=tuple(config.crop_scale), ratio=tuple(config.crop_ratio), auto_augment=config.auto_augment,
        random_erasing=config.random_erasing,
    )


def _resized(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], size: int, *, channels_last: bool,
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Each augmented, normalized batch resampled to ``size`` x ``size`` (antialiased: no aliasing when shrinking)."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    for x, y in batches:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        yield x.contiguous(memory_format=layout), y


def run_training(config: TrainConfig, *, out: str | Path | None, resume: bool = False, overwrite: bool = False) -> FitResult:
    """Load the data, build the model and fit: the whole of ``resnet train``."""
    from resnet.models import create_model
    from resnet.models.registry import get_builder

    get_builder(config.model)  # an unknown name fails now (with close names), not after loading the data
    if out is not None and not distributed.launched_by_torchrun():
        prepare_run_dir(out, resume=resume, overwrite=overwrite, write=False)  # fail before loading anything
    config, data = open_data(config)
    if not config.pretrained and (config.freeze_backbone_epochs or config.backbone_lr_scale != 1.0):
        # A random backbone has no features to protect: freezing or slowing it only costs accuracy
        # (measured in benchmarks/transfer.md), so a recipe's fine-tuning settings apply to --pretrained only.
        report.info("no --pretrained weights: the backbone trains at the full learning rate from the first epoch "
                    "(--freeze-backbone-epochs and --backbone-lr-scale apply when fine-tuning pretrained weights)")
        config = replace(config, freeze_backbone_epochs=0, backbone_lr_scale=1.0)
    train_data = data.train
    torch.manual_seed(config.seed)  # the initial weights
    model = create_model(config.model, num_classes=train_data.num_classes, in_chans=train_data.in_chans,
                         pretrained=config.pretrained or False, unsafe=config.unsafe_load, **config.model_options)
    return fit(model, data, None, config, out=out, resume=resume, overwrite=overwrite)
