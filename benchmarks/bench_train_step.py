"""Training-step throughput of candidate nets for the time-budget presets (Fashion-MNIST's 1x28x28, batch 128).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_train_step.py --nets resnet20,resnet8:32,resnet32 --compile both
    PYTHONPATH=src .venv/bin/python benchmarks/bench_train_step.py --nets resnet20,resnet32 --sizes 16,20,24,28

``--sizes`` times square inputs of other sizes too (the phases of progressive resizing).

A net is NAME or NAME:WIDTH (the first stage's width; the others double it, e.g. resnet8:32 is widths
32/64/128). Each runs resnet's own train step (channels_last; bf16 autocast as training would choose it,
measured where the CPU has native bf16, or forced with --amp on/off),
eager and/or compiled, on random data: 3 warm-up steps (timed: that is the compile time), then the median
of 5 rounds of at least 0.5 s (`resnet.speed.timing.time_rounds`). Prints one line per net and the CPU line.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", default="resnet20,resnet8:32,resnet20:32,resnet32,resnet56")
    parser.add_argument("--compile", choices=["no", "yes", "both"], default="both")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--sizes", default="28", help="square input sizes, comma-separated (e.g. 16,20,24,28)")
    parser.add_argument("--amp", choices=["auto", "on", "off"], default="auto", help="bf16 autocast (auto: as training chooses)")
    args = parser.parse_args()

    from resnet.device import describe
    from resnet.models import create_model
    from resnet.speed.timing import time_rounds
    from resnet.train.precision import choose_cpu_amp
    from resnet.train.step import amp_dtype_for, make_train_step

    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe("cpu"))
    modes = {"no": [False], "yes": [True], "both": [False, True]}[args.compile]
    for spec in args.nets.split(","):
        name, _, width = spec.partition(":")
        options = {"widths": [int(width), 2 * int(width), 4 * int(width)]} if width else {}
        for size, compiled in itertools.product(map(int, args.sizes.split(",")), modes):
            torch.manual_seed(0)
            model = create_model(name, num_classes=10, in_chans=1, **options)
            amp = (choose_cpu_amp(model, (1, 28, 28), channels_last=True)[0] if args.amp == "auto"
                   else amp_dtype_for("cpu", args.amp == "on"))
            step = make_train_step(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), device="cpu",
                                   amp_dtype=amp, channels_last=True, compile=compiled)
            x, y = torch.randn(args.batch, 1, size, size), torch.randint(0, 10, (args.batch,))
            start = time.perf_counter()
            for _ in range(3):
                step(x, y)
            warm = time.perf_counter() - start
            seconds = time_rounds([lambda step=step, x=x, y=y: step(x, y)], rounds=5, min_round_s=0.5, warmup=0)[0]
            params = sum(p.numel() for p in model.parameters())
            print(f"{spec:14s} {size:3d} px {'compiled' if compiled else 'eager':8s} {args.batch / statistics.median(seconds):7.0f} "
                  f"images/s  params {params:>9,}  warm-up {warm:5.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
