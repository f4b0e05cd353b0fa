"""`resnet bench`: images/s of our fast paths against torchvision, timm, torch.compile, ONNX Runtime and
OpenVINO, in one process, alternating rounds, with the CPU model and flags in the header."""

from __future__ import annotations

import argparse

PEERS = ("torchvision", "compile", "timm", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure inference or training speed against other engines on this machine",
                       description="Images/s of our fast paths (resnet.optimize, our training step) against torchvision, "
                       "timm, torch.compile, ONNX Runtime and OpenVINO, in one process with alternating timed rounds; "
                       "the header names the CPU and the flags the choices rest on.")
    p.add_argument("--model", default=None, help="registered model (default: resnet50 for infer, resnet20 for train)")
    p.add_argument("--batch", default=None, help="comma-separated batch sizes (default: 1,8 for infer, 128 for train)")
    p.add_argument("--input", type=int, default=None, help="input height = width (default: 224 for infer, 32 for train)")
    p.add_argument("--mode", choices=("infer", "train"), default="infer")
    p.add_argument("--against", default=",".join(PEERS),
                   help=f"comma-separated peers from {','.join(PEERS)}, or 'none' (default: all)")
    p.add_argument("--precision", default=None,
                   help="comma-separated from fp32,bf16,int8 (default: fp32, bf16 where native, int8 on a CPU)")
    p.add_argument("--rounds", type=int, default=5, help="alternating timed rounds; the median is reported (default 5)")
    p.add_argument("--round-seconds", type=float, default=None, help="minimum seconds per contender per round")
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out (it takes about a minute per model)")
    p.add_argument("--threads", type=int, default=None, help="threads for every engine (default: torch's, i.e. all cores)")
    p.add_argument("--cpu-time", action="store_true",
                   help="time by this process's CPU time, not wall time: immune to other processes on a shared "
                        "machine; meaningful with --threads 1")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cpu for infer, the default device for train)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _csv(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    from resnet.errors import ResNetError

    items = [t.strip() for t in text.split(",") if t.strip()]
    if items == ["none"]:
        return []
    bad = [t for t in items if t not in allowed]
    if bad:
        raise ResNetError(f"{flag} {','.join(bad)}: not one of {','.join(allowed)}")
    return items


def _ints(text: str, flag: str) -> list[int]:
    from resnet.errors import ResNetError

    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ResNetError(f"{flag} {text!r}: give comma-separated whole numbers, e.g. 1,8") from None
    if not values or min(values) < 1:
        raise ResNetError(f"{flag} {text!r}: give comma-separated positive whole numbers, e.g. 1,8")
    return values


def run(args: argparse.Namespace) -> int:
    from resnet import report
    from resnet.errors import ResNetError
    from resnet.models import list_models
    from resnet.speed import bench

    train = args.mode == "train"
    model = args.model or ("resnet20" if train else "resnet50")
    if model not in list_models():
        raise ResNetError(f"--model {model}: not a registered model; run `resnet models` to see them")
    batches = _ints(args.batch or ("128" if train else "1,8"), "--batch")
    size = args.input or (32 if train else 224)
    if size < 8:
        raise ResNetError(f"--input {size}: too small for a ResNet; give at least 8 (pixels)")
    if args.rounds < 1:
        raise ResNetError("--rounds must be at least 1")
    against = _csv(args.against, PEERS, "--against")
    if args.threads is not None:
        if args.threads < 1:
            raise ResNetError("--threads must be at least 1")
        import torch

        torch.set_num_threads(args.threads)
    clock = "cpu" if args.cpu_time else "wall"
    if train:
        result = bench.bench_train(model, batches, size, against=against, rounds=args.rounds, compile=not args.no_compile,
                                   min_round_s=args.round_seconds or 1.0, device=args.device, clock=clock)
    else:
        precisions = _csv(args.precision, PRECISIONS, "--precision") if args.precision else None
        result = bench.bench_infer(model, batches, size, against=against, precisions=precisions, rounds=args.rounds,
                                   compile=not args.no_compile, min_round_s=args.round_seconds or 0.5,
                                   device=args.device or "cpu", clock=clock)
    if args.json:
        report.result_json(result)
    else:
        bench.render(result)
    return 0
