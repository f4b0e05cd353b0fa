"""``optimize``: the fastest correct way to run a model for inference on this machine, in one call.

What it does: fold BatchNorm into the convolutions, go channels_last, build every candidate that can
run here (torch eager / torch.compile, ONNX Runtime, OpenVINO; fp32, bf16, int8), check each against
the fp32 eager model, time the survivors on the example batch shape (alternating rounds, best round) and
keep the fastest. Nothing is assumed about the hardware: which precisions are tried comes from
``resnet.device`` (bf16 only where native; int8 by default only with VNNI), and which engine wins is
measured, because it differs between CPUs (on a Zen 3 EPYC torch.compile won fp32, on a Zen 5
the ONNX engines did).

Parity is checked on the example batch and the calibration batches before anything is returned,
with the tolerances of ``resnet.export.parity`` for a rewritten graph: fp32 max abs difference
<= 1e-3 (relative to the logits' scale beyond +-1), bf16/int8 relative L2 error <= 5 % / 10 %, and
no top-1 change outside near-ties.

The parity batches are the example batch plus the first ``PARITY_SAMPLES`` calibration samples.

The search pays for itself: with ``job_images`` (how many images the caller will score) the
candidates are built cheapest first and only while their build time fits a budget of
``BUILD_BUDGET`` times what the plain eager model would spend on the whole job; ``torch.compile``
(about a minute to build) is tried only when that budget exceeds ``COMPILE_BUILD_S``. With
``cache``, the winner is remembered in a small JSON file keyed by the CPU line, library versions,
a hash of the weights, the input shape and the request, and a later call builds only that one
candidate (its parity is still checked) and says so in one line.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from resnet import device as hw
from resnet import remembered as memo
from resnet import report
from resnet.errors import ResNetError
from resnet.export.parity import Parity, compare
from resnet.speed.backends import Candidate, Job, Runner, engines
from resnet.speed.backends.calibration import check_calibration
from resnet.speed.timing import time_rounds

PRECISIONS = ("fp32", "bf16", "int8")
CLOSE_CALL = 0.85  # candidates within 15% of the fastest are timed again, longer
# Calibration samples the parity check runs every candidate on (besides the example batch).
PARITY_SAMPLES = 128
# Build time allowed for the search, as a fraction of the plain model's time for the whole job: the
# search may cost at most this much more than not searching, and a faster engine usually saves more.
BUILD_BUDGET = 0.5
COMPILE_BUILD_S = 60.0  # torch.compile with freezing takes about a minute on a resnet50 (2 cores)
# An engine's first build in a search: exporting to ONNX and opening a session took 3.3 s for resnet20 on
# Zen 3 (the export alone 3.05 s), so a job whose budget is smaller keeps the plain model rather than
# paying for an engine that cannot win it back (1,000 small images: --fast was 0.58x plain before this).
FIRST_BUILD_S = 2.0
# Cheapest first, so a budget that runs out cuts the expensive candidates (int8 needs calibration
# and a quantization pass; compile needs inductor).
_BUILD_ORDER = {("torch", "eager"): 0, ("onnxruntime", "fp32"): 1, ("openvino", "fp32"): 2, ("openvino", "bf16"): 2,
                ("onnxruntime", "int8"): 3, ("openvino", "int8"): 4, ("torch", "compile"): 9}


class OptimizedModel:
    """A fast inference callable: torch tensor in, torch tensor (fp32 logits) out.

    ``backend``, ``precision`` and ``variant`` say what runs; ``max_abs_diff`` and ``top1_agreement``
    how it compared with the fp32 eager model; ``images_per_s`` its measured speed on the example
    batch shape; ``timings`` the figures of every candidate tried (the basis of the choice);
    ``error`` / ``tolerance`` the parity measure and its bound (see the module docstring).
    """

    def __init__(self, runner: Runner, candidate: Candidate, parity: Parity, images_per_s: float,
                 build_s: float, timings: list[dict[str, Any]], job: Job) -> None:
        self._runner = runner
        self.backend = candidate.backend
        self.precision = candidate.precision
        self.variant = candidate.variant
        self.max_abs_diff = parity.max_abs_diff
        self.error = parity.error
        self.tolerance = parity.tolerance
        self.top1_agreement = parity.top1_agreement
        self.images_per_s = images_per_s
        self.build_s = build_s
        self.timings = timings
        self.example_shape = tuple(job.example_input.shape)
        self.device = job.example_input.device
        # The ONNX files the engines read live here; remove them with the last reference.
        weakref.finalize(self, shutil.rmtree, job.workdir, True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != len(self.example_shape) or tuple(x.shape[1:]) != self.example_shape[1:]:
            raise ResNetError(
                f"input of shape {tuple(x.shape)} does not match the optimized model's (N, {', '.join(map(str, self.example_shape[1:]))})"
            )
        return self._runner(x)

    def __repr__(self) -> str:
        return (f"OptimizedModel(backend={self.backend!r}, precision={self.precision!r}, variant={self.variant!r}, "
                f"images_per_s={self.images_per_s:.1f}, max_abs_diff={self.max_abs_diff:.3g})")


def optimize(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    precision: str = "auto",
    backend: str = "auto",
    calibration: Iterable[Any] | None = None,
    compile: bool = True,
    job_images: int | None = None,
    cache: bool | str | os.PathLike[str] = False,
) -> OptimizedModel:
    """The fastest inference callable for ``model`` on this machine that passes the parity checks.

    ``precision``: "fp32", "bf16", "int8", or "auto" (every precision the hardware runs natively;
    int8 only when ``calibration`` is given). ``backend``: "torch", "onnxruntime", "openvino", or
    "auto" (time all installed ones on ``example_input``'s shape, keep the fastest). ``calibration``:
    an iterable of input batches (tensors shaped like ``example_input``, or ``(x, y)`` pairs; the
    first ``MAX_CALIBRATION_SAMPLES`` samples are used), required for int8; its first
    ``PARITY_SAMPLES`` samples also serve the parity check. ``compile``: also try torch.compile (slow to build: about a minute for a resnet50).
    ``model`` is not modified. Raises ``ResNetError`` for unusable arguments or when no candidate passes.
    """
    if precision not in (*PRECISIONS, "auto"):
        raise ResNetError(f"precision {precision!r} is not one of fp32, bf16, int8, auto")
    if backend not in (*engines(), "auto"):
        raise ResNetError(f"backend {backend!r} is not one of {', '.join(engines())}, auto")
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4 or not example_input.is_floating_point():
        shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else type(example_input).__name__
        raise ResNetError(f"example_input must be a float batch of images (N, C, H, W), got {shape}")
    dev = example_input.device
    example_input = example_input.detach().float()

    batches: list[torch.Tensor] = []
    if calibration is not None:
        batches = check_calibration(calibration, tuple(example_input.shape[1:]))
    precisions = _precisions(precision, dev, have_calibration=bool(batches))
    skipped: list[str] = []
    if precision == "auto" and _native_int8(dev) and not batches:
        skipped.append("int8: no calibration batches given")

    reference_model = copy.deepcopy(model).eval().float().to(dev)
    parity_inputs = [example_input] + [b.to(dev) for b in _first_samples(batches, PARITY_SAMPLES)]
    try:
        with torch.inference_mode():
            references, per_image = [], []
            for x in parity_inputs:
                start = time.perf_counter()
                references.append(reference_model(x).float().cpu())
                per_image.append((time.perf_counter() - start) / x.shape[0])
            # The fastest call: the first one also pays for one-time set-up (thread pools, kernels).
            eager_s_per_image = min(per_image)
    except RuntimeError as exc:  # e.g. 1-channel images into a 3-channel stem
        raise ResNetError(f"the model cannot run an input of shape {tuple(example_input.shape)}: "
                          f"{str(exc).splitlines()[0]}") from None
    folded = fold_batchnorm(reference_model)
    del reference_model

    modules = _backends(backend)
    budget_s = BUILD_BUDGET * eager_s_per_image * job_images if job_images is not None else None
    cache_file = (choice_cache_path() if cache is True else Path(cache)) if cache else None
    key = choice_key(model, example_input, precisions=precisions, backend=backend, compile=compile) if cache_file else None
    remembered = memo.read(cache_file).get(key) if cache_file and key else None
    base = Job(folded, example_input, precisions[0], batches)
    try:
        fast = _choose(base, precisions, modules, dev, parity_inputs, references, skipped, compile=compile,
                       precision=precision, backend=backend, budget_s=budget_s, remembered=remembered)
        if cache_file and key and remembered is None:
            _remember(cache_file, key, fast)
        return fast
    except BaseException:  # nothing returned holds the exported files: remove them now, not at exit
        shutil.rmtree(base.workdir, ignore_errors=True)
        raise


def _choose(base: Job, precisions: list[str], modules: dict[str, ModuleType], dev: torch.device,
            parity_inputs: list[torch.Tensor], references: list[torch.Tensor], skipped: list[str], *,
            compile: bool, precision: str, backend: str, budget_s: float | None = None,
            remembered: dict[str, Any] | None = None) -> OptimizedModel:
    """Build the candidates (cheapest first, within the budget), keep those that pass parity, time them,
    wrap the fastest. With a ``remembered`` choice only that candidate is built (if it still passes)."""
    example_input = base.example_input
    candidates: list[tuple[Candidate, Job]] = []
    for p in precisions:
        job = base.for_precision(p)
        for name, module in modules.items():
            why = module.supports(p, dev)
            if why:
                skipped.append(f"{name} {p}: {why}")
                continue
            found = module.candidates(job, compile=compile) if name == "torch" else module.candidates(job)
            candidates += [(c, job) for c in found]
    if not candidates:
        raise ResNetError(f"nothing can run precision={precision} backend={backend} here: {'; '.join(skipped)}")
    candidates.sort(key=lambda cj: _BUILD_ORDER.get((cj[0].backend, cj[0].variant if cj[0].backend == "torch" else cj[0].precision), 5))
    if remembered is not None:
        match = [cj for cj in candidates if _choice_of(cj[0]) == _choice_of(remembered)]
        if match:
            candidates = match
        else:
            remembered = None

    built: list[tuple[Candidate, Runner, Parity, float]] = []
    quick_speeds: list[float] = []  # beside `built`: images/s of one call, for a budgeted search
    spent, over_budget = 0.0, []
    build_s_seen: dict[str, float] = {}  # each engine's latest build time: the estimate for its next candidate
    for cand, job in candidates:
        # A candidate is started only if its expected build still fits: torch.compile's known cost, what the
        # same engine's last build took (its other precisions re-read the same exported file), or for an
        # engine not built yet an export's cost (torch eager needs none).
        first = 0.0 if cand.backend == "torch" else FIRST_BUILD_S
        expected = COMPILE_BUILD_S if cand.variant == "compile" else build_s_seen.get(cand.backend, first)
        if budget_s is not None and built and (spent >= budget_s or spent + expected > budget_s):
            over_budget.append(_label(cand))
            continue
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                runner = cand.build()
                outputs = [runner(x).float().cpu() for x in parity_inputs]  # the first call compiles
                # A budgeted search times each engine with one more call here, inside its build cost.
                quick_speed = _one_call_speed(runner, example_input) if budget_s is not None else 0.0
        except ResNetError:
            raise
        except Exception as exc:  # an engine that cannot take this model is skipped, not fatal
            first_line = str(exc).splitlines()[0][:160] if str(exc) else ""
            skipped.append(f"{_label(cand)}: failed ({type(exc).__name__}: {first_line})")
            report.debug(f"optimize: {_label(cand)} failed: {exc!r}")
            continue
        build_s = time.perf_counter() - start
        spent += build_s
        build_s_seen[cand.backend] = build_s
        parity = compare(outputs, references, cand.precision)
        if not parity.ok:
            skipped.append(f"{_label(cand)}: failed parity (error {parity.error:.3g}, tolerance {parity.tolerance:.3g}, "
                           f"max abs diff {parity.max_abs_diff:.3g}, {parity.top1_flips} top-1 changes)")
            continue
        built.append((cand, runner, parity, build_s))
        quick_speeds.append(quick_speed)
    if not built and remembered is not None:  # the remembered engine no longer passes: search afresh
        return _choose(base, precisions, modules, dev, parity_inputs, references, skipped, compile=compile,
                       precision=precision, backend=backend, budget_s=budget_s)
    if not built:
        raise ResNetError(f"no candidate passed the parity check: {'; '.join(skipped)}")
    if over_budget:
        skipped.append(f"{', '.join(over_budget)}: not built, they cannot pay for themselves in this job "
                       f"(build budget {budget_s:.1f} s spent)")
    if remembered is not None:
        cand, runner, parity, build_s = built[0]
        speed = float(remembered.get("images_per_s") or 0.0)
        report.info(f"optimize: reused this machine's choice for this model and shape: {_label(cand)} ({cand.variant}), "
                    f"{speed:.1f} images/s when measured; built in {build_s:.1f} s, parity checked")
        timing = {"backend": cand.backend, "precision": cand.precision, "variant": cand.variant, "images_per_s": speed,
                  "build_s": build_s, "max_abs_diff": parity.max_abs_diff, "top1_agreement": parity.top1_agreement}
        return OptimizedModel(runner, cand, parity, speed, build_s, [timing], base)

    runners = [r for _, r, _, _ in built]
    if budget_s is None:
        speeds = time_runners(runners, example_input)
    else:  # the timing is part of what the job pays for: one call each, counted in the build budget
        speeds = quick_speeds
    # A close call gets a longer look: 0.1 s rounds cannot separate engines a few percent apart
    # (measured: a 9% slower int8 engine won a short race at batch 8).
    leader = max(speeds)
    close = [i for i, s in enumerate(speeds) if s >= CLOSE_CALL * leader]
    if len(close) > 1 and budget_s is None:
        for i, s in zip(close, time_runners([runners[i] for i in close], example_input, rounds=5, min_round_s=0.4)):
            speeds[i] = s
    timings = [
        {"backend": c.backend, "precision": c.precision, "variant": c.variant, "images_per_s": s,
         "build_s": b, "max_abs_diff": p.max_abs_diff, "top1_agreement": p.top1_agreement}
        for (c, _, p, b), s in zip(built, speeds)
    ]
    best = max(range(len(built)), key=lambda i: speeds[i])
    cand, runner, parity, build_s = built[best]
    others = ", ".join(f"{_label(c)} {s:.1f}" for (c, *_), s in sorted(zip(built, speeds), key=lambda t: -t[1]))
    report.info(
        f"optimize: {_label(cand)} ({cand.variant}), {speeds[best]:.1f} images/s at batch {example_input.shape[0]}: "
        f"fastest of [{others}] images/s"
        + (f"; not used: {'; '.join(skipped)}" if skipped else "")
        + f"; native bf16 {'yes' if hw.native_bf16(dev) else 'no'}, int8 {'yes' if _native_int8(dev) else 'no'}"
    )
    return OptimizedModel(runner, cand, parity, speeds[best], build_s, timings, base)


def choice_cache_path() -> Path:
    """Where remembered choices live: ``$RESNET_CACHE/optimize-choices.json``, else ``~/.cache/resnet/``."""
    return memo.cache_file("optimize-choices.json")


def remembered_choice(model: nn.Module, example_input: torch.Tensor, *, precision: str = "auto", backend: str = "auto",
                      compile: bool = True, with_calibration: bool = True,
                      cache: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The choice ``optimize(..., cache=...)`` remembered for this request, or None (e.g. to skip loading
    calibration data when the remembered engine is not int8)."""
    precisions = _precisions(precision, example_input.device, have_calibration=with_calibration)
    key = choice_key(model, example_input, precisions=precisions, backend=backend, compile=compile)
    return memo.read(Path(cache) if cache else choice_cache_path()).get(key)


def choice_key(model: nn.Module, example_input: torch.Tensor, *, precisions: list[str], backend: str, compile: bool) -> str:
    """What a remembered choice depends on: the machine (CPU line, engine versions), the weights, the
    input shape and what was searched (precisions, backends)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return memo.key(hw.describe(example_input.device), _engine_versions(), digest.hexdigest(),
                    "x".join(map(str, example_input.shape)), ",".join(precisions), backend, f"compile={compile}")


def _engine_versions() -> str:
    found = {package: hw.installed_version(package) for package in ("torch", "onnxruntime", "openvino", "nncf")}
    return ",".join(f"{package}={version}" for package, version in found.items() if version is not None)


def _choice_of(c: Candidate | dict[str, Any]) -> tuple[str, str, str]:
    if isinstance(c, dict):
        return (str(c.get("backend")), str(c.get("precision")), str(c.get("variant")))
    return (c.backend, c.precision, c.variant)


def _remember(path: Path, key: str, fast: OptimizedModel) -> None:
    memo.remember(path, key, {"backend": fast.backend, "precision": fast.precision, "variant": fast.variant,
                              "images_per_s": fast.images_per_s})


def _label(c: Candidate) -> str:
    return f"{c.backend} {c.precision}" + (f" {c.variant}" if c.backend == "torch" else "")


def _native_int8(dev: torch.device) -> bool:
    return dev.type == "cpu" and hw.cpu_info().native_int8


def _precisions(precision: str, dev: torch.device, *, have_calibration: bool) -> list[str]:
    if precision == "auto":
        found = ["fp32"]
        if hw.native_bf16(dev):
            found.append("bf16")
        if _native_int8(dev) and have_calibration:
            found.append("int8")
        return found
    if precision == "int8" and not have_calibration:
        raise ResNetError("precision='int8' needs calibration: an iterable of input batches like example_input "
                          "(the command line takes them from the training split)")
    if precision == "bf16" and not hw.native_bf16(dev):
        report.warn(f"bf16 is not native on this {'GPU' if dev.type == 'cuda' else 'CPU'} (emulated, usually slower than fp32)")
    if precision == "int8" and not _native_int8(dev):
        report.info("optimize: this CPU has no VNNI; int8 runs on AVX2 integer units (smaller gain)")
    return [precision]


def _backends(backend: str) -> dict[str, ModuleType]:
    modules = engines()
    if backend != "auto":
        why = modules[backend].missing()
        if why:
            raise ResNetError(f"backend={backend!r} cannot run here: {why}")
        return {backend: modules[backend]}
    available = {}
    for name, module in modules.items():
        why = module.missing()
        if why:
            report.info(f"optimize: {name} not available ({why}); choosing among the others")
        else:
            available[name] = module
    if set(available) == {"torch"}:
        report.info("optimize: no other engine available here, so backend 'auto' uses torch")
    return available


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm that directly follows a convolution folded into it.

    Uses torch.fx (``torch.fx.experimental.optimization.fuse``), which sees the real data flow: a
    BatchNorm that follows anything else (as in pre-activation blocks) or a convolution whose output
    is also used elsewhere stays as it is. A model fx cannot trace is returned unfolded (the ONNX
    engines and inductor fold on their own).
    """
    from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(model).eval()
    try:
        return fuse(model, inplace=True)
    except Exception as exc:  # fx cannot trace data-dependent control flow; folding is an optimization only
        report.debug(f"optimize: BatchNorm folding skipped ({type(exc).__name__}: {exc})")
        return model


def _first_samples(batches: list[torch.Tensor], limit: int) -> list[torch.Tensor]:
    found, total = [], 0
    for b in batches:
        if total >= limit:
            break
        found.append(b[: limit - total])
        total += found[-1].shape[0]
    return found


def _one_call_speed(runner: Runner, x: torch.Tensor) -> float:
    start = time.perf_counter()
    runner(x)
    return x.shape[0] / (time.perf_counter() - start)


def time_runners(runners: list[Runner], x: torch.Tensor, *, rounds: int = 5, min_round_s: float = 0.1) -> list[float]:
    """Images/s of each runner on ``x``: alternating rounds, the best round per runner (see ``speed.timing``)."""
    with torch.inference_mode():
        seconds = time_rounds([lambda r=r: r(x) for r in runners], rounds=rounds, min_round_s=min_round_s)
    return [x.shape[0] / min(per_call) for per_call in seconds]
