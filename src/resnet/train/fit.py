"""``fit`` and ``evaluate``: the training loop, its run folder, exact resume, and the evaluation pass.

The loop is deterministic given the seed: batches are a pure function of (seed, epoch, rank) and
the learning rate a pure function of the step, and a checkpoint holds every other piece of state,
so a run killed at any moment and resumed ends with the same weights as one never interrupted.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import platform
import shutil
import signal
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet import report
from resnet.device import describe, resolve_device
from resnet.errors import ResNetError
from resnet.io import atomic_write_text
from resnet.train import distributed
from resnet.train.checkpoint import STATE_SUFFIX, load_state, rng_state, save_checkpoint, set_rng_state
from resnet.train.config import TrainConfig, config_from_dict, resolve_config
from resnet.train.distributed import DistContext
from resnet.train.schedule import make_scheduler
from resnet.train.step import amp_dtype_for, autocast, make_optimizer, make_scaler, make_train_step

METRIC_COLUMNS = (
    "epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "test_loss", "test_top1", "lr",
    "images_per_s", "seconds", "nonfinite_steps",
)
# What a run folder may contain: --overwrite removes exactly these, nothing the user put there.
RUN_FILES = ("config.json", "metrics.csv", "metrics.jsonl", "curves.png", "summary.json", "checkpoints")


# --------------------------------------------------------------------------------------------
# Evaluation


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
    """Loss, top-1, top-5, per-class accuracy and confusion matrix of ``model`` on a DataSplit.

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


# --------------------------------------------------------------------------------------------
# The run folder


def prepare_run_dir(out: str | Path, *, resume: bool = False, overwrite: bool = False, write: bool = True) -> Path:
    """Check (and with ``write``, create) a run folder: refuses to clobber an existing run."""
    out = Path(out)
    if resume:
        if not (out / "checkpoints" / f"last{STATE_SUFFIX}").is_file():
            what = "does not exist" if not out.exists() else "has no checkpoint (checkpoints/last.state.pt) to resume from"
            raise ResNetError(f"cannot resume {out}: the run folder {what}")
        return out
    if out.exists() and not out.is_dir():
        raise ResNetError(f"--out {out} is a file, not a folder; choose another --out")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise ResNetError(f"run folder {out} already holds a run ({', '.join(existing)}); "
                          f"continue it with --resume {out}, replace it with --overwrite, or choose another --out")
    if out.is_dir() and not existing and any(out.iterdir()) and not overwrite:
        raise ResNetError(f"--out {out} is a folder that is not empty; choose a new or empty folder (or pass --overwrite)")
    if not write:
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ResNetError(f"cannot write to run folder {out}: {exc.strerror or exc}; choose another --out") from None
    for name in existing:  # --overwrite: only what a run writes
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return out


