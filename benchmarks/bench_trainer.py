"""What each training feature costs: training images/s of ``resnet train`` on the real Fashion-MNIST.

    .venv/bin/python benchmarks/bench_trainer.py                       # every feature, 60 steps each
    .venv/bin/python benchmarks/bench_trainer.py --steps 100 --old-src /tmp/old/src   # also an older checkout

Each row is one ``resnet train --threads 1 --max-steps N`` run in a subprocess (resnet20, batch 128,
the `quick` recipe otherwise) with a feature switched on; the figure is the training throughput of
that one epoch from metrics.jsonl (start-up and evaluation excluded). ``--old-src`` runs the plain row
with another checkout's sources too (alternating with ours, ``--repeat`` times each), to compare the
trainer before and after a change on the same machine state. Prints a Markdown table and the CPU line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

FEATURES: dict[str, list[str]] = {
    "plain": [],
    "--accum-steps 2": ["--accum-steps", "2"],
    "--mixup 0.2 --cutmix 1.0": ["--mixup", "0.2", "--cutmix", "1.0"],
    "--balanced-sampler --class-weights balanced": ["--balanced-sampler", "--class-weights", "balanced"],
    "--clip-grad 1.0": ["--clip-grad", "1.0"],
    "--tensorboard": ["--tensorboard"],
    "all of the above + --ema": ["--accum-steps", "2", "--mixup", "0.2", "--cutmix", "1.0", "--balanced-sampler",
                                 "--class-weights", "balanced", "--clip-grad", "1.0", "--tensorboard", "--ema"],
}


def images_per_s(flags: list[str], steps: int, src: str | None, work: Path) -> float:
    out = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if src is not None:
        env["PYTHONPATH"] = src
    command = [sys.executable, "-m", "resnet", "-q", "train", "--threads", "1", "--max-steps", str(steps),
               "--overwrite", "--out", str(out), *flags]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return float(rows[0]["images_per_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=2, help="runs per row (the median is shown)")
    parser.add_argument("--old-src", default=None, help="another checkout's src/ to time the plain row with")
    args = parser.parse_args()

    from resnet.device import describe

    work = Path(tempfile.mkdtemp(prefix="bench-trainer-"))
    lines = ["| trainer | flags | train images/s (median of %d) | each run |" % args.repeat, "|---|---|---|---|"]
    for name, flags in FEATURES.items():
        for label, src in ([("before (--old-src)", args.old_src)] if name == "plain" and args.old_src else []) + [("this", None)]:
            runs = [images_per_s(flags, args.steps, src, work) for _ in range(args.repeat)]
            lines.append(f"| {label} | {name} | {statistics.median(runs):.0f} | {', '.join(f'{r:.0f}' for r in runs)} |")
            print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    print(f"\n{describe('cpu')}; load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
