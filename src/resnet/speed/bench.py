"""``resnet bench``: our fast paths against the engines a user could use directly, in one process.

Fairness rules: every contender runs in this process on the same input, in alternating rounds (a
load spike from elsewhere hits all alike), with warm-up and compile/export/quantize time excluded
from the speed and reported apart as ``setup_s``; the figure is the median of the rounds' images/s.
Every engine gets torch's thread count. The baseline (ratio 1.0) is torchvision's model run eagerly
in fp32, or, for a model torchvision lacks (the CIFAR nets), our own model run eagerly in fp32.

Peers (``against``), each at the requested precisions it supports:
  torchvision: eager fp32 (always measured: it is the baseline);
  compile:     torchvision in channels_last + ``torch.compile`` (fp32; bf16 weights where bf16 is asked);
  timm:        timm's model of the same name, eager fp32;
  onnxruntime: torchvision exported to ONNX; fp32, and int8 static QDQ per-channel;
  openvino:    torchvision converted by OpenVINO; fp32, bf16 (precision hint), int8 (NNCF).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet import device as hw
from resnet import report
from resnet.errors import ResNetError
from resnet.speed.backends import Runner, engine_threads
from resnet.speed.timing import time_rounds

PEERS = ("torchvision", "compile", "timm", "onnxruntime", "openvino")  # the last ones: engines with a ``peer`` runner
MODES = ("infer", "train")


@dataclass
class Entry:
    engine: str
    precision: str
    run: Callable[[], Any]  # one call = one batch of work
    setup_s: float
    note: str = ""
    speeds: list[float] = field(default_factory=list)


def default_precisions(dev: torch.device) -> list[str]:
    """fp32, bf16 where native, and int8 on a CPU (with or without VNNI: AVX2 has integer kernels too)."""
    found = ["fp32"]
    if hw.native_bf16(dev):
        found.append("bf16")
    if dev.type == "cpu":
        found.append("int8")
    return found


def header(dev: torch.device, clock: str = "wall") -> dict[str, Any]:
    versions = {"torch": torch.__version__}
    for name in ("torchvision", "timm", "onnxruntime", "openvino", "nncf"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return {"device": hw.describe(dev), "threads": engine_threads(), "clock": clock,
            "load_average": list(os.getloadavg()), "versions": versions}


def measure(entries: list[Entry], *, rounds: int, batch: int, min_round_s: float, clock: str = "wall") -> None:
    """Fill ``entry.speeds`` (images/s per round) running the entries in alternating rounds (``speed.timing``)."""
    seconds = time_rounds([e.run for e in entries], rounds=rounds, min_round_s=min_round_s, warmup=2, clock=clock)
    for entry, per_call in zip(entries, seconds):
        entry.speeds += [batch / s for s in per_call]


def _rows(entries: list[Entry], batch: int, baseline: Entry) -> list[dict[str, Any]]:
    base = statistics.median(baseline.speeds)
    return [
        {"batch": batch, "precision": e.precision, "engine": e.engine, "images_per_s": statistics.median(e.speeds),
         "ratio": statistics.median(e.speeds) / base, "setup_s": e.setup_s, "note": e.note,
         "rounds": [round(s, 2) for s in e.speeds]}
        for e in entries
    ]


def _timed(build: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = build()
    return value, time.perf_counter() - start


def _peer_model(source: str, name: str, num_classes: int) -> nn.Module | None:
    if source == "torchvision":
        import torchvision

        if name not in torchvision.models.list_models(module=torchvision.models):
            return None
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes).eval()
    try:
        import timm
    except ImportError:
        report.warn("timm is not installed; skipping the timm peer")
        return None
    if name not in timm.list_models():
        return None
    return timm.create_model(name, pretrained=False, num_classes=num_classes).eval()


def _eager(model: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode():
            return model(x)

    return run


def _compiled(model: nn.Module, x: torch.Tensor, precision: str) -> Callable[[], Any]:
    """The documented torch.compile recipe a user would write: channels_last, (bf16 weights), compile."""
    import copy

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    module = torch.compile(copy.deepcopy(model).to(dtype=dtype, memory_format=torch.channels_last))
    xin = x.to(dtype=dtype, memory_format=torch.channels_last)

    def run() -> Any:
        with torch.inference_mode():
            return module(xin)

    run()  # compile now, so it counts as setup
    return run


def _bind(runner: Runner, x: torch.Tensor) -> Callable[[], Any]:
    return lambda: runner(x)


def _peer_engines(against: Sequence[str]) -> dict[str, Any]:
    """The engine modules that offer a ``peer`` runner and were asked for."""
    from resnet.speed.backends import engines

    return {name: m for name, m in engines().items() if hasattr(m, "peer") and name in against}


def bench_infer(
    model_name: str = "resnet50",
    batches: Sequence[int] = (1, 8),
    input_size: int = 224,
    *,
    against: Sequence[str] = PEERS,
    precisions: Sequence[str] | None = None,
    rounds: int = 5,
    compile: bool = True,
    min_round_s: float = 0.5,
    device: str | torch.device = "cpu",
    seed: int = 0,
    clock: str = "wall",
) -> dict[str, Any]:
    """Inference images/s of ``resnet.optimize`` and of each peer, per batch size and precision."""
    from resnet.models import create_model
    from resnet.speed.optimize import optimize

    dev = torch.device(device)
    precisions = list(precisions or default_precisions(dev))
    torch.manual_seed(seed)
    ours_model = create_model(model_name).eval().to(dev)
    num_classes = int(ours_model.num_classes)
    in_chans = int(ours_model.in_chans)  # an attribute of every model (model_options never holds it)
    tv_model = _peer_model("torchvision", model_name, num_classes)
    tv_model = tv_model.to(dev) if tv_model is not None else None
    timm_model = _peer_model("timm", model_name, num_classes) if "timm" in against else None
    peer_base = tv_model if tv_model is not None else ours_model
    generator = torch.Generator().manual_seed(seed)
    # Synthetic calibration: the weights are random too; what is measured here is speed, not accuracy.
    calibration = [torch.randn(8, in_chans, input_size, input_size, generator=generator) for _ in range(4)]
    peer_engines = _peer_engines(against)
    engine_cache: dict[str, dict[Any, Any]] = {name: {} for name in peer_engines}
    result: dict[str, Any] = {"mode": "infer", "model": model_name, "input": input_size, "header": header(dev, clock), "rows": []}

    for batch in batches:
        x = torch.randn(batch, in_chans, input_size, input_size, generator=generator).to(dev)
        entries: list[Entry] = []
        baseline = Entry("torchvision eager" if tv_model is not None else "eager (ours, unoptimized)", "fp32",
                         _eager(peer_base, x), 0.0)
        entries.append(baseline)
        for p in precisions:
            try:
                om, setup = _timed(lambda: optimize(ours_model, x, precision=p, calibration=calibration, compile=compile))
            except ResNetError as exc:
                report.warn(f"ours {p} at batch {batch}: {exc}")
                continue
            entries.append(Entry("ours (resnet.optimize)", p, _bind(om, x), setup, f"{om.backend} {om.variant}"))
        if timm_model is not None:
            entries.append(Entry("timm eager", "fp32", _eager(timm_model, x), 0.0))
        for p in precisions:
            if "compile" in against and p in ("fp32", "bf16") and compile:
                run, setup = _timed(lambda: _compiled(peer_base, x, p))
                entries.append(Entry("torch.compile", p, run, setup, "channels_last"))
            for engine, module in peer_engines.items():
                cache = engine_cache[engine]
                if module.missing() or module.supports(p, x.device):
                    continue
                if p not in cache:  # dynamic batch: built once, used at every batch size
                    try:
                        cache[p] = _timed(lambda: module.peer(peer_base, x, p, calibration, cache))
                    except Exception as exc:  # a peer failing is a finding, not a crash
                        report.warn(f"{engine} {p} failed: {type(exc).__name__}: {exc}")
                        cache[p] = (None, 0.0)
                runner, setup = cache[p]
                if runner is not None:
                    entries.append(Entry(engine, p, _bind(runner, x), setup))
        report.info(f"bench: batch {batch}: {len(entries)} contenders, {rounds} alternating rounds")
        measure(entries, rounds=rounds, batch=batch, min_round_s=min_round_s, clock=clock)
        result["rows"] += _rows(entries, batch, baseline)
    result["header"]["load_average_after"] = list(os.getloadavg())
    return result


def bench_train(
    model_name: str = "resnet20",
    batches: Sequence[int] = (128,),
    input_size: int = 32,
    *,
    against: Sequence[str] = ("torchvision",),
    rounds: int = 5,
    compile: bool = True,
    min_round_s: float = 1.0,
    device: str | torch.device | None = None,
    seed: int = 0,
    clock: str = "wall",
) -> dict[str, Any]:
    """Training images/s (one full SGD step per call, synthetic data on the device) of our train step
    (``resnet.train.step.make_train_step``: channels_last, bf16 autocast where native, foreach/fused
    SGD) against a plain eager fp32 loop."""
    from resnet.models import create_model
    from resnet.train.step import amp_dtype_for, make_optimizer, make_train_step

    dev = hw.resolve_device(device)
    result: dict[str, Any] = {"mode": "train", "model": model_name, "input": input_size, "header": header(dev, clock), "rows": []}

    def fresh() -> nn.Module:
        torch.manual_seed(seed)
        return create_model(model_name).train().to(dev)

    probe = fresh()
    num_classes, in_chans = int(probe.num_classes), int(probe.in_chans)
    tv = _peer_model("torchvision", model_name, num_classes) if "torchvision" in against else None
    generator = torch.Generator().manual_seed(seed)
    for batch in batches:
        x = torch.randn(batch, in_chans, input_size, input_size, generator=generator).to(dev)
        y = torch.randint(0, num_classes, (batch,), generator=generator).to(dev)
        entries: list[Entry] = []

        def plain(model: nn.Module) -> Callable[[], Any]:
            model.train().to(dev)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

            def step() -> Any:
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                return loss

            return step

        base_model = tv if tv is not None else fresh()
        baseline = Entry("torchvision eager loop" if tv is not None else "plain eager loop", "fp32", plain(base_model), 0.0)
        entries.append(baseline)
        amp = amp_dtype_for(dev, None)
        if dev.type == "cpu":  # the precision training would choose here (measured where bf16 is native)
            from resnet.train.precision import choose_cpu_amp

            amp = choose_cpu_amp(fresh(), tuple(x.shape[1:]), channels_last=True)[0]
        variants = [False, True] if compile else [False]
        for use_compile in variants:
            model = fresh()
            opt = make_optimizer(model, "sgd", lr=0.01, momentum=0.9, weight_decay=5e-4)
            step = make_train_step(model, opt, device=dev, amp_dtype=amp, channels_last=True, compile=use_compile)
            (_, setup) = _timed(lambda: step(x, y))  # a compiled step compiles here
            prec = "bf16 autocast" if amp == torch.bfloat16 else ("fp16 autocast" if amp == torch.float16 else "fp32")
            name = "ours (make_train_step)" + (" + torch.compile" if use_compile else "")
            entries.append(Entry(name, prec, (lambda s=step: s(x, y)), setup, "channels_last, foreach/fused SGD"))
        if tv is not None:  # our own model run plainly too: separates the model from the step
            entries.append(Entry("plain eager loop (ours)", "fp32", plain(fresh()), 0.0))
        report.info(f"bench: train batch {batch}: {len(entries)} contenders, {rounds} alternating rounds")
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        for e in entries:
            run = e.run
            e.run = (lambda r=run: (r(), sync()))
        measure(entries, rounds=rounds, batch=batch, min_round_s=min_round_s, clock=clock)
        result["rows"] += _rows(entries, batch, baseline)
    result["header"]["load_average_after"] = list(os.getloadavg())
    return result


def render(result: dict[str, Any]) -> None:
    """The result as a table on stdout, with the machine line and the goal ratios beneath it."""
    head = result["header"]
    report.result(f"{head['device']}\n{head['threads']} threads, {head['clock']} clock; load average before "
                  f"{fmt_load(head['load_average'])}, after {fmt_load(head['load_average_after'])}; "
                  + ", ".join(f"{k} {v}" for k, v in head["versions"].items()))
    rows = result["rows"]
    report.table(
        f"resnet bench --mode {result['mode']}: {result['model']} at {result['input']}x{result['input']} "
        "(images/s, median of rounds; setup = compile/export/quantize, excluded)",
        ["batch", "precision", "engine", "images/s", "x baseline", "setup s", "note"],
        [[r["batch"], r["precision"], r["engine"], f"{r['images_per_s']:.1f}", f"{r['ratio']:.2f}",
          f"{r['setup_s']:.1f}", r["note"]] for r in rows],
    )
    if result["mode"] == "infer":
        for line in best_peer_lines(rows):
            report.result(line)


def best_peer_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for batch in sorted({r["batch"] for r in rows}):
        for p in ("fp32", "bf16", "int8"):
            ours = [r for r in rows if r["batch"] == batch and r["precision"] == p and r["engine"].startswith("ours")]
            peers = [r for r in rows if r["batch"] == batch and r["precision"] == p and not r["engine"].startswith("ours")]
            if ours and peers:
                best = max(peers, key=lambda r: r["images_per_s"])
                lines.append(f"batch {batch} {p}: ours {ours[0]['images_per_s']:.1f} images/s vs best peer "
                             f"{best['engine']} {best['images_per_s']:.1f} ({ours[0]['images_per_s'] / best['images_per_s']:.2f}x); "
                             f"{ours[0]['ratio']:.2f}x the baseline")
    return lines


def fmt_load(values: Sequence[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)