def _metrics_text(history: list[dict[str, Any]]) -> tuple[str, str]:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRIC_COLUMNS})
    jsonl = "".join(json.dumps(row) + "\n" for row in history)
    return buf.getvalue(), jsonl


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.csv/.jsonl from the history: each epoch exactly once, whatever was killed when."""
    text_csv, text_jsonl = _metrics_text(history)
    atomic_write_text(run_dir / "metrics.csv", text_csv)
    atomic_write_text(run_dir / "metrics.jsonl", text_jsonl)


def _versions() -> dict[str, str]:
    import torchvision

    from resnet import __version__

    return {"resnet": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version()}


def _dataset_info(train_data: Any, val_data: Any, test_data: Any) -> dict[str, Any]:
    return {
        "name": train_data.name, "class_names": list(train_data.class_names), "num_classes": train_data.num_classes,
        "in_chans": train_data.in_chans, "image_size": list(train_data.image_size),
        "mean": list(train_data.mean), "std": list(train_data.std),
        "train_size": len(train_data), "val_size": len(val_data) if val_data is not None else 0,
        "test_size": len(test_data) if test_data is not None else 0,
    }


# --------------------------------------------------------------------------------------------
# Signals: Ctrl-C and SIGTERM finish the current step, save, and exit


class _StopFlag:
    def __init__(self) -> None:
        self.signal: int | None = None


@contextmanager
def _graceful_stop() -> Iterator[_StopFlag]:
    """First SIGINT/SIGTERM sets a flag the loop checks between steps; a second one interrupts at once."""
    flag = _StopFlag()
    import threading

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
# Training


@dataclass
class FitResult:
    model: nn.Module  # the model to use (the EMA model when EMA is on)
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    run_dir: Path | None = None
    test: EvalResult | None = None
    best: dict[str, Any] | None = field(default=None)


def _set_determinism(config: TrainConfig, device: torch.device) -> None:
    if config.deterministic:
        # cuBLAS needs a fixed workspace for deterministic GEMMs; it must be set before CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels


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
    extra_config: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` on ``train_data`` (a ``resnet.data.DataSplit``), validating on ``val_data`` each epoch.

    ``config`` is a TrainConfig or a dict of its fields (a recipe name under "recipe"). With ``out``
    the run folder is written there (config.json, metrics.csv/.jsonl, checkpoints/, curves.png,
    summary.json) and ``resume=True`` continues the run saved there. ``test_data``, when given, is
    evaluated after every epoch (reported for the curves and the summary, never used to choose a
    checkpoint: that is ``val_data``'s job). The model is moved to the device in place. Under torchrun
    every process calls fit; rank 0 writes.
    """
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = resolve_config(config)
    ctx = distributed.setup(config.device)
    device = ctx.device
    if config.threads is not None:
        # On a CPU shared with other jobs, fewer threads than cores avoids OpenMP's spin-wait stalls.
        torch.set_num_threads(config.threads)
    _set_determinism(config, device)
    amp_dtype = amp_dtype_for(device, config.amp)
    run_dir = Path(out) if out is not None else None
    if run_dir is not None:
        if ctx.is_main:
            prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
        distributed.barrier(ctx)
    elif resume:
        raise ResNetError("resume needs the run folder (out=...)")
    if config.batch_size % ctx.world_size:
        raise ResNetError(f"--batch-size {config.batch_size} is the global batch and must divide evenly among "
                          f"{ctx.world_size} processes")
    batch_size = config.batch_size // ctx.world_size

    # The model, placed, laid out, optionally synchronized and wrapped.
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if config.sync_bn and ctx.enabled:
        model = distributed.convert_sync_batchnorm(model, device)
    net = distributed.wrap(model, ctx)
    optimizer = make_optimizer(model, config.optimizer, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay, nesterov=config.nesterov)
    steps_per_epoch = train_data.num_batches(batch_size, drop_last=True, world_size=ctx.world_size)
    if steps_per_epoch < 1:
        raise ResNetError(f"the training split has {len(train_data)} images, fewer than one batch of {config.batch_size}; "
                          "lower --batch-size")
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:  # the paper counts iterations: they decide, epochs follow
        total_steps = config.max_steps
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch, total_steps)
    scaler = make_scaler(device, amp_dtype)
    ema = None
    if config.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    reduce_loss = (lambda t: distributed.all_reduce_sum(t, ctx) / ctx.world_size) if ctx.enabled else None
    step = make_train_step(net, optimizer, device=device, amp_dtype=amp_dtype, channels_last=config.channels_last,
                           scaler=scaler, compile=config.compile, label_smoothing=config.label_smoothing,
                           reduce_loss=reduce_loss)
    eval_model = ema.module if ema is not None else model

    resolved = {
        **config.to_dict(),
        "world_size": ctx.world_size, "amp_dtype": str(amp_dtype).replace("torch.", "") if amp_dtype else None,
        "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "num_epochs": num_epochs,
        "device": str(device), "hardware": describe(device), "versions": _versions(),
        "dataset": _dataset_info(train_data, val_data, test_data), **(extra_config or {}),
    }
    arch = getattr(model, "model_name", type(model).__name__)
    metadata = {
        "class_names": list(train_data.class_names), "mean": list(train_data.mean), "std": list(train_data.std),
        "image_size": list(train_data.image_size), "dataset": train_data.name,
    }

    # Where to start: fresh, or exactly where the saved state stopped.
    history: list[dict[str, Any]] = []
    start_epoch, start_batch, global_step, nonfinite = 0, 0, 0, 0
    partial = {"loss": 0.0, "correct": 0.0, "seen": 0.0, "seconds": 0.0}
    best: dict[str, Any] | None = None
    if resume:
        assert run_dir is not None
        state = load_state(run_dir / "checkpoints" / f"last{STATE_SUFFIX}")
        if state.get("arch") not in (None, arch):
            raise ResNetError(f"{run_dir} holds a {state.get('arch')} run but the model is {arch}; "
                              "resume with the run's own model (resnet train --resume RUN takes it from config.json)")
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ResNetError(f"the checkpoint in {run_dir} does not fit this model/optimizer: {str(exc).splitlines()[0]}") from None
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        history = list(state["history"])
        start_epoch, start_batch = int(state["epoch"]), int(state.get("batch", 0))
        global_step, nonfinite = int(state["step"]), int(state.get("nonfinite", 0))
        partial = dict(state.get("partial") or partial)
        best = state.get("best")
        if ctx.is_main:
            write_metrics(run_dir, history)  # drop any row logged after the checkpoint
            where = f"epoch {start_epoch + 1}" + (f", step {start_batch + 1}" if start_batch else "")
            report.info(f"resuming {run_dir} at {where} of {num_epochs}")
    elif run_dir is not None and ctx.is_main:
        atomic_write_text(run_dir / "config.json", json.dumps(resolved, indent=2, default=str) + "\n")

    def training_state(epoch: int, batch: int) -> dict[str, Any]:
        return {
            "arch": arch, "epoch": epoch, "batch": batch, "step": global_step, "nonfinite": nonfinite,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "ema": ema.state_dict() if ema is not None else None, "rng": rng_state(), "history": history,
            "partial": dict(partial), "best": best, "config": config.to_dict(),
        }

    def save(name: str, epoch: int, batch: int, *, with_state: bool = True) -> Path | None:
        if run_dir is None or not ctx.is_main:
            return None
        meta = {**metadata, "epoch": epoch, "step": global_step}
        return save_checkpoint(run_dir / "checkpoints", name, weights_model=eval_model,
                               state=training_state(epoch, batch) if with_state else None, metadata=meta)

    if resume:
        # The state is written before the weights, so a kill between the two left last.safetensors an
        # epoch behind: bring it level with the state we continue from.
        save("last", start_epoch, start_batch, with_state=False)
    test: EvalResult | None = None
    started = time.perf_counter()
    show_bar = ctx.is_main and report.is_terminal()
    if ctx.is_main:
        report.info(f"training {arch} on {train_data.name}: {len(train_data)} images, {num_epochs} epochs x "
                    f"{steps_per_epoch} steps of {config.batch_size}"
                    + (f" on {ctx.world_size} processes" if ctx.enabled else "")
                    + f"; {device}, amp {resolved['amp_dtype'] or 'off'}, channels_last {'on' if config.channels_last else 'off'}")
    with _graceful_stop() as stop:
        for epoch in range(start_epoch, num_epochs):
            if start_batch == 0 or epoch > start_epoch:
                # Anything random outside the data pipeline (dropout, stochastic depth) restarts
                # from (seed, epoch) too; a mid-epoch resume restores the saved RNG instead.
                torch.manual_seed(config.seed * 1_000_003 + epoch)
                partial = {"loss": 0.0, "correct": 0.0, "seen": 0.0, "seconds": 0.0}
            first = start_batch if epoch == start_epoch else 0
            net.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.float64, device=device)
            seen = 0
            epoch_start = time.perf_counter()
            batches = train_data.batches(
                batch_size, shuffle=True, augment=config.augment, epoch=epoch, seed=config.seed, device=device,
                drop_last=True, rank=ctx.rank, world_size=ctx.world_size, channels_last=config.channels_last,
                num_workers=config.num_workers, start_batch=first, padding=config.crop_padding,
            )
            epoch_steps = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
            with report.progress(epoch_steps if ctx.is_main else None, f"epoch {epoch + 1}/{num_epochs}") as bar:
                if first:
                    bar.advance(first)
                for index, (x, y) in enumerate(batches, start=first):
                    if index >= epoch_steps:
                        break
                    loss = step(x, y)
                    if step.skipped:
                        if not config.skip_nonfinite:
                            raise _nonfinite_error(loss, epoch, index, steps_per_epoch, run_dir, history)
                        nonfinite += 1
                        report.warn(f"skipped step {index + 1} of epoch {epoch + 1}: loss is {float(loss)}")
                    else:
                        if ema is not None:
                            ema.update_parameters(model)
                        loss_sum += loss.double() * y.shape[0]
                        correct += step.correct
                        seen += y.shape[0]
                    scheduler.step()
                    global_step += 1
                    if show_bar:  # the bar's numbers cost a device sync: only on a terminal
                        elapsed = time.perf_counter() - epoch_start
                        bar.advance(1, loss=float(loss), acc=float(correct) / max(seen, 1),
                                    lr=optimizer.param_groups[0]["lr"], img_s=round(seen * ctx.world_size / max(elapsed, 1e-9)))
                    if stop.signal is not None and index + 1 < epoch_steps:
                        partial = _merge(partial, loss_sum, correct, seen, time.perf_counter() - epoch_start)
                        saved = save("last", epoch, index + 1)
                        if saved is not None:
                            report.info(f"saved {saved} at epoch {epoch + 1}, step {index + 1}; "
                                        f"continue with: resnet train --resume {run_dir}")
                        raise KeyboardInterrupt
            # The epoch's numbers, over all processes.
            partial = _merge(partial, loss_sum, correct, seen, time.perf_counter() - epoch_start)
            totals = distributed.all_reduce_sum(
                torch.tensor([partial["loss"], partial["correct"], partial["seen"]], dtype=torch.float64, device=device), ctx
            ).tolist()
            train_seconds = partial["seconds"]
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_loss": totals[0] / max(totals[2], 1), "train_top1": totals[1] / max(totals[2], 1),
                "val_loss": None, "val_top1": None, "val_top5": None,
                "lr": optimizer.param_groups[0]["lr"],
                "images_per_s": round(totals[2] / max(train_seconds, 1e-9), 1),
            }
            if val_data is not None:
                val = evaluate(eval_model, val_data, batch_size=config.eval_batch_size, device=device,
                               amp_dtype=amp_dtype, channels_last=config.channels_last, dist=ctx, flip_tta=config.tta)
                row.update(val_loss=val.loss, val_top1=val.top1, val_top5=val.top5)
            if test_data is not None:
                # Test error every epoch, as in the paper's figures; reported only, never used to choose.
                test = evaluate(eval_model, test_data, batch_size=config.eval_batch_size, device=device,
                                amp_dtype=amp_dtype, channels_last=config.channels_last, dist=ctx, flip_tta=config.tta)
                row.update(test_loss=test.loss, test_top1=test.top1)
            row["seconds"] = round(time.perf_counter() - epoch_start, 3)
            row["nonfinite_steps"] = nonfinite
            history.append(row)
            score = row["val_top1"] if row["val_top1"] is not None else row["train_top1"]
            is_best = best is None or score > best["score"]
            if is_best:
                best = {"epoch": epoch + 1, "score": score, "metric": "val_top1" if val_data is not None else "train_top1"}
            start_batch = 0
            # best before last: a kill between the two is then redone from the previous state,
            # which re-decides (and rewrites) best exactly as before.
            if is_best:
                save("best", epoch + 1, 0, with_state=False)
            save("last", epoch + 1, 0)
            if run_dir is not None and ctx.is_main:
                write_metrics(run_dir, history)
                from resnet.train.plots import plot_curves

                plot_curves(history, run_dir / "curves.png", title=f"{arch} on {train_data.name}")
            if ctx.is_main:
                report.info(_epoch_line(row, num_epochs))
            if stop.signal is not None and epoch + 1 < num_epochs:
                report.info(f"stopped after epoch {epoch + 1}; continue with: resnet train --resume {run_dir}")
                raise KeyboardInterrupt

    summary: dict[str, Any] = {
        "model": arch, "data": train_data.name, "epochs": num_epochs, "steps": global_step,
        "wall_seconds": round(time.perf_counter() - started, 1), "resumed": resume,
        "final": history[-1] if history else None, "best": best, "nonfinite_steps": nonfinite,
        "hardware": describe(device),
    }
    if test_data is not None and test is None:  # nothing left to train after a resume
        test = evaluate(eval_model, test_data, batch_size=config.eval_batch_size, device=device, amp_dtype=amp_dtype,
                        channels_last=config.channels_last, dist=ctx, flip_tta=config.tta)
    if test is not None:
        summary.update(test_loss=test.loss, test_top1=test.top1, test_top5=test.top5, test_size=test.num_samples)
    summary["train_seconds"] = round(sum(row["seconds"] for row in history), 1)
    if run_dir is not None and ctx.is_main:
        summary["run_dir"] = str(run_dir)
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return FitResult(model=eval_model, history=history, summary=summary, run_dir=run_dir, test=test, best=best)


