"""After writing a file, run it and compare with PyTorch: the check ``resnet export`` ends with.

fp32 files must match PyTorch to ``FP32_TOLERANCE`` (max absolute difference of the logits) at every
batch size tried: with a dynamic batch, a size different from the one traced, and a single image.
An int8 file cannot match to 1e-4 — its logits move by the quantization step — so it is judged by
what a classifier is for: the share of inputs whose top-1 class agrees with fp32 must be at least
``INT8_MIN_TOP1_AGREEMENT``, measured on real images (noise inputs have no meaningful top-1).

The fp32 bound is absolute, so it tightens as logits grow: fp32 rounds at about 1e-7 of a value's
size, and two correct fp32 implementations summing in different orders differ by ~1e-6 of the logit
scale. Trained classifiers (logits ~10) pass with a wide margin; a randomly initialised ResNet-50 at
224x224 (logits ~100) measures 4e-5..9e-5, where PyTorch's own fp32 is ~5e-5 off its fp64 result.
The report prints the logit scale beside the difference for that reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

FP32_TOLERANCE = 1e-4
INT8_MIN_TOP1_AGREEMENT = 0.9


@dataclass(frozen=True)
class ParityResult:
    max_abs_diff: float
    max_abs_logit: float  # the scale the difference is measured against: fp32 rounding grows with it
    top1_agreement: float
    batch_sizes: tuple[int, ...]
    passed: bool
    criterion: str  # what "passed" means, in words, for the report


def reference_outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """PyTorch's logits for ``x`` in eval mode (train/eval mode restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(iter(model.parameters()), torch.zeros(())).device
            return model(x.to(device)).float().cpu()
    finally:
        model.train(was_training)


def check_parity(
    model: nn.Module,
    run: Callable[[torch.Tensor], torch.Tensor],
    inputs: Sequence[torch.Tensor],
    *,
    int8: bool = False,
) -> ParityResult:
    """Run ``run`` (the exported file) and ``model`` on every batch in ``inputs``; compare."""
    worst, scale, agree, total, sizes = 0.0, 0.0, 0, 0, []
    for x in inputs:
        expected = reference_outputs(model, x)
        got = run(x).float().cpu()
        if got.shape != expected.shape:
            return ParityResult(float("inf"), scale, 0.0, tuple(sizes) + (x.shape[0],), False,
                                f"output shape {tuple(got.shape)} differs from PyTorch's {tuple(expected.shape)}")
        worst = max(worst, (got - expected).abs().max().item())
        scale = max(scale, expected.abs().max().item())
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
        total += x.shape[0]
        sizes.append(x.shape[0])
    share = agree / max(total, 1)
    if int8:
        passed = share >= INT8_MIN_TOP1_AGREEMENT
        criterion = f"int8: top-1 agrees with fp32 on {share:.1%} of {total} images (needs >= {INT8_MIN_TOP1_AGREEMENT:.0%})"
    else:
        passed = worst <= FP32_TOLERANCE
        criterion = f"max abs diff {worst:.3g} with logits up to {scale:.3g} (needs <= {FP32_TOLERANCE:g})"
    return ParityResult(worst, scale, share, tuple(sizes), passed, criterion)
