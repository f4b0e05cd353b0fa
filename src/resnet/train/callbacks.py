"""Callbacks: everything the training loop does besides training, one job per class.

The loop (``trainer.Trainer``) calls, in this order, ``on_train_start``, then per epoch
``on_epoch_start``, ``on_step_end`` after every optimizer step, ``on_validation_start`` /
``on_validation_end`` around the evaluation, ``on_epoch_end`` once the epoch's row is in the
history, and finally ``on_train_end``; ``on_interrupt`` when Ctrl-C/SIGTERM stops a run mid-epoch
and ``close`` always. Callbacks see the trainer (its ``config``, ``state``, ``run_dir``, data,
``save``) and can end training by setting ``trainer.state.stop_reason`` (in ``on_validation_end``,
or in ``on_epoch_end`` of a callback listed before ``Checkpoints``, so the saved state records it). A callback with state to
carry over a resume names it ``state_key`` and implements ``state_dict``/``load_state_dict``.

The run-folder files, the checkpoints, the console, early stopping, TensorBoard and the NaN guard
are all callbacks here; ``default_callbacks`` picks them from the config. Adding one touches this
file only.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from resnet import report
from resnet.errors import ResNetError

if TYPE_CHECKING:
    from resnet.train.trainer import FitResult, Trainer


@dataclass
class StepLogs:
    """What ``on_step_end`` gets: the step's place, its loss (a tensor: reading it syncs the device) and the epoch so far."""

    epoch: int  # 0-based
    index: int  # the step's 0-based index within the epoch
    loss: torch.Tensor
    skipped: bool  # the loss was not finite and the update was withheld
    seen: int  # images trained on so far this epoch (this process)
    correct: torch.Tensor  # top-1 hits so far this epoch (this process)
    seconds: float  # since the epoch (or its resumed part) started


