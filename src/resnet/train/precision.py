"""Which precision training runs in on a CPU: bf16 autocast or fp32, measured here, not guessed from flags.

A flag says the bf16 instructions exist, not that they pay. On Zen 4 and Zen 5, and on Intel with AMX,
resnet20 trains 1.5-2.6x faster in bf16; on an Intel guest whose hypervisor hides AMX (avx512_bf16 alone)
the same step is 0.79x fp32 (benchmarks/train.md). So where the CPU has native bf16, a few training
steps of a copy of the model are timed in both precisions (about a second for a CIFAR-size net) and the
faster one is kept, remembered per machine, model and input size in ``$RESNET_CACHE/train-precision.json``
(else ``~/.cache/resnet/``). Without native bf16 it is fp32 with no timing: emulated bf16 never wins.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn

from resnet import device as hw
from resnet import remembered as memo
from resnet import report
from resnet.speed.timing import time_rounds

TIMING_PIXELS = 32 * 32 * 32  # images per timed step: about 32 CIFAR-size ones (ratios hold from batch 32 up)
BF16_MIN_GAIN = 1.05  # bf16 rounds activations; keep fp32 unless bf16 is clearly faster


def cache_path() -> Path:
    return memo.cache_file("train-precision.json")


def choose_cpu_amp(model: nn.Module, input_shape: tuple[int, ...], *, channels_last: bool) -> tuple[torch.dtype | None, str]:
    """bf16 or None (fp32) for training ``model`` on this CPU on images of ``input_shape`` (C, H, W), and
    the one line that says why."""
    if not hw.cpu_info().native_bf16:
        return None, "fp32 (this CPU has no native bf16)"
    params = sum(p.numel() for p in model.parameters())
    name = getattr(model, "model_name", type(model).__name__)
    key = memo.key(hw.describe("cpu"), name, params, "x".join(map(str, input_shape)), f"channels_last={channels_last}")
    path = cache_path()
    earlier = memo.read(path).get(key)
    if earlier is not None:
        return _decide(float(earlier["bf16_speedup"]), f"remembered from {earlier.get('when', 'an earlier run')} in {path}")
    try:
        ratio = _bf16_speedup(model, input_shape, channels_last=channels_last)
    except Exception as exc:  # a model the probe cannot step (e.g. nothing trainable): keep the flag's answer
        report.debug(f"training precision not measured ({type(exc).__name__}: {exc})")
        return torch.bfloat16, "bf16 autocast (this CPU has native bf16; a timing of the model failed)"
    memo.remember(path, key, {"model": name, "input": list(input_shape), "bf16_speedup": round(ratio, 3)})
    return _decide(ratio, "measured on this CPU")


def _decide(ratio: float, source: str) -> tuple[torch.dtype | None, str]:
    if ratio >= BF16_MIN_GAIN:
        return torch.bfloat16, f"bf16 autocast ({ratio:.2f}x fp32's training speed, {source})"
    return None, f"fp32 (bf16 autocast would train at {ratio:.2f}x fp32's speed, {source})"


def _bf16_speedup(model: nn.Module, input_shape: tuple[int, ...], *, channels_last: bool) -> float:
    """fp32 step time / bf16 step time, on a copy of ``model`` (the real one, its BatchNorm statistics
    and the global random state are left untouched)."""
    probe = copy.deepcopy(model).to("cpu").train()
    if channels_last:
        probe = probe.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(probe.parameters(), lr=1e-6)
    batch = max(2, math.ceil(TIMING_PIXELS / max(1, math.prod(input_shape[1:]))))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *input_shape, generator=generator)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = probe(x[:2])
    y = torch.zeros(batch, dtype=torch.long) if out.ndim == 2 else None

    def step(dtype: torch.dtype | None) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            out = probe(x)
            loss = nn.functional.cross_entropy(out.float(), y) if y is not None else out.float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    fp32, bf16 = time_rounds([lambda: step(None), lambda: step(torch.bfloat16)], rounds=3, min_round_s=0.0, warmup=1)
    return min(fp32) / min(bf16)
