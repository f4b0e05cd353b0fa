"""The degradation experiment on the real Fashion-MNIST, its outputs copied here for the repository.

    PYTHONPATH=src .venv/bin/python benchmarks/reproduce/bench_degradation.py --budget-minutes 55 --jobs 2

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, default=55)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--depths", default="20,32,44,56")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/bench-reproduce-degradation")
    parser.add_argument("--results", default=str(HERE), help="where the copies go")
    args = parser.parse_args()

    from resnet import report, reproduce
    from resnet.device import describe

    report.configure()
    load_before, started = os.getloadavg(), time.time()
    result = reproduce.run("degradation", data=args.data, data_dir=args.data_dir, budget_minutes=args.budget_minutes,
                           jobs=args.jobs, depths=[int(d) for d in args.depths.split(",")], out=args.out)
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
