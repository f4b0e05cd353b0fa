"""Whether training runs the model through torch.compile: measured in the run's first steps, then remembered.

resnet20's compiled training step ran at 1.09-1.22x the eager one on the two Intel kinds measured, at 0.98x
on Zen 3 (whole runs) and at 0.95x on Zen 5 (benchmarks/train.md), and its first call spends 10-60 s
compiling, so no rule fits every machine. With ``compile=None`` (the time-budget presets), after a few
warm-up steps the run's own training steps alternate between the eager and the compiled model and are
timed; the faster is kept for the rest of the run. Every one of those steps trains the model, so only the
compiling is spent. The ratio is remembered per machine, model, batch shape and precision in
``$RESNET_CACHE/train-compile.json`` (else ``~/.cache/resnet/``): the next run decides before its first step
and does not compile where compiling does not pay.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet import device as hw
from resnet import remembered as memo
from resnet import report

WARMUP_STEPS = 2  # untimed steps of each kind first (the first compiled one also compiles)
TIMED_STEPS = 8  # timed steps of each kind, alternating so a busy spell on the machine hits both alike
MIN_GAIN = 1.05  # compile only when clearly faster: the compiled forward's numerics differ in the last bits


def cache_path() -> Path:
    return memo.cache_file("train-compile.json")


class CompileChoice:
    """Drives a TrainStep through eager steps, then compiled and eager ones in turn, and keeps the faster forward.

    ``start(x)`` is called before each step with its (first micro-)batch and ``done(seconds)`` after it; the
    step's ``forward`` is switched here. ``compile_model(model)`` makes the compiled forward (torch.compile).
    """

    def __init__(self, step: Any, *, compile_model: Callable[[nn.Module], Callable[..., torch.Tensor]]) -> None:
        self.step = step
        self.compile_model = compile_model
        self.compiled_forward: Callable[..., torch.Tensor] | None = None
        self.calls = 0
        self.eager: list[float] = []
        self.compiled: list[float] = []
        self.key: str | None = None
        self.model_name = getattr(step.model, "model_name", type(step.model).__name__)
        self.decided = False

    def _key(self, x: torch.Tensor) -> str:
        model, step = self.step.model, self.step
        params = sum(p.numel() for p in model.parameters())
        return memo.key(hw.describe(step.device), self.model_name, params, "x".join(map(str, x.shape)), step.amp_dtype,
                        f"channels_last={step.channels_last}")

    def start(self, x: torch.Tensor) -> None:
        if self.calls == 0:
            self.key = self._key(x)
            path = cache_path()
            earlier = memo.read(path).get(self.key)
            if earlier is not None:
                source = f"remembered from {earlier.get('when', 'an earlier run')} in {path}"
                self._decide(float(earlier["compiled_speedup"]), source)
                return
        timed = self.calls - 2 * WARMUP_STEPS
        if self.calls == WARMUP_STEPS:
            self.compiled_forward = self.compile_model(self.step.model)
            self.step.forward = self.compiled_forward
            self.step.compile_pending = True  # a compiler failure on this call falls back to eager
        elif timed >= 0:
            self.step.forward = self.step.model if timed % 2 == 0 else self.compiled_forward

    def done(self, seconds: float) -> None:
        timed = self.calls - 2 * WARMUP_STEPS
        self.calls += 1
        if self.calls == WARMUP_STEPS + 1 and self.step.forward is self.step.model:
            self.decided = True  # torch.compile failed and the step fell back to eager (it said so)
            return
        if timed < 0:
            return
        (self.eager if timed % 2 == 0 else self.compiled).append(seconds)
        if len(self.compiled) == TIMED_STEPS:
            # The median of each neighbouring pair's ratio: a drift or a busy spell on the machine cancels out.
            ratio = statistics.median(e / c for e, c in zip(self.eager, self.compiled))
            assert self.key is not None
            memo.remember(cache_path(), self.key, {"model": self.model_name, "compiled_speedup": round(ratio, 3)})
            self._decide(ratio, f"measured over {TIMED_STEPS} steps of each in turn")

    def _decide(self, ratio: float, source: str) -> None:
        self.decided = True
        if ratio >= MIN_GAIN:
            if self.compiled_forward is None:
                self.compiled_forward = self.compile_model(self.step.model)
                self.step.compile_pending = True
            self.step.forward = self.compiled_forward
            report.info(f"compile: on (torch.compile's training step runs at {ratio:.2f}x eager, {source})")
        else:
            self.step.forward = self.step.model
            self.step.compile_pending = False
            report.info(f"compile: off (torch.compile's training step would run at {ratio:.2f}x eager, {source})")