class Callback:
    """Base class: every hook does nothing. Override the ones you need (as Keras' and Lightning's)."""

    state_key: str | None = None  # set to carry state over a resume (saved in last.state.pt)

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...
    def on_step_end(self, trainer: Trainer, logs: StepLogs) -> None: ...
    def on_validation_start(self, trainer: Trainer) -> None: ...
    def on_validation_end(self, trainer: Trainer, row: dict[str, Any]) -> None: ...
    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None: ...
    def on_interrupt(self, trainer: Trainer) -> None: ...
    def on_train_end(self, trainer: Trainer, result: FitResult) -> None: ...
    def close(self) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class CallbackList(Callback):
    """Calls each hook on every callback in turn."""

    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = callbacks

    def _each(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def on_train_start(self, trainer: Trainer) -> None:
        self._each("on_train_start", trainer)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._each("on_epoch_start", trainer, epoch)

    def on_step_end(self, trainer: Trainer, logs: StepLogs) -> None:
        self._each("on_step_end", trainer, logs)

    def on_validation_start(self, trainer: Trainer) -> None:
        self._each("on_validation_start", trainer)

    def on_validation_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self._each("on_validation_end", trainer, row)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self._each("on_epoch_end", trainer, row)

    def on_interrupt(self, trainer: Trainer) -> None:
        self._each("on_interrupt", trainer)

    def on_train_end(self, trainer: Trainer, result: FitResult) -> None:
        self._each("on_train_end", trainer, result)

    def close(self) -> None:
        self._each("close")

    def states(self) -> dict[str, Any]:
        return {c.state_key: c.state_dict() for c in self.callbacks if c.state_key}

    def load_states(self, states: dict[str, Any]) -> None:
        for c in self.callbacks:
            if c.state_key and c.state_key in states:
                c.load_state_dict(states[c.state_key])


# ---------------------------------------------------------------------------------------------
# The built-in callbacks


class NaNGuard(Callback):
    """A step whose loss is not finite (its update already withheld) stops the run, or with ``skip`` is counted."""

    def __init__(self, skip: bool = False) -> None:
        self.skip = skip

    def on_step_end(self, trainer: Trainer, logs: StepLogs) -> None:
        if not logs.skipped:
            return
        if not self.skip:
            history, run_dir = trainer.state.history, trainer.run_dir
            kept = (f"the last good checkpoint is kept: {run_dir / 'checkpoints' / 'last.safetensors'} (epoch {len(history)})"
                    if run_dir is not None and history else "no checkpoint was written")
            raise ResNetError(f"loss is {float(logs.loss)} at epoch {logs.epoch + 1}, step {logs.index + 1} of "
                              f"{trainer.steps_per_epoch}; stopped, {kept}; lower --lr, or pass --skip-nonfinite to skip such steps")
        trainer.state.nonfinite += 1
        report.warn(f"skipped step {logs.index + 1} of epoch {logs.epoch + 1}: loss is {float(logs.loss)}")


class LossWatch(Callback):
    """One line when the training loss explodes early on, with the remedy.

    Early: the first epoch, or the first ``STEPS`` steps where epochs are shorter (a small folder's
    epoch is a handful of steps). Exploding: not finite, or above 10x the larger of the first
    step's loss and log(classes) (a guessing model's loss), the usual sign of a learning rate too
    high for the data or batch.
    """

    FACTOR = 10.0
    STEPS = 50
    state_key = "loss_watch"  # a run resumed early on keeps its bound (and says it at most once)

    def __init__(self) -> None:
        self.bound: float | None = None
        self.said = False

    def state_dict(self) -> dict[str, Any]:
        return {"bound": self.bound, "said": self.said}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bound, self.said = state.get("bound"), bool(state.get("said"))

    def on_step_end(self, trainer: Trainer, logs: StepLogs) -> None:
        if self.said or not trainer.is_main or trainer.state.step > max(trainer.steps_per_epoch, self.STEPS):
            return
        loss = float(logs.loss)  # a device sync per step, early on only
        if self.bound is None and math.isfinite(loss):
            self.bound = self.FACTOR * max(loss, math.log(max(trainer.train_data.num_classes, 2)))
            return
        if not math.isfinite(loss) or (self.bound is not None and loss > self.bound):
            self.said = True
            report.warn(f"the training loss exploded to {loss:.4g} at step {logs.index + 1} of epoch {logs.epoch + 1}: "
                        f"the learning rate is too high for this data; lower --lr, e.g. --lr {trainer.config.lr / 10:g}, "
                        "or use --recipe finetune")


class Checkpoints(Callback):
    """``best.safetensors`` when the monitored score improves, ``last.safetensors`` + ``last.state.pt`` every epoch.

    Best is written before last: a kill between the two is then redone from the previous state,
    which re-decides (and rewrites) best exactly as before.
    """

    def on_train_start(self, trainer: Trainer) -> None:
        if trainer.resumed:
            # The state is written before the weights, so a kill between the two left
            # last.safetensors an epoch behind: bring it level with the state we continue from.
            trainer.save("last", with_state=False)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        state = trainer.state
        metric = "val_top1" if row.get("val_top1") is not None else "train_top1"
        score = row[metric]
        if state.best is None or score > state.best["score"]:
            state.best = {"epoch": row["epoch"], "score": score, "metric": metric}
            trainer.save("best", with_state=False)
        trainer.save("last")

    def on_interrupt(self, trainer: Trainer) -> None:
        saved = trainer.save("last")
        if saved is not None:
            report.info(f"saved {saved} at epoch {trainer.state.epoch + 1}, step {trainer.state.batch}; "
                        f"continue with: resnet train --resume {trainer.run_dir}")


class MetricsFiles(Callback):
    """``metrics.csv`` and ``metrics.jsonl``, rewritten from the history: each epoch exactly once, whatever was killed when."""

    def on_train_start(self, trainer: Trainer) -> None:
        if trainer.resumed:
            self._write(trainer)  # drop any row logged after the checkpoint

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self._write(trainer)

    @staticmethod
    def _write(trainer: Trainer) -> None:
        from resnet.train.rundir import write_metrics

        if trainer.run_dir is not None and trainer.is_main:
            write_metrics(trainer.run_dir, trainer.state.history)


class Curves(Callback):
    """``curves.png``: train/val/test error against epochs, as in the paper's figures."""

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if trainer.run_dir is None or not trainer.is_main:
            return
        from resnet.train.plots import plot_curves

        plot_curves(trainer.state.history, trainer.run_dir / "curves.png",
                    title=f"{trainer.state.arch} on {trainer.train_data.name}")


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``monitor`` None: val_loss, or train_loss without validation data. ``mode`` "min" for losses,
    "max" for accuracies ("auto": from the name).
    """

    state_key = "early_stopping"

    def __init__(self, patience: int, monitor: str | None = None, mode: str = "auto", min_delta: float = 0.0) -> None:
        self.patience, self.monitor, self.mode, self.min_delta = patience, monitor or "", mode, min_delta
        self.best: float | None = None
        self.best_epoch = 0
        self.wait = 0

    def on_train_start(self, trainer: Trainer) -> None:
        if not self.monitor:
            self.monitor = "val_loss" if trainer.val_data is not None else "train_loss"
        if self.mode == "auto":
            self.mode = "min" if "loss" in self.monitor else "max"

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        value = row.get(self.monitor)
        if value is None:
            raise ResNetError(f"--early-stop-metric {self.monitor} is not measured in this run "
                              f"(measured: {', '.join(k for k, v in row.items() if isinstance(v, float))})")
        sign = -1.0 if self.mode == "min" else 1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.best_epoch, self.wait = float(value), int(row["epoch"]), 0
            return
        self.wait += 1
        if self.wait >= self.patience and row["epoch"] < trainer.num_epochs:
            trainer.state.stop_reason = (f"early stopping: {self.monitor} has not improved on {self.best:.4g} "
                                         f"(epoch {self.best_epoch}) for {self.wait} epochs")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], int(state["best_epoch"]), int(state["wait"])


class TensorBoard(Callback):
    """Every number of each epoch's row as a TensorBoard scalar (``torch.utils.tensorboard``), step = epoch."""

    def __init__(self, log_dir: str | Path | None = None) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.writer: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        if not trainer.is_main:
            return
        log_dir = self.log_dir or (trainer.run_dir / "tensorboard" if trainer.run_dir is not None else None)
        if log_dir is None:
            raise ResNetError("TensorBoard logging needs a run folder (out=...) or TensorBoard(log_dir)")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ResNetError("--tensorboard needs the tensorboard package: pip install 'resnet[tensorboard]'") from None
        # On resume, events logged after the checkpoint (epochs about to be redone) are dropped.
        self.writer = SummaryWriter(str(log_dir), purge_step=trainer.state.epoch + 1 if trainer.resumed else None)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Console(Callback):
    """What a person watches: the start line, a progress bar on a terminal (``verbose`` 1), one line per epoch.

    ``verbose`` as Keras: 0 silent, 1 progress bar and epoch lines, 2 epoch lines only.
    """

    def __init__(self, verbose: int = 1) -> None:
        self.verbose = verbose
        self._bar_stack: ExitStack | None = None
        self._bar: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        if not (self.verbose and trainer.is_main):
            return
        state = trainer.state
        if trainer.frozen:
            report.info(trainer.frozen)
        if trainer.resumed:
            where = f"epoch {state.epoch + 1}" + (f", step {state.batch + 1}" if state.batch else "")
            report.info(f"resuming {trainer.run_dir} at {where} of {trainer.num_epochs}")
        config, ctx = trainer.config, trainer.ctx
        report.info(f"training {state.arch} on {trainer.train_data.name}: {len(trainer.train_data)} images, "
                    f"{trainer.num_epochs} epochs x {trainer.steps_per_epoch} steps of {trainer.batch_size}"
                    + (f" ({config.accum_steps} micro-batches each)" if config.accum_steps > 1 else "")
                    + (f" on {ctx.world_size} processes" if ctx.enabled else "")
                    + f"; {trainer.device}, amp {trainer.amp_name}, channels_last {'on' if config.channels_last else 'off'}")
        if config.progressive_sizes:
            report.info(f"progressive resizing: {trainer.size_phases()}")
        if trainer.amp_reason and not trainer.resumed:
            report.info(f"precision: {trainer.amp_reason}")
        if trainer.compile_reason:
            report.info(f"compile: {trainer.compile_reason}")

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if self.verbose == 1 and trainer.is_main and report.is_terminal():
            self._bar_stack = ExitStack()
            self._bar = self._bar_stack.enter_context(
                report.progress(trainer.epoch_steps(epoch), f"epoch {epoch + 1}/{trainer.num_epochs}"))
            if trainer.state.batch:
                self._bar.advance(trainer.state.batch)

    def on_step_end(self, trainer: Trainer, logs: StepLogs) -> None:
        if self._bar is not None:  # the numbers cost a device sync: only with a bar on a terminal
            self._bar.advance(1, loss=float(logs.loss), acc=float(logs.correct) / max(logs.seen, 1),
                              lr=trainer.state.optimizer.param_groups[0]["lr"],
                              img_s=round(logs.seen * trainer.ctx.world_size / max(logs.seconds, 1e-9)))

    def on_validation_start(self, trainer: Trainer) -> None:
        self.close()

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self.verbose and trainer.is_main:
            report.info(epoch_line(row, trainer.num_epochs))
            if trainer.state.stop_reason:
                report.info(f"stopped after epoch {row['epoch']}: {trainer.state.stop_reason}")

    def close(self) -> None:
        if self._bar_stack is not None:
            self._bar_stack.close()
        self._bar_stack = self._bar = None


def epoch_line(row: dict[str, Any], num_epochs: int) -> str:
    val = (f"  val loss {row['val_loss']:.4f} top1 {row['val_top1']:.4f} top5 {row['val_top5']:.4f}"
           if row.get("val_top1") is not None else "")
    if row.get("test_top1") is not None:
        val += f"  test top1 {row['test_top1']:.4f}"
    return (f"epoch {row['epoch']}/{num_epochs}  train loss {row['train_loss']:.4f} top1 {row['train_top1']:.4f}{val}"
            f"  lr {row['lr']:.4g}  {row['images_per_s']:.0f} img/s  {row['seconds']:.1f}s")


def default_callbacks(config: Any, *, verbose: int = 1) -> list[Callback]:
    """The callbacks a config asks for, in the order they must run at each epoch's end.

    Early stopping decides before the checkpoint is written (its decision is part of the state);
    checkpoints before the metrics files (a kill between them redoes the epoch from the state);
    the console line last.
    """
    callbacks: list[Callback] = [NaNGuard(skip=config.skip_nonfinite), LossWatch()]
    if getattr(config, "early_stop", None):
        callbacks.append(EarlyStopping(config.early_stop, monitor=config.early_stop_metric))
    callbacks += [Checkpoints(), MetricsFiles(), Curves()]
    if getattr(config, "tensorboard", False):
        callbacks.append(TensorBoard())
    callbacks.append(Console(verbose))
    return callbacks
