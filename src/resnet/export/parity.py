"""Parity: how far another engine's logits are from PyTorch's fp32 eager model, and when that is close enough.

The one measure behind ``resnet export`` (run the written file, compare) and ``resnet.optimize``
(check every candidate engine before timing it). Tolerances, per precision:

* ``fp32``, the same graph (an exported file run by its runtime): max abs difference of the logits
  <= ``FP32_TOLERANCE`` (1e-4). Two correct fp32 implementations summing in different orders differ by
  ~1e-6 of the logit scale, so trained classifiers (logits ~10) pass with a wide margin; a randomly
  initialised ResNet-50 at 224x224 (logits ~100) measures 4e-5..9e-5.
* ``fp32``, a rewritten graph (BatchNorm folded into the convolutions, another engine's kernels):
  max abs difference <= ``FP32_MAX_ABS_DIFF`` (1e-3) times the largest |logit| when that exceeds 1,
  since fp32 rounding is relative and folding reorders every sum.
* ``bf16`` and ``int8``: relative L2 error of the logits ``||out - ref|| / ||ref||`` <=
  ``RELATIVE_TOLERANCE`` (5 % and 10 %, i.e. a signal-to-noise ratio of at least 26 / 20 dB), robust
  to the few samples with outsized logits that a max-based bound lets dominate (a trained resnet18
  had |logits| up to 330, int8 errors of 30-80 on those, and unchanged test accuracy).
* Every criterion except the same-graph fp32 one also needs the same top-1 class on every sample
  that is not a near-tie: a sample whose reference top-1/top-2 margin is below the tolerance (times
  its largest |logit| for bf16/int8) may flip. int8 is judged on real images, where top-1 means something.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

FP32_TOLERANCE = 1e-4
FP32_MAX_ABS_DIFF = 1e-3
RELATIVE_TOLERANCE = {"bf16": 0.05, "int8": 0.10}
PRECISIONS = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class Parity:
    """How outputs compare with the fp32 eager reference; ``ok`` says whether they pass."""

    max_abs_diff: float
    max_abs_logit: float  # the scale of the reference logits
    error: float  # what the tolerance bounds: max abs diff (fp32) or relative L2 error (bf16, int8)
    tolerance: float
    top1_agreement: float  # fraction of samples with the same top-1 class
    top1_flips: int  # samples whose top-1 changed although their reference margin was not a near-tie
    samples: int
    precision: str = "fp32"
    batch_sizes: tuple[int, ...] = ()
    mismatch: str = ""  # why the outputs could not be compared at all (e.g. another shape)

    @property
    def ok(self) -> bool:
        return not self.mismatch and self.error <= self.tolerance and self.top1_flips == 0

    passed = ok

    @property
    def criterion(self) -> str:
        """What was measured and what it needed, in words, for a report."""
        if self.mismatch:
            return self.mismatch
        if self.precision == "fp32":
            return f"max abs diff {self.max_abs_diff:.3g} with logits up to {self.max_abs_logit:.3g} (needs <= {self.tolerance:.3g})"
        return (f"{self.precision}: relative L2 error {self.error:.3g} (needs <= {self.tolerance:g}), top-1 agrees with fp32 "
                f"on {self.top1_agreement:.1%} of {self.samples} images, {self.top1_flips} change(s) outside near-ties")


def compare(outputs: Sequence[torch.Tensor], references: Sequence[torch.Tensor], precision: str = "fp32", *,
            same_graph: bool = False) -> Parity:
    """Parity of ``outputs`` against the fp32 eager ``references`` (batches in the same order)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    sizes = tuple(int(r.shape[0]) for r in references)
    ref = torch.cat([r.reshape(r.shape[0], -1) for r in references]).float()
    shapes = [(tuple(o.shape), tuple(r.shape)) for o, r in zip(outputs, references)]
    bad = next(((o, r) for o, r in shapes if o != r), None)
    if bad is not None or len(outputs) != len(references):
        why = f"output shape {bad[0]} differs from PyTorch's {bad[1]}" if bad else "a different number of outputs"
        return Parity(float("inf"), 0.0, float("inf"), 0.0, 0.0, ref.shape[0], ref.shape[0], precision, sizes, why)
    out = torch.cat([o.reshape(o.shape[0], -1) for o in outputs]).float()
    if not torch.isfinite(out).all():
        return Parity(float("inf"), 0.0, float("inf"), 0.0, 0.0, ref.shape[0], ref.shape[0], precision, sizes,
                      "the outputs hold NaN or infinite values")
    diff = float((out - ref).abs().max()) if out.numel() else 0.0
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    if precision == "fp32":
        error = diff
        tol = FP32_TOLERANCE if same_graph else FP32_MAX_ABS_DIFF * max(1.0, scale)
        tie = torch.full((ref.shape[0],), tol)
    else:
        error = float((out - ref).norm() / ref.norm().clamp_min(1e-12))
        tol = RELATIVE_TOLERANCE[precision]
        tie = tol * ref.abs().amax(1)
    same = out.argmax(1) == ref.argmax(1)
    flips = 0
    if ref.shape[1] > 1 and not (precision == "fp32" and same_graph):
        top2 = ref.topk(2, dim=1).values
        flips = int((~same & (top2[:, 0] - top2[:, 1] > tie)).sum())
    return Parity(diff, scale, error, tol, float(same.float().mean()) if len(same) else 1.0, flips, ref.shape[0],
                  precision, sizes)


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


def check_parity(model: nn.Module, run: Callable[[torch.Tensor], torch.Tensor], inputs: Sequence[torch.Tensor], *,
                 int8: bool = False) -> Parity:
    """Run ``run`` (an exported file) and ``model`` on every batch in ``inputs`` and compare: the same
    graph in fp32, or the int8 criterion for a quantized file."""
    references = [reference_outputs(model, x) for x in inputs]
    outputs = [run(x).float().cpu() for x in inputs]
    return compare(outputs, references, "int8" if int8 else "fp32", same_graph=not int8)