def _merge(partial: dict[str, float], loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, seconds: float) -> dict[str, float]:
    """Add this stretch of the epoch to what a mid-epoch checkpoint carried over."""
    return {"loss": partial["loss"] + float(loss_sum), "correct": partial["correct"] + float(correct),
            "seen": partial["seen"] + seen, "seconds": partial["seconds"] + seconds}


def _nonfinite_error(loss: torch.Tensor, epoch: int, index: int, steps_per_epoch: int, run_dir: Path | None,
                     history: list[dict[str, Any]]) -> ResNetError:
    kept = (f"the last good checkpoint is kept: {run_dir / 'checkpoints' / 'last.safetensors'} (epoch {len(history)})"
            if run_dir is not None and history else "no checkpoint was written")
    return ResNetError(f"loss is {float(loss)} at epoch {epoch + 1}, step {index + 1} of {steps_per_epoch}; stopped, "
                       f"{kept}; lower --lr, or pass --skip-nonfinite to skip such steps")


def _epoch_line(row: dict[str, Any], num_epochs: int) -> str:
    val = (f"  val loss {row['val_loss']:.4f} top1 {row['val_top1']:.4f} top5 {row['val_top5']:.4f}"
           if row["val_top1"] is not None else "")
    if row.get("test_top1") is not None:
        val += f"  test top1 {row['test_top1']:.4f}"
    return (f"epoch {row['epoch']}/{num_epochs}  train loss {row['train_loss']:.4f} top1 {row['train_top1']:.4f}{val}"
            f"  lr {row['lr']:.4g}  {row['images_per_s']:.0f} img/s  {row['seconds']:.1f}s")


