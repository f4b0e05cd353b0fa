"""``TrainingState``: everything a run needs to continue exactly, saving and restoring itself.

Batches, augmentation, mixup and the balanced sampler are pure functions of (seed, epoch, position)
and the learning rate of the step count, so (epoch, batch, step) plus the objects' own states and
the RNGs are the whole of a run: a run killed at any moment resumes bit-identical from its last save.
The file format (``NAME.state.pt``, a dict of tensors and plain values) is described in checkpoint.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet.errors import ResNetError
from resnet.train.checkpoint import STATE_SUFFIX, load_state, rng_state, save_checkpoint, set_rng_state


def fresh_partial() -> dict[str, float]:
    """The running sums of an epoch not yet finished (carried over a mid-epoch save)."""
    return {"loss": 0.0, "correct": 0.0, "seen": 0.0, "seconds": 0.0}


@dataclass
class TrainingState:
    model: nn.Module  # the raw model (not the DDP wrapper)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None = None
    ema: nn.Module | None = None  # torch.optim.swa_utils.AveragedModel
    arch: str = ""
    epoch: int = 0  # epochs completed
    batch: int = 0  # optimizer steps done in the current epoch: the sampler's position
    step: int = 0  # optimizer steps done in all (the schedule's clock)
    nonfinite: int = 0  # steps skipped because the loss was not finite
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per finished epoch
    partial: dict[str, float] = field(default_factory=fresh_partial)
    best: dict[str, Any] | None = None  # {"epoch", "score", "metric"} of best.safetensors
    stop_reason: str | None = None  # why the run ended before its last epoch (early stopping)
    total_steps: int = 0  # the length the run was planned for when saved (a resume with more extends it)
    callbacks: dict[str, Any] = field(default_factory=dict)  # callbacks' own state, by callback name

    @property
    def eval_model(self) -> nn.Module:
        """The model to evaluate and ship: the EMA model when EMA is on."""
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def state_dict(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "arch": self.arch, "epoch": self.epoch, "batch": self.batch, "step": self.step, "nonfinite": self.nonfinite,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None, "rng": rng_state(),
            "history": self.history, "partial": dict(self.partial), "best": self.best, "stop_reason": self.stop_reason,
            "total_steps": self.total_steps, "callbacks": self.callbacks, "config": config,
        }

    def load_state_dict(self, state: dict[str, Any], *, source: str = "the run") -> None:
        """Restore everything from a ``state_dict`` (RNGs included); a mismatch is one clear error."""
        if state.get("arch") not in (None, "", self.arch):
            raise ResNetError(f"{source} holds a {state.get('arch')} run but the model is {self.arch}; "
                              "resume with the run's own model (resnet train --resume RUN takes it from config.json)")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ResNetError(f"the checkpoint in {source} does not fit this model/optimizer: {str(exc).splitlines()[0]}") from None
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        self.epoch, self.batch = int(state["epoch"]), int(state.get("batch", 0))
        self.step, self.nonfinite = int(state["step"]), int(state.get("nonfinite", 0))
        self.history = list(state["history"])
        self.partial = dict(state.get("partial") or fresh_partial())
        self.best = state.get("best")
        self.stop_reason = state.get("stop_reason")
        self.total_steps = int(state.get("total_steps") or 0)
        self.callbacks = dict(state.get("callbacks") or {})

    def save(self, directory: str | Path, name: str, *, metadata: dict[str, Any], config: dict[str, Any] | None = None,
             with_state: bool = True) -> Path:
        """``NAME.state.pt`` (with ``with_state``) then ``NAME.safetensors`` of the eval model; the weights' path."""
        meta = {**metadata, "epoch": self.epoch, "step": self.step}
        return save_checkpoint(directory, name, weights_model=self.eval_model,
                               state=self.state_dict(config) if with_state else None, metadata=meta)

    def restore(self, directory: str | Path, name: str = "last") -> None:
        """Load ``NAME.state.pt`` from ``directory`` into this state."""
        path = Path(directory) / f"{name}{STATE_SUFFIX}"
        self.load_state_dict(load_state(path), source=str(Path(directory).parent))
