"""The degradation experiment on the real Fashion-MNIST, its outputs copied here for the repository.

    PYTHONPATH=src .venv/bin/python benchmarks/reproduce/bench_degradation.py --budget-minutes 55 --jobs 2
    PYTHONPATH=src .venv/bin/python benchmarks/reproduce/bench_degradation.py --steps 320 --train-images 10000 --test-images 2000

``--train-images``/``--test-images`` keep the first N images of the real files (written as IDX files in
OUT-data/): shorter epochs give the figure more points when a busy CPU allows only a few hundred iterations.

Trains plain-n and ResNet-n for n in 20/32/44/56 (as `resnet reproduce degradation` does) into --out,
then copies table.md/.csv, results.json, figure.png and every member's metrics.csv next to this
script, with bench.json: the command, wall time, load averages before and after, and the CPU line.
Rerunning the same command resumes an interrupted run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def subset(dest: Path, source: str | None, train: int | None, test: int | None) -> Path:
    """The first ``train``/``test`` images of the real Fashion-MNIST files, as IDX files in ``dest``."""
    from resnet.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
    from resnet.data.testing import write_idx

    root = Path(source or "/usr/share/datasets/fashion-mnist")
    dest.mkdir(parents=True, exist_ok=True)
    for prefix, keep in (("train", train), ("t10k", test)):
        for kind, magic in (("images-idx3", IMAGES_MAGIC), ("labels-idx1", LABELS_MAGIC)):
            name = f"{prefix}-{kind}-ubyte"
            array = read_idx(next(p for p in (root / name, root / f"{name}.gz") if p.exists()), magic)
            write_idx(dest / name, array[:keep] if keep else array, magic)
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--budget-minutes", type=float, default=None)
    length.add_argument("--steps", type=int, default=None)
    parser.add_argument("--train-images", type=int, default=None, help="keep the first N training images")
    parser.add_argument("--test-images", type=int, default=None, help="keep the first N test images")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--depths", default="20,32,44,56")
    parser.add_argument("--seeds", type=int, default=1, help="runs per net (the table gives mean and std)")
    parser.add_argument("--only", default=None, help="groups to train alone, e.g. resnet")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/bench-reproduce-degradation")
    parser.add_argument("--results", default=str(HERE), help="where the copies go")
    args = parser.parse_args()

    from resnet import report, reproduce
    from resnet.device import describe

    report.configure()
    load_before, started = os.getloadavg(), time.time()
    data_dir = args.data_dir
    if args.train_images or args.test_images:
        data_dir = str(subset(Path(f"{args.out}-data"), args.data_dir, args.train_images, args.test_images))
    result = reproduce.run("degradation", data=args.data, data_dir=data_dir, budget_minutes=args.budget_minutes, steps=args.steps,
                           jobs=args.jobs, depths=[int(d) for d in args.depths.split(",")], seeds=args.seeds,
                           only=args.only.split(",") if args.only else None, out=args.out)
    wall = time.time() - started
    dest = Path(args.results)
    (dest / "metrics").mkdir(parents=True, exist_ok=True)
    for name in ("table.md", "table.csv", "results.json", "figure.png", "experiment.json"):
        shutil.copyfile(result.out / name, dest / name)
    for member in result.members:
        shutil.copyfile(result.out / member.member.name / "metrics.csv", dest / "metrics" / f"{member.member.name}.csv")
    bench = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "wall_seconds": round(wall, 1),
             "load_average_before": load_before, "load_average_after": os.getloadavg(), "cpu": describe("cpu"),
             "budget": result.budget_label, "verdict": result.verdict["text"]}
    (dest / "bench.json").write_text(json.dumps(bench, indent=2) + "\n", encoding="utf-8")
    report.result(json.dumps(bench))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