# --------------------------------------------------------------------------------------------
# The whole job from a config: data, model, fit (what `resnet train` and torchrun run)


def with_own_val(config: TrainConfig, splits: Collection[str] | None = None) -> TrainConfig:
    """``config`` without its carve when the data has a val split of its own and no carve was asked for explicitly.

    ``splits``: the data's splits when the caller has already listed them (else they are listed here, if needed).
    """
    from resnet.data import available_splits

    carving = config.val_size is not None or config.val_fraction is not None
    if not (carving and config.own_val_first):
        return config
    if splits is None:
        splits = available_splits(config.data, data_dir=config.data_dir)
    if "val" in splits:
        report.info(f"{config.data}: using its own val split (pass --val-fraction or --val-size to carve from train instead)")
        return dataclasses.replace(config, val_size=None, val_fraction=None)
    return config


def load_data(config: TrainConfig) -> tuple[Any, Any | None, Any | None]:
    """(train, val or None, test or None) splits for ``config``."""
    from resnet.data import available_splits, load

    splits = available_splits(config.data, data_dir=config.data_dir)
    config = with_own_val(config, splits)
    common = {"data_dir": config.data_dir, "seed": config.seed, "download": config.download, "strict": config.strict}
    carve = {"val_size": config.val_size, "val_fraction": config.val_fraction}
    train = load(config.data, "train", **common, **carve)
    val = None
    if config.val_size is not None or config.val_fraction is not None or "val" in splits:
        val = load(config.data, "val", **common, **carve)
    test = load(config.data, "test", **common) if "test" in splits else None
    if test is not None:
        # Test images are normalized with the same statistics as training (the train split minus val).
        test = test.with_normalization(train.mean, train.std)
    if val is not None:
        val = val.with_normalization(train.mean, train.std)
    return train, val, test


