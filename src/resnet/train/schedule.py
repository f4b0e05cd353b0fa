"""Learning-rate schedules as a pure function of the optimizer step, stepped once per iteration.

A pure function of the step makes resuming exact (the scheduler's whole state is the step count) and
lets one recipe state the paper's "divide by 10 at 32k and 48k iterations" literally.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from resnet.train.config import TrainConfig

# One-cycle's shape (Smith & Topin 2018; the same as torch's OneCycleLR defaults): start at lr/25,
# rise over the first 30% of training, then anneal to lr/(25 * 1e4), cosine both ways.
ONECYCLE_PCT_START = 0.3
ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4


def lr_factor_fn(config: TrainConfig, steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
    """The multiplier of ``config.lr`` to use at optimizer step ``step`` (0-based)."""
    warmup = round(config.warmup_epochs * steps_per_epoch)
    total = max(total_steps, 1)

    def cosine(t: float, start: float, end: float) -> float:
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))

    if config.milestone_steps is not None:
        milestones = sorted(int(m) for m in config.milestone_steps)
    else:
        # Milestones up to 1 are fractions of training; larger ones are epochs.
        milestones = sorted(round(m * total) if m <= 1 else round(m * steps_per_epoch) for m in config.milestones)

    def factor(step: int) -> float:
        if config.schedule == "onecycle":
            rise = warmup if warmup > 0 else round(ONECYCLE_PCT_START * total)
            low = 1.0 / ONECYCLE_DIV
            if step < rise:
                return cosine(step / max(rise, 1), low, 1.0)
            return cosine((step - rise) / max(total - rise, 1), 1.0, low / ONECYCLE_FINAL_DIV)
        if step < warmup:
            return (step + 1) / warmup  # linear warm-up (Goyal et al. 2017)
        if config.schedule == "constant":
            return 1.0
        if config.schedule == "cosine":
            return cosine((step - warmup) / max(total - warmup, 1), 1.0, 0.0)
        # "step"
        if config.step_every:
            return config.lr_gamma ** (step // (config.step_every * steps_per_epoch))
        return config.lr_gamma ** sum(step >= m for m in milestones)

    return factor


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """One schedule for every parameter group; a second group (the backbone, see trainer._backbone_groups)
    follows it too, at 0 for the first ``freeze_backbone_epochs`` epochs: a pure function of the step, so
    the freeze survives a resume exactly."""
    factor = lr_factor_fn(config, steps_per_epoch, total_steps)
    if len(optimizer.param_groups) == 1:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    frozen_steps = config.freeze_backbone_epochs * steps_per_epoch

    def backbone(step: int) -> float:
        return 0.0 if step < frozen_steps else factor(step)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor, backbone])
