"""Training benchmark: test accuracy and wall time of a recipe on the real Fashion-MNIST.

    .venv/bin/python benchmarks/bench_train.py                       # the main job (`resnet train`, recipe quick)
    .venv/bin/python benchmarks/bench_train.py --recipe fmnist-10min  # the best preset found for a 10-minute budget
    .venv/bin/python benchmarks/bench_train.py --recipe quick -- --epochs 2   # extra `resnet train` flags after --

Runs ``resnet train`` in a subprocess (so the figure includes start-up, as a user sees it) and prints
one JSON line: recipe, test top-1, wall seconds, training seconds, images/s, the load average
before and after (the CPU may be shared), and the CPU line from ``resnet.device.describe()``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="quick")
    parser.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    parser.add_argument("extra", nargs="*", help="more `resnet train` flags (after --)")
    args = parser.parse_args()

    from resnet.device import describe

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-train-")) / "run"
    command = [sys.executable, "-m", "resnet", "train", "--recipe", args.recipe, "--out", str(out), *args.extra]
    load_before = os.getloadavg()
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    if done.returncode != 0:
        return done.returncode
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    result = {
        "recipe": args.recipe,
        "command": "resnet train " + " ".join(command[4:]),
        "model": config["model"], "epochs": config["num_epochs"], "batch_size": config["batch_size"],
        "amp": config["amp_dtype"], "channels_last": config["channels_last"], "compiled": summary.get("compiled"),
        "test_top1": summary.get("test_top1"), "test_loss": summary.get("test_loss"),
        "best": summary.get("best"),
        "wall_seconds": round(wall, 1), "train_seconds": summary["train_seconds"],
        "median_images_per_s": sorted(r["images_per_s"] for r in rows)[len(rows) // 2],
        "loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in load_after],
        "cpu_cores": os.cpu_count(), "hardware": describe("cpu"), "run_dir": str(out),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