def run_training(config: TrainConfig, *, out: str | Path | None, resume: bool = False, overwrite: bool = False) -> FitResult:
    """Load the data, build the model and fit: the whole of ``resnet train``."""
    from resnet.models import create_model

    from resnet.models.registry import get_builder

    get_builder(config.model)  # an unknown name fails now (with close names), not after loading the data
    if out is not None and not distributed.launched_by_torchrun():
        prepare_run_dir(out, resume=resume, overwrite=overwrite, write=False)  # fail before loading anything
    config = with_own_val(config)  # before it is saved: eval of split 'val' must read the same images
    train_data, val_data, test_data = load_data(config)
    torch.manual_seed(config.seed)  # the initial weights
    model = create_model(config.model, num_classes=train_data.num_classes, in_chans=train_data.in_chans,
                         pretrained=config.pretrained or False, unsafe=config.unsafe_load, **config.model_options)
    return fit(model, train_data, val_data, config, out=out, test_data=test_data, resume=resume, overwrite=overwrite)


def resume_config(run_dir: str | Path) -> TrainConfig:
    """The configuration a run folder was started with (its config.json)."""
    path = Path(run_dir) / "config.json"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise ResNetError(f"cannot resume {run_dir}: no config.json there (is it a run folder?)") from None
    except ValueError as exc:
        raise ResNetError(f"cannot resume {run_dir}: config.json is damaged ({exc})") from None
    return config_from_dict(values)
